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

import itertools
import math
import struct
import zlib
from collections.abc import Callable, Iterator
from typing import Any, NoReturn, TypeVar

from py_nodes._errors import DecodeError, EncodeError
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
    make_pid,
    make_port,
    make_ref,
)

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

#: Deepest nesting of compound terms accepted by ``decode`` and ``encode``.
MAX_DEPTH = 5000

_FAST_DEPTH = 200  # beyond this nesting the recursive decoder hands over to the iterative one

_u8 = struct.Struct(">B").unpack_from
_u16 = struct.Struct(">H").unpack_from
_u32 = struct.Struct(">I").unpack_from
_i32 = struct.Struct(">i").unpack_from
_u64 = struct.Struct(">Q").unpack_from
_f64 = struct.Struct(">d").unpack_from
_3u32 = struct.Struct(">III").unpack_from
_REF_WORDS = [struct.Struct(f">{n + 1}I").unpack_from for n in range(6)]
_REF_IDS = [struct.Struct(f">{n}I").unpack_from for n in range(6)]
_2u32 = struct.Struct(">II").unpack_from
_QI = struct.Struct(">QI").unpack_from
_IB = struct.Struct(">IB").unpack_from

_p_i32 = struct.Struct(">i").pack
_p_u32 = struct.Struct(">I").pack
_p_u16 = struct.Struct(">H").pack
_p_f64 = struct.Struct(">d").pack
_p_3u32 = struct.Struct(">III").pack
_p_2u32 = struct.Struct(">II").pack
_p_QI = struct.Struct(">QI").pack
_p_IB = struct.Struct(">IB").pack
_REF_PACK = [struct.Struct(f">{n + 1}I").pack for n in range(6)]

_TRUE_UTF8 = b"true"
_FALSE_UTF8 = b"false"


class _TooDeep(Exception):
    """Raised by the recursive decoder past ``_FAST_DEPTH``; the iterative decoder takes over."""


def _fail(msg: str) -> NoReturn:
    raise DecodeError(msg)


# ----------------------------------------------------------------------------------------------
# Atoms

_ATOM_CACHE_MAX = 1 << 16
_atom_cache_utf8: dict[bytes, Any] = {b"true": True, b"false": False}
_atom_cache_latin1: dict[bytes, Any] = {b"true": True, b"false": False}


def _make_atom(raw: bytes, utf8: bool) -> Any:
    cache = _atom_cache_utf8 if utf8 else _atom_cache_latin1
    a = cache.get(raw)
    if a is not None:
        return a
    try:
        name = raw.decode("utf-8") if utf8 else raw.decode("latin-1")
    except UnicodeDecodeError:
        _fail("atom is not valid UTF-8")
    if len(name) > 255:
        _fail("atom longer than 255 characters")
    a = Atom(name)
    if len(cache) < _ATOM_CACHE_MAX:
        cache[raw] = a
    return a


def _d_small_atom_utf8(buf: bytes, pos: int, depth: int) -> tuple[Any, int]:
    end = pos + 1 + buf[pos]
    raw = buf[pos + 1 : end]
    a = _atom_cache_utf8.get(raw)
    if a is None or end > len(buf):
        if end > len(buf):
            _fail("truncated atom")
        a = _make_atom(raw, True)
    return a, end


def _d_atom_utf8(buf: bytes, pos: int, depth: int) -> tuple[Any, int]:
    end = pos + 2 + ((buf[pos] << 8) | buf[pos + 1])
    if end > len(buf):
        _fail("truncated atom")
    return _make_atom(buf[pos + 2 : end], True), end


def _d_small_atom(buf: bytes, pos: int, depth: int) -> tuple[Any, int]:
    end = pos + 1 + buf[pos]
    if end > len(buf):
        _fail("truncated atom")
    return _make_atom(buf[pos + 1 : end], False), end


def _d_atom(buf: bytes, pos: int, depth: int) -> tuple[Any, int]:
    end = pos + 2 + ((buf[pos] << 8) | buf[pos + 1])
    if end > len(buf):
        _fail("truncated atom")
    return _make_atom(buf[pos + 2 : end], False), end


_ATOM_TAGS = {119: _d_small_atom_utf8, 118: _d_atom_utf8, 115: _d_small_atom, 100: _d_atom}


def _read_atom(buf: bytes, pos: int) -> tuple[Atom, int]:
    """An atom where the format requires one (node names, fun modules)."""
    f = _ATOM_TAGS.get(buf[pos])
    if f is None:
        _fail(f"expected an atom, got tag {buf[pos]}")
    a, pos = f(buf, pos + 1, 0)
    if type(a) is not Atom:  # true / false
        a = Atom("true" if a else "false")
    return a, pos


# ----------------------------------------------------------------------------------------------
# Numbers


def _d_small_int(buf: bytes, pos: int, depth: int) -> tuple[Any, int]:
    return buf[pos], pos + 1


def _d_int(buf: bytes, pos: int, depth: int) -> tuple[Any, int]:
    return _i32(buf, pos)[0], pos + 4


def _big(buf: bytes, pos: int, n: int) -> tuple[Any, int]:
    sign = buf[pos]
    end = pos + 1 + n
    if end > len(buf):
        _fail("truncated big integer")
    v = int.from_bytes(buf[pos + 1 : end], "little")
    return (-v if sign else v), end


def _d_small_big(buf: bytes, pos: int, depth: int) -> tuple[Any, int]:
    return _big(buf, pos + 1, buf[pos])


def _d_large_big(buf: bytes, pos: int, depth: int) -> tuple[Any, int]:
    return _big(buf, pos + 4, _u32(buf, pos)[0])


def _d_new_float(buf: bytes, pos: int, depth: int) -> tuple[Any, int]:
    f = _f64(buf, pos)[0]
    if f - f != 0.0:  # inf or nan
        _fail("float is not finite")
    return f, pos + 8


def _d_float(buf: bytes, pos: int, depth: int) -> tuple[Any, int]:
    end = pos + 31
    if end > len(buf):
        _fail("truncated FLOAT_EXT")
    raw = buf[pos:end].split(b"\x00", 1)[0]
    try:
        f = float(raw.decode("ascii"))
    except (ValueError, UnicodeDecodeError):
        _fail("bad FLOAT_EXT")
    if not math.isfinite(f):
        _fail("float is not finite")
    return f, end


# ----------------------------------------------------------------------------------------------
# Binaries


def _d_binary(buf: bytes, pos: int, depth: int) -> tuple[Any, int]:
    end = pos + 4 + _u32(buf, pos)[0]
    if end > len(buf):
        _fail("truncated binary")
    return buf[pos + 4 : end], end


def _d_bit_binary(buf: bytes, pos: int, depth: int) -> tuple[Any, int]:
    n, bits = _IB(buf, pos)
    end = pos + 5 + n
    if end > len(buf):
        _fail("truncated bit binary")
    data = buf[pos + 5 : end]
    if n == 0:
        if bits != 0:
            _fail("bad bit binary")
        return data, end
    if not 1 <= bits <= 8:
        _fail("bad bit binary")
    if bits == 8:
        return data, end
    return BitString(data, bits), end


# ----------------------------------------------------------------------------------------------
# Containers (recursive, fast path)


def _d_nil(buf: bytes, pos: int, depth: int) -> tuple[Any, int]:
    return [], pos


def _d_string(buf: bytes, pos: int, depth: int) -> tuple[Any, int]:
    end = pos + 2 + ((buf[pos] << 8) | buf[pos + 1])
    if end > len(buf):
        _fail("truncated string")
    return list(buf[pos + 2 : end]), end


def _d_small_tuple(buf: bytes, pos: int, depth: int) -> tuple[Any, int]:
    n = buf[pos]
    pos += 1
    if depth >= _FAST_DEPTH:
        raise _TooDeep
    depth += 1
    dec = _DEC
    acache = _atom_cache_utf8
    items: list[Any] = []
    app = items.append
    for _ in range(n):
        tag = buf[pos]
        if tag == 119:
            end = pos + 2 + buf[pos + 1]
            t = acache.get(buf[pos + 2 : end])
            if t is not None:
                app(t)
                pos = end
                continue
        elif tag == 97:
            app(buf[pos + 1])
            pos += 2
            continue
        t, pos = dec[tag](buf, pos + 1, depth)
        app(t)
    return tuple(items), pos


def _d_large_tuple(buf: bytes, pos: int, depth: int) -> tuple[Any, int]:
    n = _u32(buf, pos)[0]
    pos += 4
    if n > len(buf) - pos:
        _fail("tuple arity larger than the input")
    if depth >= _FAST_DEPTH:
        raise _TooDeep
    depth += 1
    dec = _DEC
    acache = _atom_cache_utf8
    items: list[Any] = []
    app = items.append
    for _ in range(n):
        tag = buf[pos]
        if tag == 119:
            end = pos + 2 + buf[pos + 1]
            t = acache.get(buf[pos + 2 : end])
            if t is not None:
                app(t)
                pos = end
                continue
        elif tag == 97:
            app(buf[pos + 1])
            pos += 2
            continue
        t, pos = dec[tag](buf, pos + 1, depth)
        app(t)
    return tuple(items), pos


def _d_list(buf: bytes, pos: int, depth: int) -> tuple[Any, int]:
    n = _u32(buf, pos)[0]
    pos += 4
    if n > len(buf) - pos:
        _fail("list length larger than the input")
    if depth >= _FAST_DEPTH:
        raise _TooDeep
    depth += 1
    dec = _DEC
    acache = _atom_cache_utf8
    items: list[Any] = []
    app = items.append
    for _ in range(n):
        tag = buf[pos]
        if tag == 119:
            end = pos + 2 + buf[pos + 1]
            t = acache.get(buf[pos + 2 : end])
            if t is not None:
                app(t)
                pos = end
                continue
        elif tag == 97:
            app(buf[pos + 1])
            pos += 2
            continue
        t, pos = dec[tag](buf, pos + 1, depth)
        app(t)
    if buf[pos] == 106:
        return items, pos + 1
    tail, pos = dec[buf[pos]](buf, pos + 1, depth)
    return _improper(items, tail), pos


def _improper(items: list[Any], tail: Any) -> Any:
    if type(tail) is list:
        return items + tail
    if type(tail) is ImproperList:
        return ImproperList((*items, *tail.items), tail.tail)
    if not items:
        return tail
    return ImproperList(tuple(items), tail)


def _d_map(buf: bytes, pos: int, depth: int) -> tuple[Any, int]:
    start = pos
    n = _u32(buf, pos)[0]
    pos += 4
    if n > (len(buf) - pos) >> 1:
        _fail("map size larger than the input")
    if depth >= _FAST_DEPTH:
        raise _TooDeep
    depth += 1
    dec = _DEC
    acache = _atom_cache_utf8
    d: dict[Any, Any] = {}
    for _ in range(n):
        k = None
        if buf[pos] == 119:
            end = pos + 2 + buf[pos + 1]
            k = acache.get(buf[pos + 2 : end])
            if k is not None:
                pos = end
        if k is None:
            k, pos = dec[buf[pos]](buf, pos + 1, depth)
        v, pos = dec[buf[pos]](buf, pos + 1, depth)
        try:
            d[k] = v
        except TypeError:
            d[_freeze(k)] = v
    if len(d) != n:
        # Two keys merged under Python equality: decode the pairs again and disambiguate.
        pairs = []
        pos = start + 4
        for _ in range(n):
            k, pos = dec[buf[pos]](buf, pos + 1, depth)
            v, pos = dec[buf[pos]](buf, pos + 1, depth)
            pairs.append((k, v))
        d = _disambiguate(pairs)
    return d, pos


def _freeze(t: Any) -> Any:
    """A hashable equivalent of a decoded term (lists and maps inside become frozen)."""
    c = type(t)
    if c is list:
        return FrozenList([_freeze(x) for x in t])
    if c is dict:
        return FrozenMap({k: _freeze(v) for k, v in t.items()})
    if c is tuple:
        return tuple([_freeze(x) for x in t])
    if c is ImproperList:
        return ImproperList(tuple([_freeze(x) for x in t.items]), _freeze(t.tail))
    return t


def _disambiguate(pairs: list[tuple[Any, Any]]) -> dict[Any, Any]:
    counts: dict[Any, int] = {}
    frozen = []
    for k, v in pairs:
        try:
            hash(k)
        except TypeError:
            k = _freeze(k)
        frozen.append((k, v))
        counts[k] = counts.get(k, 0) + 1
    d: dict[Any, Any] = {}
    for k, v in frozen:
        key = ExactKey(k) if counts[k] > 1 else k
        if key in d:
            _fail("map has duplicate keys")
        d[key] = v
    return d


# ----------------------------------------------------------------------------------------------
# Identifiers and funs


_PID_CACHE_MAX = 4096
_pid_cache: dict[bytes, Pid] = {}


def _d_new_pid(buf: bytes, pos: int, depth: int) -> tuple[Any, int]:
    start = pos
    if buf[pos] == 119:  # the usual node atom: cache the whole pid by its bytes
        end = pos + 14 + buf[pos + 1]
        p = _pid_cache.get(buf[pos:end])
        if p is not None:
            return p, end
    node, pos = _read_atom(buf, pos)
    i, s, c = _3u32(buf, pos)
    p = make_pid(node, i, s, c)
    pos += 12
    if buf[start] == 119:
        if len(_pid_cache) >= _PID_CACHE_MAX:
            _pid_cache.clear()
        _pid_cache[buf[start:pos]] = p
    return p, pos


def _d_pid(buf: bytes, pos: int, depth: int) -> tuple[Any, int]:
    node, pos = _read_atom(buf, pos)
    i, s = _2u32(buf, pos)
    return make_pid(node, i, s, buf[pos + 8]), pos + 9


def _d_newer_ref(buf: bytes, pos: int, depth: int) -> tuple[Any, int]:
    n = (buf[pos] << 8) | buf[pos + 1]
    if n > 5:
        _fail("bad reference length")
    pos += 2
    node = None
    if buf[pos] == 119:
        end = pos + 2 + buf[pos + 1]
        node = _atom_cache_utf8.get(buf[pos + 2 : end])
        if node.__class__ is Atom:
            pos = end
        else:
            node = None
    if node is None:
        node, pos = _read_atom(buf, pos)
    words = _REF_WORDS[n](buf, pos)
    return make_ref(node, words[0], words[1:]), pos + 4 + 4 * n


def _d_new_ref(buf: bytes, pos: int, depth: int) -> tuple[Any, int]:
    n = (buf[pos] << 8) | buf[pos + 1]
    if n > 5:
        _fail("bad reference length")
    node, pos = _read_atom(buf, pos + 2)
    creation = buf[pos]
    ids = _REF_IDS[n](buf, pos + 1)
    return make_ref(node, creation, ids), pos + 1 + 4 * n


def _d_ref(buf: bytes, pos: int, depth: int) -> tuple[Any, int]:
    node, pos = _read_atom(buf, pos)
    i, c = _IB(buf, pos)
    return make_ref(node, c, (i,)), pos + 5


def _d_new_port(buf: bytes, pos: int, depth: int) -> tuple[Any, int]:
    node, pos = _read_atom(buf, pos)
    i, c = _2u32(buf, pos)
    return make_port(node, i, c), pos + 8


def _d_v4_port(buf: bytes, pos: int, depth: int) -> tuple[Any, int]:
    node, pos = _read_atom(buf, pos)
    i, c = _QI(buf, pos)
    return make_port(node, i, c), pos + 12


def _d_port(buf: bytes, pos: int, depth: int) -> tuple[Any, int]:
    node, pos = _read_atom(buf, pos)
    i, c = _IB(buf, pos)
    return make_port(node, i, c), pos + 5


def _d_export(buf: bytes, pos: int, depth: int) -> tuple[Any, int]:
    m, pos = _read_atom(buf, pos)
    f, pos = _read_atom(buf, pos)
    arity, pos = _read_int(buf, pos)
    if not 0 <= arity < 256:
        _fail("bad export fun arity")
    return ExportFun(m, f, arity), pos


def _read_int(buf: bytes, pos: int) -> tuple[int, int]:
    tag = buf[pos]
    if tag == 97:
        return buf[pos + 1], pos + 2
    if tag == 98:
        return _i32(buf, pos + 1)[0], pos + 5
    _fail("expected a small integer")


def _d_new_fun(buf: bytes, pos: int, depth: int) -> tuple[Any, int]:
    size = _u32(buf, pos)[0]
    end = pos + size
    if size < 4 or end > len(buf):
        _fail("bad fun size")
    raw = buf[pos - 1 : end]
    arity = buf[pos + 4]
    uniq = buf[pos + 5 : pos + 21]
    index, num_free = _2u32(buf, pos + 21)
    if num_free > end - pos:
        _fail("fun free variable count larger than the input")
    p = pos + 29
    module, p = _read_atom(buf, p)
    old_index, p = _read_int(buf, p)
    old_uniq, p = _read_int(buf, p)
    if buf[p] == 88:
        pid, p = _d_new_pid(buf, p + 1, depth)
    elif buf[p] == 103:
        pid, p = _d_pid(buf, p + 1, depth)
    else:
        _fail("fun without a pid")
    free = []
    for _ in range(num_free):
        t, p = _decode_at(buf, p, depth + 1)
        free.append(t)
    if p != end:
        _fail("fun size does not match its contents")
    return Fun(raw, module, arity, uniq, index, old_index, old_uniq, pid, tuple(free)), end


def _d_bad(buf: bytes, pos: int, depth: int) -> tuple[Any, int]:
    _fail(f"unknown or unsupported tag {buf[pos - 1]}")


_DEC: list[Callable[[bytes, int, int], tuple[Any, int]]] = [_d_bad] * 256
for _tag, _f in {
    70: _d_new_float,
    77: _d_bit_binary,
    88: _d_new_pid,
    89: _d_new_port,
    90: _d_newer_ref,
    97: _d_small_int,
    98: _d_int,
    99: _d_float,
    100: _d_atom,
    101: _d_ref,
    102: _d_port,
    103: _d_pid,
    104: _d_small_tuple,
    105: _d_large_tuple,
    106: _d_nil,
    107: _d_string,
    108: _d_list,
    109: _d_binary,
    110: _d_small_big,
    111: _d_large_big,
    112: _d_new_fun,
    113: _d_export,
    114: _d_new_ref,
    115: _d_small_atom,
    116: _d_map,
    118: _d_atom_utf8,
    119: _d_small_atom_utf8,
    120: _d_v4_port,
}.items():
    _DEC[_tag] = _f
del _tag, _f

_CONTAINER_TAGS = frozenset((104, 105, 108, 116))


# ----------------------------------------------------------------------------------------------
# Iterative decoder for deep terms (no recursion, bounded by MAX_DEPTH)


def _decode_iter(buf: bytes, pos: int, depth0: int) -> tuple[Any, int]:
    # Each frame: [kind, remaining, items, start]; kind: 't' tuple, 'l' list, 'L' list tail,
    # 'm' map.  Leaf terms are decoded by the recursive decoders (they do not recurse).
    stack: list[list[Any]] = []
    dec = _DEC
    while True:
        tag = buf[pos]
        value: Any
        if tag in _CONTAINER_TAGS:
            if depth0 + len(stack) >= MAX_DEPTH:
                _fail("term nested too deeply")
            if tag == 104:
                n = buf[pos + 1]
                pos += 2
                frame: list[Any] = ["t", n, [], 0]
            elif tag == 105:
                n = _u32(buf, pos + 1)[0]
                pos += 5
                if n > len(buf) - pos:
                    _fail("tuple arity larger than the input")
                frame = ["t", n, [], 0]
            elif tag == 108:
                n = _u32(buf, pos + 1)[0]
                pos += 5
                if n > len(buf) - pos:
                    _fail("list length larger than the input")
                frame = ["l", n, [], 0]
            else:
                n = _u32(buf, pos + 1)[0]
                pos += 5
                if n > (len(buf) - pos) >> 1:
                    _fail("map size larger than the input")
                frame = ["m", 2 * n, [], pos - 4]
            if frame[1]:
                stack.append(frame)
                continue
            if frame[0] == "t":
                value = ()
            elif frame[0] == "m":
                value = {}
            else:
                # empty LIST_EXT: its tail follows
                stack.append(["L", 1, [], 0])
                continue
        elif tag == 112:
            value, pos = _d_new_fun(buf, pos + 1, depth0 + len(stack))
        else:
            value, pos = dec[tag](buf, pos + 1, 0)
        # Deliver value to the enclosing frames, closing those that complete.
        while True:
            if not stack:
                return value, pos
            frame = stack[-1]
            frame[2].append(value)
            frame[1] -= 1
            if frame[1]:
                break
            stack.pop()
            kind = frame[0]
            if kind == "t":
                value = tuple(frame[2])
            elif kind == "m":
                items = frame[2]
                d: dict[Any, Any] = {}
                for i in range(0, len(items), 2):
                    k = items[i]
                    try:
                        d[k] = items[i + 1]
                    except TypeError:
                        d[_freeze(k)] = items[i + 1]
                if len(d) * 2 != len(items):
                    d = _disambiguate(list(zip(items[::2], items[1::2], strict=True)))
                value = d
            elif kind == "l":
                if buf[pos] == 106:
                    value = frame[2]
                    pos += 1
                else:
                    # the tail comes next: wait for it
                    stack.append(["L", 1, [], frame[2]])
                    break
            else:  # "L": a tail has arrived
                value = _improper(frame[3] or [], frame[2][0])
        # loop to decode the next term


def _decode_at(buf: bytes, pos: int, depth: int) -> tuple[Any, int]:
    """Decode one term (no version byte) at ``pos``; switch to the iterative decoder if deep."""
    try:
        return _DEC[buf[pos]](buf, pos + 1, depth)
    except _TooDeep:
        return _decode_iter(buf, pos, depth)


# ----------------------------------------------------------------------------------------------
# Entry points


def _as_bytes(data: Any) -> bytes:
    if type(data) is bytes:
        return data
    if isinstance(data, bytes | bytearray | memoryview):
        return bytes(data)
    raise DecodeError(f"cannot decode a {type(data).__name__}; bytes-like object required")


def _inflate(buf: bytes, pos: int) -> tuple[bytes, int]:
    size = _u32(buf, pos)[0]
    pos += 4
    if size == 0 or size > MAX_UNCOMPRESSED_SIZE:
        _fail(f"bad or too large uncompressed size {size}")
    z = zlib.decompressobj()
    view = memoryview(buf)[pos:]
    out = z.decompress(view, size)
    if len(out) != size:
        _fail("compressed term is shorter than its declared size")
    if not z.eof:
        more = z.decompress(z.unconsumed_tail, 1)
        if more or not z.eof:
            _fail("compressed term is longer than its declared size, or truncated")
    return out, len(buf) - len(z.unused_data)


def _decode_versioned(buf: bytes, pos: int) -> tuple[Any, int]:
    if buf[pos] != VERSION:
        _fail(f"bad version byte {buf[pos]} (expected 131)")
    pos += 1
    tag = buf[pos]
    if tag == 80:
        inner, end = _inflate(buf, pos + 1)
        term, p = _decode_at(inner, 0, 0)
        if p != len(inner):
            _fail("trailing bytes inside a compressed term")
        return term, end
    try:
        return _DEC[tag](buf, pos + 1, 0)
    except _TooDeep:
        return _decode_iter(buf, pos, 0)


def pure_decode(data: bytes | bytearray | memoryview) -> Any:
    """Decode one complete term (starting with the 131 version byte); all input must be used."""
    buf = data if data.__class__ is bytes else _as_bytes(data)
    try:
        if buf[0] == VERSION and buf[1] != 80:
            try:
                term, pos = _DEC[buf[1]](buf, 2, 0)
            except _TooDeep:
                term, pos = _decode_iter(buf, 1, 0)
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
                term, pos = _DEC[buf[offset + 1]](buf, offset + 2, 0)
            except _TooDeep:
                term, pos = _decode_iter(buf, offset + 1, 0)
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
# Encoder

_SMALL_INTS = [bytes((97, i)) for i in range(256)]
_NIL = b"j"


def _enc_fail(t: Any) -> NoReturn:
    raise EncodeError(f"no Erlang term for a {type(t).__name__}: {t!r:.80}")


def _e_atom(t: Atom, out: bytearray, depth: int) -> None:
    out += t.ext


_A_TRUE = Atom("true").ext
_A_FALSE = Atom("false").ext
_A_UNDEFINED = Atom("undefined").ext


def _e_bool(t: bool, out: bytearray, depth: int) -> None:
    out += _A_TRUE if t else _A_FALSE


def _e_none(t: None, out: bytearray, depth: int) -> None:
    out += _A_UNDEFINED


def _e_int(t: int, out: bytearray, depth: int) -> None:
    if 0 <= t < 256:
        out += _SMALL_INTS[t]
    elif -0x80000000 <= t <= 0x7FFFFFFF:
        out += b"b"
        out += _p_i32(t)
    else:
        sign = 0
        if t < 0:
            sign = 1
            t = -t
        n = (t.bit_length() + 7) >> 3
        if n < 256:
            out += bytes((110, n, sign))
        elif n < 0x100000000:
            out += b"o"
            out += _p_u32(n)
            out.append(sign)
        else:
            raise EncodeError("integer too large")
        out += t.to_bytes(n, "little")


def _e_float(t: float, out: bytearray, depth: int) -> None:
    if t - t != 0.0:
        raise EncodeError(f"Erlang has no {t!r}")
    out += b"F"
    out += _p_f64(t)


def _e_bytes(t: bytes, out: bytearray, depth: int) -> None:
    n = len(t)
    if n > 0xFFFFFFFF:
        raise EncodeError("binary too large")
    out += b"m"
    out += _p_u32(n)
    out += t


def _e_memoryview(t: memoryview, out: bytearray, depth: int) -> None:
    _e_bytes(t.tobytes(), out, depth)


def _e_str(t: str, out: bytearray, depth: int) -> None:
    try:
        b = t.encode("utf-8")
    except UnicodeEncodeError as e:
        raise EncodeError(f"str is not valid unicode: {t!r:.80}") from e
    _e_bytes(b, out, depth)


def _e_bitstring(t: BitString, out: bytearray, depth: int) -> None:
    if t.bits == 8:
        _e_bytes(t.data, out, depth)
        return
    out += b"M"
    out += _p_IB(len(t.data), t.bits)
    out += t.data


def _e_tuple(t: tuple[Any, ...], out: bytearray, depth: int) -> None:
    n = len(t)
    if n < 256:
        out += b"h"
        out.append(n)
    else:
        out += b"i"
        out += _p_u32(n)
    if depth >= _FAST_DEPTH:
        raise _TooDeep
    depth += 1
    enc = _ENC
    for x in t:
        c = x.__class__
        if c is Atom:
            out += x.ext
        elif c is int and 0 <= x < 256:
            out += _SMALL_INTS[x]
        else:
            f = enc.get(c)
            if f is None:
                f = _enc_lookup(x)
            f(x, out, depth)


def _e_list(t: Any, out: bytearray, depth: int) -> None:
    n = len(t)
    if n == 0:
        out += b"j"
        return
    if n < 0x10000:
        for x in t:
            if x.__class__ is not int or not 0 <= x < 256:
                break
        else:
            out += b"k"
            out += _p_u16(n)
            out += bytes(t)
            return
    out += b"l"
    out += _p_u32(n)
    _e_items(t, out, depth)
    out += b"j"


def _e_items(t: Any, out: bytearray, depth: int) -> None:
    if depth >= _FAST_DEPTH:
        raise _TooDeep
    depth += 1
    enc = _ENC
    for x in t:
        c = x.__class__
        if c is Atom:
            out += x.ext
        elif c is int and 0 <= x < 256:
            out += _SMALL_INTS[x]
        else:
            f = enc.get(c)
            if f is None:
                f = _enc_lookup(x)
            f(x, out, depth)


def _e_improper(t: ImproperList, out: bytearray, depth: int) -> None:
    items = t.items
    if not items:
        _enc(t.tail, out, depth)
        return
    out += b"l"
    out += _p_u32(len(items))
    _e_items(items, out, depth)
    _enc(t.tail, out, depth + 1)


def _e_dict(t: Any, out: bytearray, depth: int) -> None:
    out += b"t"
    out += _p_u32(len(t))
    if depth >= _FAST_DEPTH:
        raise _TooDeep
    depth += 1
    enc = _ENC
    for k, v in t.items():
        c = k.__class__
        if c is Atom:
            out += k.ext
        else:
            f = enc.get(c)
            if f is None:
                f = _enc_lookup(k)
            f(k, out, depth)
        c = v.__class__
        if c is Atom:
            out += v.ext
        else:
            f = enc.get(c)
            if f is None:
                f = _enc_lookup(v)
            f(v, out, depth)


def _e_pid(t: Pid, out: bytearray, depth: int) -> None:
    out += b"X"
    out += t.node.ext
    out += _p_3u32(t.id, t.serial, t.creation)


def _e_ref(t: Reference, out: bytearray, depth: int) -> None:
    ids = t.ids
    n = len(ids)
    if n > 5:
        raise EncodeError("a reference has at most 5 ids")
    out += b"Z"
    out += _p_u16(n)
    out += t.node.ext
    out += _REF_PACK[n](t.creation, *ids)


def _e_port(t: Port, out: bytearray, depth: int) -> None:
    if 0 <= t.id <= 0xFFFFFFF:  # 28 bits, as OTP does: larger ids go V4 (byte-identical)
        out += b"Y"
        out += t.node.ext
        out += _p_2u32(t.id, t.creation)
    else:
        out += b"x"
        out += t.node.ext
        out += _p_QI(t.id, t.creation)


def _e_export(t: ExportFun, out: bytearray, depth: int) -> None:
    if type(t.module) is not Atom or type(t.function) is not Atom:
        raise EncodeError("ExportFun module and function must be atoms")
    if not 0 <= t.arity < 256:
        raise EncodeError("ExportFun arity must be 0..255")
    out += b"q"
    out += t.module.ext
    out += t.function.ext
    out += _SMALL_INTS[t.arity]


def _e_fun(t: Fun, out: bytearray, depth: int) -> None:
    out += t.raw


def _e_exact(t: ExactKey, out: bytearray, depth: int) -> None:
    _enc(t.term, out, depth)


_ENC: dict[type, Callable[[Any, bytearray, int], None]] = {
    Atom: _e_atom,
    bool: _e_bool,
    type(None): _e_none,
    int: _e_int,
    float: _e_float,
    bytes: _e_bytes,
    bytearray: _e_bytes,
    memoryview: _e_memoryview,
    str: _e_str,
    BitString: _e_bitstring,
    tuple: _e_tuple,
    list: _e_list,
    FrozenList: _e_list,
    ImproperList: _e_improper,
    dict: _e_dict,
    FrozenMap: _e_dict,
    Pid: _e_pid,
    Reference: _e_ref,
    Port: _e_port,
    ExportFun: _e_export,
    Fun: _e_fun,
    ExactKey: _e_exact,
}


def _enc_lookup(t: Any) -> Callable[[Any, bytearray, int], None]:
    """Encoder for subclasses of the supported types (IntEnum, NamedTuple, OrderedDict...)."""
    if isinstance(t, bool):
        return _e_bool
    for base in (int, float, str, bytes, bytearray, memoryview, tuple, list, dict):
        if isinstance(t, base):
            return _ENC[base]
    _enc_fail(t)


def _enc(t: Any, out: bytearray, depth: int) -> None:
    f = _ENC.get(t.__class__)
    if f is None:
        f = _enc_lookup(t)
    f(t, out, depth)


class _Raw:
    """Bytes the iterative encoder writes as they are (list trailers)."""

    __slots__ = ("b",)

    def __init__(self, b: bytes) -> None:
        self.b = b


_RAW_NIL = _Raw(b"j")


def _enc_iter(term: Any, out: bytearray) -> None:
    """Encode without recursion (for terms nested deeper than ``_FAST_DEPTH``)."""
    stack: list[Iterator[Any]] = [iter((term,))]
    enc = _ENC
    while stack:
        for t in stack[-1]:
            c = t.__class__
            if c is _Raw:
                out += t.b
                continue
            if c is ExactKey:
                stack.append(iter((t.term,)))
                break
            f = enc.get(c)
            if f is None:
                f = _enc_lookup(t)
            children: Iterator[Any] | None = None
            if f is _e_tuple:
                n = len(t)
                if n < 256:
                    out += b"h"
                    out.append(n)
                else:
                    out += b"i"
                    out += _p_u32(n)
                children = iter(t)
            elif f is _e_list:
                n = len(t)
                if n == 0 or (n < 0x10000 and all(x.__class__ is int and 0 <= x < 256 for x in t)):
                    f(t, out, 0)
                    continue
                out += b"l"
                out += _p_u32(n)
                children = itertools.chain(t, (_RAW_NIL,))
            elif f is _e_dict:
                out += b"t"
                out += _p_u32(len(t))
                children = itertools.chain.from_iterable(t.items())
            elif f is _e_improper:
                if t.items:
                    out += b"l"
                    out += _p_u32(len(t.items))
                children = itertools.chain(t.items, (t.tail,))
            else:
                f(t, out, 0)  # leaves do not recurse
                continue
            if len(stack) >= MAX_DEPTH:
                raise EncodeError("term nested too deeply")
            stack.append(children)
            break
        else:
            stack.pop()


def pure_encode(term: Any) -> bytes:
    """Encode ``term`` to external term format, with the leading 131 version byte."""
    out = bytearray(b"\x83")
    try:
        try:
            f = _ENC.get(term.__class__)
            if f is None:
                f = _enc_lookup(term)
            f(term, out, 0)
        except (_TooDeep, RecursionError):
            out = bytearray(b"\x83")
            _enc_iter(term, out)
    except EncodeError:
        raise
    except (struct.error, OverflowError, ValueError) as e:
        raise EncodeError(f"value out of range: {e}") from None
    except RecursionError:
        raise EncodeError("term nested too deeply") from None
    return bytes(out)


# ----------------------------------------------------------------------------------------------
# The C codec (py_nodes/_ccodec.c) does the common terms itself and calls back into the pure
# code above for the rest, so both give the same results; the pure code is the reference.


def _decode_tag(buf: bytes, pos: int, depth: int) -> tuple[Any, int]:
    """The term at ``pos`` (its tag included), by the pure recursive decoder."""
    return _DEC[buf[pos]](buf, pos + 1, depth)


def _encode_sub(term: Any, depth: int) -> bytearray:
    out = bytearray()
    _enc(term, out, depth)
    return out


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
            "TooDeep": _TooDeep,
            "Atom": Atom,
            "Pid": Pid,
            "Reference": Reference,
            "ImproperList": ImproperList,
            "cache_utf8": _atom_cache_utf8,
            "cache_latin1": _atom_cache_latin1,
            "make_atom": _make_atom,
            "decode_tag": _decode_tag,
            "encode_sub": _encode_sub,
            "decode": pure_decode,
            "decode_prefix": pure_decode_prefix,
            "encode": pure_encode,
            "freeze": _freeze,
            "disambiguate": _disambiguate,
            "improper": _improper,
            "as_bytes": _as_bytes,
            "atom_true": Atom("true"),
            "atom_false": Atom("false"),
            "ext_true": _A_TRUE,
            "ext_false": _A_FALSE,
            "ext_undefined": _A_UNDEFINED,
        }
    )
    decode, decode_prefix, encode = _ccodec.decode, _ccodec.decode_prefix, _ccodec.encode
    build_frozen = _ccodec.make
    ACCELERATED = True
