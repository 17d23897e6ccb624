"""A tiny trained run shared by the prediction and export tests, and the reference path
prediction must match: the night written into a store, served back by `EvalNights` and
scored by `predict_nights`, as evaluation does."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from medscale.ingest import ingest
from medscale.io.stages import UNKNOWN
from medscale.predict.night import Night
from medscale.store.store import Record, Store
from medscale.synth import synthesize_nights
from medscale.tasks import SLEEP_STAGING

from ..data.conftest import second_dataset_spec


def store_night(night: Night, root: Path) -> tuple[Store, str]:
    """``night`` as one recording of a new store at ``root``; returns the store and its key."""
    store = Store.create(root, task=SLEEP_STAGING)
    record = Record(
        dataset="predict",
        recording_id="night",
        subject="night",
        session="",
        sfreq_hz=night.sfreq_hz,
        segment_s=night.epoch_length_s,
        arrays={
            "signals": night.codes,
            "segment_labels": np.full(night.n_epochs, UNKNOWN, dtype=np.int8),
        },
        channels=night.infos,
        source_hash="",
        config_hash="",
        synthetic=False,
        metadata={},
    )
    return store, store.write_record(record).key


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory) -> tuple[Path, Path, Path]:
    """(run folder, its store, the nights it was ingested from)."""
    from medscale.train import TrainConfig, train

    root = tmp_path_factory.mktemp("predict-run")
    synthesize_nights(root / "nights", 4, seed=12, duration_h=0.5, progress=False)
    ingest("synthetic", root / "nights", root / "store", progress=False)
    # One more night stored without its EOG: the EEG+EOG model cannot score it.
    synthesize_nights(root / "no-eog", 1, seed=13, duration_h=0.5, progress=False)
    ingest(second_dataset_spec(), root / "no-eog", root / "store", progress=False)
    config = TrainConfig.from_dict(
        {
            "model": "usleep-small",
            "model_kwargs": {"depth": 3, "init_filters": 4},
            "data": {"sampling": {"window_epochs": 2, "samples_per_epoch": 8}},
            "batch_size": 2,
            "max_steps": 4,
            "val_every": 2,
            "checkpoint_every": 2,
            "log_every": 1,
            "split": {"val_fraction": 0.25, "test_fraction": 0.25},
        }
    )
    train(config, root / "store", root / "run", progress=False)
    return root / "run", root / "store", root / "nights"
