"""Python node to Python node, ticks and timeouts on raw sockets, process cost."""

from __future__ import annotations

import asyncio
import gc
import struct
import sys
import tracemalloc
from typing import Any

import pytest

from py_nodes import Atom, GenServer, MailboxProcess, Node, NoReply, Reply
from tests.py_nodes.conftest import running_node, unique
from tests.py_nodes.test_robustness import closed_by_peer, raw_peer

EXIT, DOWN, PROCESS = Atom("EXIT"), Atom("DOWN"), Atom("process")


class Small(GenServer):
    def init(self, n: int) -> None:
        self.n = n

    def handle_call(self, request: Any, from_: Any) -> Reply | NoReply:
        return Reply(self.n)


async def test_simultaneous_connect(cookie: str) -> None:
    for _ in range(4):
        async with running_node(cookie) as a, running_node(cookie) as b:
            a.spawn(Small, 1, name="small")
            b.spawn(Small, 2, name="small")
            got = await asyncio.gather(
                a.call(("small", b.name), 0),
                b.call(("small", a.name), 0),
                a.call(("small", b.name), 0),
                b.call(("small", a.name), 0),
            )
            assert list(got) == [2, 1, 2, 1]
            assert a.nodes() == [b.name] and b.nodes() == [a.name]


async def test_links_and_monitors_between_python_nodes(cookie: str) -> None:
    async with running_node(cookie) as a:
        b = Node(unique("py"), cookie)
        await b.start()
        try:
            watcher_pid = a.spawn(MailboxProcess)
            watcher = a.process(watcher_pid)
            assert isinstance(watcher, MailboxProcess)
            watcher.trap_exit = True
            target = b.spawn(MailboxProcess, name="target")
            watcher.link(target)
            ref = watcher.monitor(("target", b.name))
            await asyncio.sleep(0.2)
            assert b.monitor_count() == 1
            b.exit(target, Atom("shutdown"))
            got = {await watcher.receive(5), await watcher.receive(5)}
            assert got == {
                (EXIT, target, Atom("shutdown")),
                (DOWN, ref, PROCESS, (Atom("target"), Atom(b.name)), Atom("shutdown")),
            }
            other = b.spawn(MailboxProcess)
            watcher.link(other)
            ref2 = watcher.monitor(other)
            await asyncio.sleep(0.2)
        finally:
            await b.stop()
        # stopping b ends its processes with reason shutdown, which arrives first
        got = {await watcher.receive(5), await watcher.receive(5)}
        assert got == {
            (EXIT, other, Atom("shutdown")),
            (DOWN, ref2, PROCESS, other, Atom("shutdown")),
        }
        assert a.monitor_count() == 0


async def test_ticks_sent_and_silent_peer_dropped(cookie: str) -> None:
    async with running_node(cookie, net_ticktime=1.2) as node:
        reader, writer = await raw_peer(node.port, node.name, cookie)
        # the node ticks every ticktime/4 while it has nothing else to say
        data = await asyncio.wait_for(reader.readexactly(4), 3.0)
        assert data == b"\x00\x00\x00\x00"
        # we never answer, so after net_ticktime of silence the node drops us
        loop = asyncio.get_running_loop()
        started = loop.time()
        assert await closed_by_peer(reader)
        assert 0.8 < loop.time() - started < 6.0
        writer.close()


async def test_ticking_peer_stays(cookie: str) -> None:
    async with running_node(cookie, net_ticktime=1.2) as node:
        _, writer = await raw_peer(node.port, node.name, cookie)
        for _ in range(8):
            writer.write(struct.pack(">I", 0))
            await asyncio.sleep(0.25)
        assert len(node.nodes()) == 1
        writer.close()


async def test_handshake_timeout(cookie: str) -> None:
    async with running_node(cookie, handshake_timeout=0.5) as node:
        reader, writer = await asyncio.open_connection("127.0.0.1", node.port)
        assert await closed_by_peer(reader)
        writer.close()


async def test_idle_gen_server_is_small_and_taskless(cookie: str) -> None:
    async with running_node(cookie) as node:
        gc.collect()
        tasks_before = len(asyncio.all_tasks())
        tracemalloc.start()
        before = tracemalloc.take_snapshot()
        pids = [node.spawn(Small, i) for i in range(5000)]
        after = tracemalloc.take_snapshot()
        tracemalloc.stop()
        per_process = sum(s.size_diff for s in after.compare_to(before, "filename")) / 5000
        assert per_process < 1024, per_process
        assert len(asyncio.all_tasks()) == tasks_before
        assert await node.call(pids[1234], Atom("get")) == 1234
        proc = node.process(pids[0])
        assert proc is not None and sys.getsizeof(proc) < 200


async def test_local_calls_and_names(cookie: str) -> None:
    async with running_node(cookie) as node:
        pid = node.spawn(Small, 7, name="small")
        assert await node.call("small", 1) == 7
        assert await node.call((Atom("small"), node.name), 1) == 7
        assert await node.call(pid, 1) == 7
        with pytest.raises(ValueError, match="already registered"):
            node.spawn(Small, 8, name="small")
        assert node.whereis("small") == pid


async def test_a_message_sent_while_the_peer_connects_to_us_arrives(cookie: str) -> None:
    # The peer's attempt wins ("nok" to ours) but reaches us later than our refusal.
    from tests.py_nodes.conftest import ERL, ErlNode

    if ERL is None:
        pytest.skip("erl is not on PATH")
    for _ in range(3):
        erl = ErlNode(cookie, name=unique("zz"))  # a greater name: its attempt wins
        try:
            async with running_node(cookie) as node:
                node.spawn(MailboxProcess, name="somebody")
                await erl.eval("register(inbox, self())")
                await erl.eval(f"erlang:monitor(process, {{somebody, '{node.name}'}})")
                node.send((Atom("inbox"), erl.name), Atom("hello"))
                got = await erl.eval("receive hello -> hello after 5000 -> lost end")
                assert got == Atom("hello")
        finally:
            erl.stop()
