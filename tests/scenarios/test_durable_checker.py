"""The checker of the durability scenarios reports each way a house can be wrong after a
failure, and accepts a house that is right, also when some walks were never answered."""

from __future__ import annotations

from tests.scenarios._checker import Observation, Problem, Read, Walk, check_answers, check_house

ROOMS = ["den", "hall", "kitchen"]
PEOPLE = ["ann", "bob"]
MAX = {room: 2 for room in ROOMS}


def walks() -> list[Walk]:
    return [
        Walk("ann", "den", "ok", 1.0, 1.1),
        Walk("ann", "hall", "ok", 2.0, 2.1),
        Walk("ann", "hall", "ok", 2.5, 2.6),  # already there: logs nothing
        Walk("ann", "kitchen", "destination_full", 3.0, 3.1),
        Walk("bob", "kitchen", "ok", 1.0, 1.1),
        Walk("bob", "den", "timeout", 2.0, 22.0),  # never answered: may have happened
    ]


def right(**changes: object) -> Observation:
    seen = {
        "dump": {"den": [], "hall": ["ann"], "kitchen": ["bob"]},
        "where": {"ann": "hall", "bob": "kitchen"},
        "logs": {"ann": ["den", "hall"], "bob": ["kitchen"]},
        "max": MAX,
    }
    seen.update(changes)
    return Observation(**seen)  # type: ignore[arg-type]


def kinds(problems: list[Problem]) -> list[tuple[str, str]]:
    return [(p.kind, p.subject) for p in problems]


def test_a_right_house_has_no_problems() -> None:
    assert check_house(walks(), right(), ROOMS, PEOPLE) == []


def test_a_walk_never_answered_may_have_happened() -> None:
    seen = right(
        dump={"den": ["bob"], "hall": ["ann"], "kitchen": []},
        where={"ann": "hall", "bob": "den"},
        logs={"ann": ["den", "hall"], "bob": ["kitchen", "den"]},
    )
    assert check_house(walks(), seen, ROOMS, PEOPLE) == []


def test_a_walk_answered_ok_missing_from_the_log_is_lost() -> None:
    seen = right(logs={"ann": ["hall"], "bob": ["kitchen"]})
    problems = check_house(walks(), seen, ROOMS, PEOPLE)
    assert kinds(problems) == [("lost_walk", "ann")]
    assert "den" in problems[0].detail


def test_a_lost_last_walk_shows_in_where_is_too() -> None:
    # The person restarted from a state before its last acknowledged walk.
    seen = right(
        dump={"den": ["ann"], "hall": [], "kitchen": ["bob"]},
        where={"ann": "den", "bob": "kitchen"},
        logs={"ann": ["den"], "bob": ["kitchen"]},
    )
    assert kinds(check_house(walks(), seen, ROOMS, PEOPLE)) == [
        ("lost_walk", "ann"),
        ("where_is", "ann"),
    ]


def test_a_refused_walk_does_not_count_as_a_place_to_be() -> None:
    seen = right(
        dump={"den": [], "hall": [], "kitchen": ["ann", "bob"]},
        where={"ann": "kitchen", "bob": "kitchen"},
        logs={"ann": ["den", "hall", "kitchen"], "bob": ["kitchen"]},
    )
    assert kinds(check_house(walks(), seen, ROOMS, PEOPLE)) == [("where_is", "ann")]


def test_a_room_that_does_not_list_its_person_disagrees() -> None:
    seen = right(dump={"den": [], "hall": [], "kitchen": ["bob"]})
    assert kinds(check_house(walks(), seen, ROOMS, PEOPLE)) == [("disagree", "ann")]


def test_a_person_listed_by_a_second_room_disagrees() -> None:
    seen = right(dump={"den": ["ann"], "hall": ["ann"], "kitchen": ["bob"]})
    assert kinds(check_house(walks(), seen, ROOMS, PEOPLE)) == [("disagree", "ann")]


def test_a_log_whose_newest_room_is_not_where_is_is_reported() -> None:
    seen = right(logs={"ann": ["den", "hall", "den"], "bob": ["kitchen"]})
    assert kinds(check_house(walks(), seen, ROOMS, PEOPLE)) == [("log_newest", "ann")]


def test_an_over_full_room_is_reported_except_after_a_healed_netsplit() -> None:
    seen = right(
        max={**MAX, "hall": 1}, dump={"den": [], "hall": ["ann", "carl"], "kitchen": ["bob"]}
    )
    assert ("over_max", "hall") in kinds(check_house(walks(), seen, ROOMS, PEOPLE))
    healed = check_house(walks(), seen, ROOMS, PEOPLE, healed_netsplit=True)
    assert ("over_max", "hall") not in kinds(healed)


def test_a_room_missing_from_dump_is_reported() -> None:
    seen = right(dump={"hall": ["ann"], "kitchen": ["bob"]})
    assert kinds(check_house(walks(), seen, ROOMS, PEOPLE)) == [("missing_room", "den")]


def test_calls_that_say_something_existing_is_absent_are_reported() -> None:
    reads = [
        Read("where_is", "ann", None, 5.0, 5.2),  # ann walked at 1.0: she exists
        Read("log", "bob", [], 5.0, 5.2),
        Read("who_is_in", "den", "unknown_room", 5.0, 5.2, error=True),
        Read("where_is", "bob", "unavailable", 5.0, 5.2, error=True),  # allowed
        Read("where_is", "carl", None, 5.0, 5.2),  # never walked: nowhere is right
        Read("where_is", "ann", "hall", 5.0, 5.2),
    ]
    ws = [*walks(), Walk("bob", "hall", "unknown_room", 5.0, 5.1)]
    problems = check_answers(reads, ws, ROOMS)
    assert kinds(problems) == [
        ("absent", "ann"),
        ("absent", "bob"),
        ("absent", "den"),
        ("absent", "hall"),
    ]
    # Outside the window nothing counts.
    assert check_answers(reads, ws, ROOMS, window=(30.0, 40.0)) == []
