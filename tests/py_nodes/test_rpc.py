"""erpc and rpc from a real erl node into functions a Python node exposes."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from py_nodes import Atom, Node
from tests.py_nodes.conftest import ERL, ErlError, ErlNode, running_node

pytestmark = pytest.mark.skipif(ERL is None, reason="erl is not on PATH")

EXCEPTION, ERROR, BADRPC = Atom("exception"), Atom("error"), Atom("badrpc")
PYTHON_ERROR, UNDEF = Atom("python_error"), Atom("undef")


def expose_all(node: Node) -> list[Any]:
    casts: list[Any] = []
    node.expose("calc", "add", lambda a, b: a + b)

    @node.expose("calc", "fail")
    def fail(text: bytes) -> None:
        raise ValueError(text.decode())

    async def slow_double(x: int) -> int:
        await asyncio.sleep(0.05)
        return 2 * x

    node.expose("calc", "slow_double", slow_double)
    node.expose("calc", "note", casts.append)
    return casts


async def test_erpc_call(erl: ErlNode, cookie: str) -> None:
    async with running_node(cookie) as node:
        expose_all(node)
        n = f"'{node.name}'"
        assert await erl.eval(f"erpc:call({n}, calc, add, [2, 3])") == 5
        assert await erl.eval(f"erpc:call({n}, calc, slow_double, [21])") == 42
        with pytest.raises(ErlError) as err:
            await erl.eval(f'erpc:call({n}, calc, fail, [<<"bad input">>])')
        assert err.value.cls == ERROR
        kind, reason, stack = err.value.reason
        assert kind == EXCEPTION and reason == (PYTHON_ERROR, b"ValueError: bad input")
        assert stack == [(Atom("calc"), Atom("fail"), 1, [])]
        with pytest.raises(ErlError) as undef:
            await erl.eval(f"erpc:call({n}, calc, missing, [1])")
        assert undef.value.reason == (EXCEPTION, UNDEF, [(Atom("calc"), Atom("missing"), [1], [])])
        # wrong arity is undef too, as calc:add/1 would be in Erlang
        with pytest.raises(ErlError) as arity:
            await erl.eval(f"erpc:call({n}, calc, add, [1])")
        assert arity.value.reason[1] == UNDEF


async def test_rpc_call(erl: ErlNode, cookie: str) -> None:
    async with running_node(cookie) as node:
        expose_all(node)
        n = f"'{node.name}'"
        assert await erl.eval(f"rpc:call({n}, calc, add, [1.5, 1])") == 2.5
        assert await erl.eval(f"rpc:call({n}, calc, missing, [])") == (
            BADRPC,
            (Atom("EXIT"), (UNDEF, [(Atom("calc"), Atom("missing"), [], [])])),
        )
        bad = await erl.eval(f'rpc:call({n}, calc, fail, [<<"x">>])')
        assert bad[0] == BADRPC and bad[1][1][0] == (PYTHON_ERROR, b"ValueError: x")


async def test_multicall_and_cast(erl: ErlNode, cookie: str) -> None:
    async with running_node(cookie) as a, running_node(cookie) as b:
        expose_all(a)
        notes = expose_all(b)
        got = await erl.eval(
            f"erpc:multicall(['{a.name}', '{b.name}', 'nobody@127.0.0.1'], calc, add, [1, 2], 5000)"
        )
        assert got[:2] == [(Atom("ok"), 3), (Atom("ok"), 3)]
        assert got[2] == (ERROR, (Atom("erpc"), Atom("noconnection")))
        assert await erl.eval(f"rpc:multicall(['{a.name}', '{b.name}'], calc, add, [2, 2])") == (
            [4, 4],
            [],
        )
        await erl.eval(f"erpc:cast('{b.name}', calc, note, [hello])")
        for _ in range(50):
            if notes:
                break
            await asyncio.sleep(0.02)
        assert notes == [Atom("hello")]
        # spawn of anything but erpc's entry points fails with undef, as for a missing module
        assert (
            await erl.eval(
                f"{{_, Mref}} = spawn_monitor('{a.name}', lists, seq, [1, 3]),"
                " receive {'DOWN', Mref, process, _, R} -> element(1, R) after 5000 -> timeout end"
            )
            == UNDEF
        )
