"""Spawning from Python onto an erl node: SPAWN_REQUEST out, SPAWN_REPLY in, and the
link or monitor it makes behaving as any other."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import pytest

from py_nodes import Atom, CallTimeout, NodeDown, NoProc, Pid, Reference, SpawnError
from tests.py_nodes.conftest import ERL, ErlNode, running_node
from tests.py_nodes.test_links_monitors import collector, give

pytestmark = pytest.mark.skipif(ERL is None, reason="erl is not on PATH")

EXIT, DOWN, PROCESS = Atom("EXIT"), Atom("DOWN"), Atom("process")
KILLED, NOCONNECTION, NORMAL = Atom("killed"), Atom("noconnection"), Atom("normal")


async def test_plain_spawn_runs_the_function_there(erl: ErlNode, cookie: str) -> None:
    async with running_node(cookie) as node:
        me, proc = collector(node)
        pid = await node.spawn_remote(erl.name, "erlang", "send", [me, (Atom("hi"), 1)])
        assert type(pid) is Pid and pid.node == erl.atom
        assert await proc.receive(5.0) == (Atom("hi"), 1)
        # io from the new process goes to our node's group leader, which answers
        p = await node.spawn_remote(
            erl.name, "io", "format", ["~p~n", [[1, 2]]], owner=me, monitor=True
        )
        assert await proc.receive(5.0) == (DOWN, p[1], PROCESS, p[0], NORMAL)


async def test_linked_spawn(erl: ErlNode, cookie: str) -> None:
    async with running_node(cookie) as node:
        me, proc = collector(node)
        pid = await proc.spawn_remote(erl.name, "timer", "sleep", [60000], link=True)
        p = await give(erl, node, pid)
        assert await erl.eval(f"{{links, L}} = process_info({p}, links), L") == [me]
        await erl.eval(f"exit({p}, kill)")
        assert await proc.receive(5.0) == (EXIT, pid, KILLED)
        # and the other way: the owner's exit reaches the spawned process
        other = await proc.spawn_remote(erl.name, "timer", "sleep", [60000], link=True)
        o = await give(erl, node, other)
        await erl.eval(f"OMon = monitor(process, {o})")
        proc.exit(Atom("owner_gone"))
        reason = await erl.eval("receive {'DOWN', OMon, _, _, R} -> R after 5000 -> none end")
        assert reason == Atom("owner_gone")
        assert node.monitor_count() == 0


async def test_monitored_spawn_and_undefined_function(erl: ErlNode, cookie: str) -> None:
    async with running_node(cookie) as node:
        me, proc = collector(node)
        pid, ref = await node.spawn_remote(
            erl.name, "erlang", "exit", [Atom("bye")], owner=me, monitor=True
        )
        assert isinstance(ref, Reference)
        assert await proc.receive(5.0) == (DOWN, ref, PROCESS, pid, Atom("bye"))
        # an undefined function is spawned, then exits with undef through link and monitor
        pid, ref = await proc.spawn_remote(
            erl.name, "no_such_module", "f", [1], link=True, monitor=True
        )
        got = [await proc.receive(5.0), await proc.receive(5.0)]
        assert {m[0] for m in got} == {EXIT, DOWN}
        for message in got:
            assert message[-1][0] == Atom("undef")
        assert node.monitor_count() == 0


async def test_refused_spawns(erl: ErlNode, cookie: str) -> None:
    async with running_node(cookie) as node:
        with pytest.raises(SpawnError) as refused:
            await node.spawn_remote(erl.name, "timer", "sleep", [10], options=[Atom("bogus")])
        assert refused.value.reason == Atom("badopt")
        with pytest.raises(NodeDown):
            await node.spawn_remote("nobody_here@127.0.0.1", "timer", "sleep", [10])
        with pytest.raises(ValueError):
            await node.spawn_remote(erl.name, "timer", "sleep", [10], link=True)
        with pytest.raises(ValueError):
            await node.spawn_remote(erl.name, "timer", "sleep", [10], options=[Atom("link")])
        with pytest.raises(ValueError):
            await node.spawn_remote(node.name, "timer", "sleep", [10])
        with pytest.raises(NoProc):
            await node.spawn_remote(
                erl.name,
                "timer",
                "sleep",
                [10],
                owner=Pid(node.atom, 999_999, 0, node.creation),
                monitor=True,
            )
        assert node.monitor_count() == 0


async def test_spawned_link_and_monitor_see_connection_loss(
    erl_factory: Callable[..., ErlNode], cookie: str
) -> None:
    doomed = erl_factory()
    async with running_node(cookie) as node:
        _, proc = collector(node)
        linked = await proc.spawn_remote(doomed.name, "timer", "sleep", [60000], link=True)
        watched, ref = await proc.spawn_remote(doomed.name, "timer", "sleep", [60000], monitor=True)
        doomed.stop()
        got = [await proc.receive(10.0), await proc.receive(10.0)]
        assert (EXIT, linked, NOCONNECTION) in got
        assert (DOWN, ref, PROCESS, watched, NOCONNECTION) in got
        assert node.monitor_count() == 0


async def test_io_of_spawned_process_is_logged(
    erl: ErlNode, cookie: str, caplog: pytest.LogCaptureFixture
) -> None:
    async with running_node(cookie) as node:
        _, proc = collector(node)
        with caplog.at_level(logging.INFO, logger="py_nodes.io"):
            pid, ref = await proc.spawn_remote(
                erl.name, "io", "put_chars", [b"hello from erl"], monitor=True
            )
            assert await proc.receive(5.0) == (DOWN, ref, PROCESS, pid, NORMAL)
        assert any("hello from erl" in r.getMessage() for r in caplog.records)


async def test_spawn_given_up_before_the_reply_is_abandoned(erl: ErlNode, cookie: str) -> None:
    async with running_node(cookie) as node:
        me, proc = collector(node)
        p = await give(erl, node, me)
        # The exit may reach the new process before it traps exits, and kill it: the
        # trace of the erl node's new processes tells that reason too.
        await erl.eval(
            f"AbParent = self(), erlang:trace(new_processes, true, [procs, {{tracer, AbParent}}]),"
            f" {p} ! fun() -> process_flag(trap_exit, true),"
            " receive {'EXIT', _, AbR} -> AbParent ! {abandoned_with, AbR} end end"
        )
        fun = await proc.receive(5.0)
        with pytest.raises(CallTimeout):
            await proc.spawn_remote(
                erl.name, "erlang", "apply", [fun, []], link=True, monitor=True, timeout=0
            )
        # the reply still comes: the link is undone with the exit abandoned, the monitor
        # with a demonitor, and nothing of either stays here
        got = await erl.eval(
            "receive {abandoned_with, AbX} -> AbX; {trace, _, exit, abandoned} -> abandoned"
            " after 5000 -> none end"
        )
        await erl.eval("erlang:trace(all, false, [procs])")
        assert got == Atom("abandoned")
        await asyncio.sleep(0.2)
        assert node.monitor_count() == 0
        assert proc.messages() == []  # no EXIT from the process that has gone meanwhile
