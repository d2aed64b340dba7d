"""``houseparty bench`` end to end at tiny sizes: a real 3-pod cluster, started and stopped."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from houseparty.cli import main

pytestmark = pytest.mark.skipif(shutil.which("erlc") is None, reason="Erlang/OTP is not installed")


def _running(nodes: list[str]) -> list[str]:
    """The nodes of ``nodes`` that some OS process still runs (``-name N`` or ``--name N``)."""
    names = {node.encode() for node in nodes}
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                args = (entry / "cmdline").read_bytes().split(b"\x00")
            except OSError:
                continue
            found += [a.decode() for a in args if a in names]
    return found


@pytest.mark.timeout(90)
def test_bench_scale_writes_its_figures_and_stops_its_cluster(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    result = CliRunner().invoke(
        main, ["bench", "scale", "--sizes", "200", "--no-settle", "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    figures = json.loads(out.read_text())
    assert figures["machine"]["cpus"] == os.cpu_count()
    (row,) = figures["scale"]["sizes"]
    assert row["processes"] == 200
    assert row["registered"] >= 200
    assert row["failed"] == 0
    assert row["per_second"] > 0
    assert sum(row["python_processes"].values()) >= 200
    assert set(row["rss_after"]) == {f"{kind}{i}" for kind in ("sidecar", "py") for i in (1, 2, 3)}
    for key in (
        "python_bytes_per_process",
        "sidecar_bytes_per_process",
        "python_cpu_us_per_process",
        "sidecar_cpu_us_per_process",
    ):
        assert isinstance(row[key], float)
    assert set(row["stages_us"]["callers_1"]) == {"lookup", "register", "join", "python_start"}
    assert "scale: start and register N processes" in result.output
    # The benchmark's cluster is gone: none of its six nodes is left running.
    assert len(row["nodes"]) == 6
    assert _running(row["nodes"]) == []


@pytest.mark.timeout(120)
def test_bench_calls_reports_tls_beside_plain(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    result = CliRunner().invoke(main, ["bench", "calls", "--quick", "--out", str(out)])
    assert result.exit_code == 0, result.output
    calls = json.loads(out.read_text())["calls"]
    for figures in (calls, calls["tls"]):
        for side in ("python", "beam"):
            for mode in ("sequential", "concurrent"):
                assert figures[side][mode]["calls"] == 2_000
                assert figures[side][mode]["calls_per_second"] > 0
    assert set(calls["tls_vs_plain"]) == {
        f"{side}_{mode}" for side in ("python", "beam") for mode in ("sequential", "concurrent")
    }
    assert all(ratio > 0 for ratio in calls["tls_vs_plain"].values())
    # Both clusters were called in turns, the quick settings' two.
    assert calls["turns"] == 2
    assert "plain TCP and TLS distribution, in 2 turns" in result.output
