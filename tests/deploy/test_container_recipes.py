"""The container recipes in deploy/container parse (no container engine runs here, so they
are not built by the tests): the Dockerfile's instructions, the Apptainer definition's header
and sections, and the shell inside them."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
CONTAINER = REPO / "deploy" / "container"
DOCKERFILE = CONTAINER / "Dockerfile"
DEFINITION = CONTAINER / "medscale.def"

DOCKER_INSTRUCTIONS = {
    "ADD", "ARG", "CMD", "COPY", "ENTRYPOINT", "ENV", "EXPOSE", "FROM", "HEALTHCHECK",
    "LABEL", "MAINTAINER", "ONBUILD", "RUN", "SHELL", "STOPSIGNAL", "USER", "VOLUME", "WORKDIR",
}  # fmt: skip
DEF_SECTIONS = {
    "%setup", "%files", "%environment", "%post", "%runscript", "%startscript", "%test",
    "%labels", "%help", "%arguments",
}  # fmt: skip


def dockerfile_instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with line continuations joined and comments dropped."""
    instructions, current = [], ""
    for raw in text.splitlines():
        line = raw.strip()
        if not current and (not line or line.startswith("#")):
            continue
        if current and line.startswith("#"):
            continue  # a comment inside a continued instruction
        if line.endswith("\\"):
            current += line[:-1] + " "
            continue
        current += line
        keyword, _, rest = current.partition(" ")
        instructions.append((keyword, rest.strip()))
        current = ""
    assert not current, "the last instruction ends in a line continuation"
    return instructions


def definition_parts(text: str) -> tuple[dict[str, str], dict[str, str]]:
    """(header keywords, section name -> body) of an Apptainer definition file."""
    header: dict[str, str] = {}
    sections: dict[str, list[str]] = {}
    current = None
    for line in text.splitlines():
        if line.startswith("%"):
            current = line.split()[0]
            assert current not in sections, f"{current} twice"
            sections[current] = []
        elif current is not None:
            sections[current].append(line)
        elif line.strip() and not line.lstrip().startswith("#"):
            key, sep, value = line.partition(":")
            assert sep, f"not a header line: {line!r}"
            header[key.strip()] = value.strip()
    return header, {name: "\n".join(body) for name, body in sections.items()}


def test_dockerfile_instructions_are_known_and_from_comes_first():
    instructions = dockerfile_instructions(DOCKERFILE.read_text())
    for keyword, _ in instructions:
        assert keyword in DOCKER_INSTRUCTIONS, keyword
    keywords = [k for k, _ in instructions]
    first = next(k for k in keywords if k != "ARG")  # only ARG may come before FROM
    assert first == "FROM"
    assert keywords.count("FROM") == 1


def test_dockerfile_runs_medscale_as_a_non_root_user():
    instructions = dockerfile_instructions(DOCKERFILE.read_text())
    users = [args for k, args in instructions if k == "USER"]
    assert users and users[-1] not in ("root", "0"), users
    last_user = max(i for i, (k, _) in enumerate(instructions) if k == "USER")
    assert all(k != "RUN" for k, _ in instructions[last_user:]), "RUN after the final USER"
    (entrypoint,) = [args for k, args in instructions if k == "ENTRYPOINT"]
    assert json.loads(entrypoint) == ["medscale"]  # exec form: signals reach medscale


def test_dockerfile_installs_medscale_with_torch_and_copies_existing_paths():
    instructions = dockerfile_instructions(DOCKERFILE.read_text())
    runs = " ".join(args for k, args in instructions if k == "RUN")
    assert 'pip install "${TORCH_SPEC}"' in runs
    assert 'pip install ".[${EXTRAS}]"' in runs
    args = dict(a.split("=", 1) for k, a in instructions if k == "ARG" and "=" in a)
    assert args["TORCH_SPEC"] == "torch"  # PyPI's default: the CUDA build on Linux x86_64
    assert "yasa" in args["EXTRAS"]
    assert re.match(r"nvidia/cuda:[\d.]+-\w+-ubuntu[\d.]+$", args["CUDA_BASE"])
    for keyword, rest in instructions:
        if keyword == "COPY":
            *sources, _dest = rest.split()
            for source in sources:
                assert (REPO / source).exists(), source


def test_dockerignore_beside_the_dockerfile_keeps_what_the_image_copies():
    ignore = (CONTAINER / "Dockerfile.dockerignore").read_text().split()
    assert ignore[ignore.index("*") :].count("*") == 1
    for kept in ("!pyproject.toml", "!README.md", "!src"):
        assert kept in ignore


def test_definition_has_header_and_sections():
    header, sections = definition_parts(DEFINITION.read_text())
    assert header["Bootstrap"] == "docker"
    assert header["From"]
    assert set(sections) <= DEF_SECTIONS, set(sections) - DEF_SECTIONS
    assert {"%post", "%runscript", "%files", "%environment"} <= set(sections)
    assert 'exec medscale "$@"' in sections["%runscript"]
    for line in sections["%files"].splitlines():
        if line.strip():
            source = line.split()[0]
            assert (REPO / source).exists(), source


@pytest.mark.skipif(shutil.which("sh") is None, reason="no sh")
@pytest.mark.parametrize("section", ["%post", "%runscript", "%environment", "%test"])
def test_definition_shell_sections_parse(section, tmp_path):
    _, sections = definition_parts(DEFINITION.read_text())
    script = tmp_path / "section.sh"
    script.write_text(sections[section] + "\n")
    result = subprocess.run(["sh", "-n", str(script)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_definition_and_dockerfile_agree_on_python_and_base():
    header, sections = definition_parts(DEFINITION.read_text())
    instructions = dockerfile_instructions(DOCKERFILE.read_text())
    args = dict(a.split("=", 1) for k, a in instructions if k == "ARG" and "=" in a)
    assert header["From"] == args["CUDA_BASE"]
    runs = " ".join(a for k, a in instructions if k == "RUN")
    for needed in ("python3.11", "python3.11-venv"):
        assert needed in runs and needed in sections["%post"]
