"""``houseparty bench`` imports the benchmarks from the checkout beside the ``houseparty``
package it runs from, and says in one line when there is none, as for an installed wheel."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import houseparty


def bench_from_copy(root: Path) -> subprocess.CompletedProcess[str]:
    """``houseparty bench --quick`` run by a copy of the package in ``root``, as installed."""
    shutil.copytree(
        Path(houseparty.__file__).parent,
        root / "houseparty",
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    return subprocess.run(
        [sys.executable, "-m", "houseparty.cli", "bench", "--quick"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=root,
        env={**os.environ, "PYTHONPATH": str(root)},
    )


def test_bench_without_a_checkout_says_so_in_one_line(tmp_path: Path) -> None:
    done = bench_from_copy(tmp_path)
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines() == [
        "error: houseparty bench runs from a checkout (pip install -e .): there is no "
        f"benchmarks/ package with hp_bench_driver.erl beside {tmp_path / 'houseparty'}"
    ]
    assert done.stdout == ""


def test_another_benchmarks_package_beside_it_is_not_imported(tmp_path: Path) -> None:
    other = tmp_path / "benchmarks"
    other.mkdir()
    (other / "__init__.py").write_text("raise SystemExit('imported the wrong benchmarks')\n")
    done = bench_from_copy(tmp_path)
    assert done.returncode == 1
    assert "wrong benchmarks" not in done.stderr
    assert "there is no benchmarks/ package with hp_bench_driver.erl" in done.stderr


@pytest.mark.timeout(90)
@pytest.mark.skipif(shutil.which("erlc") is None, reason="Erlang/OTP is not installed")
def test_the_checkout_benchmarks_run_from_any_folder(tmp_path: Path) -> None:
    out = tmp_path / "scale.json"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "houseparty.cli",
            "bench",
            "scale",
            "--sizes",
            "3",
            "--no-settle",
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=80,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    (row,) = json.loads(out.read_text())["scale"]["sizes"]
    assert (row["processes"], row["failed"]) == (3, 0)
