"""The README's walkthrough runs as written, from a fresh clone of the committed HEAD
(scripts/readme_walkthrough.py; `medscale demo` itself is tests/test_demo.py)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_readme_walkthrough_runs_in_a_fresh_clone(tmp_path):
    if not (REPO / ".git").exists():
        pytest.skip(f"{REPO} is not a git checkout (the walkthrough starts from git clone)")
    done = subprocess.run(
        [
            sys.executable,
            str(REPO / "scripts" / "readme_walkthrough.py"),
            "--keep",
            str(tmp_path / "clone"),
        ],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "steps passed in a fresh clone" in done.stdout
    assert (tmp_path / "clone" / "my-run" / "eval-test" / "report.html").is_file()
