"""HouseParty: rooms and people as Python GenServers spread over an Erlang cluster, and
workers of your own placed, found, grouped and moved the same way.

The Python API is :class:`HouseParty` (synchronous) and :class:`AsyncHouseParty` for
rooms and people; :class:`Workers` and :class:`AsyncWorkers` for workers of your own,
written with :class:`houseparty.workers.Worker`. The errors they raise are drawn in
:mod:`houseparty._errors`.
"""

from houseparty._client import AsyncHouseParty, HouseParty
from houseparty._errors import (
    AlreadyRegistered,
    AlreadyRunning,
    ApiError,
    BadArgument,
    ClusterError,
    ConnectError,
    DestinationFull,
    ErlangMissing,
    HousePartyError,
    NotRunning,
    PortInUse,
    Unavailable,
    UnknownKind,
    UnknownName,
    UnknownRoom,
    WorkerStartError,
)
from houseparty._workers_client import AsyncWorkers, Workers
from houseparty.workers import Ignore, Restart, Resume, Worker

__all__ = [
    "AlreadyRegistered",
    "AlreadyRunning",
    "ApiError",
    "AsyncHouseParty",
    "AsyncWorkers",
    "BadArgument",
    "ClusterError",
    "ConnectError",
    "DestinationFull",
    "ErlangMissing",
    "HouseParty",
    "HousePartyError",
    "Ignore",
    "NotRunning",
    "PortInUse",
    "Restart",
    "Resume",
    "Unavailable",
    "UnknownKind",
    "UnknownName",
    "UnknownRoom",
    "Worker",
    "WorkerStartError",
    "Workers",
]
