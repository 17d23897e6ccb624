"""A small two-dataset store, ingested once per session by the funnel.

``synthetic``: 4 half-hour nights with EEG, EOG and EMG. ``synthetic-b``: 2 nights of the
same surrogate kind ingested without the EOG channels, so a recording can lack a group.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from medscale.datasets import load_dataset_spec, parse_dataset_spec
from medscale.ingest import ingest
from medscale.synth import synthesize_nights


def second_dataset_spec(keep_eog: bool = False):
    spec = load_dataset_spec("synthetic").model_dump()
    channels = {k: v for k, v in spec["channels"].items() if keep_eog or not k.startswith("EOG")}
    return parse_dataset_spec(spec | {"name": "synthetic-b", "channels": channels}, "test spec")


@pytest.fixture(scope="session")
def serving_store(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("serving")
    nights_a, nights_b, store = root / "a", root / "b", root / "store"
    synthesize_nights(nights_a, 4, seed=5, duration_h=0.5, progress=False)
    synthesize_nights(nights_b, 2, seed=6, duration_h=0.5, progress=False)
    ingest("synthetic", nights_a, store, progress=False)
    ingest(second_dataset_spec(), nights_b, store, progress=False)
    return store
