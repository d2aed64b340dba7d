"""The exception tree of ``houseparty`` (``py_nodes`` keeps its own, see ``py_nodes._errors``).

::

    HousePartyError                  base of everything this package raises
    ├── ClusterError                 the local cluster runner cannot do what was asked
    │   ├── ErlangMissing            erl/epmd are not installed
    │   ├── AlreadyRunning           a live cluster already owns the run folder
    │   ├── NotRunning               no live cluster in the run folder
    │   └── PortInUse                a port the cluster needs is taken
    ├── ConnectError                 no seed node of the cluster can be reached
    │   └── CookieRefused            a seed node is up but refused this client (its cookie,
    │                                or TLS settings that differ from the cluster's)
    ├── Timeout                      no answer within the client's timeout (it may have run)
    ├── NotConnected                 the client is not connected: before connect, after close
    └── ApiError                     the cluster refused a request; ``.reason`` is the term
        ├── UnknownRoom              the room was never added
        ├── DestinationFull          the room is at its max
        ├── BadArgument              a name of the wrong type, a bad ``max`` or setting
        ├── UnknownName              no worker is registered under that name
        ├── AlreadyRegistered        a worker is registered under that name already
        ├── UnknownKind              no pod knows a worker class of that kind
        ├── WorkerStartError         the worker class raised in ``setup``
        ├── TooManyNames             the cluster takes no new room or person: its limit
        ├── WorkerCrashed            the worker crashed on the request (and restarts)
        └── Unavailable              the worker did not answer in time (it may exist)
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "AlreadyRegistered",
    "AlreadyRunning",
    "ApiError",
    "BadArgument",
    "ClusterError",
    "ConnectError",
    "CookieRefused",
    "DestinationFull",
    "ErlangMissing",
    "HousePartyError",
    "NotConnected",
    "NotRunning",
    "PortInUse",
    "Timeout",
    "TooManyNames",
    "Unavailable",
    "UnknownKind",
    "UnknownName",
    "UnknownRoom",
    "WorkerCrashed",
    "WorkerStartError",
]


class HousePartyError(Exception):
    """Base of every error raised by houseparty."""


class ClusterError(HousePartyError):
    """The local cluster runner cannot do what was asked."""


class ErlangMissing(ClusterError):
    """erl or epmd cannot be found."""


class AlreadyRunning(ClusterError):
    """A live cluster already owns the run folder."""


class NotRunning(ClusterError):
    """No live cluster in the run folder."""


class PortInUse(ClusterError):
    """A port the cluster needs is already taken."""


class ConnectError(HousePartyError):
    """The cluster cannot be reached: it is down, or the cookie is wrong."""


class CookieRefused(ConnectError):
    """A seed node is up (epmd knows it) but refused this client: the cookie is wrong, or
    the client's distribution (TLS or plain, its certificate) is not the cluster's."""


class Timeout(HousePartyError):
    """The cluster did not answer within the client's timeout; the request may have run."""


class NotConnected(HousePartyError):
    """The client is not connected: ``connect()`` (or ``with``/``async with``) was not
    called, or ``close()`` was."""


class ApiError(HousePartyError):
    """The cluster refused a request."""

    def __init__(self, reason: Any, message: str) -> None:
        self.reason = reason
        super().__init__(message)


class UnknownRoom(ApiError):
    """The room was never added."""


class DestinationFull(ApiError):
    """The room is at its max. ``.room`` is the room, ``.refused`` the person it refused,
    ``.walked_in`` those of the same walk who walked in before, in order (``None`` and
    ``[]`` when the cluster did not say)."""

    def __init__(
        self,
        reason: Any,
        message: str,
        *,
        room: str | None = None,
        refused: str | None = None,
        walked_in: list[str] | None = None,
    ) -> None:
        super().__init__(reason, message)
        self.room = room
        self.refused = refused
        self.walked_in = walked_in or []


class BadArgument(ApiError):
    """A name of the wrong type, or a bad ``max``."""


class UnknownName(ApiError):
    """No worker is registered under that name."""


class AlreadyRegistered(ApiError):
    """A worker is registered under that name already; ``.pid`` is that worker."""

    def __init__(self, reason: Any, message: str, pid: Any) -> None:
        super().__init__(reason, message)
        self.pid = pid


class UnknownKind(ApiError):
    """The pods know no worker class of that kind (see ``HOUSEPARTY_WORKERS``)."""


class WorkerStartError(ApiError):
    """The worker class raised while starting (in ``setup``); the pod stays up."""


class TooManyNames(ApiError):
    """The cluster refused a new room or person: a sidecar's atom table is nearly full."""


class WorkerCrashed(ApiError):
    """The worker crashed handling the request (``.reason`` is ``{crashed, Reason}``). It
    starts again from the state of its last acknowledged change; the request is not
    tried again, as it could crash it again."""


class Unavailable(ApiError):
    """The cluster could not ask the worker in time: it may well exist."""
