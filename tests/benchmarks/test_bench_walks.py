"""``houseparty bench walks`` end to end at a tiny size: the Python workers beside the BEAM
baseline on the sidecars, the reads, the rate without replication, the tables and the plot."""

from __future__ import annotations

import dataclasses
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from rich.console import Console

from benchmarks._cases import Loop, in_turns
from benchmarks._plot import plot_results
from benchmarks._report import BenchSettings, RichReporter, run_benchmarks, tables


def test_in_turns_alternates_the_sides_and_adds_up_their_turns() -> None:
    order: list[tuple[str, int]] = []

    def side(name: str, seconds_per_op: float) -> Callable[[int], Loop]:
        def run(count: int) -> Loop:
            order.append((name, count))
            lats = [seconds_per_op * 1e6] * count
            cpu = {"sidecars": count * 1e-4, "python": count * 2e-4}
            return Loop(done=count, seconds=count * seconds_per_op, lats=lats, cpu=cpu)

        return run

    # 70 operations from 3 callers: 23 each, 69 in all, in turns of 8, 8 and 7 each.
    figures = in_turns({"a": side("a", 0.001), "b": side("b", 0.004)}, 70, 3, 3)
    assert order == [("a", 24), ("b", 24), ("a", 24), ("b", 24), ("a", 21), ("b", 21)]
    assert figures["a"]["operations"] == figures["b"]["operations"] == 69
    assert figures["a"]["per_second"] == 1000.0 and figures["b"]["per_second"] == 250.0
    assert figures["b"]["p50_us"] == figures["b"]["p99_us"] == 4000.0
    assert figures["a"]["cpu_us"] == {"sidecars": 100.0, "python": 200.0}
    # No more turns than operations per caller; a loop without CPU figures reports none.
    order.clear()
    few = in_turns({"a": lambda n: Loop(done=n, seconds=1.0, lats=[1.0] * n)}, 2, 1, 4)
    assert few["a"]["operations"] == 2 and "cpu_us" not in few["a"]


@pytest.mark.timeout(240)
@pytest.mark.skipif(shutil.which("erlc") is None, reason="Erlang/OTP is not installed")
def test_bench_walks_runs_both_sides_and_reports_them(tmp_path: Path) -> None:
    console = Console(width=260, record=True)
    settings = dataclasses.replace(BenchSettings.quick(), people=300, walks=300)
    results = run_benchmarks(["walks"], settings, RichReporter(console))
    figures = results["walks"]
    for table in tables("walks", figures):
        console.print(table)
    assert [r["callers"] for r in figures["sidecar_walks"]] == [3, 30]
    for row in figures["sidecar_walks"]:
        for side in ("beam", "python"):
            # Every walk answered ok, each side walking as often.
            assert row[side]["operations"] == 300
            assert row[side]["errors"] == 0
            assert row[side]["p50_us"] <= row[side]["p99_us"]
            # The walks ran on the sidecars: they used CPU time, counted per walk.
            assert row[side]["cpu_us"]["sidecars"] > 0
        # The Python workers' walks run on the Python nodes too.
        assert row["python"]["cpu_us"]["python"] > 0
        assert row["ratio"] > 0
    reads = {(r["read"], r["callers"]) for r in figures["reads"]}
    assert reads == {
        (read, callers)
        for read in ("who_is_in", "where_is", "get_person_room_log")
        for callers in (3, 30)
    }
    assert all(r["beam"]["errors"] == r["python"]["errors"] == 0 for r in figures["reads"])
    replication = figures["replication"]
    assert replication["copies"] == 1
    for row in replication["rows"]:
        assert row["without"]["operations"] == 300 and row["without"]["errors"] == 0
        assert row["without"]["cpu_us"]["python"] > 0
    # The same people walk on as their logs grow, every walk answered ok, on both sides.
    growing = replication["growing_logs"]
    assert growing["people"] == 30
    for side in ("with", "without"):
        steps = [row[side] for row in growing["rows"]]
        assert len(steps) == 4
        assert all(s["operations"] == 150 and s["errors"] == 0 for s in steps)
        lengths = [s["log_length"] for s in steps]
        assert lengths == sorted(set(lengths)), lengths
    # Each comparison ran in turns: the quick settings' two.
    assert figures["turns"] == 2
    text = console.export_text()
    assert "beside the BEAM baseline" in text
    assert "HP_REPLICA_COPIES=1" in text
    assert "CPU us/walk (sidecars + Python)" in text
    assert "as people's logs grow" in text
    (plot,) = plot_results({"walks": figures}, tmp_path)
    assert plot.name == "walks.png" and plot.stat().st_size > 0
