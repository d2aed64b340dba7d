"""HouseParty: rooms and people as Python GenServers spread over an Erlang cluster, and
workers of your own placed, found, grouped and moved the same way.

The Python API is :class:`HouseParty` (synchronous) and :class:`AsyncHouseParty` for
rooms and people; :class:`Workers` and :class:`AsyncWorkers` for workers of your own,
written with :class:`houseparty.workers.Worker`. The errors they raise are drawn in
:mod:`houseparty._errors`.
"""

import logging

from houseparty._client import ROOM_MAX_LIMIT, AsyncHouseParty, HouseParty
from houseparty._errors import (
    AlreadyRegistered,
    AlreadyRunning,
    ApiError,
    BadArgument,
    ClusterError,
    ConnectError,
    CookieRefused,
    DestinationFull,
    ErlangMissing,
    HousePartyError,
    NotConnected,
    NotRunning,
    PortInUse,
    Timeout,
    TooManyNames,
    Unavailable,
    UnknownKind,
    UnknownName,
    UnknownRoom,
    WorkerCrashed,
    WorkerStartError,
)
from houseparty._workers_client import AsyncWorkers, Workers
from houseparty.workers import Ignore, Restart, Resume, StateChanges, Worker

# The one place the version is written: pyproject.toml reads it from here.
__version__ = "0.1.0"

__all__ = [
    "ROOM_MAX_LIMIT",
    "AlreadyRegistered",
    "AlreadyRunning",
    "ApiError",
    "AsyncHouseParty",
    "AsyncWorkers",
    "BadArgument",
    "ClusterError",
    "ConnectError",
    "CookieRefused",
    "DestinationFull",
    "ErlangMissing",
    "HouseParty",
    "HousePartyError",
    "Ignore",
    "NotConnected",
    "NotRunning",
    "PortInUse",
    "Restart",
    "Resume",
    "StateChanges",
    "Timeout",
    "TooManyNames",
    "Unavailable",
    "UnknownKind",
    "UnknownName",
    "UnknownRoom",
    "Worker",
    "WorkerCrashed",
    "WorkerStartError",
    "Workers",
    "__version__",
]

# A library logs and leaves the printing to the application (the CLI and the pod
# configure logging); without this, Python's last-resort handler would print warnings.
logging.getLogger("houseparty").addHandler(logging.NullHandler())
