"""Run the README's walkthrough from a fresh clone: what a new user types, in order.

Usage: ``python scripts/readme_walkthrough.py [--keep DIR]``

Clones this repository's committed HEAD (``git clone``, so a file the README needs but git
does not track fails here) into a temporary folder and, inside the clone, runs every command
of the README's "The command line", "Scale-out" and "Campaigns" blocks with ``-q`` and then
the Python block of "The library", with the clone's ``src`` first on ``PYTHONPATH``.
The install line and ``medscale demo`` of the first block are left to CI's install step and
to tests/test_demo.py (which runs the demo on short settings); ``make test`` runs this.
Exits non-zero at the first command that fails, printing it with its output.
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
COMMAND_SECTIONS = ("## The command line", "## Scale-out", "## Campaigns")
LIBRARY_SECTION = "## The library"


def code_block_after(readme: str, heading: str, language: str) -> str:
    """The first ``language`` code block after ``heading`` in the README text."""
    if heading not in readme:
        raise SystemExit(f"README.md has no section {heading!r}")
    match = re.search(rf"```{language}\n(.*?)```", readme.split(heading, 1)[1], re.S)
    if not match:
        raise SystemExit(f"README.md: no {language} block after {heading!r}")
    return match.group(1)


def walkthrough_commands(readme: str) -> list[list[str]]:
    """The medscale commands of the README's command blocks, comments dropped."""
    commands = []
    for heading in COMMAND_SECTIONS:
        for line in code_block_after(readme, heading, "bash").splitlines():
            command = line.split("#", 1)[0].strip()
            if command:
                argv = shlex.split(command)
                if argv[0] != "medscale":
                    raise SystemExit(f"README.md {heading}: not a medscale command: {command}")
                commands.append(argv)
    return commands


def run(clone: Path) -> None:
    if not (REPO / ".git").exists():
        sys.exit(f"{REPO} is not a git checkout: the walkthrough starts from `git clone`")
    subprocess.run(["git", "clone", "--quiet", str(REPO), str(clone)], check=True)
    readme = (clone / "README.md").read_text()
    env = {**os.environ, "PYTHONPATH": str(clone / "src"), "MPLBACKEND": "Agg"}
    steps = [
        [sys.executable, "-m", "medscale.cli.main", *a[1:], "-q"]
        for a in walkthrough_commands(readme)
    ]
    steps.append([sys.executable, "-c", code_block_after(readme, LIBRARY_SECTION, "python")])
    for i, argv in enumerate(steps, 1):
        shown = (
            "python (README's library example)"
            if argv[1] == "-c"
            else "medscale " + shlex.join(argv[3:])
        )
        print(f"[{i}/{len(steps)}] {shown}", flush=True)
        done = subprocess.run(argv, cwd=clone, env=env, capture_output=True, text=True)
        if done.returncode != 0:
            sys.exit(
                f"README command failed ({done.returncode}): {shown}\n{done.stdout}\n{done.stderr}"
            )
    print(f"README walkthrough: {len(steps)} steps passed in a fresh clone")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", type=Path, help="clone into this (new) folder and keep it")
    args = parser.parse_args()
    if args.keep is not None:
        run(args.keep)
        return
    with tempfile.TemporaryDirectory(prefix="medscale-readme-") as scratch:
        run(Path(scratch) / "medscale")


if __name__ == "__main__":
    main()
