"""py_nodes: an Erlang distribution node written in Python.

Python processes hosted here are addressed, called, linked and monitored by
Erlang and Elixir code exactly as BEAM processes are. The node is *hidden* (epmd
node type 72, no PUBLISHED flag): ``erl`` lists it in ``nodes(hidden)``.

Node::

    node = Node("py1@127.0.0.1", cookie="secret", port=0,      # 0: any free port
                max_frame_size=64 * 2**20, net_ticktime=60.0, handshake_timeout=10.0,
                tls=TlsConfig("node.crt", "node.key", "ca.crt"))    # None: plain TCP
    await node.start()            # listen, register with epmd (started if absent)
    await node.stop()             # stop processes (reason shutdown), close, unregister

With ``tls``, distribution is TLS from the first byte, as OTP's ``-proto_dist inet_tls``,
with mutual verification: a peer must present a certificate signed by the CA, hostnames
are not checked (see :mod:`py_nodes._tls`). A TLS node and a plain node refuse each other
at once, each logging why. A plain node logs a warning when it starts.

Processes (all synchronous unless marked ``await``)::

    pid = node.spawn(MyServer, *init_args, name="echo")   # -> Pid; init(*args) runs now
    node.register(name, pid); node.unregister(name); node.whereis(name) -> Pid | None
    node.send(dest, msg)          # dest: Pid | name | (name, node) | alias Reference
    node.cast(dest, request)      # gen_server:cast
    await node.call(dest, request, timeout=5.0)   # gen_server:call, to BEAM or Python
    await node.ping("erl@127.0.0.1") -> bool
    node.link(a, b); node.unlink(a, b); node.exit(pid, reason)
    ref = node.monitor(watcher_pid, target); node.demonitor(watcher_pid, ref)
    alias = node.alias(pid, reply=False); node.unalias(pid, alias) -> bool
    pid = await node.spawn_remote("erl@host", "m", "f", [args], owner=pid, link=False,
                                  options=[], timeout=5.0)    # erlang:spawn_opt/5
    pid, ref = await node.spawn_remote(..., owner=pid, monitor=True)
    node.expose("module", "function", fn)  # or @node.expose("module", "function")
    await node.connect(name) -> bool; node.disconnect(name) -> bool; node.nodes()
    node.process(pid) -> Process | None; node.processes(); node.registered()
    node.make_ref(); node.monitor_count()  # monitors held by/on our processes (leak checks)
    node.notify_exit(pid, callback) -> bool  # callback(pid, reason) once, when pid exits

``node.call`` raises :class:`NoProc`, :class:`NodeDown`, :class:`CallTimeout` or
:class:`CallExit` (``.reason`` is the callee's exit reason). As ``gen_server:call``
since OTP 24, it tags the call ``[alias | Ref]``: the reply comes to an alias, and one
that comes after the timeout is dropped on arrival. The ``From`` of every call from Python
is one process of the node, which holds each call's monitor and alias.

``spawn_remote`` starts ``M:F(Args...)`` on another node. ``link``/``monitor`` tie it
to the local ``owner`` like ``link``/``monitor`` (exits, ``DOWN``, ``noconnection``).
It raises :class:`SpawnError` when the node refuses (``.reason`` ``badopt``,
``notsup``, ``system_limit``), :class:`NodeDown`, :class:`CallTimeout`. The new
process's output (``io:format``) goes to the ``py_nodes.io`` logger.

An alias routes what is sent to it (``Alias ! Msg`` in Erlang, ALIAS_SEND on the wire;
``node.send(alias, msg)`` here) to its process until ``unalias`` or the process's exit;
then messages to it are dropped. ``reply=True`` makes it work once.

GenServer (state as attributes, set in ``init``)::

    class Counter(GenServer):
        def init(self, start):
            self.n = start
        def handle_call(self, request, from_):        # -> Reply | NoReply | Stop
            self.n += 1
            return Reply(self.n)
        def handle_cast(self, request): ...           # -> None | NoReply | Stop
        def handle_info(self, message): ...           # -> None | NoReply | Stop
        def terminate(self, reason): ...

``Stop(reason, reply=value)`` stops (answering a call first). ``NoReply()`` defers the
answer: call ``self.reply(from_, value)`` later. Handlers run synchronously when their
message is delivered; a process costs no asyncio Task while idle. To call another
server from a handler, make the handler ``async def`` (the process is busy until it
returns, later messages wait in its mailbox), or return ``NoReply()`` and reply from a
Task of your own. A raising handler stops only its process, with exit reason
``{python_error, <<"Type: message">>}``.

Plain processes subclass :class:`Process` (``handle_message``) or use
:class:`MailboxProcess` (``await proc.receive(timeout)``). A process has the node's
calls for itself: ``self.link(pid)``, ``self.monitor(target)``, ``self.alias()``,
``self.unalias(alias)``, ``await self.spawn_remote(node, m, f, args, link=True)``.
Set ``self.trap_exit = True`` to receive exits as ``('EXIT', From, Reason)``; monitors deliver
``('DOWN', Ref, process, Pid | (Name, Node), Reason)``.

erpc/rpc: ``erpc:call(Node, M, F, A)``, ``rpc:call`` and ``erpc:multicall`` reach only
exposed functions (sync or async). A raising function gives the caller
``error:{exception, {python_error, <<"Type: message">>}, Stack}`` (``{badrpc, {'EXIT',
...}}`` from rpc); an unexposed one ``undef``, as in Erlang.

Each connection is read by its transport's ``data_received`` callback, which decodes
and dispatches frames in arrival order (no Task per message); ticks follow
``net_ticktime``. A peer that sends a malformed or oversize frame, fails the
handshake or the cookie check, or goes silent for ``net_ticktime`` is dropped with a
log line on ``py_nodes.*`` loggers; nothing else is affected.

The event loop: any asyncio loop. The entry points that own their loop (``python -m
py_nodes.echo``, the pod node) run on uvloop, a dependency.

Inside, :class:`Node` is a front over three parts that talk through narrow interfaces:
the process table (:mod:`py_nodes._table`, sans-I/O: processes, names, links, monitors,
aliases), the peers (:mod:`py_nodes._peers` and :mod:`py_nodes._peer`: connections and
the events they bring) and the spawner (:mod:`py_nodes._rpc`: spawn requests both ways).

Terms: see :mod:`py_nodes._codec` for the Python <-> Erlang mapping.
"""

import logging

from py_nodes._codec import decode, decode_prefix, encode
from py_nodes._errors import (
    CallExit,
    CallTimeout,
    ConnectionLost,
    CookieMismatch,
    DecodeError,
    DistributionError,
    EncodeError,
    EpmdError,
    HandshakeError,
    NodeDown,
    NoProc,
    ProcessError,
    ProtocolError,
    PyNodesError,
    SpawnError,
    TermError,
    TlsError,
)
from py_nodes._genserver import GenServer, NoReply, Reply, Stop
from py_nodes._node import Node
from py_nodes._process import MailboxProcess, Process
from py_nodes._terms import (
    Atom,
    BitString,
    ExactKey,
    ExportFun,
    FrozenList,
    FrozenMap,
    Fun,
    ImproperList,
    Pid,
    Port,
    Reference,
    atom,
)
from py_nodes._tls import TlsConfig

__all__ = [
    "Atom",
    "BitString",
    "CallExit",
    "CallTimeout",
    "ConnectionLost",
    "CookieMismatch",
    "DecodeError",
    "DistributionError",
    "EncodeError",
    "EpmdError",
    "ExactKey",
    "ExportFun",
    "FrozenList",
    "FrozenMap",
    "Fun",
    "GenServer",
    "HandshakeError",
    "ImproperList",
    "MailboxProcess",
    "NoProc",
    "NoReply",
    "Node",
    "NodeDown",
    "Pid",
    "Port",
    "Process",
    "ProcessError",
    "ProtocolError",
    "PyNodesError",
    "Reference",
    "Reply",
    "SpawnError",
    "Stop",
    "TermError",
    "TlsConfig",
    "TlsError",
    "atom",
    "decode",
    "decode_prefix",
    "encode",
]

# A library logs and leaves the printing to the application; without this, Python's
# last-resort handler would print the node's warnings to stderr.
logging.getLogger("py_nodes").addHandler(logging.NullHandler())
