"""The package as a user gets it: a wheel built by ``python -m build``, installed into a
fresh virtualenv, run from outside the checkout; and a build without a C compiler or
Erlang.

The fresh virtualenv gets only the wheel. Its dependencies (click, rich, ...) come
from the project's .venv through a ``.pth`` line placed after the venv's own
site-packages, so the test needs no network; every test checks that ``houseparty`` and
``py_nodes`` are imported from the fresh venv, never from the checkout.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.houseparty.conftest import Iex, free_base_port

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.skipif(
    shutil.which("erl") is None or shutil.which("iex") is None, reason="needs Erlang and Elixir"
)


def build(out: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """``python -m build`` of the checkout (sdist, then the wheel from the sdist), with
    the build tools of the project's venv rather than a download."""
    return subprocess.run(
        [sys.executable, "-m", "build", "--no-isolation", "--outdir", str(out), str(REPO)],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
        check=False,
    )


@dataclass
class Venv:
    root: Path

    @property
    def bin(self) -> Path:
        return self.root / "bin"

    def run(
        self, *args: str, env: dict[str, str] | None = None, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            list(args),
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=self.root,  # outside the checkout
            env=env,
            check=False,
        )


def fresh_venv(root: Path, wheel: Path) -> Venv:
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(root)], check=True)
    pip = [sys.executable, "-m", "pip", "--python", str(root / "bin" / "python")]
    subprocess.run(
        [*pip, "install", "-q", "--no-deps", "--no-index", str(wheel)], check=True, timeout=120
    )
    site = Path(
        subprocess.check_output(
            [
                str(root / "bin" / "python"),
                "-c",
                "import sysconfig; print(sysconfig.get_path('purelib'))",
            ],
            text=True,
        ).strip()
    )
    # zz: read after the wheel's own files; the dependencies only.
    (site / "zz_dependencies.pth").write_text(sysconfig.get_path("purelib") + "\n")
    return Venv(root)


def user_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HP_", "HOUSEPARTY_"))}
    env.pop("PYTHONPATH", None)
    return {**env, **extra}


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    done = build(out)
    assert done.returncode == 0, done.stderr[-3000:]
    [whl] = out.glob("*.whl")
    return whl


@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory, wheel: Path) -> Venv:
    return fresh_venv(tmp_path_factory.mktemp("venv") / "v", wheel)


def test_the_wheel_ships_the_sidecar_its_docs_the_typing_markers_and_the_license(
    wheel: Path,
) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    sources = sorted(p.stem for p in (REPO / "erlang_sidecar" / "src").glob("*.erl"))
    for module in sources:
        assert f"houseparty/_sidecar/ebin/{module}.beam" in names, module
    assert "houseparty/_sidecar/ebin/houseparty_sidecar.app" in names
    for module in ("Elixir.HouseParty", "houseparty", "hp_time"):
        assert f"houseparty/_sidecar/doc/chunks/{module}.chunk" in names, module
    assert {"houseparty/py.typed", "py_nodes/py.typed"} <= names
    assert any(re.fullmatch(r"py_nodes/_ccodec\..*\.so", n) for n in names)
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)
    [meta] = [n for n in names if n.endswith(".dist-info/METADATA")]
    metadata = zipfile.ZipFile(wheel).read(meta).decode()
    assert "License-Expression: Apache-2.0" in metadata
    assert "Classifier: Typing :: Typed" in metadata
    assert "Project-URL: Changelog" in metadata


def test_the_installed_package_is_the_wheels_with_its_version(venv: Venv) -> None:
    done = venv.run(
        str(venv.bin / "python"),
        "-c",
        "import houseparty, py_nodes._codec as c; "
        "print(houseparty.__file__, c.__file__, houseparty.__version__, c.ACCELERATED)",
        env=user_env(),
    )
    assert done.returncode == 0, done.stderr
    hp_file, codec_file, version, accelerated = done.stdout.split()
    assert hp_file.startswith(str(venv.root)) and codec_file.startswith(str(venv.root))
    assert accelerated == "True"
    assert version == done_version(venv)


def done_version(venv: Venv) -> str:
    out = venv.run(str(venv.bin / "houseparty"), "--version", env=user_env()).stdout
    m = re.search(r"version (\S+)", out)
    assert m, out
    return m.group(1)


# Run by the fresh venv's Python: where the sidecar loaded its code from, and kid's log
# from the Python client and from hp_time's plain form.
PROBE = """
import json, sys
from houseparty import HouseParty
from py_nodes._terms import Atom

node, cookie = sys.argv[1:]
with HouseParty(node, cookie=cookie) as hp:
    where = hp.rpc("code", "which", [Atom("houseparty")])
    plain = hp.rpc("hp_time", "person_room_log", [Atom("kid")])
    log = hp.get_person_room_log("kid")
which = where if isinstance(where, str) else bytes(where).decode()
print(json.dumps({
    "which": which,
    "plain": [[[list(d), list(t)], us, room.name] for ((d, t), us), room in plain],
    "log": [[when.isoformat(), room] for when, room in log],
}))
"""


@pytest.fixture
def installed_cluster(venv: Venv, tmp_path: Path) -> Iterator[tuple[Venv, list[str], str]]:
    cookie = "hp_" + secrets.token_hex(8)
    run_dir = tmp_path / "run"
    common = ["--run-dir", str(run_dir)]
    up = venv.run(
        str(venv.bin / "houseparty"),
        "up",
        "--pods",
        "2",
        "--detach",
        "--cookie",
        cookie,
        "--base-port",
        str(free_base_port(2)),
        "--name-suffix",
        "_" + secrets.token_hex(3),
        *common,
        env=user_env(),
        timeout=180,
    )
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        yield venv, common, cookie
    finally:
        down = venv.run(str(venv.bin / "houseparty"), "down", *common, env=user_env(), timeout=120)
        assert down.returncode == 0 or "not running" in down.stderr, down.stderr


def test_a_pip_installed_houseparty_runs_a_cluster_walks_and_stops(
    installed_cluster: tuple[Venv, list[str], str],
) -> None:
    venv, common, cookie = installed_cluster
    hp = str(venv.bin / "houseparty")
    env = user_env()

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return venv.run(hp, *args, *common, env=env)

    assert cli("add-rooms", "den", "kitchen").returncode == 0
    assert cli("walk", "kitchen", "kid", "bilal").returncode == 0
    assert cli("set-max", "den", "1").returncode == 0
    assert cli("walk", "den", "kid").returncode == 0
    full = cli("walk", "den", "bilal")
    assert full.returncode == 1 and "full" in full.stderr and "Traceback" not in full.stderr
    bad = cli("set-max", "den", "0")
    assert bad.returncode == 1 and "Traceback" not in bad.stderr, bad.stderr
    dump = cli("dump", "--json")
    assert json.loads(dump.stdout) == {"den": ["kid"], "kitchen": ["bilal"]}

    # The sidecar runs the wheel's beams, and its plain-time helper agrees with Python.
    status = cli("status", "--json")
    sidecar = json.loads(status.stdout)["pods"][0]["node"]
    done = venv.run(str(venv.bin / "python"), "-c", PROBE, sidecar, cookie, env=env)
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout)
    assert seen["which"].startswith(str(venv.root / "lib")), seen["which"]
    assert [r for *_, r in seen["plain"]] == [r for _, r in seen["log"]] == ["den", "kitchen"]
    (date, clock), micros, _ = seen["plain"][0]
    assert seen["log"][0][0].startswith(
        "{:04d}-{:02d}-{:02d}T{:02d}:{:02d}:{:02d}.{:06d}".format(*date, *clock, micros)
    )

    # iex shows the docs the wheel ships.
    iex = Iex(cookie, sidecar)
    try:
        module_doc = iex.run("h HouseParty")
        assert "was not compiled with docs" not in module_doc
        assert "HouseParty for iex users" in module_doc
        assert "Names are atoms" in module_doc
        walk_doc = iex.run("h HouseParty.walk_into")
        assert "@spec walk_into(atom(), [atom()] | atom())" in walk_doc
        assert "Walks each person, in order" in walk_doc
        assert "rooms()" in iex.run("h HouseParty.rooms")
        assert "walk_into: 2" in iex.run("HouseParty.__info__(:functions)")
    finally:
        iex.close()


def test_a_build_without_a_c_compiler_or_erlang_installs_and_says_what_it_lacks(
    tmp_path: Path,
) -> None:
    # No escript on PATH, and a C compiler that always fails.
    empty_bin = tmp_path / "bin"
    empty_bin.mkdir()
    env = {**user_env(), "CC": "/bin/false", "PATH": str(empty_bin)}
    done = build(tmp_path / "dist", env)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "ships NO compiled sidecar" in done.stderr
    [whl] = (tmp_path / "dist").glob("*.whl")
    names = zipfile.ZipFile(whl).namelist()
    assert not [n for n in names if n.endswith(".so") or "/_sidecar/" in n]

    venv = fresh_venv(tmp_path / "v", whl)
    roundtrip = (
        "import py_nodes._codec as c, houseparty\n"
        "from py_nodes._terms import Atom\n"
        "assert not c.ACCELERATED, 'the C codec is not built'\n"
        "term = (Atom('walk_into'), [Atom('kid'), b'den', 42, 3.5, {Atom('max'): 4}])\n"
        "assert c.decode(c.encode(term)) == term\n"
        "print(houseparty.__file__)\n"
    )
    ran = venv.run(str(venv.bin / "python"), "-c", roundtrip, env=user_env())
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.startswith(str(venv.root))

    up = venv.run(
        str(venv.bin / "houseparty"), "up", "--run-dir", str(tmp_path / "run"), env=user_env()
    )
    assert up.returncode == 1
    assert "no compiled sidecar" in up.stderr and "HP_SIDECAR_EBIN" in up.stderr
    assert "Traceback" not in up.stderr


USER_SCRIPT = """
from houseparty import HouseParty

with HouseParty("sidecar1@127.0.0.1", cookie="C") as hp:
    hp.add_rooms(["den"], max=4)
    reveal_type(hp.dump())
    reveal_type(hp.get_person_room_log("kid"))
"""

MISTAKE = """
from houseparty import HouseParty

with HouseParty("sidecar1@127.0.0.1", cookie="C") as hp:
    hp.walk_into("den", 5)
"""


def mypy_strict(venv: Venv, script: Path) -> subprocess.CompletedProcess[str]:
    """``mypy --strict`` on a user's script, seeing the packages of the fresh venv."""
    return venv.run(
        sys.executable,
        "-m",
        "mypy",
        "--strict",
        "--no-incremental",
        "--python-executable",
        str(venv.bin / "python"),
        "--config-file",
        os.devnull,
        str(script),
        env=user_env(),
        timeout=300,
    )


def test_mypy_strict_reads_the_installed_packages_types(venv: Venv, tmp_path: Path) -> None:
    good = tmp_path / "user.py"
    good.write_text(USER_SCRIPT)
    done = mypy_strict(venv, good)
    out = done.stdout.replace("builtins.", "")  # mypy versions differ in this prefix
    assert "import-untyped" not in out, out
    assert 'Revealed type is "dict[str, list[str]]"' in out, out
    assert 'Revealed type is "list[tuple[datetime.datetime, str]]"' in out, out
    assert done.returncode == 0, out

    bad = tmp_path / "mistake.py"
    bad.write_text(MISTAKE)
    caught = mypy_strict(venv, bad)
    assert caught.returncode == 1
    assert '"walk_into" of "HouseParty" has incompatible type "int"' in caught.stdout, caught.stdout
