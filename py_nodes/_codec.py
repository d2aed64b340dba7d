"""Erlang external term format: ``encode`` / ``decode`` / ``decode_prefix``.  Sans-I/O, pure.

Mapping (Python -> Erlang on encode, Erlang -> Python on decode)
================================================================

=================================  ==========================================  =====================
Python                             Erlang (tag)                                decodes back as
=================================  ==========================================  =====================
``Atom``                           SMALL_ATOM_UTF8_EXT 119 / ATOM_UTF8_EXT 118  ``Atom``
                                   (decode also: ATOM_EXT 100, SMALL_ATOM_EXT
                                   115, latin-1)
``True`` / ``False``               atoms ``true`` / ``false``                  ``True`` / ``False``
``None``                           atom ``undefined``                          ``Atom('undefined')``
``int``                            SMALL_INTEGER_EXT 97 / INTEGER_EXT 98 /     ``int``
                                   SMALL_BIG_EXT 110 / LARGE_BIG_EXT 111
``float`` (finite; -0.0 kept)      NEW_FLOAT_EXT 70 (decode also FLOAT_EXT 99)  ``float``
``bytes``/``bytearray``/           BINARY_EXT 109                              ``bytes``
``memoryview``
``str`` (see the notes)            BINARY_EXT 109 holding its UTF-8            ``bytes`` (!)
``BitString``                      BIT_BINARY_EXT 77 (``bits == 8``: BINARY)   ``BitString``
``list`` / ``FrozenList``          NIL_EXT 106 / STRING_EXT 107 (all items     ``list``
                                   ints 0..255, up to 65535) / LIST_EXT 108
``ImproperList``                   LIST_EXT 108 with a non-``[]`` tail          ``ImproperList``
``tuple``                          SMALL_TUPLE_EXT 104 / LARGE_TUPLE_EXT 105   ``tuple``
``dict`` / ``FrozenMap``           MAP_EXT 116                                 ``dict``
``Pid``                            NEW_PID_EXT 88 (decode also PID_EXT 103)     ``Pid``
``Reference``                      NEWER_REFERENCE_EXT 90 (decode also         ``Reference``
                                   NEW_REFERENCE_EXT 114, REFERENCE_EXT 101)
``Port``                           NEW_PORT_EXT 89, V4_PORT_EXT 120 if the id   ``Port``
                                   needs more than 28 bits, as OTP (decode also
                                   PORT_EXT 102)
``ExportFun``                      EXPORT_EXT 113                              ``ExportFun``
``Fun``                            NEW_FUN_EXT 112, its raw bytes verbatim      ``Fun``
``ExactKey``                       the wrapped term                            (see below)
=================================  ==========================================  =====================

Notes:

* Erlang strings are lists of integers: STRING_EXT decodes to a ``list`` of ``int``.  A Python
  ``str`` encodes as a UTF-8 *binary* (the Elixir convention) and decodes as ``bytes``.
* Map keys.  A decoded map is a ``dict``.  A key that is, or contains, a list or a map is made
  hashable: lists become :class:`FrozenList` and maps :class:`FrozenMap`, recursively inside
  that key (tuples stay tuples).  If two keys of one map are different for Erlang's ``=:=`` but
  equal for Python (``1`` and ``1.0``, ``1`` and ``true``, ``{1}`` and ``{1.0}``), both are
  wrapped in :class:`ExactKey`.  All of these encode back as the term they stand for, so any
  term decoded and encoded back is ``=:=`` to the original (map order aside).
* A BIT_BINARY_EXT whose last byte is whole decodes as ``bytes``, as Erlang sees it.
* Compressed terms (tag 80) decode; the declared size must match the inflated size exactly
  and may not exceed :data:`MAX_UNCOMPRESSED_SIZE`.  Nothing is ever encoded compressed.
* Terms nested deeper than :data:`MAX_DEPTH` raise ``DecodeError`` / ``EncodeError``.
* Every malformed input raises :class:`~py_nodes._errors.DecodeError` and nothing else;
  a Python value with no term raises :class:`~py_nodes._errors.EncodeError`.
* The atom cache of the distribution header (ATOM_CACHE_REF 82) is not supported here.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from typing import Any, TypeVar

from py_nodes._decode import (
    DECODERS,
    MAX_DEPTH,
    TooDeep,
    atom_cache_latin1,
    atom_cache_utf8,
    decode_at,
    decode_iter,
    make_atom,
)
from py_nodes._encode import encode_sub, pure_encode
from py_nodes._errors import DecodeError, EncodeError
from py_nodes._terms import Atom, ImproperList, Pid, Reference, disambiguate, freeze, improper

__all__ = [
    "ACCELERATED",
    "MAX_DEPTH",
    "MAX_UNCOMPRESSED_SIZE",
    "build_frozen",
    "decode",
    "decode_prefix",
    "encode",
    "pure_decode",
    "pure_decode_prefix",
    "pure_encode",
]

VERSION = 131

_T = TypeVar("_T")

#: Upper bound on the declared uncompressed size of a compressed term (bytes).
MAX_UNCOMPRESSED_SIZE = 64 * 1024 * 1024


# ----------------------------------------------------------------------------------------------
# Entry points


def _as_bytes(data: Any) -> bytes:
    if type(data) is bytes:
        return data
    if isinstance(data, bytes | bytearray | memoryview):
        return bytes(data)
    raise DecodeError(f"cannot decode a {type(data).__name__}; bytes-like object required")


def _inflate(buf: bytes, pos: int) -> tuple[bytes, int]:
    size = int.from_bytes(buf[pos : pos + 4], "big")
    pos += 4
    if size == 0 or size > MAX_UNCOMPRESSED_SIZE:
        raise DecodeError(f"bad or too large uncompressed size {size}")
    z = zlib.decompressobj()
    view = memoryview(buf)[pos:]
    out = z.decompress(view, size)
    if len(out) != size:
        raise DecodeError("compressed term is shorter than its declared size")
    if not z.eof:
        more = z.decompress(z.unconsumed_tail, 1)
        if more or not z.eof:
            raise DecodeError("compressed term is longer than its declared size, or truncated")
    return out, len(buf) - len(z.unused_data)


def _decode_versioned(buf: bytes, pos: int) -> tuple[Any, int]:
    if buf[pos] != VERSION:
        raise DecodeError(f"bad version byte {buf[pos]} (expected 131)")
    pos += 1
    tag = buf[pos]
    if tag == 80:
        inner, end = _inflate(buf, pos + 1)
        term, p = decode_at(inner, 0, 0)
        if p != len(inner):
            raise DecodeError("trailing bytes inside a compressed term")
        return term, end
    try:
        return DECODERS[tag](buf, pos + 1, 0)
    except TooDeep:
        return decode_iter(buf, pos, 0)


def pure_decode(data: bytes | bytearray | memoryview) -> Any:
    """Decode one complete term (starting with the 131 version byte); all input must be used."""
    buf = data if data.__class__ is bytes else _as_bytes(data)
    try:
        if buf[0] == VERSION and buf[1] != 80:
            try:
                term, pos = DECODERS[buf[1]](buf, 2, 0)
            except TooDeep:
                term, pos = decode_iter(buf, 1, 0)
        else:
            term, pos = _decode_versioned(buf, 0)
    except DecodeError:
        raise
    except Exception as e:
        raise DecodeError(f"malformed external term: {type(e).__name__}: {e}") from None
    if pos != len(buf):
        raise DecodeError(f"{len(buf) - pos} trailing bytes after the term")
    return term


def pure_decode_prefix(data: bytes | bytearray | memoryview, offset: int = 0) -> tuple[Any, int]:
    """Decode one term (with its 131) at ``offset``; return it and the offset just after it.

    ``bytes`` input is used in place; a ``bytearray`` or ``memoryview`` is copied first, so
    pass ``bytes`` when calling this several times on one frame.
    """
    buf = data if data.__class__ is bytes else _as_bytes(data)
    if offset < 0 or offset >= len(buf):
        raise DecodeError("offset out of range")
    try:
        if buf[offset] == VERSION and buf[offset + 1] != 80:
            try:
                term, pos = DECODERS[buf[offset + 1]](buf, offset + 2, 0)
            except TooDeep:
                term, pos = decode_iter(buf, offset + 1, 0)
        else:
            term, pos = _decode_versioned(buf, offset)
    except DecodeError:
        raise
    except Exception as e:
        raise DecodeError(f"malformed external term: {type(e).__name__}: {e}") from None
    if pos > len(buf):
        raise DecodeError("truncated term")
    return term, pos


# ----------------------------------------------------------------------------------------------
# The C codec (py_nodes/_ccodec.c) does the common terms itself and calls back into the pure
# code above for the rest, so both give the same results; the pure code is the reference.


def _decode_tag(buf: bytes, pos: int, depth: int) -> tuple[Any, int]:
    """The term at ``pos`` (its tag included), by the pure recursive decoder."""
    return DECODERS[buf[pos]](buf, pos + 1, depth)


def _build_frozen_py(cls: type[_T], *values: Any) -> _T:
    return cls(*values)


decode: Callable[[bytes | bytearray | memoryview], Any]
decode_prefix: Callable[..., tuple[Any, int]]
encode: Callable[[Any], bytes]
#: ``build_frozen(cls, *values)``: an instance of the slotted dataclass ``cls`` from all its
#: field values in order, without running its ``__init__`` (no ``__post_init__`` is called).
build_frozen: Callable[..., Any]

try:
    from py_nodes import _ccodec
except ImportError:  # not built (no compiler where it was installed): the pure codec serves
    decode, decode_prefix, encode = pure_decode, pure_decode_prefix, pure_encode
    build_frozen = _build_frozen_py
    #: True when ``decode`` / ``decode_prefix`` / ``encode`` are the C codec's.
    ACCELERATED = False
else:
    _ccodec.setup(
        {
            "DecodeError": DecodeError,
            "EncodeError": EncodeError,
            "TooDeep": TooDeep,
            "Atom": Atom,
            "Pid": Pid,
            "Reference": Reference,
            "ImproperList": ImproperList,
            "cache_utf8": atom_cache_utf8,
            "cache_latin1": atom_cache_latin1,
            "make_atom": make_atom,
            "decode_tag": _decode_tag,
            "encode_sub": encode_sub,
            "decode": pure_decode,
            "decode_prefix": pure_decode_prefix,
            "encode": pure_encode,
            "freeze": freeze,
            "disambiguate": disambiguate,
            "improper": improper,
            "as_bytes": _as_bytes,
            "atom_true": Atom("true"),
            "atom_false": Atom("false"),
            "ext_true": Atom("true").ext,
            "ext_false": Atom("false").ext,
            "ext_undefined": Atom("undefined").ext,
        }
    )
    decode, decode_prefix, encode = _ccodec.decode, _ccodec.decode_prefix, _ccodec.encode
    build_frozen = _ccodec.make
    ACCELERATED = True
