"""Unit and property tests of the external term format codec (no Erlang needed).

They run through the public entry points, the C codec when it is built; the C codec is held
to the pure one in ``test_ccodec.py``.
"""

from __future__ import annotations

import contextlib
import copy
import math
import pickle
import struct
import time
import zlib
from typing import Any, cast

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import py_nodes
from py_nodes import _codec, _decode, _encode, _terms
from py_nodes._codec import decode, decode_prefix, encode
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
    _exact_form,
    atom,
)

A = Atom
NODE = A("a@b")
NODE_EXT = b"w\x03a@b"

# term_to_binary(fun() -> ok end) from a module `edge` on nonode@nohost (OTP 25).
FUN_BYTES = bytes(
    [
        131,
        112,
        0,
        0,
        0,
        72,
        0,
        154,
        228,
        106,
        146,
        58,
        73,
        28,
        136,
        81,
        174,
        49,
        255,
        126,
        167,
        43,
        33,
        0,
        0,
        0,
        0,
        0,
        0,
        0,
        0,
        100,
        0,
        4,
        101,
        100,
        103,
        101,
        97,
        0,
        98,
        4,
        215,
        35,
        84,
        88,
        100,
        0,
        13,
        110,
        111,
        110,
        111,
        100,
        101,
        64,
        110,
        111,
        104,
        111,
        115,
        116,
        0,
        0,
        0,
        9,
        0,
        0,
        0,
        0,
        0,
        0,
        0,
        0,
    ]
)


def exact(t: Any) -> Any:
    return _exact_form(t)


# ----------------------------------------------------------------------------------------------
# Atom


def test_atom_is_interned_and_distinct_from_str() -> None:
    assert Atom("ok") is Atom("ok") is atom("ok")
    assert Atom("ok") == Atom("ok")
    assert Atom("ok") != cast(object, "ok")
    assert Atom("ok").__eq__("ok") is NotImplemented
    assert not isinstance(Atom("ok"), str)
    assert hash(Atom("ok")) == hash(Atom("ok"))
    assert {Atom("ok"): 1, "ok": 2}[Atom("ok")] == 1
    assert repr(Atom("ok")) == "Atom('ok')"
    assert str(Atom("ok")) == "ok"
    assert pickle.loads(pickle.dumps(Atom("ok"))) is Atom("ok")
    assert copy.deepcopy(Atom("ok")) is Atom("ok")
    with pytest.raises(AttributeError):
        Atom("ok").name = "x"


def test_the_atom_table_keeps_only_atoms_in_use() -> None:
    """A peer that sends ever new atoms cannot grow the table without end; an atom that
    something still holds stays the one ``Atom(name)`` gives."""
    held = [decode(encode(Atom(f"held_{i}"))) for i in range(1_000)]
    for i in range(500_000):
        decode(encode(Atom(f"passing_{i}")))
    assert len(_terms._ATOMS) < 4 * _terms._SWEEP_FROM
    assert all(Atom(f"held_{i}") is a for i, a in enumerate(held))
    assert decode(encode(Atom("held_7"))) is held[7]
    assert Atom("ok") is Atom("ok")


def test_atom_length_limit() -> None:
    assert Atom("é" * 255).name == "é" * 255
    with pytest.raises(EncodeError):
        Atom("a" * 256)
    with pytest.raises(EncodeError):
        Atom(b"ok")  # type: ignore[arg-type]
    with pytest.raises(EncodeError):
        Atom("\ud800")


def test_public_names() -> None:
    for name in (
        "Atom",
        "Pid",
        "Reference",
        "Port",
        "BitString",
        "ImproperList",
        "ExportFun",
        "Fun",
        "FrozenList",
        "FrozenMap",
        "ExactKey",
        "encode",
        "decode",
        "decode_prefix",
    ):
        assert hasattr(py_nodes, name)


# ----------------------------------------------------------------------------------------------
# Tags, byte by byte


@pytest.mark.parametrize(
    ("term", "ext"),
    [
        (0, b"a\x00"),
        (255, b"a\xff"),
        (256, b"b\x00\x00\x01\x00"),
        (-1, b"b\xff\xff\xff\xff"),
        (2**31 - 1, b"b\x7f\xff\xff\xff"),
        (-(2**31), b"b\x80\x00\x00\x00"),
        (2**31, b"n\x04\x00\x00\x00\x00\x80"),
        (-(2**31) - 1, b"n\x04\x01\x01\x00\x00\x80"),
        (2**64, b"n\x09\x00" + b"\x00" * 8 + b"\x01"),
        (2**2048, b"o\x00\x00\x01\x01\x00" + b"\x00" * 256 + b"\x01"),
        (1.5, b"F?\xf8\x00\x00\x00\x00\x00\x00"),
        (-0.0, b"F\x80\x00\x00\x00\x00\x00\x00\x00"),
        (A("ok"), b"w\x02ok"),
        (A("é"), b"w\x02\xc3\xa9"),
        (A("\U0001f600" * 100), b"v\x01\x90" + "\U0001f600".encode() * 100),
        (True, b"w\x04true"),
        (False, b"w\x05false"),
        (None, b"w\x09undefined"),
        (b"", b"m\x00\x00\x00\x00"),
        (b"hi", b"m\x00\x00\x00\x02hi"),
        (bytearray(b"hi"), b"m\x00\x00\x00\x02hi"),
        (memoryview(b"hi"), b"m\x00\x00\x00\x02hi"),
        ("hé", b"m\x00\x00\x00\x03h\xc3\xa9"),
        (BitString(b"\xff", 3), b"M\x00\x00\x00\x01\x03\xe0"),
        (BitString(b"\x01\x02", 8), b"m\x00\x00\x00\x02\x01\x02"),
        ([], b"j"),
        ([1, 2, 3], b"k\x00\x03\x01\x02\x03"),
        ([1, 256], b"l\x00\x00\x00\x02a\x01b\x00\x00\x01\x00j"),
        ([A("a")], b"l\x00\x00\x00\x01w\x01aj"),
        (ImproperList((1,), A("b")), b"l\x00\x00\x00\x01a\x01w\x01b"),
        ((), b"h\x00"),
        ((1, A("a")), b"h\x02a\x01w\x01a"),
        (tuple(range(256))[:1] * 256, b"i\x00\x00\x01\x00" + b"a\x00" * 256),
        ({}, b"t\x00\x00\x00\x00"),
        ({A("a"): 1}, b"t\x00\x00\x00\x01w\x01aa\x01"),
        (FrozenList([1, A("a")]), b"l\x00\x00\x00\x02a\x01w\x01aj"),
        (FrozenMap({1: 2}), b"t\x00\x00\x00\x01a\x01a\x02"),
        (ExactKey(1.0), b"F?\xf0\x00\x00\x00\x00\x00\x00"),
        (Pid(NODE, 1, 2, 3), b"X" + NODE_EXT + b"\x00\x00\x00\x01\x00\x00\x00\x02\x00\x00\x00\x03"),
        (
            Reference(NODE, 3, (1, 2, 3)),
            b"Z\x00\x03" + NODE_EXT + b"\x00\x00\x00\x03" + b"\x00\x00\x00\x01\x00\x00\x00\x02"
            b"\x00\x00\x00\x03",
        ),
        (Port(NODE, 5, 1), b"Y" + NODE_EXT + b"\x00\x00\x00\x05\x00\x00\x00\x01"),
        (Port(NODE, 2**40, 1), b"x" + NODE_EXT + struct.pack(">QI", 2**40, 1)),
        (Port(NODE, 2**28, 1), b"x" + NODE_EXT + struct.pack(">QI", 2**28, 1)),
        (ExportFun(A("lists"), A("map"), 2), b"qw\x05listsw\x03mapa\x02"),
    ],
)
def test_encode_bytes(term: Any, ext: bytes) -> None:
    assert encode(term) == b"\x83" + ext


@pytest.mark.parametrize(
    ("ext", "term"),
    [
        (b"d\x00\x02ok", A("ok")),
        (b"s\x02ok", A("ok")),
        (b"d\x00\x01\xe9", A("é")),
        (b"d\x00\x04true", True),
        (b"s\x05false", False),
        (b"w\x09undefined", A("undefined")),
        (b"c" + b"1.50000000000000000000e+00".ljust(31, b"\x00"), 1.5),
        (b"k\x00\x02hi", [104, 105]),
        (b"n\x00\x00", 0),
        (b"n\x01\x02\x05", -5),
        (b"M\x00\x00\x00\x01\x08\x05", b"\x05"),
        (b"M\x00\x00\x00\x00\x00", b""),
        (b"M\x00\x00\x00\x01\x03\xff", BitString(b"\xe0", 3)),
        (b"l\x00\x00\x00\x00w\x01a", A("a")),
        (b"l\x00\x00\x00\x01a\x01l\x00\x00\x00\x01a\x02j", [1, 2]),
        (b"l\x00\x00\x00\x01a\x01l\x00\x00\x00\x01a\x02a\x03", ImproperList((1, 2), 3)),
        (b"g" + NODE_EXT + b"\x00\x00\x00\x01\x00\x00\x00\x02\x03", Pid(NODE, 1, 2, 3)),
        (b"e" + NODE_EXT + b"\x00\x00\x00\x07\x02", Reference(NODE, 2, (7,))),
        (
            b"r\x00\x02" + NODE_EXT + b"\x02\x00\x00\x00\x07\x00\x00\x00\x08",
            Reference(NODE, 2, (7, 8)),
        ),
        (b"f" + NODE_EXT + b"\x00\x00\x00\x07\x02", Port(NODE, 7, 2)),
        (b"x" + NODE_EXT + struct.pack(">QI", 9, 1), Port(NODE, 9, 1)),
        (b"qw\x01mw\x01fb\x00\x00\x00\x03", ExportFun(A("m"), A("f"), 3)),
    ],
)
def test_decode_other_forms(ext: bytes, term: Any) -> None:
    got = decode(b"\x83" + ext)
    assert exact(got) == exact(term)
    assert type(got) is type(term)


def test_negative_zero_round_trips_bit_exactly() -> None:
    f = decode(encode(-0.0))
    assert math.copysign(1.0, f) == -1.0


def test_local_fun_round_trips_byte_exactly() -> None:
    f = decode(FUN_BYTES)
    assert type(f) is Fun
    assert f.module == A("edge") and f.arity == 0 and f.free_vars == ()
    assert f.pid.node == A("nonode@nohost")
    assert encode(f) == FUN_BYTES
    assert hash(f) == hash(decode(FUN_BYTES)) and f == decode(FUN_BYTES)
    # inside a container, and with the fun size lying
    assert encode(decode(encode([f, f]))) == encode([f, f])
    bad = bytearray(FUN_BYTES)
    bad[5] += 1
    with pytest.raises(DecodeError):
        decode(bytes(bad))


def test_str_encodes_as_binary() -> None:
    assert decode(encode("héllo")) == "héllo".encode()


def test_bool_and_int_subclasses() -> None:
    import enum

    class E(enum.IntEnum):
        X = 300

    assert encode(E.X) == encode(300)
    assert decode(encode([True, False])) == [True, False]
    assert encode(True) != encode(1)


# ----------------------------------------------------------------------------------------------
# Maps and their keys


def test_compound_map_keys() -> None:
    key = FrozenMap({A("k"): FrozenList([1])})
    ext = encode({FrozenList([1, 2]): A("a"), key: 2, (FrozenList([]),): 3})
    d = decode(ext)
    assert d[FrozenList([1, 2])] == A("a")
    assert d[FrozenMap({A("k"): FrozenList([1])})] == 2
    assert d[(FrozenList([]),)] == 3
    assert encode(d) == ext


def test_list_key_from_erlang_becomes_frozen_list() -> None:
    # #{[1] => a}
    d = decode(b"\x83t\x00\x00\x00\x01k\x00\x01\x01w\x01a")
    assert d == {FrozenList([1]): A("a")}
    assert FrozenList([1]) != [1] and FrozenList([1]) != (1,)


def test_keys_python_would_merge() -> None:
    # #{1 => a, 1.0 => b, true => c}
    ext = b"\x83t\x00\x00\x00\x03a\x01w\x01aF?\xf0\x00\x00\x00\x00\x00\x00w\x01bw\x04truew\x01c"
    d = decode(ext)
    assert len(d) == 3
    assert d[ExactKey(1)] == A("a") and d[ExactKey(1.0)] == A("b") and d[ExactKey(True)] == A("c")
    assert encode(d) == ext


def test_duplicate_map_keys_rejected() -> None:
    with pytest.raises(DecodeError):
        decode(b"\x83t\x00\x00\x00\x02a\x01a\x02a\x01a\x03")


# ----------------------------------------------------------------------------------------------
# Errors


@pytest.mark.parametrize(
    "value",
    [
        {1, 2},
        object(),
        float("nan"),
        float("inf"),
        "\ud800",
        Reference(NODE, 1, (1,) * 6),
        Pid(NODE, -1, 0, 0),
        Pid(NODE, 2**32, 0, 0),
        ExportFun(A("m"), A("f"), 256),
        [{1}],
        (1, object()),
        {A("k"): {1}},
    ],
)
def test_encode_errors(value: Any) -> None:
    with pytest.raises(EncodeError):
        encode(value)


def test_bitstring_validation() -> None:
    with pytest.raises(EncodeError):
        BitString(b"", 3)
    with pytest.raises(EncodeError):
        BitString(b"\x01", 0)
    with pytest.raises(EncodeError):
        BitString(b"\x01", 9)


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\x83",
        b"\x82a\x01",
        b"\x83a\x01\x00",  # trailing byte
        b"\x83R\x00",  # atom cache ref
        b"\x83u\x00",  # old FUN_EXT
        b"\x83\xff",
        b"\x83l\xff\xff\xff\xffj",  # lying list length
        b"\x83i\xff\xff\xff\xff",  # lying tuple arity
        b"\x83t\xff\xff\xff\xff",  # lying map size
        b"\x83m\xff\xff\xff\xffab",  # lying binary length
        b"\x83o\xff\xff\xff\xff\x00\x01",  # lying big length
        b"\x83k\xff\xffab",
        b"\x83w\x05ab",
        b"\x83v\xff\xffab",
        b"\x83d\x01\x00" + b"a" * 256,  # 256-character atom
        b"\x83w\x02\xff\xfe",  # bad UTF-8
        b"\x83F\x7f\xf8\x00\x00\x00\x00\x00\x00",  # NaN
        b"\x83F\x7f\xf0\x00\x00\x00\x00\x00\x00",  # inf
        b"\x83c" + b"nan".ljust(31, b"\x00"),
        b"\x83c" + b"garbage".ljust(31, b"\x00"),
        b"\x83M\x00\x00\x00\x00\x03",
        b"\x83M\x00\x00\x00\x01\x00\x05",
        b"\x83M\x00\x00\x00\x01\x09\x05",
        b"\x83Z\x00\x06" + NODE_EXT + b"\x00" * 28,
        b"\x83Xa\x01" + b"\x00" * 12,  # node is not an atom
        b"\x83qw\x01mw\x01fb\x00\x00\x01\x00",  # arity 256
        b"\x83P\x00\x00\x00\x00x\x9c\x03\x00\x00\x00\x00\x01",
        b"\x83h\x02a\x01P\x00\x00\x00\x02" + zlib.compress(b"a\x01"),  # nested compression
    ],
)
def test_decode_errors(data: bytes) -> None:
    with pytest.raises(DecodeError):
        decode(data)


def test_decode_rejects_non_bytes() -> None:
    with pytest.raises(DecodeError):
        decode("abc")  # type: ignore[arg-type]
    with pytest.raises(DecodeError):
        decode(5)  # type: ignore[arg-type]


def test_every_truncation_is_a_decode_error() -> None:
    term = (
        A("$gen_call"),
        (Pid(NODE, 1, 2, 3), Reference(NODE, 3, (1, 2, 3))),
        (
            A("echo"),
            b"hello",
            42,
            2**100,
            -1.5,
            [1, A("x")],
            {A("k"): [1, 2]},
            ImproperList((1,), 2),
            BitString(b"\x80", 1),
            Port(NODE, 2**40, 1),
            ExportFun(A("m"), A("f"), 1),
            decode(FUN_BYTES),
        ),
    )
    ext = encode(term)
    assert decode(ext) == term
    for i in range(len(ext)):
        with pytest.raises(DecodeError):
            decode(ext[:i])


# ----------------------------------------------------------------------------------------------
# Compression


def compressed(payload: bytes, size: int | None = None, level: int = 6) -> bytes:
    z = zlib.compress(payload, level)
    return b"\x83P" + struct.pack(">I", len(payload) if size is None else size) + z


def test_compressed() -> None:
    inner = encode([A("a")] * 1000)[1:]
    assert decode(compressed(inner)) == [A("a")] * 1000
    both = compressed(inner) + encode(7)
    t, off = decode_prefix(both)
    assert t == [A("a")] * 1000
    assert decode_prefix(both, off) == (7, len(both))


@pytest.mark.parametrize("delta", [-1, 1, 2**31])
def test_compressed_size_must_match(delta: int) -> None:
    inner = encode(list(range(300)))[1:]
    with pytest.raises(DecodeError):
        decode(compressed(inner, len(inner) + delta))


def test_compressed_bomb_and_garbage() -> None:
    bomb = b"\x00" * (_codec.MAX_UNCOMPRESSED_SIZE + 1)
    with pytest.raises(DecodeError):
        decode(compressed(b"", len(bomb)) + zlib.compress(bomb)[2:])
    with pytest.raises(DecodeError):
        decode(b"\x83P\x00\x00\x00\x10" + b"garbage garbage!")
    inner = encode(list(range(300)))[1:]
    whole = compressed(inner)
    for i in range(6, len(whole)):
        with pytest.raises(DecodeError):
            decode(whole[:i])
    with pytest.raises(DecodeError):
        decode(whole + b"\x00")
    # the inflated bytes must be exactly one term
    with pytest.raises(DecodeError):
        decode(compressed(inner + b"a\x01"))


def test_huge_declared_size_does_not_allocate() -> None:
    t0 = time.monotonic()
    with pytest.raises(DecodeError):
        decode(b"\x83P\xff\xff\xff\xff" + zlib.compress(b"a\x01"))
    with pytest.raises(DecodeError):
        decode(compressed(b"a\x01", 100_000_000))
    assert time.monotonic() - t0 < 1.0


# ----------------------------------------------------------------------------------------------
# decode_prefix


def test_decode_prefix_frame() -> None:
    ctrl = (6, Pid(NODE, 1, 0, 0), A(""), A("reg"))
    msg = (A("$gen_call"), (Pid(NODE, 1, 0, 0), Reference(NODE, 0, (1, 2, 3))), A("ping"))
    frame = b"p" + encode(ctrl) + encode(msg)
    for data in (frame, bytearray(frame), memoryview(frame)):
        c, off = decode_prefix(data, 1)
        assert c == ctrl
        m, end = decode_prefix(data, off)
        assert m == msg and end == len(frame)
    with pytest.raises(DecodeError):
        decode_prefix(frame, len(frame))
    with pytest.raises(DecodeError):
        decode_prefix(frame, 0)  # 112 is not the version byte
    with pytest.raises(DecodeError):
        decode_prefix(frame[:-1], off)


def test_decode_prefix_does_not_read_past_a_truncated_atom() -> None:
    Atom("ok")
    with pytest.raises(DecodeError):
        decode_prefix(b"\x83w\x05ok")


# ----------------------------------------------------------------------------------------------
# Deep nesting


@pytest.mark.parametrize("n", [150, 250, 1000, _codec.MAX_DEPTH - 1])
def test_deep_nesting_decodes(n: int) -> None:
    lists = b"\x83" + b"l\x00\x00\x00\x01" * n + b"j" + b"j" * n
    t = decode(lists)
    assert encode(t) == lists
    for _ in range(n):
        assert type(t) is list and len(t) == 1
        t = t[0]
    assert t == []
    tuples = b"\x83" + b"h\x02a\x01" * n + b"j"
    t = decode(tuples)
    assert encode(t) == tuples
    for _ in range(n):
        t = t[1]
    assert t == []
    maps = b"\x83" + b"t\x00\x00\x00\x01a\x01" * n + b"j"
    t = decode(maps)
    assert encode(t) == maps
    for _ in range(n):
        t = t[1]
    assert t == []


def test_too_deep_is_a_decode_error() -> None:
    n = _codec.MAX_DEPTH + 10
    for data in (
        b"\x83" + b"l\x00\x00\x00\x01" * n + b"j" + b"j" * n,
        b"\x83" + b"h\x01" * 1_000_000 + b"j",
        b"\x83" + b"l\x00\x00\x00\x01" * 100_000,
    ):
        with pytest.raises(DecodeError):
            decode(data)


def test_deep_improper_tails_decode() -> None:
    # [[...[a | b]...] | c] : improper lists nested in heads, and lists nested in tails
    n = 2000
    data = b"\x83" + b"l\x00\x00\x00\x01" * n + b"w\x01a" + b"w\x01b" * n
    t = decode(data)
    depth = 0
    while type(t) is ImproperList:
        assert t.tail == A("b")
        t = t.items[0]
        depth += 1
    assert depth == n and t == A("a")
    assert encode(decode(data)) == data
    tail_chain = b"\x83" + b"l\x00\x00\x00\x01a\x01" * n + b"j"
    assert decode(tail_chain) == [1] * n


def test_too_deep_or_cyclic_python_value_is_an_encode_error() -> None:
    cyclic: list[Any] = []
    cyclic.append(cyclic)
    with pytest.raises(EncodeError):
        encode(cyclic)
    deep: Any = []
    for _ in range(100_000):
        deep = [deep]
    with pytest.raises(EncodeError):
        encode(deep)


def test_iterative_encoder_matches_recursive(monkeypatch: pytest.MonkeyPatch) -> None:
    term = [
        (A("a"), {FrozenList([1]): [ImproperList((1, 2), 3)], ExactKey(1): (), 2: {}}),
        [],
        [1, 2],
        [1, 300],
        ImproperList((), A("t")),
        b"x",
        tuple(range(300)),
        "s",
        None,
    ]
    ext = _codec.pure_encode(term)
    monkeypatch.setattr(_encode, "FAST_DEPTH", 0)
    assert _codec.pure_encode(term) == ext


def test_iterative_and_recursive_decoders_agree(monkeypatch: pytest.MonkeyPatch) -> None:
    m = {FrozenList([1]): [ImproperList((1, 2), 3)], ExactKey(1): (), ExactKey(1.0): {}}
    term = [(A("a"), m), [], b"x"]
    ext = encode(term)
    rec = _codec.pure_decode(ext)
    monkeypatch.setattr(_decode, "FAST_DEPTH", 0)
    it = _codec.pure_decode(ext)
    assert exact(rec) == exact(it)


# ----------------------------------------------------------------------------------------------
# Properties

atoms = st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=12).map(Atom)
leaves = st.one_of(
    st.integers(),
    st.integers(min_value=-(2**3000), max_value=2**3000),
    st.floats(allow_nan=False, allow_infinity=False),
    st.booleans(),
    atoms,
    st.binary(max_size=16),
    st.builds(BitString, st.binary(min_size=1, max_size=4), st.integers(1, 7)),
    st.builds(
        Pid, atoms, st.integers(0, 2**32 - 1), st.integers(0, 2**32 - 1), st.integers(0, 2**32 - 1)
    ),
    st.builds(
        Reference,
        atoms,
        st.integers(0, 2**32 - 1),
        st.lists(st.integers(0, 2**32 - 1), max_size=5).map(tuple),
    ),
    st.builds(Port, atoms, st.integers(0, 2**64 - 1), st.integers(0, 2**32 - 1)),
    st.builds(ExportFun, atoms, atoms, st.integers(0, 255)),
    st.just(decode(FUN_BYTES)),
)


def _freeze_key(t: Any) -> Any:
    if type(t) is list:
        return FrozenList([_freeze_key(x) for x in t])
    if type(t) is dict:
        return FrozenMap({k: _freeze_key(v) for k, v in t.items()})
    if type(t) is tuple:
        return tuple(_freeze_key(x) for x in t)
    if type(t) is ImproperList:
        return ImproperList(tuple(_freeze_key(x) for x in t.items), _freeze_key(t.tail))
    return t


def _extend(children: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(
        st.lists(children, max_size=5),
        st.lists(children, max_size=5).map(tuple),
        st.lists(st.tuples(children.map(_freeze_key), children), max_size=4).map(
            lambda kvs: _unique_map(kvs)
        ),
        st.builds(
            ImproperList,
            st.lists(children, min_size=1, max_size=3).map(tuple),
            st.one_of(atoms, st.integers(), st.binary(max_size=3)),
        ),
    )


def _unique_map(kvs: list[tuple[Any, Any]]) -> dict[Any, Any]:
    # keys distinct for Erlang; Python-equal ones (1 / 1.0 / True) wrapped as the decoder does
    by_form: dict[Any, tuple[Any, Any]] = {}
    for k, v in kvs:
        by_form.setdefault(exact(k), (k, v))
    counts: dict[Any, int] = {}
    for k, _ in by_form.values():
        counts[k] = counts.get(k, 0) + 1
    return {(ExactKey(k) if counts[k] > 1 else k): v for k, v in by_form.values()}


terms = st.recursive(leaves, _extend, max_leaves=30)


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(terms)
def test_round_trip(term: Any) -> None:
    ext = encode(term)
    back = decode(ext)
    assert exact(back) == exact(term)
    assert encode(back) == ext
    t, end = decode_prefix(ext + b"junk", 0)
    assert end == len(ext) and exact(t) == exact(term)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(terms)
def test_round_trip_iterative(term: Any) -> None:
    ext = encode(term)
    rec = _codec.pure_decode(ext)
    old = _decode.FAST_DEPTH
    _decode.FAST_DEPTH = 0
    try:
        it = _codec.pure_decode(ext)
    finally:
        _decode.FAST_DEPTH = old
    assert exact(it) == exact(rec)
    _encode.FAST_DEPTH = 0
    try:
        assert _codec.pure_encode(term) == ext
    finally:
        _encode.FAST_DEPTH = old


def _only_decode_error(data: bytes) -> None:
    t0 = time.monotonic()
    with contextlib.suppress(DecodeError):
        decode(data)
    with contextlib.suppress(DecodeError):
        decode_prefix(data, 0)
    assert time.monotonic() - t0 < 2.0


@settings(max_examples=1500, deadline=None)
@given(st.binary(max_size=64))
def test_fuzz_random_bytes(data: bytes) -> None:
    _only_decode_error(b"\x83" + data)
    _only_decode_error(data)


_TAGS = sorted(
    {
        70,
        77,
        80,
        88,
        89,
        90,
        97,
        98,
        99,
        100,
        101,
        102,
        103,
        104,
        105,
        106,
        107,
        108,
        109,
        110,
        111,
        112,
        113,
        114,
        115,
        116,
        118,
        119,
        120,
    }
)
#: Byte lists rich in tags: nested headers with random sizes in between.
tag_soup = st.lists(st.one_of(st.sampled_from(_TAGS), st.integers(0, 255)), max_size=48)


@settings(max_examples=800, deadline=None)
@given(tag_soup)
def test_fuzz_tag_soup(data: list[int]) -> None:
    _only_decode_error(b"\x83" + bytes(data))


@settings(max_examples=800, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(terms, st.data())
def test_fuzz_mutated_encodings(term: Any, data: st.DataObject) -> None:
    _only_decode_error(mutated(term, data))


def mutated(term: Any, data: st.DataObject) -> bytes:
    """The encoding of ``term``, maybe compressed, with one to four random mutations."""
    ext = bytearray(encode(term))
    if data.draw(st.booleans()):
        payload = bytes(ext[1:])
        ext = bytearray(compressed(payload))
    assume(len(ext) > 1)
    for _ in range(data.draw(st.integers(1, 4))):
        op = data.draw(st.sampled_from(["flip", "set", "insert", "delete", "truncate"]))
        i = data.draw(st.integers(0, max(0, len(ext) - 1)))
        if op == "flip" and ext:
            ext[i] ^= 1 << data.draw(st.integers(0, 7))
        elif op == "set" and ext:
            ext[i] = data.draw(st.sampled_from([0, 1, 0x7F, 0x80, 0xFF]))
        elif op == "insert":
            ext[i:i] = data.draw(st.binary(min_size=1, max_size=4))
        elif op == "delete" and ext:
            del ext[i]
        elif op == "truncate":
            del ext[i:]
    return bytes(ext)
