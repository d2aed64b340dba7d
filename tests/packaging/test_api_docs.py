"""The reference a user reads with ``help()``: every public class and method of the
package's top level says what it does, and the version is there."""

from __future__ import annotations

import inspect
import re
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest

import houseparty
from houseparty.cli._localcluster import sidecar_ebin

REPO = Path(__file__).resolve().parents[2]

CLASSES = [
    getattr(houseparty, name)
    for name in houseparty.__all__
    if inspect.isclass(getattr(houseparty, name))
]


def public_methods(cls: type) -> list[str]:
    return [
        name
        for name, value in inspect.getmembers(cls)
        if not name.startswith("_")
        and (inspect.isfunction(value) or inspect.iscoroutinefunction(value))
        and value.__module__.startswith("houseparty")
    ]


@pytest.mark.parametrize("cls", CLASSES, ids=[c.__name__ for c in CLASSES])
def test_every_public_class_and_method_has_a_docstring(cls: type) -> None:
    assert inspect.getdoc(cls), cls
    undocumented = [m for m in public_methods(cls) if not inspect.getdoc(getattr(cls, m))]
    assert not undocumented, f"{cls.__name__}: {undocumented}"


def test_the_clients_are_documented_method_by_method() -> None:
    # The classes users start from; a docstring inherited from a base class would hide
    # a method of their own without one, so each is looked up on the class itself.
    for cls in (houseparty.HouseParty, houseparty.AsyncHouseParty):
        for name in ("add_rooms", "set_room_max", "walk_into", "dump", "who_is_in"):
            assert cls.__dict__[name].__doc__, f"{cls.__name__}.{name}"


def test_the_version_is_the_packages() -> None:
    assert re.fullmatch(r"\d+\.\d+\.\d+", houseparty.__version__)
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert "version" in project["dynamic"]
    app_src = (REPO / "erlang_sidecar/src/houseparty_sidecar.app.src").read_text()
    assert f'{{vsn, "{houseparty.__version__}"}}' in app_src
    changelog = (REPO / "CHANGELOG.md").read_text()
    assert f"## [{houseparty.__version__}]" in changelog


@pytest.mark.skipif(shutil.which("erl") is None, reason="needs Erlang")
def test_the_sidecar_houseparty_up_runs_has_docs_for_erl_and_iex() -> None:
    # The checkout's build (scripts/setup.sh) or the installed package's shipped sidecar.
    ebin = sidecar_ebin()
    probe = (
        '{ok, {docs_v1, _, erlang, _, #{<<"en">> := _}, _, Fs}} ='
        " code:get_doc('Elixir.HouseParty'),"
        " Names = lists:sort([{F, A} || {{function, F, A}, _, _, D, _} <- Fs, is_map(D)]),"
        ' io:format("~p~n", [Names]), halt().'
    )
    done = subprocess.run(
        ["erl", "-noshell", "-pa", str(ebin), "-eval", probe],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    for name in ("walk_into,2", "add_rooms,2", "rooms,0", "get_person_room_log,1"):
        assert "{" + name + "}" in done.stdout.replace(" ", ""), done.stdout
