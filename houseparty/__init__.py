"""HouseParty: rooms and people as Python GenServers spread over an Erlang cluster.

The Python API is :class:`HouseParty` (synchronous) and :class:`AsyncHouseParty`; the
errors they raise are drawn in :mod:`houseparty._errors`.
"""

from houseparty._client import AsyncHouseParty, HouseParty
from houseparty._errors import (
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
    UnknownRoom,
)

__all__ = [
    "AlreadyRunning",
    "ApiError",
    "AsyncHouseParty",
    "BadArgument",
    "ClusterError",
    "ConnectError",
    "DestinationFull",
    "ErlangMissing",
    "HouseParty",
    "HousePartyError",
    "NotRunning",
    "PortInUse",
    "UnknownRoom",
]
