"""Torch loaders: the same samples in the same order for any worker count and rank split."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
import torch

from medscale.data import (
    AugmentConfig,
    DataConfig,
    EvalNights,
    ProcessingConfig,
    RankSampler,
    SamplingConfig,
    SpectrogramConfig,
    TrainWindows,
    channel_combinations,
    create_train_loader,
)
from medscale.store import Store

N_SAMPLES = 24
CONFIG = DataConfig(
    seed=1,
    sampling=SamplingConfig(window_epochs=10, samples_per_epoch=N_SAMPLES),
    processing=ProcessingConfig(augment=AugmentConfig(channel_dropout_p=0.3, erase_p=0.5)),
)


def _digest(x: torch.Tensor) -> str:
    return hashlib.sha1(x.numpy().tobytes()).hexdigest()[:12]


def _config(sampling: dict) -> DataConfig:
    return CONFIG.model_copy(
        update={"sampling": SamplingConfig(**{"samples_per_epoch": N_SAMPLES, **sampling})}
    )


def _run(store, workers: int, rank: int, world: int, epoch: int = 0, start: int = 0, config=CONFIG):
    loader = create_train_loader(
        store,
        config,
        batch_size=4,
        num_workers=workers,
        rank=rank,
        world_size=world,
        epoch=epoch,
        start=start,
    )
    out = []
    for batch in loader:
        for k in range(len(batch["sample"])):
            out.append((int(batch["sample"][k]), _digest(batch["x"][k]), _digest(batch["y"][k])))
    return out


# On a 2-core machine torch warns that 4 workers exceed its suggestion; that is the point here.
@pytest.mark.filterwarnings("ignore:This DataLoader will create:UserWarning")
@pytest.mark.parametrize("workers", [1, 2, 4])
def test_worker_and_rank_counts_do_not_change_the_samples(sampler_store, workers):
    _, store, sampling = sampler_store
    config = _config(sampling)
    reference = _run(store, 0, 0, 1, config=config)
    assert [s for s, _, _ in reference] == list(range(N_SAMPLES))
    assert len({x for _, x, _ in reference}) > 5  # the samples are not all alike
    assert _run(store, workers, 0, 1, config=config) == reference
    ranks = [_run(store, workers, r, 2, config=config) for r in (0, 1)]
    # Each rank's order is a fixed stride of the single-rank sequence: disjoint, complete.
    assert ranks[0] == reference[0::2]
    assert ranks[1] == reference[1::2]
    assert sorted(ranks[0] + ranks[1]) == sorted(reference)


def test_resuming_at_sample_k_continues_the_sequence(sampler_store):
    _, store, sampling = sampler_store
    config = _config(sampling)
    full = _run(store, 0, 1, 2, epoch=3, config=config)
    assert _run(store, 0, 1, 2, epoch=3, start=5, config=config) == full[5:]
    assert _run(store, 0, 1, 2, epoch=4, config=config) != full


def test_rank_sampler_lengths_cover_uneven_totals():
    samplers = [RankSampler(10, rank=r, world_size=3) for r in range(3)]
    keys = [k for s in samplers for k in s]
    assert sorted(i for _, i in keys) == list(range(10))
    assert [len(s) for s in samplers] == [4, 3, 3]
    samplers[0].set_start(3)
    assert list(samplers[0]) == [(0, 9)] and len(samplers[0]) == 1


def test_files_are_opened_once_per_recording_not_per_sample(serving_store):
    dataset = TrainWindows(serving_store, CONFIG)
    for i in range(N_SAMPLES):
        dataset[i]
    assert 1 <= dataset.sampler.reader.opened <= int(dataset.index.eligible.sum())


def test_robust_scaling_matches_the_stored_statistics(serving_store):
    config = DataConfig(sampling=SamplingConfig(window_epochs=10), processing={"clip": None})
    dataset = TrainWindows(serving_store, config, augment=False)
    sample = dataset.load(0, 5)
    store = Store(serving_store)
    info = store.recordings()[sample["recording"]]
    spe = dataset.index.samples_per_segment
    start = sample["start_segment"] * spe
    draw_rows = [
        r
        for r in range(len(info.channels))
        if np.allclose(
            (
                store.read_signals(info, [info.channels[r].name], start, start + 10 * spe)[0]
                - info.channels[r].median
            )
            / info.channels[r].iqr,
            sample["x"][0],
            atol=1e-4,
        )
    ]
    assert draw_rows and info.channels[draw_rows[0]].type == "EEG"
    assert sample["x"].dtype == np.float32
    hyp = store.read_segment_labels(info)
    np.testing.assert_array_equal(
        sample["y"], hyp[sample["start_segment"] : sample["start_segment"] + 10]
    )


def test_clipping_bandpass_and_spectrogram_shapes(serving_store):
    config = DataConfig(
        sampling=SamplingConfig(window_epochs=4),
        processing=ProcessingConfig(
            clip=2.0, bandpass_hz=(0.3, 35.0), spectrogram=SpectrogramConfig(window_s=2, hop_s=1)
        ),
    )
    sample = TrainWindows(serving_store, config).load(0, 0)
    # (channels, epochs, freqs, frames): 2-s frames at 128 Hz, 1-s hop over a 30-s epoch.
    assert sample["x"].shape == (2, 4, 129, 29)
    assert sample["x"].dtype == np.float32
    plain = TrainWindows(
        serving_store, config.model_copy(update={"processing": ProcessingConfig(clip=2.0)})
    ).load(0, 0)
    assert np.abs(plain["x"]).max() <= 2.0


def test_eval_covers_every_night_epoch_and_channel_combination(serving_store):
    config = DataConfig(eval_chunk_epochs=16, sampling=SamplingConfig(missing_group="zeros"))
    nights = EvalNights(serving_store, config)
    index = nights.index
    seen: dict[tuple[str, int], list[int]] = {}
    for chunk in nights:
        assert chunk["x"].shape[1] == len(chunk["y"]) * index.samples_per_segment
        assert chunk["x"].dtype == torch.float32
        seen.setdefault((chunk["recording"], chunk["combination"]), []).append(len(chunk["y"]))
        if chunk["recording"].startswith("synthetic-b/"):
            assert chunk["channels"][1] is None  # no EOG there: zeros, under this rule
            assert not chunk["x"][1].any()
    for r in range(len(index)):
        combos = channel_combinations(index, r)
        assert len(combos) == (6 if index.has_groups[r] else 3)  # 3 EEG x 2 EOG
        for c in range(len(combos)):
            lengths = seen[(index.key(r), c)]
            assert sum(lengths) == index.n_segments[r]
            assert all(n == 16 for n in lengths[:-1])


def test_eval_split_over_workers_yields_each_night_once(serving_store):
    nights = EvalNights(serving_store, DataConfig())
    loader = torch.utils.data.DataLoader(nights, batch_size=None, num_workers=2)
    keys = {(c["recording"], c["combination"], c["start_epoch"]) for c in loader}
    single = {(c["recording"], c["combination"], c["start_epoch"]) for c in nights}
    assert keys == single and len(single) > 0


def test_zarr_fallback_serves_the_same_windows(serving_store, monkeypatch):
    fast = TrainWindows(serving_store, CONFIG)
    expected = [fast.load(0, i)["x"] for i in range(6)]
    import medscale.data.reader as reader_module

    # As for a store at a URL: no local folder, so every read goes through zarr-python.
    monkeypatch.setattr(reader_module, "local_array_folder", lambda *a: None)
    slow = TrainWindows(serving_store, CONFIG)
    for i, x in enumerate(expected):
        np.testing.assert_array_equal(slow.load(0, i)["x"], x)
    assert not any(
        isinstance(r, reader_module.LocalArrayReader) for r in slow.sampler.reader._open.values()
    )
