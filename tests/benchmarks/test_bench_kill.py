"""``houseparty bench kill`` at its ``--quick`` size: two real 3-pod clusters, one without
replicas and one with the default copies, pod 3 SIGKILLed in each while walkers walk, then
two more at a larger size, whose pod 3, or its Python node alone, is killed and whose names
restart; the figures, the tables and the plot. Its count of lost walks sees a lost walk;
and the command line offers it."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner
from rich.console import Console

from benchmarks._kill import lost_walks
from benchmarks._plot import plot_results
from benchmarks._report import BenchSettings, RichReporter, run_benchmarks, tables
from houseparty.cli import main


def test_lost_walks_counts_the_acknowledged_walks_missing_from_a_log() -> None:
    ok = {"ann": ["den", "hall", "hall", "den"], "bob": ["hall"]}
    assert lost_walks(ok, {"ann": ["den", "hall", "den"], "bob": ["den", "hall"]}) == 0
    assert lost_walks(ok, {"ann": ["hall", "den"], "bob": []}) == 2
    assert lost_walks(ok, {"ann": ["den", "den", "hall"], "bob": ["hall"]}) == 1


def test_houseparty_bench_accepts_kill() -> None:
    result = CliRunner().invoke(main, ["bench", "--help"], terminal_width=400)
    assert result.exit_code == 0
    usage = result.output.split("[OPTIONS]", 1)[1].split("\n", 1)[0]
    assert "|kill]" in usage, usage


@pytest.mark.timeout(240)
@pytest.mark.skipif(shutil.which("erlc") is None, reason="Erlang/OTP is not installed")
def test_bench_kill_reports_lost_walks_recovery_and_rates_side_by_side(tmp_path: Path) -> None:
    console = Console(width=220, record=True)
    results = run_benchmarks(["kill"], BenchSettings.quick(), RichReporter(console))
    for table in tables("kill", results["kill"]):
        console.print(table)
    figures = results["kill"]
    without, with_ = figures["runs"]
    assert (without["replica_copies"], with_["replica_copies"]) == ("0", "1 (default)")
    for run in (without, with_):
        assert run["walks_per_second_before_kill"] > 0
        assert run["acknowledged_walks"] > 300  # every person walked at least once
        assert run["every_name_answers_after_s"] is not None
    assert with_["acknowledged_walks_lost"] == 0
    assert with_["people_not_where_last_acknowledged"] == 0
    assert figures["rate_with_replicas_vs_without"] > 0
    # The restart at scale, of the whole pod 3 and of its Python node alone: pod 3's names
    # all held again, none lost, the rooms' people kept.
    restarts = figures["restarts"]
    assert [r["killed"] for r in restarts] == ["pod", "Python node"]
    for restart in restarts:
        assert restart["rooms"] == 3_000 and restart["names_on_killed_pod"] > 500
        assert restart["names_back_after_s"] is not None and restart["names_lost"] == 0
        assert restart["dump_lists_all_after_s"] is not None
        assert restart["people_in_rooms_after"] == restart["people_in_rooms_before"] > 0
        assert restart["samples"][-1][1] == restart["names_on_killed_pod"]
    text = console.export_text()
    assert "kill: pod 3 of 3 SIGKILLed" in text and "answered otherwise" in text
    assert "kill at scale" in text and "names on pod 3" in text
    (plot,) = plot_results({"kill": figures}, tmp_path)
    assert plot.name == "kill.png" and plot.stat().st_size > 0
