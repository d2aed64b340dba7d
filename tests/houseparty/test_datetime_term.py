"""The DateTimes of a person's room log, made by the Python person (``room_log``) or by the
sidecar (``hp_time:from_micros/1``, for the API): the same date and time as Erlang's own
calendar gives for the same microseconds, and the same map from both."""

from __future__ import annotations

import random
import secrets

from houseparty._house import datetime_term
from houseparty.cli._localcluster import sidecar_ebin
from py_nodes._terms import Atom
from tests.py_nodes.conftest import ErlNode

FIELDS = tuple(Atom(f) for f in ("year", "month", "day", "hour", "minute", "second"))
# From 0001-01-01 to 9999-12-31, the range of Elixir's and Python's calendars.
FIRST = -62_135_596_800_000_000
LAST = 253_402_300_799_999_999


def test_datetime_terms_agree_with_erlangs_calendar() -> None:
    rng = random.Random(7)
    edges = [FIRST, LAST, 0, -1, 1, 999_999, 1_000_000, 86_399_999_999, 86_400_000_000]
    now = 1_796_000_000_000_000
    micros = edges + [rng.randint(FIRST, LAST) for _ in range(2_000)]
    micros += [now + rng.randint(-(10**11), 10**11) for _ in range(2_000)]
    erl = ErlNode("c_" + secrets.token_hex(8), extra=("-pa", str(sidecar_ebin())))
    try:
        listed = ",".join(map(str, micros))
        expected = erl.eval_sync(
            f"[calendar:system_time_to_universal_time(M, microsecond) || M <- [{listed}]]"
        )
        on_sidecar = erl.eval_sync(f"[hp_time:from_micros(M) || M <- [{listed}]]")
    finally:
        erl.stop()
    for us, (date, time_of_day), made in zip(micros, expected, on_sidecar, strict=True):
        term = datetime_term(us)
        as_sent = {k: v.encode() if isinstance(v, str) else v for k, v in term.items()}
        assert made == as_sent, us
        assert tuple(term[f] for f in FIELDS) == (*date, *time_of_day), us
        assert term[Atom("microsecond")] == (us % 1_000_000, 6), us
        assert term[Atom("__struct__")] == Atom("Elixir.DateTime")
        assert term[Atom("time_zone")] == "Etc/UTC"
