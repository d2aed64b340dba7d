"""The pure encoder of the external term format: the C codec's reference, and its fallback.

:func:`pure_encode` encodes recursively up to :data:`FAST_DEPTH`, then without
recursion; :mod:`py_nodes._codec` says which term each Python value becomes. A value
with no term raises :class:`~py_nodes._errors.EncodeError`.
"""

from __future__ import annotations

import itertools
import struct
from collections.abc import Callable, Iterator
from typing import Any, NoReturn

from py_nodes._decode import MAX_DEPTH, TooDeep
from py_nodes._errors import EncodeError
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
)

__all__ = ["FAST_DEPTH", "encode_sub", "pure_encode"]

#: Beyond this nesting the recursive encoder hands over to the iterative one.
FAST_DEPTH = 200

_p_i32 = struct.Struct(">i").pack
_p_u32 = struct.Struct(">I").pack
_p_u16 = struct.Struct(">H").pack
_p_f64 = struct.Struct(">d").pack
_p_3u32 = struct.Struct(">III").pack
_p_2u32 = struct.Struct(">II").pack
_p_QI = struct.Struct(">QI").pack
_p_IB = struct.Struct(">IB").pack
_REF_PACK = [struct.Struct(f">{n + 1}I").pack for n in range(6)]

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
    if depth >= FAST_DEPTH:
        raise TooDeep
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
    if depth >= FAST_DEPTH:
        raise TooDeep
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
    if depth >= FAST_DEPTH:
        raise TooDeep
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
    """Encode without recursion (for terms nested deeper than ``FAST_DEPTH``)."""
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
        except (TooDeep, RecursionError):
            out = bytearray(b"\x83")
            _enc_iter(term, out)
    except EncodeError:
        raise
    except (struct.error, OverflowError, ValueError) as e:
        raise EncodeError(f"value out of range: {e}") from None
    except RecursionError:
        raise EncodeError("term nested too deeply") from None
    return bytes(out)


def encode_sub(term: Any, depth: int) -> bytearray:
    """``term`` encoded (no version byte) at nesting ``depth``: for the C codec."""
    out = bytearray()
    _enc(term, out, depth)
    return out
