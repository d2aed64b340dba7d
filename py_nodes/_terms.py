"""Python value types for the Erlang terms that have no native Python equivalent.

All of them are immutable (frozen), slotted and hashable, so that they can be map keys.

* :class:`Atom` is interned: ``Atom("ok") is Atom("ok")``; equality and hashing are by
  identity, which is what makes comparing atoms cheap.  An atom is *not* a ``str``:
  ``Atom("ok") != "ok"``.  Unlike Erlang's atom table, the intern table is bounded: it
  drops the atoms nothing else holds whenever it has doubled, so a peer that sends ever new
  atoms cannot grow it without end.
* :class:`Pid`, :class:`Reference`, :class:`Port`: process identifiers, references, ports.
* :class:`BitString`: a bitstring whose length is not a multiple of 8.
* :class:`ImproperList`: a list whose tail is not ``[]``.
* :class:`ExportFun`: ``fun M:F/A``.  :class:`Fun`: a local fun, kept as its raw encoding.
* :class:`FrozenList`, :class:`FrozenMap`: hashable stand-ins for lists and maps, used where a
  list or map is (or is inside) a map key.  They encode exactly like lists and maps.
* :class:`ExactKey`: wraps map keys that Erlang tells apart but Python equality does not
  (``1`` and ``1.0``, ``1`` and ``true``, ``{1}`` and ``{1.0}``...).  The decoder only uses it
  when a map actually has such a pair of keys; it encodes as the wrapped term.
"""

from __future__ import annotations

import struct
import sys
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, NoReturn, final, overload

from py_nodes._errors import DecodeError, EncodeError


def _keep_tracked(obj: Any) -> Any:
    return obj


#: ``untrack(obj) -> obj``: the cyclic collector stops tracking ``obj``. Only for objects
#: that can never be part of a reference cycle: atoms, pids, references, and tuples of
#: them. Without the C codec, they stay tracked.
untrack: Callable[[Any], Any]


class _Identifier:
    """Base of :class:`Pid`, :class:`Reference` and :class:`Port`: equal when of the same
    class with equal slots, and hashed by their slots. The C codec has the same in C."""

    __slots__: tuple[str, ...] = ()

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        return all(getattr(self, s) == getattr(other, s) for s in self.__slots__)

    def __hash__(self) -> int:
        return hash(tuple(getattr(self, s) for s in self.__slots__))


try:
    from py_nodes import _ccodec
except ImportError:
    untrack = _keep_tracked
    Identifier = _Identifier
else:
    untrack = _ccodec.untrack
    if not TYPE_CHECKING:
        Identifier = _ccodec.Identifier

__all__ = [
    "Atom",
    "BitString",
    "ExactKey",
    "ExportFun",
    "FrozenList",
    "FrozenMap",
    "Fun",
    "ImproperList",
    "Pid",
    "Port",
    "Reference",
    "atom",
]

MAX_ATOM_CHARS = 255

_ATOMS: dict[str, Atom] = {}
#: The table is swept once it holds this many atoms, or twice as many as the last sweep
#: kept.
_SWEEP_FROM = 1 << 16
_sweep_at = _SWEEP_FROM
#: Held to add an atom or sweep: never while a sweep runs, so no name gets two atoms.
_adding = threading.Lock()


def _sweep() -> None:
    """Drops the atoms only the table holds. Nothing can compare with one of them, so a
    later ``Atom(name)`` may be a new object."""
    global _sweep_at
    # A value's references while it is looked at: the table's, ``a`` and getrefcount's.
    for name in [a.name for a in _ATOMS.values() if sys.getrefcount(a) <= 3]:
        a = _ATOMS.pop(name)
        if sys.getrefcount(a) > 2:  # another thread took it from the table meanwhile
            _ATOMS[name] = a
        del a
    _sweep_at = max(_SWEEP_FROM, 2 * len(_ATOMS))


@final
class Atom:
    """An Erlang atom.  Interned: build it with ``Atom(name)``; compare with ``==`` or ``is``."""

    __slots__ = ("ext", "name")
    name: str
    #: Its external term format encoding (SMALL_ATOM_UTF8_EXT or ATOM_UTF8_EXT).
    ext: bytes

    _table: ClassVar[dict[str, Atom]] = _ATOMS

    def __new__(cls, name: str) -> Atom:
        a = _ATOMS.get(name)
        if a is not None and type(name) is str:
            return a
        if not isinstance(name, str):
            raise EncodeError(f"atom name must be a str, not {type(name).__name__}")
        name = str(name)
        if len(name) > MAX_ATOM_CHARS:
            raise EncodeError(f"atom longer than {MAX_ATOM_CHARS} characters: {name[:40]!r}...")
        try:
            raw = name.encode("utf-8")
        except UnicodeEncodeError as e:
            raise EncodeError(f"atom name is not valid unicode: {name!r}") from e
        n = len(raw)
        ext = bytes((119, n)) + raw if n < 256 else b"v" + n.to_bytes(2, "big") + raw
        self = untrack(object.__new__(cls))  # a str and bytes: never in a cycle
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "ext", ext)
        with _adding:
            if len(_ATOMS) >= _sweep_at:
                _sweep()
            return _ATOMS.setdefault(name, self)

    def __setattr__(self, key: str, value: Any) -> NoReturn:
        raise AttributeError("Atom is immutable")

    def __delattr__(self, key: str) -> NoReturn:
        raise AttributeError("Atom is immutable")

    def __repr__(self) -> str:
        return f"Atom({self.name!r})"

    def __str__(self) -> str:
        return self.name

    def __reduce__(self) -> tuple[type[Atom], tuple[str]]:
        return (Atom, (self.name,))

    def __copy__(self) -> Atom:
        return self

    def __deepcopy__(self, memo: Any) -> Atom:
        return self

    def __lt__(self, other: Any) -> bool:
        if isinstance(other, Atom):
            return self.name < other.name
        return NotImplemented


def atom(name: str) -> Atom:
    """Shorthand for ``Atom(name)``."""
    return Atom(name)


@dataclass(frozen=True, slots=True, eq=False)
class Pid(Identifier):
    """An Erlang process identifier (NEW_PID_EXT)."""

    node: Atom
    id: int
    serial: int
    creation: int

    def __post_init__(self) -> None:
        # Leaves (see untrack): the collector of a node holding 10^5 processes would
        # otherwise walk each of their pids, references and atoms on every full pass.
        if type(self.node) is Atom and type(self.id) is int and type(self.serial) is int:
            untrack(self)

    def __repr__(self) -> str:
        return f"Pid({self.node.name!r}, {self.id}, {self.serial}, {self.creation})"


@dataclass(frozen=True, slots=True, eq=False)
class Reference(Identifier):
    """An Erlang reference (NEWER_REFERENCE_EXT); ``ids`` has up to 5 32-bit words."""

    node: Atom
    creation: int
    ids: tuple[int, ...]

    def __post_init__(self) -> None:
        ids = self.ids
        if type(self.node) is Atom and type(ids) is tuple and all(type(i) is int for i in ids):
            untrack(self)

    def __repr__(self) -> str:
        return f"Reference({self.node.name!r}, {self.creation}, {self.ids})"


@dataclass(frozen=True, slots=True, eq=False)
class Port(Identifier):
    """An Erlang port identifier: NEW_PORT_EXT, or V4_PORT_EXT when ``id`` exceeds 28 bits."""

    node: Atom
    id: int
    creation: int

    def __repr__(self) -> str:
        return f"Port({self.node.name!r}, {self.id}, {self.creation})"


@dataclass(frozen=True, slots=True)
class BitString:
    """A bitstring: ``data`` whose last byte holds only ``bits`` (1..8) used high bits.

    The unused low bits of the last byte are cleared on construction.  ``bits == 8`` is a
    whole binary; it encodes as BINARY_EXT, exactly as Erlang does.
    """

    data: bytes
    bits: int

    def __post_init__(self) -> None:
        data, bits = self.data, self.bits
        if not isinstance(data, bytes | bytearray | memoryview):
            raise EncodeError("BitString data must be bytes")
        data = bytes(data)
        if type(bits) is not int or not 1 <= bits <= 8:
            raise EncodeError(f"BitString bits must be 1..8, not {bits!r}")
        if not data:
            raise EncodeError("BitString data must not be empty")
        if bits != 8:
            last = data[-1] & ((0xFF << (8 - bits)) & 0xFF)
            if last != data[-1]:
                data = data[:-1] + bytes((last,))
        object.__setattr__(self, "data", data)

    @property
    def bit_size(self) -> int:
        return (len(self.data) - 1) * 8 + self.bits


@dataclass(frozen=True, slots=True)
class ImproperList:
    """``[I1, I2, ... | Tail]`` with ``Tail`` not a list."""

    items: tuple[Any, ...]
    tail: Any


@dataclass(frozen=True, slots=True)
class ExportFun:
    """``fun Module:Function/Arity`` (EXPORT_EXT)."""

    module: Atom
    function: Atom
    arity: int


@dataclass(frozen=True, slots=True)
class Fun:
    """A local fun (NEW_FUN_EXT), opaque.

    ``raw`` is its exact encoding (from the tag byte 112 on, without the 131 version byte);
    it is what is encoded back, and what equality and hashing use.  The other fields are
    decoded from it for information.
    """

    raw: bytes
    module: Atom = field(compare=False)
    arity: int = field(compare=False)
    uniq: bytes = field(compare=False, repr=False)
    index: int = field(compare=False)
    old_index: int = field(compare=False, repr=False)
    old_uniq: int = field(compare=False, repr=False)
    pid: Pid = field(compare=False)
    free_vars: tuple[Any, ...] = field(compare=False, repr=False)


@final
class FrozenList(Sequence[Any]):
    """A hashable, immutable list; encodes as an Erlang list.  Equal only to a FrozenList."""

    __slots__ = ("_hash", "_items")
    _items: tuple[Any, ...]
    _hash: int | None

    def __init__(self, items: Iterable[Any] = ()) -> None:
        object.__setattr__(self, "_items", tuple(items))
        object.__setattr__(self, "_hash", None)

    def __setattr__(self, key: str, value: Any) -> NoReturn:
        raise AttributeError("FrozenList is immutable")

    @overload
    def __getitem__(self, i: int) -> Any: ...
    @overload
    def __getitem__(self, i: slice) -> FrozenList: ...
    def __getitem__(self, i: int | slice) -> Any:
        if isinstance(i, slice):
            return FrozenList(self._items[i])
        return self._items[i]

    def __len__(self) -> int:
        return len(self._items)

    def __iter__(self) -> Iterator[Any]:
        return iter(self._items)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, FrozenList):
            return self._items == other._items
        return NotImplemented

    def __hash__(self) -> int:
        h = self._hash
        if h is None:
            h = hash(("FrozenList", self._items))
            object.__setattr__(self, "_hash", h)
        return h

    def __repr__(self) -> str:
        return f"FrozenList({list(self._items)!r})"

    def __reduce__(self) -> tuple[type[FrozenList], tuple[tuple[Any, ...]]]:
        return (FrozenList, (self._items,))

    def to_list(self) -> list[Any]:
        return list(self._items)


@final
class FrozenMap(Mapping[Any, Any]):
    """A hashable, immutable map; encodes as an Erlang map.  Equal only to a FrozenMap."""

    __slots__ = ("_d", "_hash")
    _d: dict[Any, Any]
    _hash: int | None

    def __init__(self, items: Mapping[Any, Any] | Iterable[tuple[Any, Any]] = ()) -> None:
        object.__setattr__(self, "_d", dict(items))
        object.__setattr__(self, "_hash", None)

    def __setattr__(self, key: str, value: Any) -> NoReturn:
        raise AttributeError("FrozenMap is immutable")

    def __getitem__(self, key: Any) -> Any:
        return self._d[key]

    def __len__(self) -> int:
        return len(self._d)

    def __iter__(self) -> Iterator[Any]:
        return iter(self._d)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, FrozenMap):
            return self._d == other._d
        return NotImplemented

    def __hash__(self) -> int:
        h = self._hash
        if h is None:
            h = hash(("FrozenMap", frozenset(self._d.items())))
            object.__setattr__(self, "_hash", h)
        return h

    def __repr__(self) -> str:
        return f"FrozenMap({self._d!r})"

    def __reduce__(self) -> tuple[type[FrozenMap], tuple[dict[Any, Any]]]:
        return (FrozenMap, (self._d,))

    def to_dict(self) -> dict[Any, Any]:
        return dict(self._d)


_pack_d = struct.Struct(">d").pack


def _exact_form(t: Any) -> Any:
    """A hashable form of ``t`` under which two terms are equal iff Erlang's ``=:=`` says so."""
    c = type(t)
    if c is bool:
        return ("a", "true" if t else "false")
    if c is Atom:
        return ("a", t.name)
    if t is None:
        return ("a", "undefined")
    if isinstance(t, int):
        return ("i", int(t))
    if isinstance(t, float):
        return ("f", _pack_d(t))
    if isinstance(t, str):
        return ("b", t.encode("utf-8", "surrogatepass"))
    if isinstance(t, bytes | bytearray | memoryview):
        return ("b", bytes(t))
    if c is BitString and t.bits == 8:
        return ("b", t.data)
    if isinstance(t, tuple):
        return ("t", tuple(_exact_form(x) for x in t))
    if isinstance(t, list | FrozenList):
        if t and all(type(x) is int for x in t):
            return ("l", tuple(t))
        return ("l", tuple(_exact_form(x) for x in t))
    if c is ImproperList:
        return ("l", tuple(_exact_form(x) for x in t.items), _exact_form(t.tail))
    if isinstance(t, dict | FrozenMap):
        return ("m", frozenset((_exact_form(k), _exact_form(v)) for k, v in t.items()))
    if c is ExactKey:
        return _exact_form(t.term)
    return ("o", t)


@final
class ExactKey:
    """A map key compared with Erlang's exact equality (``=:=``) instead of Python's ``==``.

    Python says ``1 == 1.0 == True`` and ``(1,) == (1.0,)``; Erlang's ``=:=`` does not.  When
    a decoded map has two keys that Python equality would merge, both are wrapped in
    ``ExactKey`` so that nothing is lost.  ``.term`` is the key; it encodes as the key.
    """

    __slots__ = ("_form", "_hash", "term")
    term: Any
    _form: Any
    _hash: int

    def __init__(self, term: Any) -> None:
        form = _exact_form(term)
        object.__setattr__(self, "term", term)
        object.__setattr__(self, "_form", form)
        object.__setattr__(self, "_hash", hash(form))

    def __setattr__(self, key: str, value: Any) -> NoReturn:
        raise AttributeError("ExactKey is immutable")

    def __eq__(self, other: object) -> bool:
        if isinstance(other, ExactKey):
            return bool(self._form == other._form)
        return NotImplemented

    def __hash__(self) -> int:
        return self._hash

    def __repr__(self) -> str:
        return f"ExactKey({self.term!r})"

    def __reduce__(self) -> tuple[type[ExactKey], tuple[Any]]:
        return (ExactKey, (self.term,))


# ----------------------------------------------------------------------------------------------
# Fast construction for the decoder.  A frozen dataclass's __init__ costs about 1 us in
# CPython 3.11; building a plain slotted twin and switching its class gives the very same
# frozen object 3x faster.  If the layouts ever stop matching, the plain constructors are used.


class _PidTwin(Identifier):
    __slots__ = ("creation", "id", "node", "serial")

    def __init__(self, node: Atom, id: int, serial: int, creation: int) -> None:
        self.node = node
        self.id = id
        self.serial = serial
        self.creation = creation


class _RefTwin(Identifier):
    __slots__ = ("creation", "ids", "node")

    def __init__(self, node: Atom, creation: int, ids: tuple[int, ...]) -> None:
        self.node = node
        self.creation = creation
        self.ids = ids


class _PortTwin(Identifier):
    __slots__ = ("creation", "id", "node")

    def __init__(self, node: Atom, id: int, creation: int) -> None:
        self.node = node
        self.id = id
        self.creation = creation


def _fast_pid(node: Atom, id: int, serial: int, creation: int) -> Pid:
    p: Any = _PidTwin(node, id, serial, creation)
    p.__class__ = Pid
    return p  # type: ignore[no-any-return]


def _fast_ref(node: Atom, creation: int, ids: tuple[int, ...]) -> Reference:
    r: Any = _RefTwin(node, creation, ids)
    r.__class__ = Reference
    return r  # type: ignore[no-any-return]


def _fast_port(node: Atom, id: int, creation: int) -> Port:
    p: Any = _PortTwin(node, id, creation)
    p.__class__ = Port
    return p  # type: ignore[no-any-return]


make_pid: Any = Pid
make_ref: Any = Reference
make_port: Any = Port
try:
    _n = Atom("nonode@nohost")
    if (
        _fast_pid(_n, 1, 2, 3) == Pid(_n, 1, 2, 3)
        and _fast_ref(_n, 1, (2,)) == Reference(_n, 1, (2,))
        and _fast_port(_n, 1, 2) == Port(_n, 1, 2)
    ):
        make_pid, make_ref, make_port = _fast_pid, _fast_ref, _fast_port
except TypeError:  # pragma: no cover - layouts differ on this Python
    pass


# -- building decoded terms -----------------------------------------------------------


def improper(items: list[Any], tail: Any) -> Any:
    """``items`` followed by ``tail``: a list, or an :class:`ImproperList` (flattened)."""
    if type(tail) is list:
        return items + tail
    if type(tail) is ImproperList:
        return ImproperList((*items, *tail.items), tail.tail)
    if not items:
        return tail
    return ImproperList(tuple(items), tail)


def freeze(t: Any) -> Any:
    """A hashable equivalent of a decoded term (lists and maps inside become frozen)."""
    c = type(t)
    if c is list:
        return FrozenList([freeze(x) for x in t])
    if c is dict:
        return FrozenMap({k: freeze(v) for k, v in t.items()})
    if c is tuple:
        return tuple([freeze(x) for x in t])
    if c is ImproperList:
        return ImproperList(tuple([freeze(x) for x in t.items]), freeze(t.tail))
    return t


def disambiguate(pairs: list[tuple[Any, Any]]) -> dict[Any, Any]:
    """A map from its decoded pairs, with :class:`ExactKey` where Python merges two keys."""
    counts: dict[Any, int] = {}
    frozen = []
    for k, v in pairs:
        try:
            hash(k)
        except TypeError:
            k = freeze(k)
        frozen.append((k, v))
        counts[k] = counts.get(k, 0) + 1
    d: dict[Any, Any] = {}
    for k, v in frozen:
        key = ExactKey(k) if counts[k] > 1 else k
        if key in d:
            raise DecodeError("map has duplicate keys")
        d[key] = v
    return d
