"""Distribution capability flags exchanged in the handshake.

The values are those of ``erl_dist_protocol``; :data:`OUR_FLAGS` is what this node
announces and :data:`REQUIRED_FLAGS` what it demands from a peer (the OTP 25
mandatory set).
"""

from __future__ import annotations

__all__ = [
    "ALIAS",
    "ATOM_CACHE",
    "BIG_CREATION",
    "BIT_BINARIES",
    "DIST_HDR_ATOM_CACHE",
    "DIST_MONITOR",
    "DIST_MONITOR_NAME",
    "EXIT_PAYLOAD",
    "EXPORT_PTR_TAG",
    "EXTENDED_PIDS_PORTS",
    "EXTENDED_REFERENCES",
    "FRAGMENTS",
    "FUN_TAGS",
    "HANDSHAKE_23",
    "MANDATORY_25",
    "MAP_TAG",
    "NEW_FLOATS",
    "NEW_FUN_TAGS",
    "OUR_FLAGS",
    "PUBLISHED",
    "REQUIRED_FLAGS",
    "SEND_SENDER",
    "SPAWN",
    "UNLINK_ID",
    "UTF8_ATOMS",
    "V4_NC",
    "describe",
]

PUBLISHED = 0x1
ATOM_CACHE = 0x2
EXTENDED_REFERENCES = 0x4
DIST_MONITOR = 0x8
FUN_TAGS = 0x10
DIST_MONITOR_NAME = 0x20
HIDDEN_ATOM_CACHE = 0x40
NEW_FUN_TAGS = 0x80
EXTENDED_PIDS_PORTS = 0x100
EXPORT_PTR_TAG = 0x200
BIT_BINARIES = 0x400
NEW_FLOATS = 0x800
UNICODE_IO = 0x1000
DIST_HDR_ATOM_CACHE = 0x2000
SMALL_ATOM_TAGS = 0x4000
UTF8_ATOMS = 0x10000
MAP_TAG = 0x20000
BIG_CREATION = 0x40000
SEND_SENDER = 0x80000
BIG_SEQTRACE_LABELS = 0x100000
EXIT_PAYLOAD = 0x400000
FRAGMENTS = 0x800000
HANDSHAKE_23 = 0x1000000
UNLINK_ID = 0x2000000
MANDATORY_25 = 0x4000000
SPAWN = 1 << 32
NAME_ME = 1 << 33
V4_NC = 1 << 34
ALIAS = 1 << 35

_MANDATORY_25_SET = (
    EXTENDED_REFERENCES
    | FUN_TAGS
    | EXTENDED_PIDS_PORTS
    | UTF8_ATOMS
    | NEW_FUN_TAGS
    | BIT_BINARIES
    | NEW_FLOATS
    | EXPORT_PTR_TAG
    | MAP_TAG
    | BIG_CREATION
    | HANDSHAKE_23
)

#: What a peer must support for us to talk to it.
REQUIRED_FLAGS = _MANDATORY_25_SET

#: What we announce. No atom cache, no fragments, and not PUBLISHED: we are hidden.
OUR_FLAGS = (
    _MANDATORY_25_SET
    | UNLINK_ID
    | V4_NC
    | DIST_MONITOR
    | DIST_MONITOR_NAME
    | ALIAS
    | SPAWN
    | SEND_SENDER
)

_NAMES = {
    value: name
    for name, value in globals().items()
    if name.isupper() and isinstance(value, int) and value and value & (value - 1) == 0
}


def describe(flags: int) -> list[str]:
    """Names of the flags set in ``flags``, lowest bit first (for log lines)."""
    return [_NAMES.get(1 << bit, f"bit{bit}") for bit in range(64) if flags >> bit & 1]
