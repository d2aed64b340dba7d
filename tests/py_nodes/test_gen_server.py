"""gen_server calls and casts both ways between a real erl node and a Python node; ping."""

from __future__ import annotations

import asyncio
from typing import Any, ClassVar

import pytest

from py_nodes import (
    Atom,
    CallExit,
    CallTimeout,
    GenServer,
    ImproperList,
    NodeDown,
    NoProc,
    NoReply,
    Reply,
    Stop,
)
from tests.py_nodes.conftest import ERL, ErlError, ErlNode, running_node

pytestmark = pytest.mark.skipif(ERL is None, reason="erl is not on PATH")


class Store(GenServer):
    """Replies to {get}, stores casts, defers {later, X} until a {release} cast, answers
    {from} with the call's From."""

    def init(self, *values: Any) -> None:
        self.items: list[Any] = list(values)
        self.waiting: list[tuple[Any, Any]] = []

    def handle_call(self, request: Any, from_: Any) -> Reply | NoReply | Stop:
        if request == Atom("get"):
            return Reply(self.items)
        if type(request) is tuple and request[0] == Atom("later"):
            self.waiting.append((from_, request[1]))
            return NoReply()
        if request == Atom("stop"):
            return Stop(Atom("normal"), reply=Atom("bye"))
        if request == Atom("crash"):
            raise ValueError("boom")
        if request == Atom("sleep"):
            return NoReply()
        if request == Atom("from"):
            return Reply(from_)
        return Reply((Atom("echo"), request))

    def handle_cast(self, request: Any) -> None:
        if request == Atom("release"):
            for from_, value in self.waiting:
                self.reply(from_, value)
            self.waiting.clear()
        else:
            self.items.append(request)


def q(node: Any) -> str:
    """The node name quoted as an Erlang atom."""
    return f"'{node.name}'"


async def test_ping_both_ways(erl: ErlNode, cookie: str) -> None:
    async with running_node(cookie) as node:
        assert await erl.eval(f"net_adm:ping({q(node)})") == Atom("pong")
        assert Atom(node.name) in await erl.eval("nodes(hidden)")
        assert Atom(node.name) not in await erl.eval("nodes()")
        assert await node.ping(erl.name)
        assert not await node.ping("nobody_here@127.0.0.1", timeout=2)


async def test_erl_calls_python_gen_server(erl: ErlNode, cookie: str) -> None:
    async with running_node(cookie) as node:
        pid = node.spawn(Store, 1, name="store")
        assert await erl.eval(f"gen_server:call({{store, {q(node)}}}, get)") == [1]
        assert await erl.eval(f'gen_server:call({{store, {q(node)}}}, {{a, <<"b">>}})') == (
            Atom("echo"),
            (Atom("a"), b"b"),
        )
        await erl.eval(f"gen_server:cast({{store, {q(node)}}}, two)")
        assert await erl.eval(f"gen_server:call({{store, {q(node)}}}, get)") == [1, Atom("two")]
        # by pid too: Python sends its pid to erl first
        await erl.eval("register(inbox, self())")
        node.send((Atom("inbox"), erl.name), pid)
        got = await erl.eval("GotPid = receive GotX -> GotX after 5000 -> none end, is_pid(GotPid)")
        assert got is True
        assert await erl.eval("gen_server:call(GotPid, get)") == [1, Atom("two")]


async def test_deferred_reply_and_stop(erl: ErlNode, cookie: str) -> None:
    async with running_node(cookie) as node:
        node.spawn(Store, name="store")
        dest = f"{{store, {q(node)}}}"
        await erl.eval(
            f"Self = self(),"
            f" spawn(fun() -> Self ! {{got, gen_server:call({dest}, {{later, 7}})}} end)"
        )
        await asyncio.sleep(0.2)
        await erl.eval(f"gen_server:cast({dest}, release)")
        assert await erl.eval("receive {got, V} -> V after 5000 -> timeout end") == 7
        assert await erl.eval(f"gen_server:call({dest}, stop)") == Atom("bye")
        await asyncio.sleep(0.1)
        assert node.whereis("store") is None


async def test_erl_call_timeout_noproc_and_crash(erl: ErlNode, cookie: str) -> None:
    async with running_node(cookie) as node:
        node.spawn(Store, name="store")
        dest = f"{{store, {q(node)}}}"
        with pytest.raises(ErlError) as timeout:
            await erl.eval(f"gen_server:call({dest}, sleep, 200)")
        assert timeout.value.reason[0] == Atom("timeout")
        with pytest.raises(ErlError) as noproc:
            await erl.eval(f"gen_server:call({{nobody, {q(node)}}}, x)")
        assert noproc.value.reason[0] == Atom("noproc")
        with pytest.raises(ErlError) as crash:
            await erl.eval(f"gen_server:call({dest}, crash)")
        assert crash.value.reason[0] == (Atom("python_error"), b"ValueError: boom")
        # the node stays up and serves a new server under the same name
        node.spawn(Store, 5, name="store")
        assert await erl.eval(f"gen_server:call({dest}, get)") == [5]
        assert node.monitor_count() == 0


ERL_SERVER = """
Loop_N = fun L_N(S_N) -> receive
    {'$gen_call', From_N, get} -> gen_server:reply(From_N, S_N), L_N(S_N);
    {'$gen_call', _, sleep} -> L_N(S_N);
    {'$gen_call', _, die} -> exit(died);
    {'$gen_call', From_N, X_N} -> gen_server:reply(From_N, {echo, X_N}), L_N(S_N);
    {'$gen_cast', X_N} -> L_N([X_N | S_N])
  end end,
Srv_N = spawn(fun() -> Loop_N([]) end), register(erl_store, Srv_N), Srv_N
"""


def erl_server(name: str) -> str:
    """An Erlang gen_server-speaking process registered as ``name``."""
    return ERL_SERVER.replace("erl_store", name).replace("_N", "_" + name)


async def test_python_calls_erlang_gen_server(erl: ErlNode, cookie: str) -> None:
    async with running_node(cookie) as node:
        srv = await erl.eval(erl_server("erl_store"))
        dest = (Atom("erl_store"), erl.name)
        assert await node.call(dest, "hi") == (Atom("echo"), b"hi")
        assert await node.call(srv, 42) == (Atom("echo"), 42)
        many = await asyncio.gather(*(node.call(dest, i) for i in range(300)))
        assert many == [(Atom("echo"), i) for i in range(300)]
        node.cast(dest, Atom("one"))
        node.cast(srv, Atom("two"))
        assert await node.call(dest, Atom("get")) == [Atom("two"), Atom("one")]
        with pytest.raises(CallTimeout):
            await node.call(dest, Atom("sleep"), timeout=0.2)
        with pytest.raises(NoProc):
            await node.call((Atom("nobody"), erl.name), 1)
        # the erl side holds no monitor of ours either
        assert (
            await erl.eval(
                f"length([W || W <- element(2, process_info(whereis(erl_store), monitored_by)),"
                f" node(W) =:= {q(node)}])"
            )
            == 0
        )
        with pytest.raises(CallExit) as died:
            await node.call(dest, Atom("die"))
        assert died.value.reason == Atom("died")
        with pytest.raises(NodeDown):
            await node.call((Atom("x"), "nobody_here@127.0.0.1"), 1)
        assert node.monitor_count() == 0


async def test_python_to_python_call(cookie: str) -> None:
    async with running_node(cookie) as a, running_node(cookie) as b:
        b.spawn(Store, Atom("x"), name="store")
        assert await a.call((Atom("store"), b.name), Atom("get")) == [Atom("x")]
        assert await a.ping(b.name)
        with pytest.raises(NoProc):
            await a.call(("missing", b.name), 1)


async def test_calls_leave_nothing_behind(cookie: str) -> None:
    # Every call from Python goes through one process of the node: however many are
    # made, to a local or a remote server, found or missing, answered, late or crashed,
    # the node ends with the processes, monitors and aliases it had before.
    async with running_node(cookie) as a, running_node(cookie) as b:
        local = a.spawn(Store, name="store")
        b.spawn(Store, name="store")
        before = set(a.processes())
        targets = [local, Atom("store"), (Atom("store"), b.name)]
        answers = await asyncio.gather(*(a.call(t, i) for i in range(100) for t in targets))
        assert answers == [(Atom("echo"), i) for i in range(100) for _ in targets]
        with pytest.raises(NoProc):
            await a.call("nobody", 1)  # a local name: its DOWN comes before the request
        with pytest.raises(NoProc):
            await a.call((Atom("nobody"), b.name), 1)
        with pytest.raises(CallTimeout):
            await a.call((Atom("store"), b.name), Atom("sleep"), timeout=0.1)
        late = asyncio.ensure_future(a.call(local, (Atom("later"), 1), timeout=0.1))
        with pytest.raises(CallTimeout):
            await late
        a.cast(local, Atom("release"))  # its reply finds no alias and is dropped
        with pytest.raises(CallExit):
            await a.call(local, Atom("crash"))
        # Anything else sent to the calls' pid, the From of them all, is dropped.
        caller, _ = await a.call((Atom("store"), b.name), Atom("from"))
        strays: list[Any] = [(ImproperList((Atom("alias"),), [1]), 1), (Atom("DOWN"), [], 1, 2, 3)]
        for stray in strays:
            b.send(caller, stray)
        await asyncio.sleep(0.05)
        assert set(a.processes()) == before - {local}
        assert a.monitor_count() == 0 and a.table.alias_count() == 0
        assert await a.call((Atom("store"), b.name), Atom("get")) == []


class Relay(GenServer):
    """An async handler that calls another server before answering."""

    def init(self, target: Any) -> None:
        self.target = target

    async def handle_call(self, request: Any, from_: Any) -> Reply:
        answer = await self.call(self.target, request)
        return Reply((Atom("relayed"), answer))


async def test_async_handler_calls_erlang(erl: ErlNode, cookie: str) -> None:
    async with running_node(cookie) as node:
        await erl.eval(erl_server("erl_store2"))
        node.spawn(Relay, (Atom("erl_store2"), erl.name), name="relay")
        got = await erl.eval(f"gen_server:call({{relay, {q(node)}}}, 5)")
        assert got == (Atom("relayed"), (Atom("echo"), 5))
        got = await node.call("relay", 6)
        assert got == (Atom("relayed"), (Atom("echo"), 6))


class Lifecycle(GenServer):
    """Stops on request from a cast or an info message; records terminate."""

    terminated: ClassVar[list[Any]] = []

    def init(self) -> None:
        self.trap_exit = True

    def handle_cast(self, request: Any) -> Stop | None:
        if request == Atom("stop"):
            return Stop(Atom("cast_stop"))
        return None

    def handle_info(self, message: Any) -> Stop | None:
        if type(message) is tuple and message[0] == Atom("EXIT"):
            return Stop((Atom("linked_exit"), message[2]))
        if message == Atom("stop"):
            return Stop(Atom("info_stop"))
        if message == Atom("raise"):
            raise KeyError("nope")
        return None

    def terminate(self, reason: Any) -> None:
        Lifecycle.terminated.append(reason)


async def test_stop_from_cast_info_exit_and_raise(cookie: str) -> None:
    from py_nodes import MailboxProcess

    async with running_node(cookie) as node:
        watcher = node.spawn(MailboxProcess)
        wproc = node.process(watcher)
        assert isinstance(wproc, MailboxProcess)

        async def stopped_with(trigger: Any) -> Any:
            pid = node.spawn(Lifecycle)
            ref = wproc.monitor(pid)
            trigger(pid)
            down = await wproc.receive(5)
            assert down[:2] == (Atom("DOWN"), ref)
            assert node.process(pid) is None
            return down[4]

        assert await stopped_with(lambda p: node.cast(p, Atom("stop"))) == Atom("cast_stop")
        assert await stopped_with(lambda p: node.send(p, Atom("stop"))) == Atom("info_stop")
        assert await stopped_with(lambda p: node.send(p, Atom("raise"))) == (
            Atom("python_error"),
            b"KeyError: 'nope'",
        )
        # trap_exit: an exit signal becomes {'EXIT', From, Reason} in handle_info
        assert await stopped_with(lambda p: node.exit(p, Atom("please"))) == (
            Atom("linked_exit"),
            Atom("please"),
        )
        assert Lifecycle.terminated[-4:] == [
            Atom("cast_stop"),
            Atom("info_stop"),
            (Atom("python_error"), b"KeyError: 'nope'"),
            (Atom("linked_exit"), Atom("please")),
        ]
        # kill cannot be trapped and skips terminate
        assert await stopped_with(lambda p: node.exit(p, Atom("kill"))) == Atom("killed")
        assert len(Lifecycle.terminated) == 4
