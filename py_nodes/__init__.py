"""py_nodes: an Erlang distribution node written in Python.

Python processes hosted here are addressed, called, linked and monitored by
Erlang and Elixir code exactly as BEAM processes are.
"""

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
    TermError,
)

__all__ = [
    "CallExit",
    "CallTimeout",
    "ConnectionLost",
    "CookieMismatch",
    "DecodeError",
    "DistributionError",
    "EncodeError",
    "EpmdError",
    "HandshakeError",
    "NoProc",
    "NodeDown",
    "ProcessError",
    "ProtocolError",
    "PyNodesError",
    "TermError",
]
