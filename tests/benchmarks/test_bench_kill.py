"""``houseparty bench kill`` at its ``--quick`` size: two real 3-pod clusters up at once, one
without replicas and one with the default copies, walked in turns; then two such clusters
one after the other, pod 3 SIGKILLed in each while walkers walk; then two more at a larger
size, whose pod 3, or its Python node alone, is killed and whose names restart; the figures,
the tables and the plot. Its count of lost walks sees a lost walk, its rates count each
cluster's walks over its own turns; and the command line offers it."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner
from rich.console import Console

from benchmarks._kill import lost_walks, turn_figures
from benchmarks._plot import plot_results
from benchmarks._report import BenchSettings, RichReporter, run_benchmarks, tables
from houseparty.cli import main


def test_lost_walks_counts_the_acknowledged_walks_missing_from_a_log() -> None:
    ok = {"ann": ["den", "hall", "hall", "den"], "bob": ["hall"]}
    assert lost_walks(ok, {"ann": ["den", "hall", "den"], "bob": ["den", "hall"]}) == 0
    assert lost_walks(ok, {"ann": ["hall", "den"], "bob": []}) == 2
    assert lost_walks(ok, {"ann": ["den", "den", "hall"], "bob": ["hall"]}) == 1


def test_the_rates_count_each_clusters_walks_over_its_own_turns() -> None:
    # a: two turns of 1 s with 3 and 1 walks; b: two of 2 s with 2 and 2; the walks before
    # the first turn (each person's first) and the ones not answered ok do not count.
    text = "\n".join(
        [
            "turn a 1000000 2000000",
            "turn b 2000000 4000000",
            "turn a 4000000 5000000",
            "turn b 5000000 7000000",
            "walk a p1 r1 ok 500000 600000",
            "walk a p1 r2 ok 1100000 1200000",
            "walk a p2 r2 ok 1300000 1500000",
            "walk a p3 r3 ok 1600000 1900000",
            "walk a p1 r3 unavailable 1700000 1800000",
            "walk a p2 r1 ok 4100000 4200000",
            "walk b p1 r1 ok 2100000 2200000",
            "walk b p2 r2 ok 2300000 2700000",
            "walk b p1 r2 ok 5100000 5300000",
            "walk b p2 r1 ok 5500000 5600000",
        ]
    )
    figures = turn_figures(text)
    assert figures["turns"] == 2
    assert figures["without"]["walks"] == 4 and figures["with"]["walks"] == 4
    assert figures["without"]["walks_per_second"] == 2.0
    assert figures["with"]["walks_per_second"] == 1.0
    assert figures["with_vs_without_per_turn"] == [round(1 / 3, 2), 1.0]


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
    rates = figures["rates"]
    for side in ("without", "with"):
        assert rates[side]["walks"] > 0 and rates[side]["walks_per_second"] > 0
    assert rates["turns"] == 2 and len(rates["with_vs_without_per_turn"]) == 2
    assert figures["rate_with_replicas_vs_without"] == round(
        rates["with"]["walks_per_second"] / rates["without"]["walks_per_second"], 2
    )
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
    assert "kill, the walk rates" in text and "the rate without" in text
    assert "kill: pod 3 of 3 SIGKILLed" in text and "answered otherwise" in text
    assert "kill at scale" in text and "names on pod 3" in text
    (plot,) = plot_results({"kill": figures}, tmp_path)
    assert plot.name == "kill.png" and plot.stat().st_size > 0
