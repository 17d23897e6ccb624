"""Config parsing, the window index and its bad-input errors."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from medscale.data import ChannelGroup, DataConfig, SamplingConfig, WindowIndex
from medscale.errors import ChannelError, SpecError, StoreVersionError
from medscale.store.layout import RecordingInfo
from medscale.tasks import SLEEP_STAGING as SLEEP

from .fakes import fake_info


def test_config_round_trips_through_its_manifest_dict():
    config = DataConfig(seed=3, sampling=SamplingConfig(window_epochs=200, alpha=0.2))
    again = DataConfig.from_dict(json.loads(json.dumps(config.to_dict())))
    assert again == config
    assert again.sampling.window_epochs == 200


def test_config_unknown_key_is_named():
    with pytest.raises(SpecError, match=r"sampling\.windw_epochs"):
        DataConfig.from_dict({"sampling": {"windw_epochs": 35}})


def test_importing_data_and_store_does_not_import_torch():
    code = "import sys, medscale.data, medscale.store; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def _info(k: int, n_segments: int, dataset: str = "d", types=("EEG", "EOG")) -> RecordingInfo:
    return fake_info(k, n_segments, dataset, [(f"{t} {j}", t) for j, t in enumerate(types)])


def test_index_of_20000_recordings_is_flat_numpy():
    rng = np.random.default_rng(0)
    infos = [_info(k, 100, dataset=f"d{k % 3}") for k in range(20_000)]
    hyps = [rng.integers(-1, 5, size=100).astype(np.int8) for _ in infos]
    index = WindowIndex(infos, hyps, SamplingConfig(), task=SLEEP)
    # No per-recording Python objects: every attribute is an array, a config or a short tuple.
    for name, value in vars(index).items():
        if isinstance(value, list | dict):
            pytest.fail(f"WindowIndex.{name} is a {type(value).__name__}")
        if isinstance(value, tuple):
            assert len(value) < 100, name
    assert index.keys.dtype.kind == "S"
    # int8 label + int32 class index per segment, under 200 bytes of other fields per night
    assert index.nbytes < 20_000 * (5 * 100 + 200)
    assert index.eligible.all()


def test_dataset_probability_mixes_share_and_uniform():
    infos = [_info(k, 40, "big") for k in range(30)] + [_info(100, 40, "small")]
    hyps = [np.zeros(40, np.int8)] * 31
    index = WindowIndex(infos, hyps, SamplingConfig(alpha=0.5), task=SLEEP)
    np.testing.assert_allclose(
        index.draw.dataset_probability, [0.5 * 30 / 31 + 0.25, 0.5 / 31 + 0.25]
    )


def test_recording_without_a_group_is_skipped_or_kept_by_rule():
    infos = [_info(0, 40), _info(1, 40, types=("EEG",))]
    hyps = [np.zeros(40, np.int8)] * 2
    skip = WindowIndex(infos, hyps, SamplingConfig(), task=SLEEP)
    assert skip.eligible.tolist() == [True, False]
    assert skip.skipped() == {"d/r00001": "lacks a channel group"}
    zeros = WindowIndex(infos, hyps, SamplingConfig(missing_group="zeros"), task=SLEEP)
    assert zeros.eligible.tolist() == [True, True]


def test_group_no_recording_has_is_one_clear_error():
    groups = (ChannelGroup(name="emg", types=("EMG",)),)
    with pytest.raises(ChannelError, match=r"'emg'.*matches no channel.*stored types are"):
        WindowIndex(
            [_info(0, 40)],
            [np.zeros(40, np.int8)],
            SamplingConfig(channel_groups=groups),
            task=SLEEP,
        )


def test_window_longer_than_a_recording_names_it():
    infos = [_info(0, 40), _info(1, 20)]
    hyps = [np.zeros(40, np.int8), np.zeros(20, np.int8)]
    with pytest.raises(SpecError, match=r"window_epochs=35 is longer than 1 .*d/r00001 \(20"):
        WindowIndex(infos, hyps, SamplingConfig(), task=SLEEP)
    index = WindowIndex(infos, hyps, SamplingConfig(short_recordings="skip"), task=SLEEP)
    assert index.eligible.tolist() == [True, False]


def test_unknown_layout_version_is_refused(serving_store, tmp_path, monkeypatch):
    import medscale.data.index as index_module

    monkeypatch.setattr(index_module, "SUPPORTED_LAYOUT_VERSIONS", (0,))
    with pytest.raises(StoreVersionError, match="layout version 2 is not one the data layer"):
        WindowIndex.from_store(serving_store)


def test_store_with_future_layout_version_is_refused(serving_store, tmp_path):
    import shutil

    copy = tmp_path / "store"
    shutil.copytree(serving_store, copy)
    meta = json.loads((copy / "zarr.json").read_text())
    meta["attributes"]["medscale_store"]["layout_version"] = 99
    (copy / "zarr.json").write_text(json.dumps(meta))
    with pytest.raises(StoreVersionError, match="99"):
        WindowIndex.from_store(copy)


def test_index_from_store_matches_commit_records(serving_store):
    index = WindowIndex.from_store(serving_store)
    assert index.dataset_names == ("synthetic", "synthetic-b")
    assert len(index) == 6
    # synthetic-b was ingested without EOG: left out of sampling under the default rule.
    assert index.eligible.tolist() == [True] * 4 + [False] * 2
    for r in range(len(index)):
        hyp = index.labels(r)
        for stage in range(5):
            lo, hi = index.class_offsets[r, stage], index.class_offsets[r, stage + 1]
            assert (hyp[index.class_segments[lo:hi]] == stage).all()
