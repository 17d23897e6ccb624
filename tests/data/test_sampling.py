"""The sampler: a pure function of (seed, epoch, sample), balanced over stages."""

from __future__ import annotations

from collections import Counter

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from medscale.data import SamplingConfig, WindowIndex, draw_window, sample_stream
from medscale.store.layout import RecordingInfo
from medscale.tasks import SLEEP_STAGING

from .fakes import fake_info


def _info(k: int, n_segments: int, dataset: str = "d") -> RecordingInfo:
    return fake_info(k, n_segments, dataset, [("C3", "EEG"), ("C4", "EEG"), ("E1", "EOG")])


def _index(window_epochs: int = 5) -> WindowIndex:
    # Recording 0 has no N1 at all and a long W run; recording 1 is mostly N2.
    hyp0 = np.array([0] * 30 + [2] * 5 + [3] * 3 + [4] * 2 + [-1] * 4, dtype=np.int8)
    hyp1 = np.array([2] * 50 + [1] * 2 + [0] * 2, dtype=np.int8)
    infos = [_info(0, len(hyp0)), _info(1, len(hyp1), "e")]
    return WindowIndex(
        infos, [hyp0, hyp1], SamplingConfig(window_epochs=window_epochs), task=SLEEP_STAGING
    )


def test_same_key_same_draw_and_seed_changes_it():
    index = _index()
    a = [draw_window(index, 7, 2, i)[0] for i in range(50)]
    b = [draw_window(index, 7, 2, i)[0] for i in reversed(range(50))][::-1]
    c = [draw_window(index, 8, 2, i)[0] for i in range(50)]
    d = [draw_window(index, 7, 3, i)[0] for i in range(50)]
    assert a == b
    assert [x.start_segment for x in a] != [x.start_segment for x in c]
    assert [x.start_segment for x in a] != [x.start_segment for x in d]


def test_stages_are_balanced_and_empty_classes_never_drawn():
    index = _index()
    draws = [draw_window(index, 0, 0, i)[0] for i in range(4000)]
    per_recording = {r: Counter(d.label for d in draws if d.recording == r) for r in (0, 1)}
    assert set(per_recording[0]) == {0, 2, 3, 4}  # recording 0 has no N1: never drawn
    assert set(per_recording[1]) == {0, 1, 2}
    for counts in per_recording.values():
        shares = np.array(list(counts.values())) / sum(counts.values())
        np.testing.assert_allclose(shares, 1 / len(counts), atol=0.05)
    # Two datasets of one recording each: alpha does not matter, each gets half.
    assert abs(sum(d.recording == 0 for d in draws) / len(draws) - 0.5) < 0.04


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 2**70),
    epoch=st.integers(0, 10_000),
    sample=st.integers(0, 2**40),
    window=st.integers(1, 44),
)
def test_window_fits_and_holds_an_epoch_of_the_drawn_stage(seed, epoch, sample, window):
    index = _index(window)
    draw, _ = draw_window(index, seed, epoch, sample)
    n = int(index.n_segments[draw.recording])
    assert 0 <= draw.start_segment <= n - window
    assert draw.start_segment <= draw.anchor_segment < draw.start_segment + window
    assert index.labels(draw.recording)[draw.anchor_segment] == draw.label
    eeg, eog = draw.rows
    assert eeg in (0, 1) and eog == 2


def test_seeds_above_2_to_63_keep_every_bit():
    """Seeds once passed through float64, so neighbouring large seeds gave one stream."""
    big = 2**64 - 1024
    first = sample_stream(big, 0, 0).integers(0, 2**62, size=4)
    neighbour = sample_stream(big + 1, 0, 0).integers(0, 2**62, size=4)
    assert not np.array_equal(first, neighbour)
