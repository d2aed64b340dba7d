"""deploy/Dockerfile, read statically: no docker engine builds it here."""

from __future__ import annotations

import fnmatch
import re
import tomllib
from pathlib import PurePosixPath

from tests.deploy._deploy import DEPLOY, REPO, DockerStage, Instruction, parse_dockerfile

STAGES = parse_dockerfile(DEPLOY / "Dockerfile")
BUILD, FINAL = STAGES[0], STAGES[-1]


def run_text(stage: DockerStage) -> str:
    return "\n".join(i.args for i in stage.all("RUN"))


def ignored() -> list[str]:
    lines = (DEPLOY / "Dockerfile.dockerignore").read_text().splitlines()
    return [ln.strip() for ln in lines if ln.strip() and not ln.startswith("#")]


def is_ignored(path: str) -> bool:
    return any(
        fnmatch.fnmatch(path, pat) or path.startswith(pat.rstrip("/") + "/") for pat in ignored()
    )


def release_name() -> str:
    config = (REPO / "rebar.config").read_text()
    m = re.search(r"\{release,\s*\{(\w+),", config)
    assert m, "rebar.config declares a relx release"
    assert re.search(r"\{include_erts,\s*true\}", config), "the release must carry its erts"
    return m.group(1)


def workdir(stage: DockerStage) -> PurePosixPath:
    dirs = [PurePosixPath(w.args) for w in stage.all("WORKDIR")]
    assert dirs, "the stage sets a WORKDIR"
    return dirs[0]


def test_two_stages_a_bookworm_builder_and_a_python_runtime() -> None:
    assert len(STAGES) == 2
    assert BUILD.base.startswith("debian:bookworm")
    assert BUILD.name is not None
    assert FINAL.base == "python:3.11-slim-bookworm"


def test_the_builder_makes_the_release_with_debians_erlang_and_rebar3() -> None:
    text = run_text(BUILD)
    for package in ("erlang-nox", "erlang-dev", "rebar3"):
        assert re.search(rf"\b{package}\b", text), package
    assert re.search(r"\brebar3 (as prod )?release\b", text)


def test_the_runtime_copies_the_release_the_builder_makes() -> None:
    [copy] = [c for c in FINAL.all("COPY") if "--from" in c.args]
    flags = dict(w[2:].split("=", 1) for w in copy.words() if w.startswith("--"))
    src, dest = [w for w in copy.words() if not w.startswith("--")]
    assert flags["from"] == BUILD.name
    expected = workdir(BUILD) / "_build/default/rel" / release_name()
    assert PurePosixPath(src) == expected
    assert dest == "/opt/" + release_name()


def test_every_copied_source_exists_and_is_not_ignored() -> None:
    copies = [c for stage in STAGES for c in stage.all("COPY") if "--from" not in c.args]
    assert copies
    for c in copies:
        *sources, _dest = [w for w in c.words() if not w.startswith("--")]
        for src in sources:
            path = src.rstrip("/")
            assert (REPO / path).exists(), f"line {c.line}: {src} is not in the repository"
            assert not is_ignored(path), f"line {c.line}: {src} is excluded from the context"


def test_the_builder_gets_exactly_the_releases_inputs() -> None:
    copied = {
        w.rstrip("/")
        for c in BUILD.all("COPY")
        for w in [w for w in c.words() if not w.startswith("--")][:-1]
    }
    assert copied == {"rebar.config", "rebar.lock", "erlang_sidecar"}


def test_the_runtime_installs_the_python_package_from_its_sources() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())
    copied = {
        w.rstrip("/")
        for c in FINAL.all("COPY")
        if "--from" not in c.args
        for w in [w for w in c.words() if not w.startswith("--")][:-1]
    }
    # A subpackage (houseparty.cli) comes with its top-level package's folder.
    folders = {p.split(".")[0] for p in project["tool"]["setuptools"]["packages"]}
    needed = {
        "pyproject.toml",
        "setup.py",
        project["project"]["readme"],
        *project["project"].get("license-files", []),
        *folders,
    }
    assert needed <= copied
    assert re.search(r"\bpip install \.", run_text(FINAL))
    assert "houseparty" in project["project"]["scripts"]


def test_the_image_runs_as_a_non_root_user() -> None:
    users = list(FINAL.all("USER"))
    assert users, "the runtime stage sets USER"
    user, _, group = users[-1].args.partition(":")
    assert user == "10001" and group == "10001"
    # nothing runs as root after the switch
    after = FINAL.instructions[FINAL.instructions.index(users[-1]) :]
    assert not [i for i in after if i.keyword == "RUN"]
    assert re.search(r"useradd .*--uid 10001", run_text(FINAL))


def test_the_runtime_has_the_libraries_the_bundled_erts_links() -> None:
    text = run_text(FINAL)
    for lib in ("libtinfo6", "zlib1g", "libstdc++6", "libssl3"):
        assert lib in text, lib


def test_the_scripts_are_installed_and_executable_in_the_repository() -> None:
    copied = " ".join(c.args for c in FINAL.all("COPY"))
    for script in ("entrypoint-sidecar.sh", "entrypoint-python.sh", "drain.sh"):
        assert f"deploy/{script}" in copied
        assert (DEPLOY / script).stat().st_mode & 0o111, f"{script} is not executable"
    assert "erl_call" in run_text(FINAL), "drain.sh needs erl_call on PATH"


def test_the_context_keeps_build_outputs_out() -> None:
    for path in (".git", ".venv", "_build"):
        assert is_ignored(path), path


def healthcheck() -> tuple[dict[str, str], list[str]]:
    """The final stage's HEALTHCHECK: its options and its command (exec form)."""
    [check] = FINAL.all("HEALTHCHECK")
    words = check.words()
    options = dict(w[2:].split("=", 1) for w in words if w.startswith("--"))
    rest = check.args[check.args.index("CMD") + len("CMD") :].strip()
    assert rest.startswith("["), "the exec form: no shell in the check"
    command = Instruction("CMD", rest, check.line).words()
    return options, command


def seconds(value: str) -> int:
    m = re.fullmatch(r"(\d+)s", value)
    assert m, value
    return int(m.group(1))


def test_the_image_checks_its_sidecars_health_as_the_probes_do() -> None:
    options, command = healthcheck()
    assert command[0] == "python3"
    assert "/healthz" in command[-1] and "HP_HEALTH_PORT" in command[-1]
    assert seconds(options["timeout"]) < seconds(options["interval"])
    # As the Deployment's startupProbe (60 s to boot) and livenessProbe (6 x 10 s).
    assert seconds(options["start-period"]) >= 60
    assert seconds(options["interval"]) * int(options["retries"]) >= 60
