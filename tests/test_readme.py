"""The README's examples run as written (in a scratch folder that mirrors the repo's src/)."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def code_block_after(heading: str, language: str) -> str:
    text = (REPO / "README.md").read_text()
    section = text.split(heading, 1)[1]
    match = re.search(rf"```{language}\n(.*?)```", section, re.S)
    assert match, f"no {language} block after {heading!r}"
    return match.group(1)


@pytest.mark.slow
def test_command_line_examples_run(tmp_path, monkeypatch):
    (tmp_path / "src").symlink_to(REPO / "src")
    (tmp_path / "examples").symlink_to(REPO / "examples")
    commands = code_block_after("## The command line", "bash").splitlines()
    commands += code_block_after("## Scale-out", "bash").splitlines()
    commands += code_block_after("## Campaigns", "bash").splitlines()
    for line in commands:
        command = line.split("#", 1)[0].strip()
        if not command:
            continue
        argv = shlex.split(command)
        assert argv[0] == "medscale"
        done = subprocess.run(
            [sys.executable, "-m", "medscale.cli.main", *argv[1:], "-q"],
            cwd=tmp_path,
            capture_output=True,
            text=True,
        )
        assert done.returncode == 0, f"{command}\n{done.stdout}\n{done.stderr}"
    monkeypatch.chdir(tmp_path)
    library_example = code_block_after("## The library", "python")
    exec(compile(library_example, "README", "exec"), {"__name__": "readme"})
