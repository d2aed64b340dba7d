"""Process aliases (OTP 24+): Erlang sends to a Python alias over ALIAS_SEND, and calls
from Python carry the ``[alias | Ref]`` tag so that a late reply is dropped on arrival."""

from __future__ import annotations

import asyncio

import pytest

from py_nodes import Atom, CallTimeout, ImproperList, MailboxProcess, NoProc, Reference
from tests.py_nodes.conftest import ERL, ErlNode, running_node
from tests.py_nodes.test_links_monitors import collector, give

pytestmark = pytest.mark.skipif(ERL is None, reason="erl is not on PATH")

OK, ALIAS = Atom("ok"), Atom("alias")


async def received(proc: MailboxProcess, wanted: int) -> list[object]:
    """The next ``wanted`` messages of ``proc``, and any stray that follows them."""
    got = [await proc.receive(5.0) for _ in range(wanted)]
    await asyncio.sleep(0.1)
    return got + proc.messages()


async def test_erlang_sends_to_python_alias_until_unalias(erl: ErlNode, cookie: str) -> None:
    async with running_node(cookie) as node:
        pid, proc = collector(node)
        alias = proc.alias()
        assert isinstance(alias, Reference) and alias.node == node.atom
        a = await give(erl, node, alias)
        p = await give(erl, node, pid)
        await erl.eval(f"{a} ! hello, {a} ! {{again, 2}}")
        assert await received(proc, 2) == [Atom("hello"), (Atom("again"), 2)]
        # after unalias a message to the alias is dropped; the pid still works
        assert proc.unalias(alias) is True
        assert proc.unalias(alias) is False
        await erl.eval(f"{a} ! dropped, {p} ! marker")
        assert await received(proc, 1) == [Atom("marker")]


async def test_reply_alias_works_once_and_dies_with_its_process(erl: ErlNode, cookie: str) -> None:
    async with running_node(cookie) as node:
        pid, proc = collector(node)
        once = proc.alias(reply=True)
        kept = node.alias(pid)
        a, k = await give(erl, node, once), await give(erl, node, kept)
        await erl.eval(f"{a} ! first, {a} ! second, {k} ! kept")
        assert await received(proc, 2) == [Atom("first"), Atom("kept")]
        # a local send to an alias goes the same way
        node.send(kept, Atom("local"))
        assert proc.messages() == [Atom("local")]
        # the alias of an exited process is gone: sends to it are dropped, not errors
        proc.exit(Atom("done"))
        await erl.eval(f"{k} ! late")
        node.send(kept, Atom("late"))
        assert node.unalias(pid, kept) is False
        with pytest.raises(NoProc):
            node.alias(pid)


LATE_SERVER = """
LateParent = self(),
LateSrv = spawn(fun LateLoop() -> receive
    {'$gen_call', {_, LateTag} = LateFrom, {late, LateMs}} ->
        LateParent ! {tag, LateTag},
        spawn(fun() -> timer:sleep(LateMs), gen_server:reply(LateFrom, {late, LateMs}),
                       LateParent ! replied end),
        LateLoop()
  end end),
register(late_srv, LateSrv)
"""


async def test_late_reply_from_erlang_gen_server_is_dropped(erl: ErlNode, cookie: str) -> None:
    async with running_node(cookie) as node:
        await erl.eval(LATE_SERVER)
        server = (Atom("late_srv"), erl.name)
        before = set(node.processes())
        with pytest.raises(CallTimeout):
            await node.call(server, (Atom("late"), 300), timeout=0.1)
        # gen_server:reply sees the OTP 24+ alias tag and answers to the alias ...
        tag = await erl.eval("receive {tag, T1} -> T1 after 5000 -> none end")
        assert type(tag) is ImproperList and tag.items == (ALIAS,)
        assert isinstance(tag.tail, Reference) and tag.tail.node == node.atom
        assert await erl.eval("receive replied -> ok after 5000 -> none end") == OK
        await asyncio.sleep(0.2)
        # ... which is no longer active: nothing is left behind, and the next call gets
        # its own answer, not the stale one
        assert set(node.processes()) == before
        assert node.monitor_count() == 0 and node.table.alias_count() == 0
        assert await node.call(server, (Atom("late"), 0)) == (Atom("late"), 0)
        await erl.eval("receive {tag, _} -> ok end, receive replied -> ok end")
        assert set(node.processes()) == before
