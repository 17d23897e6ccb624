"""The YASA baseline runs YASA's shipped classifier on stored recordings."""

from __future__ import annotations

import numpy as np
import pytest

from medscale.baselines.yasa import yasa_on_store, yasa_probabilities
from medscale.errors import MedscaleError
from medscale.ingest import ingest
from medscale.store import Store
from medscale.synth import synthesize_nights

pytest.importorskip("yasa")
pytestmark = pytest.mark.slow


def test_yasa_stages_surrogate_nights_well_above_chance(tmp_path):
    synthesize_nights(tmp_path / "n", 1, seed=3, duration_h=1.0, progress=False)
    ingest("synthetic", tmp_path / "n", tmp_path / "s", progress=False)
    store = Store(tmp_path / "s")
    (info,) = store.recordings()
    proba = yasa_on_store(store, [info])[info.key]
    truth = store.read_segment_labels(info)
    assert proba.shape == (info.n_segments, 5)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-4)
    scored = truth >= 0
    accuracy = (proba.argmax(axis=1)[scored] == truth[scored]).mean()
    # Five stages: chance is ~0.2-0.4 here; a scrambled column order would not reach 0.6.
    assert accuracy > 0.6


def test_too_short_a_night_is_refused_by_name():
    with pytest.raises(MedscaleError, match="at least 10 epochs"):
        yasa_probabilities(np.zeros(5 * 30 * 100), 100.0)
