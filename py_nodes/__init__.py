"""py_nodes: an Erlang distribution node written in Python.

Python processes hosted here are addressed, called, linked and monitored by
Erlang and Elixir code exactly as BEAM processes are.
"""

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
    TermError,
)
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
    "HandshakeError",
    "ImproperList",
    "NoProc",
    "NodeDown",
    "Pid",
    "Port",
    "ProcessError",
    "ProtocolError",
    "PyNodesError",
    "Reference",
    "TermError",
    "atom",
    "decode",
    "decode_prefix",
    "encode",
]
