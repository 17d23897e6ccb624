"""A small two-dataset sleep store, ingested once per session by the funnel, and SYNTHETIC toy
stores of the other tasks, so that the determinism tests run for every sampler.

``synthetic``: 4 half-hour nights with EEG, EOG and EMG. ``synthetic-b``: 2 nights of the
same surrogate kind ingested without the EOG channels, so a recording can lack a group.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from medscale.datasets import load_dataset_spec, parse_dataset_spec
from medscale.ingest import ingest
from medscale.synth import (
    synthesize_nights,
    write_toy_event_store,
    write_toy_image_store,
    write_toy_volume_store,
)


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


# -- every sampler ----------------------------------------------------------------------------

_TOY_BUILDERS = {
    "events": lambda path: write_toy_event_store(path, 3, duration_s=60.0),
    "images": lambda path: write_toy_image_store(path, 12),
    "volumes": lambda path: write_toy_volume_store(path, 3),
}
#: sampling settings per sampler, for the determinism tests that run for every sampler
SAMPLER_SAMPLING = {
    "stage-balanced windows": {"window_epochs": 10},
    "events": {
        "window_epochs": 5,
        "channel_groups": [{"name": "sig", "types": ["SIG"]}],
        "event_ratio": 0.5,
    },
    "images": {},
    "volumes": {"patch_size": (8, 16, 16), "foreground_ratio": 0.5},
}


@pytest.fixture(scope="session")
def toy_stores(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("toy")
    return {name: build(root / name).location for name, build in _TOY_BUILDERS.items()}


@pytest.fixture(params=list(SAMPLER_SAMPLING))
def sampler_store(request, serving_store, toy_stores) -> tuple[str, str, dict]:
    """(sampler name, store, sampling settings) for each sampler medscale has."""
    name = request.param
    store = serving_store if name == "stage-balanced windows" else toy_stores[name]
    return name, str(store), SAMPLER_SAMPLING[name]
