"""``houseparty bench walks`` end to end at a tiny size: the Python workers beside the BEAM
baseline on the sidecars, the reads, the rate without replication, the tables and the plot."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import pytest
from rich.console import Console

from benchmarks._plot import plot_results
from benchmarks._report import BenchSettings, RichReporter, run_benchmarks, tables


@pytest.mark.timeout(240)
@pytest.mark.skipif(shutil.which("erlc") is None, reason="Erlang/OTP is not installed")
def test_bench_walks_runs_both_sides_and_reports_them(tmp_path: Path) -> None:
    console = Console(width=260, record=True)
    settings = dataclasses.replace(BenchSettings.quick(), people=300, walks=300)
    results = run_benchmarks(["walks"], settings, RichReporter(console))
    figures = results["walks"]
    for table in tables("walks", figures):
        console.print(table)
    assert [r["callers"] for r in figures["sidecar_walks"]] == [3, 30]
    for row in figures["sidecar_walks"]:
        for side in ("beam", "python"):
            # Every walk answered ok, each side walking as often.
            assert row[side]["operations"] == 300
            assert row[side]["errors"] == 0
            assert row[side]["p50_us"] <= row[side]["p99_us"]
            # The walks ran on the sidecars: they used CPU time, counted per walk.
            assert row[side]["cpu_us"]["sidecars"] > 0
        # The Python workers' walks run on the Python nodes too.
        assert row["python"]["cpu_us"]["python"] > 0
        assert row["ratio"] > 0
    reads = {(r["read"], r["callers"]) for r in figures["reads"]}
    assert reads == {
        (read, callers)
        for read in ("who_is_in", "where_is", "get_person_room_log")
        for callers in (3, 30)
    }
    assert all(r["beam"]["errors"] == r["python"]["errors"] == 0 for r in figures["reads"])
    replication = figures["replication"]
    assert replication["copies"] == 1
    for row in replication["rows"]:
        assert row["without"]["operations"] == 300 and row["without"]["errors"] == 0
        assert row["without"]["cpu_us"]["python"] > 0
    # The same people walk on as their logs grow, every walk answered ok, on both sides.
    growing = replication["growing_logs"]
    assert growing["people"] == 30
    for side in ("with", "without"):
        steps = [row[side] for row in growing["rows"]]
        assert len(steps) == 4
        assert all(s["operations"] == 150 and s["errors"] == 0 for s in steps)
        lengths = [s["log_length"] for s in steps]
        assert lengths == sorted(set(lengths)), lengths
    text = console.export_text()
    assert "beside the BEAM baseline" in text
    assert "HP_REPLICA_COPIES=1" in text
    assert "CPU us/walk (sidecars + Python)" in text
    assert "as people's logs grow" in text
    (plot,) = plot_results({"walks": figures}, tmp_path)
    assert plot.name == "walks.png" and plot.stat().st_size > 0
