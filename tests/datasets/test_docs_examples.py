"""The Noxturnal walk-through in docs/datasets.md gives a spec that reads a Noxturnal export."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from medscale.datasets.spec import parse_dataset_spec
from medscale.io.hypnograms import read_hypnogram, to_aasm
from medscale.io.stages import N1, N2, N3, REM, UNKNOWN, W

ROOT = Path(__file__).resolve().parents[2]


def test_the_documented_noxturnal_spec_reads_a_noxturnal_export():
    text = (ROOT / "docs" / "datasets.md").read_text(encoding="utf-8")
    walkthrough = text[text.index("### Writing a spec for a Noxturnal export") :]
    block = re.search(r"The spec:\n\n```yaml\n(.*?)```", walkthrough, re.S)
    assert block is not None
    spec = parse_dataset_spec(yaml.safe_load(block.group(1)), "docs/datasets.md")
    export = ROOT / "tests" / "io" / "data" / "vendor_exports" / "noxturnal_fr.txt"
    raw = read_hypnogram(export, spec.annotations.format, **spec.annotations.options)
    stages = to_aasm(raw, spec.annotations.label_map).stages.tolist()
    assert stages == [W, W, N1, N2, N2, N3, N3, REM, REM, UNKNOWN, W]
