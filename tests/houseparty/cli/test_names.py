"""Any name through the ``houseparty`` commands against a real local cluster: an answer, or
a clean error with its documented exit code, never a traceback.

Hypothesis drives the commands' own code in-process (click's CliRunner), so that names no
command line can carry (NUL, lone surrogates) reach them too; a real ``houseparty``
process takes the names a shell can pass, raw bytes that are not UTF-8 among them.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from houseparty.cli import main
from houseparty.cli._main import Exit
from tests.houseparty.cli.test_cli import CLI
from tests.houseparty.conftest import Cluster, start_cluster

# Atoms the erl API keeps for itself (nowhere, undefined, booleans): not names.
RESERVED = {"nil", "undefined", "true", "false"}


@dataclass
class Target:
    cluster: Cluster
    run_dir: Path


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    tmp = tmp_path_factory.mktemp("cli_names")
    cluster = start_cluster(tmp, pods=2)
    try:
        target = Target(cluster, cluster.runner.run_dir)
        assert_clean(
            run(target, "add-rooms", "hall", options=("--max", "10000")), Exit.OK, "add hall"
        )
        yield target
    finally:
        cluster.runner.down(timeout=60)


def is_name(name: str) -> bool:
    """What the cluster takes as a name: 1 to 255 characters UTF-8 can carry, not reserved."""
    try:
        name.encode()
    except UnicodeEncodeError:
        return False
    return 0 < len(name) <= 255 and name not in RESERVED


def run(target: Target, command: str, *names: str, options: tuple[str, ...] = ()) -> Result:
    # "--": a name may begin with "-".
    args = [command, *options, "--run-dir", str(target.run_dir), "--", *names]
    return CliRunner().invoke(main, args)


def assert_clean(result: Result, expected: Exit, what: str) -> None:
    """The exit code expected, no exception escaping the command, and, for an error, a
    message that says so on stderr."""
    where = f"{what}: exit {result.exit_code}, stderr {result.stderr!r}"
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise AssertionError(where) from result.exception
    assert "Traceback" not in result.output, where
    assert result.exit_code == expected, where
    if expected != Exit.OK:
        assert "error" in result.stderr.lower(), where


# Any text, lone surrogates (which UTF-8 cannot carry) included.
NAMES = st.text(st.characters(exclude_categories=()), min_size=0, max_size=1000)


@settings(max_examples=50, deadline=None, suppress_health_check=list(HealthCheck))
@given(name=NAMES)
@example(name="")
@example(name="nil")
@example(name="a\x00b\nc")
@example(name="\ud800")
@example(name="é" * 255)
@example(name="x" * 256)
@example(name="[bold]x[/] :smile: \x1b[31m")
def test_any_name_through_every_command(target: Target, name: str) -> None:
    ok = Exit.OK if is_name(name) else Exit.USAGE
    assert_clean(run(target, "add-rooms", name), ok, "add-rooms NAME")
    assert_clean(run(target, "walk", name, "guest"), ok, "walk NAME guest")
    who = run(target, "who-is-in", name)
    assert_clean(who, ok, "who-is-in NAME")
    assert_clean(run(target, "walk", "hall", name), ok, "walk hall NAME")
    where = run(target, "where-is", name)
    assert_clean(where, ok, "where-is NAME")
    assert_clean(run(target, "log", name), ok, "log NAME")
    if ok == Exit.OK:
        assert who.stdout == "guest\n"
        assert where.stdout == "hall\n"


def test_an_error_message_shows_the_name_as_it_is(target: Target) -> None:
    name = "[bold]:smile: \\[x]"
    nowhere = run(target, "where-is", name)
    assert_clean(nowhere, Exit.NOT_FOUND, "where-is NAME")
    assert f"{name} is in no room" in nowhere.stderr


@pytest.mark.parametrize("arg", [b"caf\xe9", "x" * 300, "a\nb", "\u00e9" * 255, "-x"])
def test_names_on_a_real_command_line(target: Target, arg: str | bytes) -> None:
    # Python reads a command line's bytes that are not UTF-8 as lone surrogates.
    name = os.fsdecode(arg)
    ok = Exit.OK if is_name(name) else Exit.USAGE
    for command, args in (
        ("add-rooms", [arg]),
        ("walk", [arg, "guest"]),
        ("who-is-in", [arg]),
        ("walk", ["hall", arg]),
        ("where-is", [arg]),
        ("log", [arg]),
    ):
        done = subprocess.run(
            [*CLI, command, "--run-dir", str(target.run_dir), "--", *args],
            capture_output=True,
            timeout=120,
        )
        what = f"{command} {args}: exit {done.returncode}, stderr {done.stderr!r}"
        assert done.returncode == ok, what
        assert b"Traceback" not in done.stderr, what
        if ok != Exit.OK:
            assert b"rror" in done.stderr, what
