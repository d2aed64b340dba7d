"""The process table: the node's processes, names, links, monitors and aliases, sans-I/O.

:class:`ProcessTable` is the one owner of who lives here and who is tied to whom. It
does no I/O: control events for other nodes go out through the ``send(node_name,
event)`` it is given, events from them come in through its ``on_*`` handlers, and a
lost connection is :meth:`ProcessTable.node_down`. Its indexes:

* ``_procs``/``_names``: live processes and registered names;
* ``_links[pid]``: the pids (local or remote) a local process is linked to, and
  ``_remote_links[node]``: ``(local, remote)`` links across that connection;
* ``_monitoring[watcher]``: ``ref -> target pid or (name, node)`` for monitors a local
  process holds, and ``_remote_monitors[node]``: ``ref -> local watcher`` for those
  held on that node;
* ``_watchers[pid]``: who monitors a local process, one ``(ref, watcher, name)`` tuple
  (most processes have exactly one watcher, the registry that placed them) or a dict
  ``ref -> (watcher, name)``; ``name`` is the Atom monitored, or None for the pid; and
  ``_peer_monitors[node]``: ``ref -> local target`` for monitors that node holds (both
  sides of a monitor share one Reference);
* ``_aliases[alias] = (owner pid, works once)``, ``_alias_owners[pid]`` for those made
  by :meth:`ProcessTable.alias`, which die with their process.

The callback of :meth:`ProcessTable.notify_exit` is the process's own
``exit_callback``.

**Pending monitors.** ``gen_server:call`` from a BEAM node sends MONITOR_P, the request,
then DEMONITOR_P. The table hands each connection a store (:meth:`pending_store`) that
the frame reader fills with every MONITOR_P it reads and empties of the monitor a
DEMONITOR_P cancels, without making an event for that DEMONITOR_P (see
:data:`~py_nodes._control.read_frames`). A monitor still pending is not in the indexes
above: every operation here that an installed monitor could change the outcome of (an
exit, a name change, :meth:`monitor_count`, a DEMONITOR_P not found, a store grown past
a bound) installs the pending ones first, so a target resolves as it did when its
MONITOR_P came.

When a connection goes, local processes linked to its pids get exit ``noconnection``,
local monitors of its processes get ``DOWN noconnection``, and its monitors on our
processes are dropped.
"""

from __future__ import annotations

import itertools
import logging
import secrets
from collections.abc import Callable
from typing import Any

from py_nodes._control import (
    AliasSend,
    Channel,
    ControlEvent,
    Demonitor,
    Exit,
    Exit2,
    Link,
    Monitor,
    MonitorExit,
    RegSend,
    Send,
    Unlink,
    UnlinkId,
    UnlinkIdAck,
)
from py_nodes._errors import NoProc
from py_nodes._process import Host, P, Process
from py_nodes._terms import Atom, Pid, Reference, untrack

__all__ = ["DOWN", "NOCONNECTION", "NOPROC", "PROCESS", "ProcessTable", "name_atom"]

log = logging.getLogger("py_nodes.node")

DOWN = Atom("DOWN")
PROCESS = Atom("process")
NOPROC = Atom("noproc")
NOCONNECTION = Atom("noconnection")
# Pending monitors of a connection are installed when there are more than this: their
# DEMONITOR_P may never come (a monitor answered noproc, one held for long).
_MAX_PENDING_MONITORS = 4096

_Watcher = tuple[Reference, Pid, Atom | None]
_Watchers = _Watcher | dict[Reference, tuple[Pid, Atom | None]]
_Target = Pid | tuple[Atom, Atom]


def name_atom(name: Atom | str) -> Atom:
    """A process name as an Atom; TypeError for anything but an Atom or a str."""
    if type(name) is Atom:
        return name
    if isinstance(name, str):
        return Atom(name)
    raise TypeError(f"a process name must be an Atom or a str, not {type(name).__name__}")


def _listed(held: _Watchers | None) -> list[_Watcher]:
    if held is None:
        return []
    if isinstance(held, tuple):
        return [held]
    return [(ref, watcher, name) for ref, (watcher, name) in held.items()]


class ProcessTable:
    """Processes of the node ``atom`` and their names, links, monitors and aliases."""

    def __init__(self, host: Host, atom: Atom, send: Callable[[str, ControlEvent], None]) -> None:
        self.atom = atom
        #: The node's creation, part of every pid and reference made here.
        self.creation = secrets.randbits(32) or 1
        self._host = host
        self._send = send
        self._pid_ids = itertools.count(1)
        self._ref_ids = itertools.count(1)
        self._ref_salt = secrets.randbits(32)
        self._procs: dict[Pid, Process] = {}
        self._names: dict[Atom, Pid] = {}
        self._links: dict[Pid, set[Pid]] = {}
        self._remote_links: dict[str, set[tuple[Pid, Pid]]] = {}
        self._monitoring: dict[Pid, dict[Reference, _Target]] = {}
        self._remote_monitors: dict[str, dict[Reference, Pid]] = {}
        self._watchers: dict[Pid, _Watchers] = {}
        self._peer_monitors: dict[str, dict[Reference, Pid]] = {}
        self._pending: dict[str, dict[bytes, Monitor]] = {}
        self._last_watcher: Pid | None = None
        self._aliases: dict[Reference, tuple[Pid, bool]] = {}
        self._alias_owners: dict[Pid, set[Reference]] = {}

    # -- identifiers ----------------------------------------------------------------------

    def new_pid(self) -> Pid:
        return Pid(self.atom, next(self._pid_ids), 0, self.creation)

    def make_ref(self) -> Reference:
        n = next(self._ref_ids)
        return Reference(
            self.atom, self.creation, (n & 0x3FFFF, (n >> 18) & 0xFFFFFFFF, self._ref_salt)
        )

    # -- processes and names ----------------------------------------------------------------

    def spawn(self, cls: type[P], args: tuple[Any, ...], name: Atom | str | None) -> P:
        """Start ``cls`` with ``init(*args)``; what ``init`` raises, it never existed."""
        proc = cls()
        pid = self.new_pid()
        proc.attach(self._host, self, pid)
        self._procs[pid] = proc
        try:
            if name is not None:
                self.register(name, pid)
            proc.init(*args)
        except BaseException:
            proc.detach()
            self._procs.pop(pid, None)
            if proc.name is not None:
                self._names.pop(proc.name, None)
            raise
        return proc

    def process(self, pid: Pid) -> Process | None:
        return self._procs.get(pid)

    def processes(self) -> list[Pid]:
        return list(self._procs)

    def exit_all(self, reason: Any) -> None:
        """Stop every process with ``reason``."""
        for proc in list(self._procs.values()):
            proc.exit(reason)

    def notify_exit(self, pid: Pid, callback: Callable[[Pid, Any], None]) -> bool:
        proc = self._procs.get(pid)
        if proc is None:
            return False
        proc.exit_callback = callback
        return True

    def register(self, name: Atom | str, pid: Pid) -> None:
        atom = name_atom(name)
        self._install_all_monitors()
        proc = self._procs.get(pid)
        if proc is None:
            raise NoProc(f"no local process {pid!r}")
        if atom in self._names or proc.name is not None:
            raise ValueError(f"{atom.name} is already registered, or {pid!r} has a name")
        self._names[atom] = pid
        proc.name = atom

    def unregister(self, name: Atom | str) -> None:
        self._install_all_monitors()
        pid = self._names.pop(name_atom(name), None)
        proc = self._procs.get(pid) if pid is not None else None
        if proc is not None:
            proc.name = None

    def whereis(self, name: Atom) -> Pid | None:
        return self._names.get(name)

    def registered(self) -> list[Atom]:
        return list(self._names)

    def deliver(self, pid: Pid, message: Any) -> None:
        """Give ``message`` to the local process ``pid``, if there is one."""
        proc = self._procs.get(pid)
        if proc is not None:
            proc.deliver(message)

    def exited(self, proc: Process, reason: Any) -> None:
        """``proc`` has exited: tell its links and watchers, forget everything it held."""
        self._install_all_monitors()
        pid = proc.pid
        self._procs.pop(pid, None)
        if proc.name is not None and self._names.get(proc.name) == pid:
            del self._names[proc.name]
        for other in self._links.pop(pid, ()):
            if other.node is self.atom:
                self._link_exit(other, pid, reason)
            else:
                node_name = other.node.name
                self._remote_links.get(node_name, set()).discard((pid, other))
                self._send(node_name, Exit(pid, other, reason))
        for ref, watcher, name in _listed(self._watchers.pop(pid, None)):
            if watcher.node is self.atom:
                wproc = self._procs.get(watcher)
                if wproc is not None:
                    self._forget_monitoring(watcher, ref)
                    down_ident = pid if name is None else (name, self.atom)
                    wproc.deliver((DOWN, ref, PROCESS, down_ident, reason))
            else:
                node_name = watcher.node.name
                self._peer_monitors.get(node_name, {}).pop(ref, None)
                ident = pid if name is None else name
                self._send(node_name, MonitorExit(ident, watcher, ref, reason))
        if self._alias_owners:
            for alias in self._alias_owners.pop(pid, ()):
                del self._aliases[alias]
        on_exit = proc.exit_callback
        if on_exit is not None:
            proc.exit_callback = None
            try:
                on_exit(pid, reason)
            except Exception:
                log.exception("exit callback of %r raised", pid)
        for ref, monitored in self._monitoring.pop(pid, {}).items():
            self._drop_monitor(pid, ref, monitored)

    # -- links and exit signals -------------------------------------------------------------

    def link(self, a: Pid, b: Pid) -> None:
        proc = self._procs.get(a)
        if proc is None:
            raise NoProc(f"no local process {a!r}")
        if a == b or b in self._links.get(a, ()):
            return
        if b.node is self.atom:
            if b not in self._procs:
                proc.exit_signal(b, NOPROC, link=False)
                return
            self._links.setdefault(a, set()).add(b)
            self._links.setdefault(b, set()).add(a)
        else:
            self.add_remote_link(a, b, b.node.name)
            self._send(b.node.name, Link(a, b))

    def unlink(self, a: Pid, b: Pid) -> None:
        if not self._unlink_one(a, b):
            return
        if b.node is self.atom:
            self._unlink_one(b, a)
        else:
            node_name = b.node.name
            self._remote_links.get(node_name, set()).discard((a, b))
            self._send(node_name, UnlinkId(next(self._ref_ids), a, b))

    def links(self, pid: Pid) -> set[Pid]:
        """The pids the local process ``pid`` is linked to now."""
        return set(self._links.get(pid, ()))

    def add_remote_link(self, local: Pid, remote: Pid, node_name: str) -> None:
        """``local`` is linked to ``remote``, across the connection to ``node_name``."""
        self._links.setdefault(local, set()).add(remote)
        self._remote_links.setdefault(node_name, set()).add((local, remote))

    def exit(self, pid: Pid, reason: Any, sender: Pid) -> None:
        """``exit(Pid, Reason)`` from ``sender``: an exit signal, not through a link."""
        if pid.node is self.atom:
            proc = self._procs.get(pid)
            if proc is not None:
                proc.exit_signal(sender, reason, link=False)
        else:
            self._send(pid.node.name, Exit2(sender, pid, reason))

    def _unlink_one(self, a: Pid, b: Pid) -> bool:
        links = self._links.get(a)
        if links is None or b not in links:
            return False
        links.discard(b)
        if not links:
            del self._links[a]
        return True

    def _link_exit(self, pid: Pid, from_pid: Pid, reason: Any) -> None:
        # A link exit signal counts only through a link still in place: one that comes
        # after an unlink is stale.
        proc = self._procs.get(pid)
        if proc is None or not proc.alive or not self._unlink_one(pid, from_pid):
            return
        proc.exit_signal(from_pid, reason, link=True)

    # -- monitors -------------------------------------------------------------------------

    def monitor(self, watcher: Pid, target: Any, ref: Reference | None = None) -> Reference:
        """Monitor ``target`` (pid, local name, or ``(name, node)``) from local ``watcher``,
        under ``ref`` when given (one of :meth:`make_ref`'s, known to the watcher before a
        missing local target's ``DOWN`` reaches it)."""
        wproc = self._procs.get(watcher)
        if wproc is None:
            raise NoProc(f"no local process {watcher!r}")
        if ref is None:
            ref = self.make_ref()
        kind = type(target)
        remote_node: str | None = None
        remote_target: Pid | Atom | None = None
        ident: Any = target
        if kind is Pid:
            if target.node is not self.atom:
                remote_node, remote_target = target.node.name, target
        elif kind is tuple and len(target) == 2:
            name = name_atom(target[0])
            node_name = target[1].name if type(target[1]) is Atom else str(target[1])
            ident = (name, Atom(node_name))
            if node_name != self.atom.name:
                remote_node, remote_target = node_name, name
            else:
                target = name
        else:
            target = name_atom(target)
            ident = (target, self.atom)
        if remote_node is not None:
            assert remote_target is not None
            self.add_remote_monitor(watcher, ref, ident, remote_node)
            self._send(remote_node, Monitor(watcher, remote_target, ref))
            return ref
        pid = target if type(target) is Pid else self._names.get(target)
        if pid is None or pid not in self._procs:
            wproc.deliver((DOWN, ref, PROCESS, ident, NOPROC))
            return ref
        self._monitoring.setdefault(watcher, {})[ref] = pid
        self._add_watcher(pid, ref, watcher, None if type(target) is Pid else target)
        return ref

    def demonitor(self, watcher: Pid, ref: Reference) -> None:
        target = self._forget_monitoring(watcher, ref)
        if target is not None:
            self._drop_monitor(watcher, ref, target)

    def add_remote_monitor(
        self, watcher: Pid, ref: Reference, ident: _Target, node_name: str
    ) -> None:
        """Local ``watcher`` monitors ``ident`` on ``node_name`` under ``ref``."""
        self._monitoring.setdefault(watcher, {})[ref] = ident
        self._remote_monitors.setdefault(node_name, {})[ref] = watcher

    def monitor_count(self) -> int:
        """Monitors held by our processes plus those remote processes hold on ours.

        Every index is counted, so a leak anywhere shows (0 means none at all). Pending
        monitors are installed first.
        """
        self._install_all_monitors()
        held = sum(len(m) for m in self._monitoring.values())
        held_remote = sum(len(m) for m in self._remote_monitors.values())
        held_local = sum(
            1
            for monitoring in self._monitoring.values()
            for target in monitoring.values()
            if type(target) is Pid and target.node is self.atom
        )
        on_us = sum(len(m) for m in self._peer_monitors.values())
        on_us_local = sum(
            1
            for held_by in self._watchers.values()
            for _, watcher, _ in _listed(held_by)
            if watcher.node is not self.atom
        )
        # Each monitor is in two indexes; take the larger count of each pair so that a
        # leak in either shows.
        return max(held, held_local + held_remote) + max(on_us, on_us_local)

    def _forget_monitoring(self, watcher: Pid, ref: Reference) -> _Target | None:
        monitoring = self._monitoring.get(watcher)
        if monitoring is None:
            return None
        target = monitoring.pop(ref, None)
        if not monitoring:
            del self._monitoring[watcher]
        return target

    def _drop_monitor(self, watcher: Pid, ref: Reference, target: _Target) -> None:
        if type(target) is Pid and target.node is self.atom:
            self._drop_watcher(target, ref)
            return
        remote: Pid | Atom
        if isinstance(target, Pid):
            node_name, remote = target.node.name, target
        else:
            node_name, remote = target[1].name, target[0]
        if self._remote_monitors.get(node_name, {}).pop(ref, None) is not None:
            self._send(node_name, Demonitor(watcher, remote, ref))

    def _add_watcher(self, pid: Pid, ref: Reference, watcher: Pid, name: Atom | None) -> None:
        held = self._watchers.get(pid)
        if held is None:
            # Pids, references and atoms are leaves the collector does not track; so is a
            # tuple of them, which it would otherwise walk once for every process.
            self._watchers[pid] = untrack((ref, watcher, name))
        elif isinstance(held, tuple):
            self._watchers[pid] = {held[0]: (held[1], held[2]), ref: (watcher, name)}
        else:
            held[ref] = (watcher, name)

    def _drop_watcher(self, pid: Pid, ref: Reference) -> None:
        held = self._watchers.get(pid)
        if isinstance(held, tuple):
            if held[0] == ref:
                del self._watchers[pid]
        elif held is not None:
            held.pop(ref, None)
            if not held:
                del self._watchers[pid]

    # -- pending monitors ------------------------------------------------------------------

    def pending_store(self, node_name: str) -> dict[bytes, Monitor]:
        """A new store of pending monitors for a connection to ``node_name`` just made."""
        store: dict[bytes, Monitor] = {}
        self._pending[node_name] = store
        return store

    def _install_all_monitors(self) -> None:
        for node_name, store in self._pending.items():
            if store:
                self._install_monitors(node_name, store)

    def _install_monitors(self, node_name: str, store: dict[bytes, Monitor]) -> None:
        # A target missing now was missing when its MONITOR_P came (nothing changed
        # since without installing first), and was answered noproc already.
        monitors = self._peer_monitors.get(node_name)
        if monitors is None:
            monitors = self._peer_monitors[node_name] = {}
        for event in store.values():
            proc = self._monitored_process(event.target)
            if proc is None:
                continue
            name = event.target if type(event.target) is Atom else None
            # Monitors from one process (a registry watching every worker) share one
            # watcher pid instead of a decoded copy each.
            watcher = event.from_pid
            if watcher == self._last_watcher:
                watcher = self._last_watcher
            else:
                self._last_watcher = watcher
            self._add_watcher(proc.pid, event.ref, watcher, name)
            monitors[event.ref] = proc.pid
        store.clear()

    def _monitored_process(self, target: Pid | Atom) -> Process | None:
        """The local process a MONITOR_P names, by pid or by registered name."""
        pid = self._names.get(target) if type(target) is Atom else target
        return self._procs.get(pid) if pid is not None else None

    # -- aliases ----------------------------------------------------------------------------

    def alias(self, pid: Pid, *, reply: bool = False) -> Reference:
        """A new alias of local process ``pid``, gone with it or with :meth:`unalias`."""
        if pid not in self._procs:
            raise NoProc(f"no local process {pid!r}")
        alias = self.make_ref()
        self._aliases[alias] = (pid, reply)
        owned = self._alias_owners.get(pid)
        if owned is None:
            owned = self._alias_owners[pid] = set()
        owned.add(alias)
        return alias

    def unalias(self, pid: Pid, alias: Reference) -> bool:
        entry = self._aliases.get(alias)
        if entry is None or entry[0] != pid:
            return False
        return self._drop_alias(pid, alias)

    def call_alias(self, pid: Pid, alias: Reference) -> None:
        """``alias`` reaches ``pid`` until :meth:`end_call_alias` (one call's reply)."""
        self._aliases[alias] = (pid, False)

    def end_call_alias(self, alias: Reference) -> None:
        del self._aliases[alias]

    def alias_count(self) -> int:
        """Active aliases, those of calls in progress included."""
        return len(self._aliases)

    def deliver_to_alias(self, alias: Reference, message: Any) -> None:
        # An inactive alias (unaliased, its owner gone, a call that timed out) drops the
        # message: this is what keeps a late reply away from a caller that gave up.
        entry = self._aliases.get(alias)
        if entry is None:
            return
        pid, once = entry
        if once:
            self._drop_alias(pid, alias)
        proc = self._procs.get(pid)
        if proc is not None:
            proc.deliver(message)

    def _drop_alias(self, pid: Pid, alias: Reference) -> bool:
        if self._aliases.pop(alias, None) is None:
            return False
        owned = self._alias_owners.get(pid)
        if owned is not None:
            owned.discard(alias)
            if not owned:
                del self._alias_owners[pid]
        return True

    # -- control events from other nodes ---------------------------------------------------

    def on_send(self, peer: Channel, event: Send) -> None:
        proc = self._procs.get(event.to_pid)
        if proc is not None:
            proc.deliver(event.message)

    def on_reg_send(self, peer: Channel, event: RegSend) -> None:
        pid = self._names.get(event.to_name)
        if pid is not None:
            proc = self._procs.get(pid)
            if proc is not None:
                proc.deliver(event.message)

    def on_monitor(self, peer: Channel, event: Monitor) -> None:
        # The monitor stays pending in the connection's store; only a missing target is
        # answered now.
        if self._monitored_process(event.target) is None:
            peer.send(MonitorExit(event.target, event.from_pid, event.ref, NOPROC))
        node_name = peer.peer_name
        assert node_name is not None
        store = self._pending.get(node_name)
        if store is not None and len(store) > _MAX_PENDING_MONITORS:
            self._install_monitors(node_name, store)

    def on_demonitor(self, peer: Channel, event: Demonitor) -> None:
        node_name = peer.peer_name
        assert node_name is not None
        monitors = self._peer_monitors.get(node_name)
        pid = monitors.pop(event.ref, None) if monitors else None
        store = self._pending.get(node_name)
        if pid is None and store:
            # Its MONITOR_P may still be pending, under its whole body (not in the usual
            # form): install, then look again.
            self._install_monitors(node_name, store)
            pid = self._peer_monitors[node_name].pop(event.ref, None)
        if pid is not None:
            self._drop_watcher(pid, event.ref)

    def on_signal(self, peer: Channel, event: ControlEvent) -> None:
        """Any other control event: links, exits, monitor exits, alias sends."""
        peer_name = peer.peer_name
        assert peer_name is not None
        match event:
            case AliasSend(_, alias, message):
                self.deliver_to_alias(alias, message)
            case Link(from_pid, to_pid):
                if to_pid not in self._procs:
                    peer.send(Exit(to_pid, from_pid, NOPROC))
                    return
                self.add_remote_link(to_pid, from_pid, peer_name)
            case Exit(from_pid, to_pid, reason):
                self._remote_links.get(peer_name, set()).discard((to_pid, from_pid))
                self._link_exit(to_pid, from_pid, reason)
            case Exit2(from_pid, to_pid, reason):
                proc = self._procs.get(to_pid)
                if proc is not None:
                    proc.exit_signal(from_pid, reason, link=False)
            case UnlinkId(unlink_id, from_pid, to_pid):
                self._drop_remote_link(peer_name, to_pid, from_pid)
                peer.send(UnlinkIdAck(unlink_id, to_pid, from_pid))
            case Unlink(from_pid, to_pid):
                self._drop_remote_link(peer_name, to_pid, from_pid)
            case MonitorExit(from_proc, to_pid, ref, reason):
                if self._remote_monitors.get(peer_name, {}).pop(ref, None) is None:
                    return
                proc = self._procs.get(to_pid)
                if proc is not None:
                    ident = self._forget_monitoring(to_pid, ref)
                    proc.deliver((DOWN, ref, PROCESS, ident or from_proc, reason))
            case _:
                pass  # UNLINK_ID_ACK, GROUP_LEADER: nothing to do

    def node_down(self, node_name: str) -> None:
        """The connection to ``node_name`` is gone: its links and monitors go with it."""
        for local, remote in self._remote_links.pop(node_name, ()):
            self._link_exit(local, remote, NOCONNECTION)
        for ref, watcher in self._remote_monitors.pop(node_name, {}).items():
            wproc = self._procs.get(watcher)
            if wproc is not None:
                ident = self._forget_monitoring(watcher, ref)
                wproc.deliver((DOWN, ref, PROCESS, ident, NOCONNECTION))
        for ref, target in self._peer_monitors.pop(node_name, {}).items():
            self._drop_watcher(target, ref)
        store = self._pending.get(node_name)
        if store:
            store.clear()

    def _drop_remote_link(self, peer_name: str, local: Pid, remote: Pid) -> None:
        self._remote_links.get(peer_name, set()).discard((local, remote))
        self._unlink_one(local, remote)
