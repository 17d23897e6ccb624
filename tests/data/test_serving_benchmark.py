"""The serving benchmark stays runnable (timings are not checked; they live in
docs/benchmarks.md)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "serving.py"


@pytest.mark.slow
def test_serving_benchmark_runs_on_tiny_inputs():
    args = ["--nights", "2", "--hours", "0.5", "--windows", "40", "--csdp-windows", "5"]
    args += ["--repeats", "1", "--scale", "2"]
    done = subprocess.run(
        [sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "medscale DataLoader, 2 worker(s)" in done.stdout
    assert "nights/s" in done.stdout
