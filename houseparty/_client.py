"""The Python API: ``from houseparty import HouseParty``.

Both clients join the cluster as a hidden node and call the erl API (module ``houseparty``)
on a sidecar, so Python users get exactly what iex users get, as plain Python values:
names are ``str``, ``dump()`` is a ``dict`` of sorted lists, log times are ``datetime``
in UTC, and ``where_is`` gives ``None`` for nowhere. Refusals raise (see
:mod:`houseparty._errors`): :class:`DestinationFull`, :class:`UnknownRoom`,
:class:`BadArgument`, and :class:`Unavailable` when a worker did not answer in time;
an unreachable cluster raises :class:`ConnectError` (:class:`CookieRefused` for a wrong
cookie), a cluster that does not answer in time :class:`Timeout`, a client not connected
:class:`NotConnected`. A client takes one sidecar or a list of seeds, and carries on
through the next seed when its sidecar goes away.

::

    with HouseParty("sidecar1@127.0.0.1", cookie="secret") as hp:
        hp.add_rooms(["den", "kitchen"])
        hp.walk_into("kitchen", ["kid", "bilal"])
        hp.dump()                      # {"den": [], "kitchen": ["bilal", "kid"]}

    async with AsyncHouseParty("sidecar1@127.0.0.1", cookie="secret") as hp:
        await hp.where_is("kid")       # "kitchen"
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

from houseparty._connection import CALL_TIMEOUT_S, AsyncClient, SyncClient, TlsSettings
from houseparty._errors import (
    ApiError,
    BadArgument,
    DestinationFull,
    TooManyNames,
    Unavailable,
    UnknownRoom,
)
from py_nodes._terms import Atom

__all__ = ["MAX_NAME", "ROOM_MAX_LIMIT", "AsyncHouseParty", "HouseParty", "from_term"]

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


# Rooms and people are atoms in the cluster, and an atom holds at most 255 characters. They
# go as UTF-8 binaries, which the sidecar makes atoms of only for names that exist or that
# the call creates, so that no input of a client can fill its atom table.
MAX_NAME = 255

# The largest max a room takes (houseparty.erl's MAX_LIMIT): a room's people cross the
# network whole in its state copies, handoffs and listings.
ROOM_MAX_LIMIT = 10_000


def _name(value: Any, what: str) -> bytes:
    if not isinstance(value, str) or not value:
        raise BadArgument(value, f"{what} must be a non-empty str, not {value!r}")
    if len(value) > MAX_NAME:
        raise BadArgument(
            value, f"{what} has at most {MAX_NAME} characters, not {len(value)}: {value[:20]!r}..."
        )
    try:
        return value.encode()
    except UnicodeEncodeError:  # a lone surrogate: no UTF-8 for the wire
        raise BadArgument(value, f"{what} must be text UTF-8 can carry, not {value!r}") from None


def _names(values: str | Iterable[str], what: str) -> list[bytes]:
    if isinstance(values, str):
        return [_name(values, what)]
    if not isinstance(values, Iterable):
        raise BadArgument(values, f"expected {what} or a list of them, not {values!r}")
    return [_name(v, what) for v in values]


def _max(value: Any) -> int:
    if type(value) is not int or value < 1:
        raise BadArgument(value, f"max must be an integer >= 1, not {value!r}")
    if value > ROOM_MAX_LIMIT:
        raise BadArgument(value, _too_large(value, ROOM_MAX_LIMIT))
    return value


def _too_large(value: Any, limit: Any) -> str:
    return f"max must be at most {limit} (a room holds at most that many people), not {value}"


class _R:
    """The atoms of the erl API's refusals."""

    destination_full = Atom("destination_full")
    room = Atom("room")
    refused = Atom("refused")
    walked_in = Atom("walked_in")
    unknown_room = Atom("unknown_room")
    bad_name = Atom("bad_name")
    bad_max = Atom("bad_max")
    max_too_large = Atom("max_too_large")
    too_many_people = Atom("too_many_people")
    too_many_names = Atom("too_many_names")
    unavailable = Atom("unavailable")


def _raise_for(reason: Any) -> None:
    match reason:
        case _R.destination_full:
            raise DestinationFull(reason, "the room is full")
        case (_R.destination_full, {_R.room: room, _R.refused: refused, _R.walked_in: walked}):
            raise _full(reason, from_term(room), from_term(refused), from_term(walked))
        case (_R.unknown_room, room):
            raise UnknownRoom(reason, f"unknown room: {_text(room)}")
        case (_R.bad_name, Atom() as name):
            # nil, undefined, true and false: atoms the API keeps for itself.
            raise BadArgument(reason, f"not a name: {name.name!r}")
        case (_R.bad_name, name):
            raise BadArgument(reason, f"not a name: {_text(name)!r}")
        case (_R.bad_max, max_people):
            raise BadArgument(reason, f"max must be an integer >= 1, not {from_term(max_people)!r}")
        case (_R.max_too_large, max_people, limit):
            raise BadArgument(reason, _too_large(max_people, limit))
        case (_R.too_many_people, count):
            raise BadArgument(reason, f"the room holds {count} people, more than that max")
        case _R.too_many_names:
            raise TooManyNames(
                reason, "the cluster holds as many names as it can: no new room or person"
            )
        case (_R.unavailable, why):
            raise Unavailable(reason, f"the cluster could not answer in time: {from_term(why)!r}")
    raise ApiError(reason, f"the cluster refused: {from_term(reason)!r}")


def _text(name: Any) -> Any:
    """A name the API gave back as it came: a binary from this client, an atom otherwise."""
    return name.decode(errors="replace") if isinstance(name, bytes) else from_term(name)


def _full(reason: Any, room: str, refused: str, walked_in: list[str]) -> DestinationFull:
    before = f"; {_and(walked_in)} walked in before" if walked_in else ""
    return DestinationFull(
        reason,
        f"{room} is full: {refused} was refused{before}",
        room=room,
        refused=refused,
        walked_in=walked_in,
    )


def _and(names: list[str]) -> str:
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"


class AsyncHouseParty(AsyncClient):
    """The asyncio client. ``node`` is a sidecar of the cluster, or a list of them to use
    in turn (seeds); ``client_host`` names and binds this client's node on that address,
    for a client whose address differs from the sidecars' host; ``tls`` (a folder holding
    ``tls.crt``, ``tls.key`` and ``ca.crt``, or a :class:`~py_nodes.TlsConfig`) connects
    over TLS distribution, to a cluster that runs it."""

    async def _api(self, function: str, *args: Any) -> Any:
        # Each call of the API gives the same result when it runs twice (adding rooms and
        # setting a max are idempotent, a walk into the room one stands in changes
        # nothing, the rest only read), so a sidecar lost under it is no reason to fail.
        result = await self.rpc("houseparty", function, list(args), retry_elsewhere=True)
        if type(result) is tuple and len(result) == 2 and result[0] is _ERROR:
            _raise_for(result[1])
        return result

    async def add_rooms(self, rooms: str | Iterable[str], *, max: int | None = None) -> None:
        """Create the rooms that do not exist yet; rooms that exist are left as they are,
        so calling it twice is harmless.

        ``rooms`` is one name or an iterable of names. ``max`` is how many people each
        new room holds at most (10 when not given). Raises :class:`BadArgument` for an
        empty or non-``str`` name or a ``max`` below 1 or above ``ROOM_MAX_LIMIT``
        (10,000), and nothing is created then."""
        names = _names(rooms, "a room")
        if max is not None:
            await self._api("add_rooms", names, {Atom("max"): _max(max)})
        else:
            await self._api("add_rooms", names)

    async def set_room_max(self, room: str, max: int) -> None:
        """Set how many people ``room`` holds at most.

        Raises :class:`UnknownRoom`, or :class:`BadArgument` for a ``max`` below 1,
        above ``ROOM_MAX_LIMIT`` (10,000) or below the number of people already in the
        room."""
        await self._api("set_room_max", _name(room, "a room"), _max(max))

    async def walk_into(self, room: str, people: str | Iterable[str]) -> None:
        """Walk each person, in order, into ``room`` and out of the room they stood in.

        ``people`` is one name or an iterable of names; a person is created on first use.
        The walk stops at the first refusal: :class:`DestinationFull` when the room is
        full (that person is not moved and nothing is logged), whose ``.room``,
        ``.refused`` and ``.walked_in`` (those of this call who walked in before, in
        order) its message names too: ``"bathroom is full: bilal was refused; sidney
        walked in before"``; :class:`UnknownRoom`. Walking into the room one stands in
        changes nothing."""
        await self._api(
            "walk_into",
            _name(room, "a room"),
            _names(people, "a person"),
            {Atom("detail"): True},
        )

    async def dump(self) -> dict[str, list[str]]:
        """Every room with the people in it: ``{"den": [], "kitchen": ["bilal"]}``. Raises
        :class:`Unavailable` when a room could not be asked in time (its pod lost a moment
        ago, say), rather than answer without it."""
        result: dict[str, list[str]] = from_term(await self._api("dump"))
        return result

    async def who_is_in(self, room: str) -> list[str]:
        """The people in ``room``, sorted. Raises :class:`UnknownRoom`."""
        result: list[str] = from_term(await self._api("who_is_in", _name(room, "a room")))
        return result

    async def where_is(self, person: str) -> str | None:
        """The room ``person`` stands in; None for a person who stands nowhere or was
        never seen."""
        result: str | None = from_term(await self._api("where_is", _name(person, "a person")))
        return result

    async def get_person_room_log(self, person: str) -> list[tuple[datetime, str]]:
        """The rooms ``person`` walked into, newest first, each with the time of the walk
        as an aware :class:`~datetime.datetime` in UTC. Empty for an unknown person."""
        log = await self._api("get_person_room_log", _name(person, "a person"))
        return [(from_term(dt), from_term(room)) for dt, room in log]


class HouseParty(SyncClient):
    """The synchronous client: an :class:`AsyncHouseParty` on a private event loop thread."""

    _client: AsyncHouseParty

    def __init__(
        self,
        node: str | Sequence[str],
        cookie: str,
        *,
        timeout: float = CALL_TIMEOUT_S,
        client_host: str | None = None,
        tls: TlsSettings | None = None,
    ) -> None:
        self._client = AsyncHouseParty(
            node, cookie, timeout=timeout, client_host=client_host, tls=tls
        )
        super().__init__(self._client)

    def add_rooms(self, rooms: str | Iterable[str], *, max: int | None = None) -> None:
        """Like :meth:`AsyncHouseParty.add_rooms`, blocking until it is done."""
        self._run(self._client.add_rooms(rooms, max=max))

    def set_room_max(self, room: str, max: int) -> None:
        """Like :meth:`AsyncHouseParty.set_room_max`, blocking until it is done."""
        self._run(self._client.set_room_max(room, max))

    def walk_into(self, room: str, people: str | Iterable[str]) -> None:
        """Like :meth:`AsyncHouseParty.walk_into`, blocking until it is done."""
        self._run(self._client.walk_into(room, people))

    def dump(self) -> dict[str, list[str]]:
        """Like :meth:`AsyncHouseParty.dump`, blocking until it is done."""
        return self._run(self._client.dump())

    def who_is_in(self, room: str) -> list[str]:
        """Like :meth:`AsyncHouseParty.who_is_in`, blocking until it is done."""
        return self._run(self._client.who_is_in(room))

    def where_is(self, person: str) -> str | None:
        """Like :meth:`AsyncHouseParty.where_is`, blocking until it is done."""
        return self._run(self._client.where_is(person))

    def get_person_room_log(self, person: str) -> list[tuple[datetime, str]]:
        """Like :meth:`AsyncHouseParty.get_person_room_log`, blocking until it is done."""
        return self._run(self._client.get_person_room_log(person))
