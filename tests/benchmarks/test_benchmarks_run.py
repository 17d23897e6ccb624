"""The benchmarks stay runnable: each runs once on tiny inputs (timings are not checked here;
they live in docs/benchmarks.md)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


@pytest.mark.slow
@pytest.mark.parametrize(
    ("script", "args", "expect"),
    [
        (
            "store_formats.py",
            ["--hours", "0.6", "--windows", "3", "--repeats", "1"],
            "hdf5 chunked gzip-4",
        ),
        ("ingest_throughput.py", ["--nights", "2", "--hours", "0.2", "--repeats", "1"], "floor"),
        ("edf_readers.py", ["--hours", "0.2", "--repeats", "1"], "pyedflib"),
    ],
)
def test_benchmark_runs_on_tiny_inputs(script, args, expect):
    done = subprocess.run(
        [sys.executable, str(BENCHMARKS / script), *args],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert expect in done.stdout
