"""The samplers: pure functions of (seed, pass, sample), balanced over classes, events,
foreground; stage-balanced draws unchanged from before the general engine."""

from __future__ import annotations

import itertools
from collections import Counter

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from medscale.data import (
    DataConfig,
    SamplingConfig,
    WindowIndex,
    draw_window,
    make_sampler,
    sample_stream,
)
from medscale.store import Store
from medscale.store.layout import RecordingInfo
from medscale.synth import write_toy_volume_store
from medscale.tasks import SLEEP_STAGING, TOY_EVENTS

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


def test_stage_balanced_draws_are_those_of_medscale_before_the_general_engine():
    # Drawn by medscale 97488ed (layout 1, before samplers became per task) on this index.
    before = [
        (1, 2, 49, 46, (0, 2)), (1, 2, 34, 33, (0, 2)), (0, 3, 35, 35, (0, 2)),
        (1, 2, 23, 20, (1, 2)), (0, 3, 35, 32, (0, 2)), (0, 0, 27, 27, (1, 2)),
        (1, 1, 50, 49, (0, 2)), (1, 0, 53, 49, (0, 2)),
    ]  # fmt: skip
    draws = [draw_window(_index(), 7, 2, i)[0] for i in range(8)]
    now = [(d.recording, d.label, d.anchor_segment, d.start_segment, d.rows) for d in draws]
    assert now == before


# -- every sampler ----------------------------------------------------------------------------


def _sampler(store: str, sampling: dict, seed: int = 7):
    return make_sampler(store, DataConfig(seed=seed, sampling=SamplingConfig(**sampling)))


def test_every_sampler_is_a_pure_function_of_seed_pass_and_index(sampler_store):
    _, store, sampling = sampler_store
    sampler = _sampler(store, sampling)
    forward = [sampler.draw(2, i) for i in range(40)]
    backward = [sampler.draw(2, i) for i in reversed(range(40))][::-1]
    assert forward == backward
    fresh = _sampler(store, sampling)  # another process would build its own
    assert [fresh.draw(2, i) for i in range(40)] == forward
    other_seed = _sampler(store, sampling, seed=8)
    assert [other_seed.draw(2, i) for i in range(40)] != forward
    assert [sampler.draw(3, i) for i in range(40)] != forward
    a, b = sampler.load(2, 5), fresh.load(2, 5)
    np.testing.assert_array_equal(a["x"], b["x"])
    np.testing.assert_array_equal(a["y"], b["y"])


def test_event_windows_follow_the_event_ratio(toy_stores):
    for ratio in (0.2, 0.8):
        sampling = {"window_epochs": 5, "channel_groups": [{"name": "s", "types": ["SIG"]}]}
        sampler = _sampler(toy_stores["events"], sampling | {"event_ratio": ratio})
        draws = [sampler.draw(0, i) for i in range(1500)]
        share = np.mean([d.label == 1 for d in draws])
        assert abs(share - ratio) < 0.04, (ratio, share)
        for d in draws[:200]:
            labels = sampler.index.labels(d.recording)
            assert labels[d.anchor_segment] == d.label
            assert d.start_segment <= d.anchor_segment < d.start_segment + 5


def test_event_window_targets_are_the_tasks_targets(toy_stores):
    sampling = {"window_epochs": 5, "channel_groups": [{"name": "s", "types": ["SIG"]}]}
    sampler = _sampler(toy_stores["events"], sampling)
    store = Store(toy_stores["events"])
    for i in range(20):
        sample = sampler.load(0, i)
        info = store.recordings()[sample["recording"]]
        start = sample["start_segment"]
        events = store.read_array(info, "events")
        expected = TOY_EVENTS.targets(events, start=start, stop=start + 5)
        np.testing.assert_array_equal(sample["y"], expected)
        assert sample["x"].shape == (1, 5 * 2 * 64)


def test_images_come_whole_with_their_labels(toy_stores):
    sampler = _sampler(toy_stores["images"], {})
    store = Store(toy_stores["images"])
    infos = store.recordings()
    recordings = set()
    for i in range(30):
        sample = sampler.load(0, i)
        info = infos[sample["recording"]]
        recordings.add(sample["recording"])
        np.testing.assert_array_equal(sample["y"], store.read_array(info, "image_labels"))
        raw = store.read_array(info, "image").astype(np.float32) * info.channels[0].scale
        c = info.channels[0]
        expected = np.clip((raw - c.median) / c.iqr, -20, 20)
        np.testing.assert_allclose(sample["x"], expected, atol=1e-4)
    assert len(recordings) > 6


def test_patches_balance_foreground_and_read_only_their_chunks(toy_stores):
    sampling = {"patch_size": (8, 16, 16), "foreground_ratio": 0.5}
    sampler = _sampler(toy_stores["volumes"], sampling)
    draws = [sampler.draw(0, i) for i in range(600)]
    assert abs(np.mean([d.label == 1 for d in draws]) - 0.5) < 0.06
    store = Store(toy_stores["volumes"])
    infos = store.recordings()
    for i in range(12):
        sample = sampler.load(0, i)
        info = infos[sample["recording"]]
        z, y, x = (int(v) for v in sample["start"])
        box = (slice(z, z + 8), slice(y, y + 16), slice(x, x + 16))
        mask = store.read_array(info, "mask", box)
        np.testing.assert_array_equal(sample["y"], mask)
        if sample["label"] == 1:
            assert mask.any()  # centred on a ball


def test_a_patch_reads_only_the_chunks_it_overlaps(tmp_path):
    store = write_toy_volume_store(tmp_path / "v", 1, shape=(70, 70, 70))  # 2^3 chunks of 64^3
    config = DataConfig(sampling=SamplingConfig(patch_size=(8, 8, 8)), cache_bytes=10**8)
    sampler = make_sampler(store.location, config)
    needed: set[tuple[int, ...]] = set()
    for i in range(5):
        sample = sampler.load(0, i)
        start = [int(v) for v in sample["start"]]
        needed.update(
            (0, *(k // 64 for k in corner))
            for corner in itertools.product(*[(a, a + 7) for a in start])
        )
    # The volume's chunks read (its noise is never all fill value, so each one read is cached)
    # are exactly those the patches overlap.
    assert set(sampler.readers["volume"]._reader(0)._cache) == needed
