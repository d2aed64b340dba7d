"""The worker protocol of ``docs/worker-protocol.md``, request by request: the same
requests to a pod's ``hp_workers`` and to its workers from a real ``erl`` node and from a
Python node, and the same replies checked. Starts are asked from the pod's sidecar (where
its registry asks them); asked from anywhere else, they are refused."""

from __future__ import annotations

import asyncio
import secrets
from typing import Any

from houseparty._rex import rex_call
from py_nodes import MailboxProcess, Node
from py_nodes._terms import Atom, Pid
from tests.houseparty.conftest import Cluster
from tests.houseparty.own_cluster import own_cluster
from tests.py_nodes.conftest import ErlNode

__all__ = ["own_cluster"]  # the module's cluster fixture

OK = Atom("ok")
ERROR = Atom("error")

# The steps, from erl, evaluated on the pod's sidecar; each R<n> is checked by
# check_replies.
ERL_STEPS = """
rpc:call('SIDECAR', erlang, apply, [fun() ->
HW = {hp_workers, 'PY'},
C = fun(R) -> gen_server:call(HW, R) end,
{ok, P1} = R1 = C({start, counter, <<"pa">>, [5]}),
R2 = C({start, nope, <<"pb">>, []}),
R3 = C({start, <<"broken">>, <<"pc">>, []}),
Specs = [{counter, <<"pd">>, [1]}, {counter, <<"pe">>, [0], 42}],
[{ok, P4}, {ok, P5}] = R4 = C({start_many, Specs}),
R5 = C({call_many, [P1, P4, P5], <<"get">>}),
R6 = C(workers),
R7 = C(memory),
R8 = C({begin_handoffs, [P4]}),
R9 = gen_server:call(P4, <<"get">>),
R10 = C({call_many, [P1, P4], <<"get">>}),
P4 ! {hp_handoff, abandoned},
R11 = gen_server:call(P4, <<"get">>),
R12 = gen_server:call(P1, {swarm, begin_handoff}),
P1 ! {hp_handoff, abandoned},
gen_server:cast(P1, {swarm, resolve_conflict, 9}),
R13 = gen_server:call(P1, <<"get">>),
gen_server:cast(P1, {swarm, end_handoff, 7}),
R14 = gen_server:call(P1, <<"get">>),
HW ! {watch, self(), [P4]},
HW ! {stop_handed_off, [P4]},
R15 = receive {hp_exits, Exited, Crashes} -> {Exited, Crashes} after 5000 -> timeout end,
R16 = C({begin_handoffs, [P4]}),
R17 = C(bogus),
[{ok, P6}] = C({start_many, [{counter, <<"pf">>, [0], 7, 99}]}),
R18 = gen_server:call(P6, <<"get">>),
R19 = gen_server:call({hp_replica, 'SIDECAR'}, {put_many, [{<<"proto">>, 5, x}]}),
exit(P1, kill), exit(P5, kill), exit(P6, kill),
[R1, R2, R3, R4, R5, R6, R7, R8, R9, R10, R11, R12, R13, R14, R15, R16, R17, R18, R19]
end, []])
"""


async def python_steps(cookie: str, python_node: str, sidecar: str) -> list[Any]:
    """ERL_STEPS, sent from a Python node; the starts through the pod's sidecar (rpc)."""
    node = Node(f"proto_{secrets.token_hex(3)}@127.0.0.1", cookie=cookie, port=0)
    await node.start()
    try:
        hw = (Atom("hp_workers"), Atom(python_node))
        group_leader = node.spawn(MailboxProcess)

        async def c(request: Any) -> Any:
            if type(request) is tuple and request[0] in (Atom("start"), Atom("start_many")):
                args = [hw, request]
                return await rex_call(node, sidecar, "gen_server", "call", args, group_leader, 10.0)
            return await node.call(hw, request, 10.0)

        swarm, abandoned = Atom("swarm"), (Atom("hp_handoff"), Atom("abandoned"))
        r = [await c((Atom("start"), Atom("counter"), b"pa", [5]))]
        p1 = r[0][1]
        r.append(await c((Atom("start"), Atom("nope"), b"pb", [])))
        r.append(await c((Atom("start"), b"broken", b"pc", [])))
        specs = [(Atom("counter"), b"pd", [1]), (Atom("counter"), b"pe", [0], 42)]
        r.append(await c((Atom("start_many"), specs)))
        p4, p5 = r[3][0][1], r[3][1][1]
        r.append(await c((Atom("call_many"), [p1, p4, p5], b"get")))
        r.append(await c(Atom("workers")))
        r.append(await c(Atom("memory")))
        r.append(await c((Atom("begin_handoffs"), [p4])))
        r.append(await node.call(p4, b"get"))
        r.append(await c((Atom("call_many"), [p1, p4], b"get")))
        node.send(p4, abandoned)
        r.append(await node.call(p4, b"get"))
        r.append(await node.call(p1, (swarm, Atom("begin_handoff"))))
        node.send(p1, abandoned)
        node.cast(p1, (swarm, Atom("resolve_conflict"), 9))
        r.append(await node.call(p1, b"get"))
        node.cast(p1, (swarm, Atom("end_handoff"), 7))
        r.append(await node.call(p1, b"get"))
        inbox_pid = node.spawn(MailboxProcess)
        inbox = node.process(inbox_pid)
        assert isinstance(inbox, MailboxProcess)
        node.send(hw, (Atom("watch"), inbox_pid, [p4]))
        node.send(hw, (Atom("stop_handed_off"), [p4]))
        tag, exited, crashes = await inbox.receive(5.0)
        assert tag == Atom("hp_exits")
        r.append((exited, crashes))
        r.append(await c((Atom("begin_handoffs"), [p4])))
        r.append(await c(Atom("bogus")))
        [(_, p6)] = await c((Atom("start_many"), [(Atom("counter"), b"pf", [0], 7, 99)]))
        r.append(await node.call(p6, b"get"))
        put = (Atom("put_many"), [(b"proto", 5, Atom("x"))])
        r.append(await node.call((Atom("hp_replica"), Atom(sidecar)), put, 10.0))
        for pid in (p1, p5, p6):
            node.exit(pid, Atom("kill"))
        return r
    finally:
        await node.stop()


def check_replies(replies: list[Any], python_node: str) -> None:
    (r1, r2, r3, r4, r5, r6, r7, r8, r9, r10, r11, r12, r13, r14, r15, r16, r17, r18, r19) = replies
    assert r1[0] == OK and isinstance(r1[1], Pid) and r1[1].node == Atom(python_node)
    assert r2 == (ERROR, (Atom("unknown_kind"), Atom("nope")))
    assert r3 == (ERROR, (Atom("init_failed"), b"ValueError: no setup today"))
    assert [tag for tag, _ in r4] == [OK, OK]
    p4 = r4[0][1]
    # call_many: answered in place; the second counter started from its handed-over 42.
    assert r5 == [5, 1, 42]
    assert r6 == {
        Atom("counter"): 3,
        Atom("broken"): 0,
        Atom("fresh"): 0,
        Atom("older_person"): 0,
        Atom("stubborn"): 0,
        Atom("journal"): 0,
        Atom("tally"): 0,
        Atom("member"): 0,
        Atom("room"): 0,
        Atom("person"): 0,
    }
    assert r7[Atom("rss")] > 0 and r7[Atom("processes")] >= 4
    # begin_handoffs: the state given; from then on the worker answers handed_off, and
    # call_many leaves it out, until the handoff is abandoned.
    assert r8 == [(Atom("resume"), 1)]
    assert r9 == (ERROR, Atom("handed_off"))
    assert r10 == [5]
    assert r11 == 1
    assert r12 == (Atom("resume"), 5)
    assert r13 == 9  # resolve_conflict: the counter keeps the larger
    assert r14 == 7  # end_handoff: the state given
    # stop_handed_off stopped it; watch reported the exit, which is no crash.
    assert r15 == ([p4], [])
    assert r16 == [Atom("gone")]  # the sidecar restarts it from its last acknowledged state
    assert r17 == (ERROR, (Atom("bad_request"), Atom("bogus")))
    assert r18 == 7  # started from a state with its version
    assert r19 == OK  # the sidecar and the successors hold the copy


def test_the_protocol_from_erl(own_cluster: Cluster) -> None:
    pod = own_cluster.pods[0]
    python_node = pod.python_node
    erl = ErlNode(own_cluster.cookie)
    try:
        steps = ERL_STEPS.replace("PY", python_node).replace("SIDECAR", pod.sidecar_node)
        replies = erl.eval_sync(steps)
    finally:
        erl.stop()
    check_replies(replies, python_node)


def test_the_protocol_from_python(own_cluster: Cluster) -> None:
    pod = own_cluster.pods[1]
    python_node = pod.python_node
    replies = asyncio.run(python_steps(own_cluster.cookie, python_node, pod.sidecar_node))
    check_replies(replies, python_node)


ROGUE_STARTS = """
HW = {hp_workers, 'PY'},
W0 = gen_server:call(HW, workers),
R1 = gen_server:call(HW, {start, counter, <<"rogue1">>, [1]}),
R2 = gen_server:call(HW, {start_many, [{counter, <<"rogue2">>, [1]}]}),
R3 = rpc:call('OTHER', gen_server, call, [HW, {start, counter, <<"rogue3">>, [1]}]),
W1 = gen_server:call(HW, workers),
Registered = rpc:call('SIDECAR', hp_registry, whereis_name, [<<"rogue1">>]),
{ok, P} = rpc:call('SIDECAR', hp_registry, register_name,
                   [<<"placed">>, hp_python, start_worker, [counter, <<"placed">>, [4]]]),
R4 = gen_server:call(P, <<"get">>),
exit(P, kill),
[R1, R2, R3, W0, W1, Registered, node(P), R4]
"""


def test_only_the_pods_own_sidecar_starts_workers(own_cluster: Cluster) -> None:
    pod, other = own_cluster.pods[2], own_cluster.pods[0]
    erl = ErlNode(own_cluster.cookie)
    try:
        steps = (
            ROGUE_STARTS.replace("PY", pod.python_node)
            .replace("OTHER", other.sidecar_node)
            .replace("SIDECAR", pod.sidecar_node)
        )
        r1, r2, r3, w0, w1, registered, placed_on, r4 = erl.eval_sync(steps)
    finally:
        erl.stop()
    refused = Atom("not_from_sidecar")
    # A node holding the cookie, and even another pod's sidecar, is refused by name...
    assert r1 == (ERROR, (refused, erl.atom))
    assert r2 == (ERROR, (refused, erl.atom))
    assert r3 == (ERROR, (refused, Atom(other.sidecar_node)))
    # ...and nothing started: no counter more, none that the registry knows.
    assert w1 == w0
    assert registered == Atom("undefined")
    # The registry still places workers: on its owner's pod, through that pod's sidecar.
    assert placed_on in {Atom(p.python_node) for p in own_cluster.pods}
    assert r4 == 4
    log = own_cluster.runner.log_path(pod.python_node).read_text()
    assert log.count("hp_workers refused a start from") == 2
    assert log.count("hp_workers refused a start_many from") == 1
    assert erl.name in log and other.sidecar_node in log


def test_a_start_from_a_python_node_is_refused(own_cluster: Cluster) -> None:
    pod = own_cluster.pods[1]

    async def ask() -> tuple[Any, Any, Any]:
        node = Node(f"rogue_{secrets.token_hex(3)}@127.0.0.1", cookie=own_cluster.cookie, port=0)
        await node.start()
        try:
            hw = (Atom("hp_workers"), Atom(pod.python_node))
            before = await node.call(hw, Atom("workers"), 10.0)
            reply = await node.call(hw, (Atom("start"), Atom("counter"), b"rogue4", [1]), 10.0)
            after = await node.call(hw, Atom("workers"), 10.0)
            return reply, before, after
        finally:
            await node.stop()

    reply, before, after = asyncio.run(ask())
    assert reply[0] == ERROR and reply[1][0] == Atom("not_from_sidecar")
    assert reply[1][1].name.startswith("rogue_")
    assert after == before
