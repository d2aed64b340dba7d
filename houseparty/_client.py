"""The Python API: ``from houseparty import HouseParty``.

Both clients join the cluster as a hidden node and call the erl API (module ``houseparty``)
on a sidecar, so Python users get exactly what iex users get, as plain Python values:
names are ``str``, ``dump()`` is a ``dict`` of sorted lists, log times are ``datetime``
in UTC, and ``where_is`` gives ``None`` for nowhere. Refusals raise (see
:mod:`houseparty._errors`): :class:`DestinationFull`, :class:`UnknownRoom`,
:class:`BadArgument`; an unreachable cluster raises :class:`ConnectError`.

::

    with HouseParty("sidecar1@127.0.0.1", cookie="secret") as hp:
        hp.add_rooms(["den", "kitchen"])
        hp.walk_into("kitchen", ["kid", "bilal"])
        hp.dump()                      # {"den": [], "kitchen": ["bilal", "kid"]}

    async with AsyncHouseParty("sidecar1@127.0.0.1", cookie="secret") as hp:
        await hp.where_is("kid")       # "kitchen"
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from houseparty._connection import CALL_TIMEOUT_S, AsyncClient, SyncClient
from houseparty._errors import ApiError, BadArgument, DestinationFull, Unavailable, UnknownRoom
from py_nodes._terms import Atom

__all__ = ["AsyncHouseParty", "HouseParty", "from_term"]

_ERROR = Atom("error")
_NIL = Atom("nil")
_STRUCT = Atom("__struct__")
_DATETIME = Atom("Elixir.DateTime")


def from_term(term: Any) -> Any:
    """Erlang result terms as plain Python values: atoms to str, DateTime to datetime."""
    if isinstance(term, Atom):
        return None if term is _NIL else term.name
    if isinstance(term, list):
        return [from_term(t) for t in term]
    if isinstance(term, tuple):
        return tuple(from_term(t) for t in term)
    if isinstance(term, dict):
        if term.get(_STRUCT) is _DATETIME:
            micros, _precision = term[Atom("microsecond")]
            year, month, day, hour, minute, second = (
                term[Atom(k)] for k in ("year", "month", "day", "hour", "minute", "second")
            )
            return datetime(year, month, day, hour, minute, second, micros, tzinfo=UTC)
        return {from_term(k): from_term(v) for k, v in term.items()}
    return term


def _name(value: Any, what: str) -> Atom:
    if not isinstance(value, str) or not value:
        raise BadArgument(value, f"{what} must be a non-empty str, not {value!r}")
    return Atom(value)


def _names(values: str | Iterable[str], what: str) -> list[Atom]:
    if isinstance(values, str):
        return [_name(values, what)]
    if not isinstance(values, Iterable):
        raise BadArgument(values, f"expected {what} or a list of them, not {values!r}")
    return [_name(v, what) for v in values]


def _max(value: Any) -> int:
    if type(value) is not int or value < 1:
        raise BadArgument(value, f"max must be an integer >= 1, not {value!r}")
    return value


def _raise_for(reason: Any) -> None:
    if reason is Atom("destination_full"):
        raise DestinationFull(reason, "the room is full")
    if type(reason) is tuple and len(reason) == 2:
        kind, detail = reason
        if kind is Atom("unknown_room"):
            raise UnknownRoom(reason, f"unknown room: {from_term(detail)}")
        if kind is Atom("bad_name"):
            raise BadArgument(reason, f"not a name: {from_term(detail)!r}")
        if kind is Atom("bad_max"):
            raise BadArgument(reason, f"max must be an integer >= 1, not {from_term(detail)!r}")
        if kind is Atom("unavailable"):
            raise Unavailable(reason, f"could not be asked in time: {from_term(detail)!r}")
        if kind is Atom("too_many_people"):
            raise BadArgument(reason, f"the room holds {detail} people, more than that max")
    raise ApiError(reason, f"the cluster refused: {from_term(reason)!r}")


class AsyncHouseParty(AsyncClient):
    """The asyncio client. ``node`` is any sidecar of the cluster; ``client_host`` names
    and binds this client's node on that address, for a client whose address differs
    from the sidecar's host."""

    async def _api(self, function: str, *args: Any) -> Any:
        result = await self.rpc("houseparty", function, list(args))
        if type(result) is tuple and len(result) == 2 and result[0] is _ERROR:
            _raise_for(result[1])
        return result

    async def add_rooms(self, rooms: str | Iterable[str], *, max: int | None = None) -> None:
        names = _names(rooms, "a room")
        if max is not None:
            await self._api("add_rooms", names, {Atom("max"): _max(max)})
        else:
            await self._api("add_rooms", names)

    async def set_room_max(self, room: str, max: int) -> None:
        await self._api("set_room_max", _name(room, "a room"), _max(max))

    async def walk_into(self, room: str, people: str | Iterable[str]) -> None:
        await self._api("walk_into", _name(room, "a room"), _names(people, "a person"))

    async def dump(self) -> dict[str, list[str]]:
        result: dict[str, list[str]] = from_term(await self._api("dump"))
        return result

    async def who_is_in(self, room: str) -> list[str]:
        result: list[str] = from_term(await self._api("who_is_in", _name(room, "a room")))
        return result

    async def where_is(self, person: str) -> str | None:
        result: str | None = from_term(await self._api("where_is", _name(person, "a person")))
        return result

    async def get_person_room_log(self, person: str) -> list[tuple[datetime, str]]:
        log = await self._api("get_person_room_log", _name(person, "a person"))
        return [(from_term(dt), from_term(room)) for dt, room in log]


class HouseParty(SyncClient):
    """The synchronous client: an :class:`AsyncHouseParty` on a private event loop thread."""

    _client: AsyncHouseParty

    def __init__(
        self,
        node: str,
        cookie: str,
        *,
        timeout: float = CALL_TIMEOUT_S,
        client_host: str | None = None,
    ) -> None:
        self._client = AsyncHouseParty(node, cookie, timeout=timeout, client_host=client_host)
        super().__init__(self._client)

    def add_rooms(self, rooms: str | Iterable[str], *, max: int | None = None) -> None:
        self._run(self._client.add_rooms(rooms, max=max))

    def set_room_max(self, room: str, max: int) -> None:
        self._run(self._client.set_room_max(room, max))

    def walk_into(self, room: str, people: str | Iterable[str]) -> None:
        self._run(self._client.walk_into(room, people))

    def dump(self) -> dict[str, list[str]]:
        return self._run(self._client.dump())

    def who_is_in(self, room: str) -> list[str]:
        return self._run(self._client.who_is_in(room))

    def where_is(self, person: str) -> str | None:
        return self._run(self._client.where_is(person))

    def get_person_room_log(self, person: str) -> list[tuple[datetime, str]]:
        return self._run(self._client.get_person_room_log(person))
