"""Walks into and out of a crowded room against walks into and out of an empty one.

    .venv/bin/python benchmarks/room_bench.py [--people 9000] [--walks 200]
                                              [--replica-copies N]

Starts a local cluster of three pods, fills the room ``crowd`` with ``--people`` people,
then walks each of a few walkers from the room ``porch`` into ``crowd`` or into the empty
``den`` and back, in alternating rounds, and prints the mean time of one walk (one enter,
one leave) for each. The difference is what a room's size costs a walk: the room's own
enter and leave cost the same at any size; each change sends the person who came or went
to the sidecars holding the room's state (``HP_REPLICA_COPIES``, ``--replica-copies 0``
for none), and each of them copies the room's list in its table, which grows with it.
"""

from __future__ import annotations

import argparse
import secrets
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from houseparty import ROOM_MAX_LIMIT, HouseParty
from houseparty.cli._localcluster import LocalCluster

BATCH = 500  # people walked into the crowd per call


def walk_time(hp: HouseParty, room: str, walker: str, walks: int) -> float:
    """Mean seconds of one walk, into ``room`` and back to the porch, ``walks`` times."""
    t0 = time.perf_counter()
    for _ in range(walks):
        hp.walk_into(room, walker)
        hp.walk_into("porch", walker)
    return (time.perf_counter() - t0) / (2 * walks)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--people", type=int, default=9000)
    parser.add_argument("--walks", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--replica-copies", type=int, default=None)
    args = parser.parse_args()
    if not 1 <= args.people < ROOM_MAX_LIMIT:
        parser.error(f"--people must be within 1..{ROOM_MAX_LIMIT - 1}")

    run_dir = Path(tempfile.mkdtemp(prefix="room-bench-"))
    runner = LocalCluster(run_dir / "run")
    cookie = "bench_" + secrets.token_hex(8)
    base = 20000 + secrets.randbelow(12000 // 20) * 20
    print(f"starting 3 pods (ports from {base})", flush=True)
    runner.up(
        pods=3,
        cookie=cookie,
        base_port=base,
        tag="_r" + secrets.token_hex(3),
        timeout=120,
        replica_copies=args.replica_copies,
    )
    try:
        sidecar = next(spec.sidecar_node for spec, _ in runner.pods())
        with HouseParty(sidecar, cookie=cookie, timeout=300) as hp:
            hp.add_rooms(["crowd", "den", "porch"], max=ROOM_MAX_LIMIT)
            people = [f"guest_{i}" for i in range(args.people)]
            for start in range(0, len(people), BATCH):
                hp.walk_into("crowd", people[start : start + BATCH])
            print(f"crowd holds {len(hp.who_is_in('crowd')):,} people", flush=True)
            hp.walk_into("porch", ["w_den", "w_crowd"])
            den: list[float] = []
            crowd: list[float] = []
            for _ in range(args.rounds):
                den.append(walk_time(hp, "den", "w_den", args.walks))
                crowd.append(walk_time(hp, "crowd", "w_crowd", args.walks))
        mean_den = sum(den) / len(den) * 1e6
        mean_crowd = sum(crowd) / len(crowd) * 1e6
        print("| walk into and out of | µs per walk |\n|---|---:|")
        print(f"| the empty den | {mean_den:,.0f} |")
        print(f"| the crowd of {args.people:,} | {mean_crowd:,.0f} |")
        print(f"crowd / den: {mean_crowd / mean_den:.2f}")
    finally:
        runner.down(timeout=60)
        shutil.rmtree(run_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
