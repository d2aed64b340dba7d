"""The rate limiter example on a real 3-pod cluster: buckets registered and spent from
Python (sync and asyncio) and from erl, moved with their tokens by a drain, back after a
kill."""

from __future__ import annotations

import asyncio
import re
import secrets
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from examples.ratelimit import BucketStats
from houseparty import AsyncWorkers, Worker, Workers, WorkerStartError
from houseparty.cli._localcluster import LocalCluster
from py_nodes import Atom, Pid
from tests.houseparty.conftest import Cluster, Iex, free_base_port
from tests.houseparty.test_readme import README, layout_free
from tests.py_nodes.conftest import ErlNode

REPO = Path(__file__).resolve().parents[2]
KEYS = [f"login:user{i}" for i in range(48)]
GROUP = "logins"
# A token every 1000 s: no refill that the test could see.
PER_SECOND = 0.001


def capacity(i: int) -> int:
    return 3 + i % 5


@pytest.fixture
def bucket_cluster(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Cluster]:
    """Three pods that know the example's class, started as ``houseparty up --worker
    examples.ratelimit:Bucket`` run from the repository's root starts them."""
    monkeypatch.chdir(REPO)
    runner = LocalCluster(tmp_path / "run")
    cookie = "hp_" + secrets.token_hex(8)
    runner.up(
        pods=3,
        cookie=cookie,
        base_port=free_base_port(3),
        tag="_" + secrets.token_hex(3),
        timeout=90,
        workers=["examples.ratelimit:Bucket"],
    )
    cluster = Cluster(runner, cookie, [spec for spec, _ in runner.pods()])
    try:
        yield cluster
    finally:
        if runner.is_running():
            runner.down(timeout=60)


def workers(cluster: Cluster, pod: int) -> Workers:
    return Workers(cluster.sidecars[pod - 1], cookie=cluster.cookie)


def erl_list(keys: list[str]) -> str:
    return "[" + ", ".join(f'<<"{k}">>' for k in keys) + "]"


def stats_of(w: Workers, keys: list[str]) -> dict[str, BucketStats]:
    return {k: BucketStats.from_term(w.call(k, "stats")) for k in keys}


def register_and_spend(cluster: Cluster, erl: ErlNode) -> dict[str, int]:
    """Register every key (a sixth from erl), spend tokens from the sync and asyncio
    clients, erl and casts; how many unit requests each key got."""
    sidecar = cluster.sidecars[2]
    from_erl = KEYS[::6]
    asked = dict.fromkeys(KEYS, 0)
    specs = ", ".join(f'{{<<"{k}">>, {capacity(KEYS.index(k))}}}' for k in from_erl)
    registered = erl.eval_sync(
        f"[erpc:call('{sidecar}', hp_registry, register_name, "
        f"[K, hp_python, start_worker, [bucket, K, [C, {PER_SECOND}]]]) || {{K, C}} <- [{specs}]]"
    )
    assert [ok for ok, _pid in registered] == [Atom("ok")] * len(from_erl)
    with workers(cluster, 1) as w:
        for i, key in enumerate(KEYS):
            if key not in from_erl:
                assert isinstance(w.register(key, "bucket", capacity(i), PER_SECOND), Pid)
            w.join(GROUP, key)
        # Sync calls: up to twice a key's capacity, so that the fuller ones say no.
        for i, key in enumerate(KEYS):
            for _ in range(i % (2 * capacity(i))):
                w.call(key, "allow")
                asked[key] += 1

    async def spend_async() -> None:
        async with AsyncWorkers(cluster.sidecars[1], cookie=cluster.cookie) as aw:
            await asyncio.gather(*(aw.call(k, ("allow", 1)) for k in KEYS[::2]))

    asyncio.run(spend_async())
    for key in KEYS[::2]:
        asked[key] += 1

    # erl: by the via tuple on a sidecar, and straight to the worker's pid.
    via_keys, pid_keys = KEYS[1::3], KEYS[2::5]
    answers = erl.eval_sync(
        f"[erpc:call('{sidecar}', gen_server, call, "
        f'[{{via, hp_registry, K}}, <<"allow">>]) || K <- {erl_list(via_keys)}]'
    )
    assert all(isinstance(a, bool) for a in answers) and len(answers) == len(via_keys)
    answers = erl.eval_sync(
        f"[gen_server:call(erpc:call('{sidecar}', hp_registry, whereis_name, [K]), "
        f'{{<<"allow">>, 1}}) || K <- {erl_list(pid_keys)}]'
    )
    assert all(isinstance(a, bool) for a in answers) and len(answers) == len(pid_keys)
    for key in via_keys + pid_keys:
        asked[key] += 1

    with workers(cluster, 2) as w:
        for key in KEYS[::4]:
            w.cast(key, "allow")
            asked[key] += 1
    return asked


def expected(asked: dict[str, int]) -> dict[str, BucketStats]:
    """What a bucket that got ``asked`` unit requests and no refill must say."""
    out = {}
    for i, key in enumerate(KEYS):
        allowed = min(asked[key], capacity(i))
        denied = asked[key] - allowed
        out[key] = BucketStats(capacity(i) - allowed, capacity(i), PER_SECOND, allowed, denied)
    return out


def settled_stats(cluster: Cluster, want: dict[str, BucketStats]) -> dict[str, BucketStats]:
    """The stats of every key once the casts have landed (a cast is not answered)."""
    deadline = time.monotonic() + 10
    with workers(cluster, 1) as w:
        while True:
            got = stats_of(w, KEYS)
            if got == want or time.monotonic() > deadline:
                return got
            time.sleep(0.1)


def placement(w: Workers) -> dict[str, Pid]:
    pids = {}
    for key in KEYS:
        pid = w.whereis(key)
        assert pid is not None, key
        pids[key] = pid
    return pids


def spent_bucket_on(w: Workers, node: str) -> str:
    """A bucket outside KEYS that the ring places on ``node``, two of its five tokens
    spent: the buckets of KEYS that land there may all have none left."""
    for i in range(200):
        key = f"moved:{i}"
        pid = w.register(key, "bucket", 5, PER_SECOND)
        assert isinstance(pid, Pid)
        if pid.node.name == node:
            assert [w.call(key, "allow"), w.call(key, "allow")] == [True, True]
            return key
    raise AssertionError(f"none of 200 buckets was placed on {node}")


def test_a_drain_moves_every_bucket_with_its_tokens_and_counts(bucket_cluster: Cluster) -> None:
    erl = ErlNode(bucket_cluster.cookie)
    try:
        asked = register_and_spend(bucket_cluster, erl)
        before = settled_stats(bucket_cluster, expected(asked))
        assert before == expected(asked)
        assert any(s.denied for s in before.values()) and any(s.tokens for s in before.values())
        leaving = bucket_cluster.pods[1].python_node
        with workers(bucket_cluster, 1) as w:
            where_before = placement(w)
            moved = spent_bucket_on(w, leaving)
            moved_before = BucketStats.from_term(w.call(moved, "stats"))
        on_leaving = [k for k, pid in where_before.items() if pid.node.name == leaving]
        assert on_leaving, "pod 2 held no bucket: the test would prove nothing"

        bucket_cluster.runner.stop_pod(2)

        with workers(bucket_cluster, 3) as w:
            assert stats_of(w, KEYS) == before
            where_after = placement(w)
            assert leaving not in {pid.node.name for pid in where_after.values()}
            # The buckets of the other pods stayed where they were.
            for key in set(KEYS) - set(on_leaving):
                assert where_after[key] == where_before[key], key
            # The group moved with its members.
            assert len(w.multi_call(GROUP, "stats")) == len(KEYS)
            # A moved bucket goes on from its tokens.
            assert BucketStats.from_term(w.call(moved, "stats")) == moved_before
            assert moved_before.tokens == 3
            assert w.call(moved, "allow") is True
            assert BucketStats.from_term(w.call(moved, "stats")).tokens == 2
        # And erl finds it where it went.
        sidecar = bucket_cluster.sidecars[0]
        tokens = erl.eval_sync(
            f"maps:get(tokens, erpc:call('{sidecar}', gen_server, call, "
            f'[{{via, hp_registry, <<"{moved}">>}}, <<"stats">>]))'
        )
        assert tokens == 2
    finally:
        erl.stop()


def test_a_kill_brings_every_bucket_back(bucket_cluster: Cluster) -> None:
    erl = ErlNode(bucket_cluster.cookie)
    try:
        asked = register_and_spend(bucket_cluster, erl)
    finally:
        erl.stop()
    before = settled_stats(bucket_cluster, expected(asked))
    assert before == expected(asked)
    with workers(bucket_cluster, 1) as w:
        where_before = placement(w)
    killed = bucket_cluster.pods[2].python_node
    lost = {k for k, pid in where_before.items() if pid.node.name == killed}
    assert lost, "pod 3 held no bucket: the test would prove nothing"
    # Spent buckets on both sides, so that a fresh start would not pass for a kept state.
    fresh = expected(dict.fromkeys(KEYS, 0))
    assert any(before[k] != fresh[k] for k in lost)
    assert any(before[k] != fresh[k] for k in set(KEYS) - lost)

    bucket_cluster.runner.kill_pod(3)

    with workers(bucket_cluster, 1) as w:
        deadline = time.monotonic() + 30
        while True:
            where = {k: w.whereis(k) for k in KEYS}
            back = all(p is not None and p.node.name != killed for p in where.values())
            if back or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert back, {k: p for k, p in where.items() if p is None or p.node.name == killed}
        after = stats_of(w, KEYS)
    for key in KEYS:
        if key in lost:
            # Started again on another pod, from the state its last answer waited for.
            assert where[key] != where_before[key], key
            assert after[key] == before[key], key
        else:
            # Never stopped: the same process, the same tokens.
            assert where[key] == where_before[key], key
            assert after[key] == before[key], key


def test_bad_arguments_refuse_the_registration(bucket_cluster: Cluster) -> None:
    with workers(bucket_cluster, 1) as w:
        with pytest.raises(WorkerStartError, match="capacity must be a whole number"):
            w.register("login:nobody", "bucket", 0, 1.0)
        with pytest.raises(WorkerStartError, match="per_second must be a positive number"):
            w.register("login:nobody", "bucket", 3, "fast")
        assert w.whereis("login:nobody") is None
        w.register("login:carol", "bucket", 2, PER_SECOND)
        error = Atom("error")
        assert w.call("login:carol", ("allow", 3)) == (error, (Atom("bad_cost"), 3))
        assert w.call("login:carol", "refill") == (error, (Atom("unknown_request"), b"refill"))
        assert [w.call("login:carol", "allow") for _ in range(3)] == [True, True, False]
        w.join(GROUP, "login:carol")
        w.publish(GROUP, "reset")
        deadline = time.monotonic() + 5
        while BucketStats.from_term(w.call("login:carol", "stats")).tokens != 2:
            assert time.monotonic() < deadline, "publish reset did not refill the bucket"
            time.sleep(0.05)


def blocks(text: str, language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", text, flags=re.S)


def readme_section() -> str:
    """The README's section on writing your own workers."""
    text = README.read_text()
    start = text.index("## Writing your own workers")
    return text[start : text.index("\n## ", start + 1)]


def shown_matches(got: str, shown: str) -> bool:
    """``got`` is what the README shows, ``...`` standing for anything (a pid)."""
    parts = [re.escape(part) for part in layout_free(shown).split("...")]
    return re.fullmatch(".*".join(parts), layout_free(got)) is not None


def run_python(block: str, cluster: Cluster) -> None:
    """A guide's Python session, pointed at ``cluster``'s first sidecar."""
    code = block.replace('"sidecar1@127.0.0.1"', repr(cluster.sidecars[0]))
    code = code.replace('"COOKIE"', repr(cluster.cookie))
    exec(compile(code, "<guide>", "exec"), {})


def run_iex(block: str, cluster: Cluster) -> None:
    """Type a guide's ``iex>`` lines into iex on the first sidecar; each prints what the
    guide shows."""
    iex = Iex(cluster.cookie, cluster.sidecars[0])
    try:
        for chunk in block.split("iex> ")[1:]:
            line, _, shown = chunk.partition("\n")
            got = iex.run(line.strip())
            assert shown_matches(got, shown), (line, got)
    finally:
        iex.close()


def erl_statements(block: str) -> list[tuple[str, str]]:
    """A guide's erl statements, each with the ``%% result`` line under it ("ok" when it
    shows none)."""
    statements: list[tuple[str, str]] = []
    pending: list[str] = []
    for line in block.splitlines():
        if line.startswith("%% ") and not pending and statements:
            statements[-1] = (statements[-1][0], line[3:])
        elif line.strip():
            pending.append(line.strip())
            if line.rstrip().endswith("."):
                statements.append((" ".join(pending).rstrip("."), "ok"))
                pending = []
    assert not pending, pending
    return statements


def run_erl(block: str, cluster: Cluster) -> None:
    """Run a guide's erl statements on the first sidecar, as its shell would; each gives
    what the guide shows."""
    erl = ErlNode(cluster.cookie)
    try:
        for expr, shown in erl_statements(block):
            got = erl.eval_sync(
                f'list_to_binary(io_lib:format("~0p", '
                f"[erpc:call('{cluster.sidecars[0]}', fun() -> {expr} end)]))"
            )
            assert shown_matches(got.decode(), shown), (expr, got)
    finally:
        erl.stop()


def test_the_readme_section_runs_as_written(bucket_cluster: Cluster) -> None:
    section = readme_section()
    counter_class, session = blocks(section, "python")
    namespace: dict[str, object] = {}
    exec(compile(counter_class, str(README), "exec"), namespace)
    assert issubclass(namespace["Counter"], Worker)  # type: ignore[arg-type]

    run_python(session, bucket_cluster)
    with workers(bucket_cluster, 2) as w:
        assert w.whereis("login:carol") is None
        assert BucketStats.from_term(w.call("login:alice", "stats")) == BucketStats(
            tokens=3, capacity=3, per_second=0.1, allowed=2, denied=1
        )
        # The stopped worker leaves its group once its exit reaches the registry.
        deadline = time.monotonic() + 10
        while len(w.members("logins")) != 2:
            assert time.monotonic() < deadline, w.members("logins")
            time.sleep(0.05)
    (iex_block,) = blocks(section, "elixir")
    run_iex(iex_block, bucket_cluster)
    (erl_block,) = blocks(section, "erlang")
    assert len(erl_statements(erl_block)) == 2
    run_erl(erl_block, bucket_cluster)


def test_the_examples_guide_runs_as_written(bucket_cluster: Cluster) -> None:
    guide = (REPO / "examples" / "README.md").read_text()
    (session,) = blocks(guide, "python")
    run_python(session, bucket_cluster)
    with workers(bucket_cluster, 3) as w:
        alice = BucketStats.from_term(w.call("login:alice", "stats"))
        assert (alice.allowed, alice.denied, alice.capacity) == (2, 1, 5)
    (erl_block,) = blocks(guide, "erlang")
    assert len(erl_statements(erl_block)) == 2
    run_erl(erl_block, bucket_cluster)
    (iex_block,) = blocks(guide, "elixir")
    run_iex(iex_block, bucket_cluster)
