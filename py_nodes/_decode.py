"""The pure decoder of the external term format, one function per tag: the C codec's reference.

:data:`DECODERS` maps a tag to ``decoder(buf, pos, depth) -> (term, end)``, where ``pos``
is just after the tag. Containers recurse up to :data:`FAST_DEPTH`, then raise
:class:`TooDeep` and :func:`decode_iter` takes over without recursion, up to
:data:`MAX_DEPTH`. The entry points, and which Python value each term decodes to, are in
:mod:`py_nodes._codec`. Every malformed input raises :class:`~py_nodes._errors.DecodeError`.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Callable
from typing import Any, NoReturn

from py_nodes._errors import DecodeError
from py_nodes._terms import (
    Atom,
    BitString,
    ExportFun,
    Fun,
    Pid,
    disambiguate,
    freeze,
    improper,
    make_pid,
    make_port,
    make_ref,
)

__all__ = [
    "DECODERS",
    "FAST_DEPTH",
    "MAX_DEPTH",
    "TooDeep",
    "atom_cache_latin1",
    "atom_cache_utf8",
    "decode_at",
    "decode_iter",
    "make_atom",
]

#: Deepest nesting of compound terms accepted by ``decode`` and ``encode``.
MAX_DEPTH = 5000

#: Beyond this nesting the recursive decoder hands over to the iterative one.
FAST_DEPTH = 200

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

_TRUE_UTF8 = b"true"
_FALSE_UTF8 = b"false"


class TooDeep(Exception):
    """Raised by the recursive coders past their depth; the iterative ones take over."""


def _fail(msg: str) -> NoReturn:
    raise DecodeError(msg)


# ----------------------------------------------------------------------------------------------
# Atoms

_ATOM_CACHE_MAX = 1 << 16
atom_cache_utf8: dict[bytes, Any] = {b"true": True, b"false": False}
atom_cache_latin1: dict[bytes, Any] = {b"true": True, b"false": False}


def make_atom(raw: bytes, utf8: bool) -> Any:
    cache = atom_cache_utf8 if utf8 else atom_cache_latin1
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
    a = atom_cache_utf8.get(raw)
    if a is None or end > len(buf):
        if end > len(buf):
            _fail("truncated atom")
        a = make_atom(raw, True)
    return a, end


def _d_atom_utf8(buf: bytes, pos: int, depth: int) -> tuple[Any, int]:
    end = pos + 2 + ((buf[pos] << 8) | buf[pos + 1])
    if end > len(buf):
        _fail("truncated atom")
    return make_atom(buf[pos + 2 : end], True), end


def _d_small_atom(buf: bytes, pos: int, depth: int) -> tuple[Any, int]:
    end = pos + 1 + buf[pos]
    if end > len(buf):
        _fail("truncated atom")
    return make_atom(buf[pos + 1 : end], False), end


def _d_atom(buf: bytes, pos: int, depth: int) -> tuple[Any, int]:
    end = pos + 2 + ((buf[pos] << 8) | buf[pos + 1])
    if end > len(buf):
        _fail("truncated atom")
    return make_atom(buf[pos + 2 : end], False), end


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
    if depth >= FAST_DEPTH:
        raise TooDeep
    depth += 1
    dec = DECODERS
    acache = atom_cache_utf8
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
    if depth >= FAST_DEPTH:
        raise TooDeep
    depth += 1
    dec = DECODERS
    acache = atom_cache_utf8
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
    if depth >= FAST_DEPTH:
        raise TooDeep
    depth += 1
    dec = DECODERS
    acache = atom_cache_utf8
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
    return improper(items, tail), pos


def _d_map(buf: bytes, pos: int, depth: int) -> tuple[Any, int]:
    start = pos
    n = _u32(buf, pos)[0]
    pos += 4
    if n > (len(buf) - pos) >> 1:
        _fail("map size larger than the input")
    if depth >= FAST_DEPTH:
        raise TooDeep
    depth += 1
    dec = DECODERS
    acache = atom_cache_utf8
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
            d[freeze(k)] = v
    if len(d) != n:
        # Two keys merged under Python equality: decode the pairs again and disambiguate.
        pairs = []
        pos = start + 4
        for _ in range(n):
            k, pos = dec[buf[pos]](buf, pos + 1, depth)
            v, pos = dec[buf[pos]](buf, pos + 1, depth)
            pairs.append((k, v))
        d = disambiguate(pairs)
    return d, pos


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
        node = atom_cache_utf8.get(buf[pos + 2 : end])
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
        t, p = decode_at(buf, p, depth + 1)
        free.append(t)
    if p != end:
        _fail("fun size does not match its contents")
    return Fun(raw, module, arity, uniq, index, old_index, old_uniq, pid, tuple(free)), end


def _d_bad(buf: bytes, pos: int, depth: int) -> tuple[Any, int]:
    _fail(f"unknown or unsupported tag {buf[pos - 1]}")


DECODERS: list[Callable[[bytes, int, int], tuple[Any, int]]] = [_d_bad] * 256
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
    DECODERS[_tag] = _f
del _tag, _f

_CONTAINER_TAGS = frozenset((104, 105, 108, 116))


# ----------------------------------------------------------------------------------------------
# Iterative decoder for deep terms (no recursion, bounded by MAX_DEPTH)


def decode_iter(buf: bytes, pos: int, depth0: int) -> tuple[Any, int]:
    # Each frame: [kind, remaining, items, start]; kind: 't' tuple, 'l' list, 'L' list tail,
    # 'm' map.  Leaf terms are decoded by the recursive decoders (they do not recurse).
    stack: list[list[Any]] = []
    dec = DECODERS
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
                        d[freeze(k)] = items[i + 1]
                if len(d) * 2 != len(items):
                    d = disambiguate(list(zip(items[::2], items[1::2], strict=True)))
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
                value = improper(frame[3] or [], frame[2][0])
        # loop to decode the next term


def decode_at(buf: bytes, pos: int, depth: int) -> tuple[Any, int]:
    """Decode one term (no version byte) at ``pos``; switch to the iterative decoder if deep."""
    try:
        return DECODERS[buf[pos]](buf, pos + 1, depth)
    except TooDeep:
        return decode_iter(buf, pos, depth)
