"""The C codec against the pure-Python one: same terms, same bytes, same errors.

Every comparison is strict: the same Python types all the way down (list / FrozenList,
dict / FrozenMap, ExactKey), the very same interned atoms, floats bit for bit.
"""

from __future__ import annotations

import copy
import enum
import pickle
import struct
from collections.abc import Callable
from typing import Any, NamedTuple, cast

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from py_nodes import _ccodec, _codec, _terms
from py_nodes._codec import (
    decode,
    decode_prefix,
    encode,
    pure_decode,
    pure_decode_prefix,
    pure_encode,
)
from py_nodes._errors import DecodeError, EncodeError
from py_nodes._terms import (
    Atom,
    BitString,
    ExactKey,
    ExportFun,
    FrozenList,
    FrozenMap,
    ImproperList,
    Pid,
    Port,
    Reference,
)
from tests.py_nodes.test_codec import FUN_BYTES, mutated, tag_soup, terms

A = Atom
NODE = A("a@b")


def strict(t: Any) -> Any:
    """A form of ``t`` equal for two values only if they are the same, type for type."""
    c = type(t)
    if c in (list, tuple, FrozenList):
        return (c.__name__, tuple(strict(x) for x in t))
    if c in (dict, FrozenMap):
        return (c.__name__, tuple((strict(k), strict(v)) for k, v in t.items()))
    if c is ImproperList:
        return (c.__name__, strict(t.items), strict(t.tail))
    if c is ExactKey:
        return (c.__name__, strict(t.term))
    if c is float:
        return (c.__name__, struct.pack(">d", t))
    if c is Atom:
        return (c.__name__, id(t))
    if c in (Pid, Reference, Port):
        return (c.__name__, repr(t), id(t.node))
    return (c.__name__, t)


def outcome(fn: Callable[[], Any], form: Callable[[Any], Any] = strict) -> Any:
    try:
        return ("ok", form(fn()))
    except DecodeError:
        return ("DecodeError",)
    except EncodeError:
        return ("EncodeError",)


def same_decoding(data: bytes, form: Callable[[Any], Any] = strict) -> None:
    assert outcome(lambda: decode(data), form) == outcome(lambda: pure_decode(data), form)
    assert outcome(lambda: decode_prefix(data, 0), form) == outcome(
        lambda: pure_decode_prefix(data, 0), form
    )


def same_encoding(term: Any) -> None:
    try:
        expected: Any = pure_encode(term)
    except EncodeError:
        expected = EncodeError
    if expected is EncodeError:
        with pytest.raises(EncodeError):
            encode(term)
    else:
        assert encode(term) == expected


# ----------------------------------------------------------------------------------------------
# Examples

# a gen_server call as an erl node sends it, and a term with every tag the codec knows
TAG = ImproperList((A("alias"),), Reference(NODE, 7, (1, 2, 3)))
CALL = (A("$gen_call"), (Pid(NODE, 93, 0, 1), TAG), (A("hello"), b"a small binary", [1, 2, 3]))
EVERYTHING = [
    0,
    255,
    256,
    -1,
    2**31 - 1,
    -(2**31),
    2**31,
    -(2**63),
    2**64,
    -(2**2100),
    1.5,
    -0.0,
    True,
    False,
    None,
    A("ok"),
    A(""),
    A("é" * 100),
    b"",
    b"bin",
    "str",
    "ünï",
    bytearray(b"ba"),
    memoryview(b"mv"),
    BitString(b"\xf0", 4),
    [],
    [1, 2],
    [300],
    list(range(256)),
    (),
    (1,),
    tuple(range(300)),
    {},
    {A("k"): [1], 2: {3: 4}},
    {FrozenList([1]): 1, FrozenMap({1: 2}): 2},
    {ExactKey(1): 1, ExactKey(1.0): 2, ExactKey(True): 3},
    ImproperList((1, 2), A("t")),
    Pid(NODE, 1, 2, 2**32 - 1),
    Reference(NODE, 2**32 - 1, ()),
    Reference(NODE, 1, (1, 2, 3, 4, 5)),
    Port(NODE, 5, 1),
    Port(NODE, 2**40, 1),
    ExportFun(A("m"), A("f"), 2),
    decode(FUN_BYTES),
    Pid(A("true"), 1, 2, 3),
    CALL,
]


def test_the_c_codec_is_built_and_in_use() -> None:
    assert _codec.ACCELERATED
    assert decode is _ccodec.decode and encode is _ccodec.encode
    assert decode_prefix is _ccodec.decode_prefix


@pytest.mark.parametrize("term", EVERYTHING, ids=lambda t: type(t).__name__)
def test_same_bytes_and_terms_as_the_pure_codec(term: Any) -> None:
    ext = pure_encode(term)
    assert encode(term) == ext
    assert strict(decode(ext)) == strict(pure_decode(ext))
    assert strict(decode_prefix(ext + b"more", 0)) == strict(pure_decode_prefix(ext + b"more", 0))


def test_old_and_latin1_forms_decode_as_the_pure_codec() -> None:
    forms = [
        b"\x83d\x00\x02ok",
        b"\x83s\x02ok",
        b"\x83s\x04true",
        b"\x83v\x00\x05false",
        b"\x83c" + b"1.50000000000000000000e+00".ljust(31, b"\x00"),
        b"\x83gs\x03a@b\x00\x00\x00\x01\x00\x00\x00\x02\x03",  # PID_EXT, node a SMALL_ATOM
        b"\x83r\x00\x02d\x00\x03a@b\x01\x00\x00\x00\x05\x00\x00\x00\x06",  # NEW_REFERENCE_EXT
        b"\x83Xs\x04true\x00\x00\x00\x01\x00\x00\x00\x02\x00\x00\x00\x03",  # node 'true'
        b"\x83i\x00\x00\x00\x01j",  # a 1-tuple as LARGE_TUPLE_EXT
        b"\x83o\x00\x00\x00\x01\x01\x05",  # LARGE_BIG_EXT -5
        b"\x83n\x00\x00",
        b"\x83n\x01\x02\x05",  # big zero, any non-zero sign is negative
        b"\x83t\x00\x00\x00\x02a\x01a\x02F\x3f\xf0\x00\x00\x00\x00\x00\x00a\x03",  # 1 and 1.0
        b"\x83t\x00\x00\x00\x01l\x00\x00\x00\x01a\x01jj",  # a list as a key
        b"\x83l\x00\x00\x00\x00w\x01t",  # [ | t] is t
        b"\x83l\x00\x00\x00\x01a\x01l\x00\x00\x00\x01a\x02w\x01t",  # tails merge
    ]
    for data in forms:
        assert outcome(lambda data=data: decode(data))[0] == "ok", data  # type: ignore[misc]
        same_decoding(data)


def test_sub_terms_of_other_tags_inside_c_containers() -> None:
    inner = [
        BitString(b"\x80", 1),
        Port(NODE, 1, 2),
        ExportFun(A("m"), A("f"), 0),
        decode(FUN_BYTES),
    ]
    term = (inner, {A("k"): tuple(inner)}, ImproperList(tuple(inner), BitString(b"\x80", 1)))
    ext = pure_encode(term)
    assert encode(term) == ext
    assert strict(decode(ext)) == strict(pure_decode(ext))


def test_input_types() -> None:
    ext = encode(CALL)
    for data in (bytearray(ext), memoryview(ext)):
        assert strict(decode(data)) == strict(decode(ext))
        assert strict(decode_prefix(data, 0)) == strict(decode_prefix(ext, 0))
    for bad in ("text", 131, None):
        with pytest.raises(DecodeError, match="bytes-like object required"):
            decode(bad)  # type: ignore[arg-type]
    for raw, off in ((ext, len(ext)), (ext, -1), (b"", 0)):
        with pytest.raises(DecodeError, match="offset out of range"):
            decode_prefix(raw, off)
    with pytest.raises(DecodeError, match="trailing bytes"):
        decode(ext + b"x")


class Color(enum.IntEnum):
    RED = 1


class Point(NamedTuple):
    x: int
    y: int


@pytest.mark.parametrize(
    "value",
    [
        Color.RED,
        Point(1, 2),
        float("inf"),
        float("nan"),
        "\ud800",
        object(),
        {1: object()},
        [1, object()],
        Pid(NODE, -1, 0, 0),
        Pid(NODE, 2**32, 0, 0),
        Reference(NODE, 1, (1, 2, 3, 4, 5, 6)),
        Reference(NODE, 1, [1, 2]),  # type: ignore[arg-type]
        Reference(NODE, 2**32, (1,)),
        ImproperList((), A("t")),
        ImproperList([1], 2),  # type: ignore[arg-type]
        2 ** (8 * 300),
        -(2 ** (8 * 300)),
        {1.0, 2},
        ExactKey((1, 2.0)),
    ],
    ids=repr,
)
def test_unusual_python_values_encode_as_the_pure_codec(value: Any) -> None:
    same_encoding(value)
    same_encoding([value, (value,)])


# ----------------------------------------------------------------------------------------------
# Depth: the C recursion stops at the pure decoder's recursive depth and hands over


@pytest.mark.parametrize("n", [199, 200, 201, 1000, _codec.MAX_DEPTH - 1, _codec.MAX_DEPTH + 1])
def test_deep_nesting_as_the_pure_codec(n: int) -> None:
    for data in (
        b"\x83" + b"l\x00\x00\x00\x01" * n + b"j" + b"j" * n,
        b"\x83" + b"h\x02a\x01" * n + b"j",
        b"\x83" + b"t\x00\x00\x00\x01a\x01" * n + b"j",
        b"\x83" + b"l\x00\x00\x00\x01" * n + b"w\x01a" + b"w\x01b" * n,
    ):
        same_decoding(data, pure_encode)  # strict() would recurse too deep
    deep: Any = []
    for _ in range(n):
        deep = (A("x"), {1: [deep]}) if n < 300 else [deep]
    same_encoding(deep)


def test_hostile_depth_is_a_decode_error_not_a_crash() -> None:
    for data in (
        b"\x83" + b"h\x01" * 1_000_000 + b"j",
        b"\x83" + b"l\x00\x00\x00\x01" * 200_000,
        b"\x83" + b"t\x00\x00\x00\x01a\x01" * 200_000 + b"j",
    ):
        with pytest.raises(DecodeError):
            decode(data)
    cyclic: list[Any] = []
    cyclic.append(cyclic)
    with pytest.raises(EncodeError):
        encode(cyclic)


# ----------------------------------------------------------------------------------------------
# Malformed input


@pytest.mark.parametrize("term", [CALL, EVERYTHING], ids=["call", "everything"])
def test_truncated_at_every_offset(term: Any) -> None:
    ext = pure_encode(term)
    for i in range(len(ext)):
        with pytest.raises(DecodeError):
            decode(ext[:i])
        if i:
            with pytest.raises(DecodeError):
                decode_prefix(ext[:i], 0)


@settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(terms)
def test_random_terms(term: Any) -> None:
    ext = pure_encode(term)
    assert encode(term) == ext
    assert strict(decode(ext)) == strict(pure_decode(ext))
    assert strict(decode_prefix(ext + b"\x00", 0)) == strict(pure_decode_prefix(ext + b"\x00", 0))


@settings(max_examples=2000, deadline=None)
@given(st.binary(max_size=80))
def test_random_bytes(data: bytes) -> None:
    same_decoding(b"\x83" + data)
    same_decoding(data)


@settings(max_examples=2000, deadline=None)
@given(tag_soup)
def test_tag_soup(data: list[int]) -> None:
    same_decoding(b"\x83" + bytes(data))


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(terms, st.data())
def test_mutated_encodings(term: Any, data: st.DataObject) -> None:
    same_decoding(mutated(term, data))


# -- Identifier: the base of Pid, Reference and Port ------------------------------------------


class _PurePid(_terms._Identifier):
    __slots__ = ("creation", "id", "node", "serial")

    def __init__(self, node: Atom, id: int, serial: int, creation: int) -> None:
        self.node, self.id, self.serial, self.creation = node, id, serial, creation


@given(
    st.tuples(
        st.sampled_from([A("a@b"), A("c@d")]),
        st.integers(0, 3),
        st.integers(0, 1),
        st.integers(0, 2**32 - 1),
    ),
    st.tuples(
        st.sampled_from([A("a@b"), A("c@d")]),
        st.integers(0, 3),
        st.integers(0, 1),
        st.integers(0, 2**32 - 1),
    ),
)
def test_identifiers_compare_as_the_pure_base(a: tuple[Any, ...], b: tuple[Any, ...]) -> None:
    assert cast(object, _terms.Identifier) is _ccodec.Identifier
    assert issubclass(Pid, _ccodec.Identifier)
    c_a, c_b, py_a, py_b = Pid(*a), Pid(*b), _PurePid(*a), _PurePid(*b)
    assert (c_a == c_b, c_a != c_b) == (py_a == py_b, py_a != py_b) == (a == b, a != b)
    assert hash(c_a) == hash(Pid(*a)) and hash(py_a) == hash(_PurePid(*a))
    assert c_a != Reference(a[0], a[1], (a[2],)) and c_a != py_a and c_a != a
    assert {c_a: 1}.get(Pid(*a)) == 1 and {c_a: 1}.get(c_b) == (1 if a == b else None)


def test_identifiers_keep_one_hash_however_made() -> None:
    # An identifier keeps its hash once computed: every way of making the same pid or
    # reference, asked before and after the others, gives the same one.
    node = A("a@b")
    pid, ref = Pid(node, 7, 1, 2**31), Reference(node, 2**31, (1, 2, 2**32 - 1))
    for original in (pid, ref):
        made = [
            original,
            type(original)(*(getattr(original, s) for s in type(original).__slots__)),
            decode(encode(original)),
            pure_decode(pure_encode(original)),
            copy.copy(original),
            pickle.loads(pickle.dumps(original)),
        ]
        first = [hash(m) for m in made]
        assert first == [hash(m) for m in made] == [first[0]] * len(made)
        assert len(set(made)) == 1 and all(m == original for m in made)
    assert hash(pid) != hash(Pid(node, 8, 1, 2**31))
