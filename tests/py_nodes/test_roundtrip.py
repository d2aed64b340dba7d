"""Random terms made in Erlang travel to the Python echo server and back unchanged
(``=:=``), over real distribution: gen_server:call and erpc."""

from __future__ import annotations

import pytest

from py_nodes import GenServer, Reply
from tests.py_nodes.conftest import ERL, ErlNode, running_node

pytestmark = pytest.mark.skipif(ERL is None, reason="erl is not on PATH")


class Echo(GenServer):
    def handle_call(self, request: object, from_: object) -> Reply:
        return Reply(request)


GEN = r"""
RT_Atoms = [ok, undefined, true, false, '', 'with space', 'ünïcödé', 'EXIT', nil],
RT_Leaf = fun() -> case rand:uniform(16) of
    1 -> rand:uniform(255);
    2 -> rand:uniform(1 bsl 40) - (1 bsl 39);
    3 -> rand:uniform(1 bsl 200) * (rand:uniform(3) - 2);
    4 -> rand:uniform() * 1.0e10 - 5.0e9;
    5 -> lists:nth(rand:uniform(length(RT_Atoms)), RT_Atoms);
    6 -> rand:bytes(rand:uniform(40) - 1);
    7 -> <<(rand:bytes(2))/binary, (rand:uniform(7)):3>>;
    8 -> self();
    9 -> make_ref();
    10 -> hd(erlang:ports());
    11 -> fun lists:map/2;
    12 -> [];
    13 -> "a string";
    14 -> -0.0;
    15 -> {};
    16 -> #{}
  end end,
RT_Gen = fun G(0) -> RT_Leaf(); G(D) -> case rand:uniform(7) of
    1 -> list_to_tuple([G(D - 1) || _ <- lists:seq(1, rand:uniform(4))]);
    2 -> [G(D - 1) || _ <- lists:seq(1, rand:uniform(4))];
    3 -> [G(D - 1) | G(0)];
    4 -> maps:from_list([{G(D - 1), G(D - 1)} || _ <- lists:seq(1, rand:uniform(3))]);
    _ -> RT_Leaf()
  end end,
rand:seed(exsss, {SEED, 2, 3}),
RT_Terms = [RT_Gen(rand:uniform(4)) || _ <- lists:seq(1, COUNT)], length(RT_Terms)
"""


async def test_random_terms_round_trip(erl: ErlNode, cookie: str) -> None:
    async with running_node(cookie) as node:
        node.spawn(Echo, name="echo")
        node.expose("echo", "identity", lambda x: x)
        assert await erl.eval(GEN.replace("SEED", "42").replace("COUNT", "3000")) == 3000
        bad = await erl.eval(
            f"[T || T <- RT_Terms, gen_server:call({{echo, '{node.name}'}}, T) =/= T]"
        )
        assert bad == []
        bad = await erl.eval(
            f"[T || T <- lists:sublist(RT_Terms, 500),"
            f" erpc:call('{node.name}', echo, identity, [T]) =/= T]"
        )
        assert bad == []
