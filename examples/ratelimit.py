"""A rate limiter per key: one token bucket worker per key, placed, moved and restarted by
the cluster.

A key (``"login:alice"``, ``"api:tenant-42"``) is registered once with its bucket's
``capacity`` (the burst it lets through) and refill rate ``per_second``; any Python
client, Erlang or Elixir process then asks the bucket whether a request may pass. The
bucket lives on its key's owner pod: when that pod drains, the bucket moves with its
tokens and counts; when a pod is lost, its buckets come back on the other pods with the
tokens and counts of their last answer, which waits until they are held by another pod.

``examples/README.md`` shows how to run it on a local cluster
(``houseparty up --worker examples.ratelimit:Bucket``) and call it from Python, erl and
iex.

Requests are binaries (``"allow"`` from Python and Elixir, ``<<"allow">>`` from Erlang),
sent as calls; ``allow`` may be cast too, to spend without waiting for the answer:

- ``"allow"`` or ``("allow", cost)``: ``true`` and the tokens are spent, or ``false``;
  ``{error, {bad_cost, Cost}}`` for a cost that is not a whole number from 1 to capacity
  (a cast with such a cost is dropped).
- ``"stats"``: ``#{tokens, capacity, per_second, allowed, denied}``; ``tokens`` counts
  whole tokens, ``allowed`` and ``denied`` the answers given since the bucket started.
- ``"reset"``: ``ok``, the bucket is full again (also as a message: ``publish`` it to a
  group to refill all its buckets).
- anything else: ``{error, {unknown_request, Request}}``.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

from houseparty import Worker
from py_nodes import Atom, Reply

__all__ = ["Bucket", "BucketStats"]


class _A:
    """The atoms of the bucket's answers and of its handed-over state."""

    ok = Atom("ok")
    error = Atom("error")
    bad_cost = Atom("bad_cost")
    unknown_request = Atom("unknown_request")
    tokens = Atom("tokens")
    capacity = Atom("capacity")
    per_second = Atom("per_second")
    allowed = Atom("allowed")
    denied = Atom("denied")
    at = Atom("at")


def _positive_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def _count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


class Bucket(Worker):
    """A token bucket: holds up to ``capacity`` tokens, refilled at ``per_second`` tokens a
    second; a request passes when it can spend its cost in tokens.

    Registered as kind ``bucket`` with ``(capacity, per_second)`` as its args, ``(10, 1.0)``
    when none are given. A drain hands the current tokens and counts to the copy on the
    new pod, and every answer waits until they are held by another pod, so a bucket
    restarted after its pod's loss has them too; the refill goes on across the move, by
    the wall clock time between the two. Two copies met after a netsplit keep the
    lower token count, so the split lets no more through than either side allowed.
    """

    __slots__ = ("allowed", "capacity", "denied", "per_second", "refilled_at", "tokens")

    kind = "bucket"

    capacity: int
    per_second: float
    tokens: float
    refilled_at: float  # time.monotonic() of the last refill
    allowed: int
    denied: int

    def setup(self, capacity: int = 10, per_second: float = 1.0) -> None:
        """Start full. Raises ValueError, which refuses the registration, for a
        ``capacity`` that is not a whole number >= 1 or a ``per_second`` that is not a
        positive number."""
        if not _positive_int(capacity):
            raise ValueError(f"capacity must be a whole number of tokens >= 1, not {capacity!r}")
        if not (_number(per_second) and per_second > 0):
            raise ValueError(f"per_second must be a positive number, not {per_second!r}")
        self.capacity = capacity
        self.per_second = float(per_second)
        self.tokens = float(capacity)
        self.refilled_at = time.monotonic()
        self.allowed = 0
        self.denied = 0

    # -- requests ------------------------------------------------------------------------

    def on_call(self, request: Any, from_: tuple[Any, Any]) -> Reply:
        match request:
            case b"allow":
                return Reply(self.spend(1))
            case (b"allow", cost):
                if not self.can_cost(cost):
                    return Reply((_A.error, (_A.bad_cost, cost)))
                return Reply(self.spend(cost))
            case b"stats":
                return Reply(self.stats())
            case b"reset":
                self.fill()
                return Reply(_A.ok)
        return Reply((_A.error, (_A.unknown_request, request)))

    def on_cast(self, request: Any) -> None:
        match request:
            case b"allow":
                self.spend(1)
            case (b"allow", cost) if self.can_cost(cost):
                self.spend(cost)

    def on_info(self, message: Any) -> None:
        if message == b"reset":
            self.fill()

    def can_cost(self, cost: Any) -> bool:
        """Whether ``cost`` is a cost this bucket can ever let through."""
        return _positive_int(cost) and cost <= self.capacity

    def spend(self, cost: int) -> bool:
        """Take ``cost`` tokens if the bucket holds them; whether it did."""
        self.refill()
        # Either way the counts change: the answer waits until another pod holds them.
        self.changed()
        if self.tokens >= cost:
            self.tokens -= cost
            self.allowed += 1
            return True
        self.denied += 1
        return False

    def refill(self) -> None:
        """Add the tokens earned since the last refill, up to ``capacity``."""
        now = time.monotonic()
        earned = (now - self.refilled_at) * self.per_second
        self.tokens = min(float(self.capacity), self.tokens + earned)
        self.refilled_at = now

    def fill(self) -> None:
        """Make the bucket full."""
        self.tokens = float(self.capacity)
        self.refilled_at = time.monotonic()
        self.changed()

    def stats(self) -> dict[Atom, int | float]:
        """The answer to ``"stats"``."""
        self.refill()
        return {
            _A.tokens: math.floor(self.tokens),
            _A.capacity: self.capacity,
            _A.per_second: self.per_second,
            _A.allowed: self.allowed,
            _A.denied: self.denied,
        }

    # -- moving ----------------------------------------------------------------------------

    def state_term(self) -> dict[Atom, int | float]:
        # The monotonic clock is the pod's own: the new pod counts the refill from the
        # wall clock time the state was taken at.
        self.refill()
        return {
            _A.tokens: self.tokens,
            _A.allowed: self.allowed,
            _A.denied: self.denied,
            _A.at: time.time(),
        }

    def end_handoff(self, state: Any) -> None:
        tokens, allowed, denied, at = _handed_over(state)
        self.tokens = min(float(self.capacity), tokens)
        self.allowed, self.denied = allowed, denied
        # Refill for the time the move took (none if the clocks disagree backwards).
        self.refilled_at = time.monotonic() - max(0.0, time.time() - at)
        self.refill()

    def resolve_conflict(self, state: Any) -> None:
        tokens, allowed, denied, _at = _handed_over(state)
        self.refill()
        self.tokens = min(self.tokens, tokens)
        self.allowed = max(self.allowed, allowed)
        self.denied = max(self.denied, denied)


def _handed_over(state: Any) -> tuple[float, int, int, float]:
    """The fields of a state that :meth:`Bucket.state_term` gave; ValueError otherwise."""
    match state:
        case {_A.tokens: tokens, _A.allowed: allowed, _A.denied: denied, _A.at: at} if (
            _number(tokens) and tokens >= 0 and _count(allowed) and _count(denied) and _number(at)
        ):
            return float(tokens), allowed, denied, float(at)
    raise ValueError(f"not a bucket's state: {state!r}")


@dataclass(frozen=True, slots=True)
class BucketStats:
    """A bucket's answer to ``"stats"``, for Python callers."""

    tokens: int
    capacity: int
    per_second: float
    allowed: int
    denied: int

    @classmethod
    def from_term(cls, term: Any) -> BucketStats:
        """Read the reply of ``workers.call(key, "stats")``; ValueError if it is not one."""
        match term:
            case {
                _A.tokens: int(tokens),
                _A.capacity: int(capacity),
                _A.per_second: float(per_second),
                _A.allowed: int(allowed),
                _A.denied: int(denied),
            }:
                return cls(tokens, capacity, per_second, allowed, denied)
        raise ValueError(f"not a bucket's stats: {term!r}")
