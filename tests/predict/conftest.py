"""The reference path prediction must match: the night written into a store, served back by
`EvalNights` and scored by `predict_nights`, as evaluation does."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from medscale.io.stages import UNKNOWN
from medscale.predict.night import Night
from medscale.store.store import RecordingArrays, Store


def store_night(night: Night, root: Path) -> tuple[Store, str]:
    """``night`` as one recording of a new store at ``root``; returns the store and its key."""
    store = Store.create(root)
    arrays = RecordingArrays(
        dataset="predict",
        recording_id="night",
        subject="night",
        session="",
        sfreq_hz=night.sfreq_hz,
        epoch_length_s=night.epoch_length_s,
        signals=night.codes,
        hypnogram=np.full(night.n_epochs, UNKNOWN, dtype=np.int8),
        channels=night.infos,
        source_hash="",
        config_hash="",
        synthetic=False,
        metadata={},
    )
    return store, store.write_recording(arrays).key
