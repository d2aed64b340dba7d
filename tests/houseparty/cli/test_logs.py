"""The pods' logs: JSON lines and a level set by ``houseparty up``, and a drain's summary on
both nodes of the pod, read from the real log files of a real local cluster."""

from __future__ import annotations

import io
import json
import logging
import secrets
from pathlib import Path
from typing import Any

import pytest

from houseparty._logsetup import NOTICE, configure_logging
from houseparty.cli._localcluster import LocalCluster
from tests.houseparty.cli.test_cli import hp
from tests.houseparty.conftest import free_base_port


def json_lines(path: Path) -> list[dict[str, Any]]:
    """Every line of a log file as the JSON object it must be."""
    lines = path.read_text().splitlines()
    assert lines, f"{path} is empty"
    return [json.loads(line) for line in lines]


def test_json_logs_at_notice_and_the_drain_summary_on_both_nodes(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    base = str(free_base_port(2))
    suffix = "_log" + secrets.token_hex(2)
    up = hp(
        *("up", "--pods", "2", "--detach", "--base-port", base, "--name-suffix", suffix),
        *("--cookie", "c" + secrets.token_hex(6), "--log-format", "json", "--log-level", "notice"),
        run_dir=run_dir,
    )
    cluster = LocalCluster(run_dir)
    try:
        assert up.returncode == 0, up.stderr
        rooms = [f"room{i}" for i in range(60)]
        assert hp("add-rooms", *rooms, run_dir=run_dir).returncode == 0
        stop = hp("pod", "stop", "2", run_dir=run_dir)
        assert stop.returncode == 0, stop.stderr
        names_on_2 = None
        for node, source in ((f"sidecar2{suffix}", "sidecar"), (f"py2{suffix}", "python")):
            lines = json_lines(run_dir / "logs" / f"{node}.log")
            for line in lines:
                assert {"time", "level", "message"} <= set(line), (source, line)
                assert line["level"] not in ("debug", "info"), (source, line)
            drains = [line for line in lines if line.get("event") == "drain"]
            assert len(drains) == 1, (source, lines)
            drain = drains[0]
            assert drain["level"] == "notice"
            assert drain["failed"] == 0 and drain["seconds"] >= 0
            assert drain["moved"] > 0
            assert f"{drain['moved']} names moved, 0 failed" in drain["message"]
            # Both nodes tell of the same drain.
            names_on_2 = names_on_2 or drain["moved"]
            assert drain["moved"] == names_on_2
        # And the command says so too.
        assert f"pod 2 stopped: {names_on_2:,} names moved, 0 could not move" in stop.stdout
        assert hp("dump", "--json", run_dir=run_dir).stdout.count('"room') == len(rooms)
    finally:
        if cluster.is_running():
            cluster.down(timeout=60)


def test_up_refuses_a_log_level_it_does_not_know(tmp_path: Path) -> None:
    bad = hp("up", "--log-level", "loud", run_dir=tmp_path / "run")
    assert bad.returncode == 2
    assert "Invalid value for '--log-level'" in bad.stderr and "Traceback" not in bad.stderr


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"HP_LOG_LEVEL": "loud"}, "HP_LOG_LEVEL must be one of debug, info, notice"),
        ({"HP_LOG_FORMAT": "xml"}, "HP_LOG_FORMAT must be one of text, json, not 'xml'"),
    ],
)
def test_bad_settings_name_their_variable(env: dict[str, str], message: str) -> None:
    with pytest.raises(SystemExit, match=message):
        configure_logging(env, io.StringIO())


def test_python_json_lines_carry_the_record_fields() -> None:
    out = io.StringIO()
    try:
        configure_logging({"HP_LOG_FORMAT": "json", "HP_LOG_LEVEL": "notice"}, out)
        log = logging.getLogger("houseparty.test")
        log.info("not at notice")
        log.log(NOTICE, "drain done: %d moved\nagain", 3, extra={"moved": 3, "who": "zoë"})
    finally:
        logging.basicConfig(handlers=[logging.NullHandler()], force=True)
    (line,) = out.getvalue().splitlines()
    record = json.loads(line)
    assert record["level"] == "notice" and record["logger"] == "houseparty.test"
    assert record["message"] == "drain done: 3 moved\nagain"
    assert (record["moved"], record["who"]) == (3, "zoë")
    assert record["time"].endswith("+00:00")
