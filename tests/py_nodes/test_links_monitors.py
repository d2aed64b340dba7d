"""Links, monitors and exit signals both ways between erl and a Python node, and what
happens when a connection is lost (SIGKILL of a Python node, erlang:disconnect_node)."""

from __future__ import annotations

import asyncio
import itertools
import signal
from typing import Any

import pytest

from py_nodes import Atom, MailboxProcess, Node, Pid
from tests.py_nodes.conftest import ERL, ErlNode, running_node, start_echo_process, unique

pytestmark = pytest.mark.skipif(ERL is None, reason="erl is not on PATH")

_vars = itertools.count()
EXIT, DOWN, PROCESS = Atom("EXIT"), Atom("DOWN"), Atom("process")
NOCONNECTION, NOPROC, KILLED = Atom("noconnection"), Atom("noproc"), Atom("killed")


async def give(erl: ErlNode, node: Node, term: Any) -> str:
    """Hand ``term`` to erl's evaluator; returns the Erlang variable now bound to it."""
    var = f"Given{next(_vars)}"
    await erl.eval("catch register(inbox, self())")
    node.send((Atom("inbox"), erl.name), (Atom("given"), term))
    await erl.eval(f"{var} = receive {{given, V{var}}} -> V{var} after 5000 -> none end")
    return var


def collector(node: Node) -> tuple[Pid, MailboxProcess]:
    pid = node.spawn(MailboxProcess)
    proc = node.process(pid)
    assert isinstance(proc, MailboxProcess)
    proc.trap_exit = True
    return pid, proc


ERL_SLEEPER = "spawn(fun() -> receive stop -> ok end end)"
ERL_WATCHER = """
spawn(fun() -> process_flag(trap_exit, true), Fwd_N = fun F_N() -> receive
    {watch_link, P_N} -> link(P_N), F_N();
    {watch_mon, T_N} -> erlang:monitor(process, T_N), F_N();
    {unlink, P_N} -> unlink(P_N), F_N();
    M_N -> Parent ! {seen, M_N}, F_N() end end, Fwd_N() end)
"""


async def seen(erl: ErlNode, timeout_ms: int = 5000) -> Any:
    m = f"Seen{next(_vars)}"
    return await erl.eval(f"receive {{seen, {m}}} -> {m} after {timeout_ms} -> timeout end")


async def watcher(erl: ErlNode) -> str:
    var = f"W{next(_vars)}"
    await erl.eval("Parent = self()")
    await erl.eval(f"{var} = {ERL_WATCHER.replace('_N', var)}")
    return var


async def test_python_exit_reaches_erlang_link_and_monitor(erl: ErlNode, cookie: str) -> None:
    async with running_node(cookie) as node:
        pid, proc = collector(node)
        w = await watcher(erl)
        p = await give(erl, node, pid)
        await erl.eval(f"{w} ! {{watch_link, {p}}}, {w} ! {{watch_mon, {p}}}")
        await asyncio.sleep(0.2)
        proc.exit(Atom("bored"))
        got = [await seen(erl), await seen(erl)]
        assert (EXIT, pid, Atom("bored")) in got
        assert any(m[0] == DOWN and m[3] == pid and m[4] == Atom("bored") for m in got)
        # a monitor by name of a Python process, and of a missing name
        node.spawn(MailboxProcess, name="named")
        await erl.eval(f"{w} ! {{watch_mon, {{named, '{node.name}'}}}}")
        await erl.eval(f"{w} ! {{watch_mon, {{missing, '{node.name}'}}}}")
        down = await seen(erl)
        assert down[3] == (Atom("missing"), Atom(node.name)) and down[4] == NOPROC
        await asyncio.sleep(0.2)
        named = node.whereis("named")
        assert named is not None
        node.exit(named, Atom("kill"))
        down = await seen(erl)
        assert down[3] == (Atom("named"), Atom(node.name)) and down[4] == KILLED
        assert node.monitor_count() == 0


async def test_erlang_exit_reaches_python_link_and_monitor(erl: ErlNode, cookie: str) -> None:
    async with running_node(cookie) as node:
        pid, proc = collector(node)
        target: Pid = await erl.eval(ERL_SLEEPER)
        proc.link(target)
        ref = proc.monitor(target)
        await erl.eval(f"catch register(victim_{pid.id}, {ERL_SLEEPER})")
        name_ref = proc.monitor((f"victim_{pid.id}", erl.name))
        missing_ref = proc.monitor(("no_such_name", erl.name))
        assert await proc.receive(5) == (
            DOWN,
            missing_ref,
            PROCESS,
            (Atom("no_such_name"), Atom(erl.name)),
            NOPROC,
        )
        await asyncio.sleep(0.2)
        await erl.eval(f'exit(list_to_pid("{erl_pid_text(target)}"), kill)')
        got = [await proc.receive(5), await proc.receive(5)]
        assert (EXIT, target, KILLED) in got
        assert (DOWN, ref, PROCESS, target, KILLED) in got
        await erl.eval(f"victim_{pid.id} ! stop")
        assert await proc.receive(5) == (
            DOWN,
            name_ref,
            PROCESS,
            (Atom(f"victim_{pid.id}"), Atom(erl.name)),
            Atom("normal"),
        )
        assert node.monitor_count() == 0


async def test_monitors_from_erlang_follow_names_exits_and_demonitors(
    erl: ErlNode, cookie: str
) -> None:
    # A Python node takes over a monitor from a BEAM node only when an exit or a name
    # change may need it (gen_server:call monitors and demonitors for every call). Seen
    # from Erlang, nothing of that shows: these are the cases where it could.
    async with running_node(cookie) as node:
        plain = node.spawn(MailboxProcess)
        q = await give(erl, node, plain)
        await erl.eval(f"PRefs = [erlang:monitor(process, {q}) || _ <- lists:seq(1, 10)], ok")
        await asyncio.sleep(0.2)
        node.exit(plain, Atom("kill"))
        assert await erl.eval(
            "[receive {'DOWN', R, process, _, killed} -> R after 5000 -> lost end || R <- PRefs]"
            " =:= PRefs"
        )
        holder = node.spawn(MailboxProcess, name="holder")
        w = await watcher(erl)
        await erl.eval(f"{w} ! {{watch_mon, {{holder, '{node.name}'}}}}")
        p = await give(erl, node, holder)
        # More monitors than a connection keeps pending, half of them taken back.
        await erl.eval(
            f"HRefs = [erlang:monitor(process, {p}) || _ <- lists:seq(1, 5000)],"
            " [erlang:demonitor(R) || R <- lists:sublist(HRefs, 2500)], ok"
        )
        await asyncio.sleep(0.3)
        # The name moves to another process; the monitor by name stays on the first.
        node.unregister("holder")
        successor = node.spawn(MailboxProcess, name="holder")
        node.exit(holder, Atom("kill"))
        down = await seen(erl)
        assert down[3] == (Atom("holder"), Atom(node.name)) and down[4] == KILLED
        downs = await erl.eval(
            "HEnd = erlang:monotonic_time(millisecond) + 5000,"
            " length([R || R <- lists:nthtail(2500, HRefs), receive"
            " {'DOWN', R, process, _, killed} -> true"
            " after max(0, HEnd - erlang:monotonic_time(millisecond)) -> false end])"
        )
        assert downs == 2500
        assert await erl.eval(
            "receive {'DOWN', _, _, _, _} = D -> D after 300 -> none end"
        ) == Atom("none")
        # A name answered noproc stays answered once a process takes it.
        await erl.eval(f"{w} ! {{watch_mon, {{later, '{node.name}'}}}}")
        assert (await seen(erl))[4] == NOPROC
        node.spawn(MailboxProcess, name="later")
        assert node.monitor_count() == 0
        node.exit(successor, Atom("kill"))
        later = node.whereis("later")
        assert later is not None
        node.exit(later, Atom("kill"))
        assert await seen(erl, 300) == Atom("timeout")


def erl_pid_text(pid: Pid) -> str:
    return f"<0.{pid.id}.{pid.serial}>"


async def test_untrapped_link_kills_python_process_and_exit2(erl: ErlNode, cookie: str) -> None:
    async with running_node(cookie) as node:
        victim = node.spawn(MailboxProcess)
        _, watcher_proc = collector(node)
        ref = watcher_proc.monitor(victim)
        target: Pid = await erl.eval(ERL_SLEEPER)
        node.link(victim, target)
        await asyncio.sleep(0.1)
        await erl.eval(f'exit(list_to_pid("{erl_pid_text(target)}"), crashed)')
        assert await watcher_proc.receive(5) == (DOWN, ref, PROCESS, victim, Atom("crashed"))
        # exit/2 from Erlang: normal is ignored, anything else kills
        other = node.spawn(MailboxProcess)
        ref2 = watcher_proc.monitor(other)
        o = await give(erl, node, other)
        await erl.eval(f"exit({o}, normal)")
        await asyncio.sleep(0.2)
        assert node.process(other) is not None
        await erl.eval(f"exit({o}, kill)")
        assert await watcher_proc.receive(5) == (DOWN, ref2, PROCESS, other, KILLED)


async def test_unlink_from_erlang(erl: ErlNode, cookie: str) -> None:
    async with running_node(cookie) as node:
        pid, proc = collector(node)
        w = await watcher(erl)
        p = await give(erl, node, pid)
        await erl.eval(f"{w} ! {{watch_link, {p}}}")
        await asyncio.sleep(0.2)
        assert node.table.links(pid)
        await erl.eval(f"{w} ! {{unlink, {p}}}")
        await asyncio.sleep(0.2)
        assert not node.table.links(pid)
        proc.exit(Atom("quietly"))
        assert await seen(erl, 300) == Atom("timeout")


async def test_disconnect_node_gives_noconnection(erl: ErlNode, cookie: str) -> None:
    async with running_node(cookie) as node:
        _, proc = collector(node)
        target: Pid = await erl.eval(ERL_SLEEPER)
        proc.link(target)
        ref = proc.monitor(target)
        # erl monitors a Python process too: that monitor must be dropped with the link
        w = await watcher(erl)
        p = await give(erl, node, node.spawn(MailboxProcess))
        await erl.eval(f"{w} ! {{watch_mon, {p}}}")
        await asyncio.sleep(0.2)
        assert node.monitor_count() == 2
        assert await erl.eval(f"erlang:disconnect_node('{node.name}')") is True
        got = [await proc.receive(5), await proc.receive(5)]
        assert (EXIT, target, NOCONNECTION) in got
        assert (DOWN, ref, PROCESS, target, NOCONNECTION) in got
        down = await seen(erl)
        assert down[0] == DOWN and down[4] == NOCONNECTION
        assert node.monitor_count() == 0
        assert not node.table.links(proc.pid)
        # and the node reconnects on demand
        assert await node.ping(erl.name)


async def test_killed_python_node_gives_noconnection(erl: ErlNode, cookie: str) -> None:
    name = unique("pyk")
    proc = await asyncio.to_thread(start_echo_process, name, cookie)
    try:
        w = await watcher(erl)
        assert await erl.eval(f"gen_server:call({{echo, '{name}'}}, hello)") == Atom("hello")
        await erl.eval(f"{w} ! {{watch_mon, {{echo, '{name}'}}}}")
        await asyncio.sleep(0.2)
        proc.send_signal(signal.SIGKILL)
        down = await seen(erl)
        assert down[0] == DOWN and down[3] == (Atom("echo"), Atom(name))
        assert down[4] == NOCONNECTION
    finally:
        proc.kill()
        proc.wait()


async def test_sigterm_unregisters_from_epmd(cookie: str) -> None:
    from py_nodes._epmd import names

    name = unique("pyt")
    proc = await asyncio.to_thread(start_echo_process, name, cookie)
    try:
        assert name.split("@")[0] in await names()
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(proc.wait, 10) == 0
        assert name.split("@")[0] not in await names()
    finally:
        proc.kill()
        proc.wait()


async def test_notify_exit_calls_back_once_with_the_reason(cookie: str) -> None:
    async with running_node(cookie) as node:
        exits: list[tuple[Pid, Any]] = []
        first, second, third = (node.spawn(MailboxProcess) for _ in range(3))
        assert node.notify_exit(first, lambda pid, reason: exits.append((pid, reason)))
        assert node.notify_exit(second, lambda pid, reason: exits.append((pid, reason)))
        # a second callback replaces the first
        assert node.notify_exit(second, lambda pid, reason: exits.append((pid, ("2nd", reason))))
        node.exit(first, Atom("kill"))
        node.exit(second, Atom("bye"))
        node.exit(third, Atom("bye"))
        assert exits == [(first, KILLED), (second, ("2nd", Atom("bye")))]
        # gone already: no callback, ever
        assert not node.notify_exit(first, lambda pid, reason: exits.append((pid, reason)))
        assert len(exits) == 2
