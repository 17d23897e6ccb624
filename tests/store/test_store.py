from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from medscale.errors import StoreError, StoreVersionError
from medscale.io.stages import N2, N3, REM, UNKNOWN, W
from medscale.store.layout import ChannelInfo
from medscale.store.store import RecordingArrays, Store, stage_index


def make_arrays(recording_id: str = "r1", n_epochs: int = 40, seed: int = 0) -> RecordingArrays:
    rng = np.random.default_rng(seed)
    n = n_epochs * 30 * 128
    channels = [
        ChannelInfo("EEG C4-M1", "EEG", "C4-M1", 256.0, "uV", 0.1, 0.0, 20.0),
        ChannelInfo("EOG E1-M2", "EOG", "E1-M2", 256.0, "uV", 0.2, 0.0, 30.0),
    ]
    return RecordingArrays(
        dataset="toy",
        recording_id=recording_id,
        subject=recording_id,
        session="",
        sfreq_hz=128.0,
        epoch_length_s=30.0,
        signals=rng.integers(-2000, 2000, size=(2, n), dtype=np.int16),
        hypnogram=rng.choice(np.array([W, N2, N3, REM, UNKNOWN], dtype=np.int8), n_epochs),
        channels=channels,
        source_hash="s" * 64,
        config_hash="c" * 64,
        synthetic=True,
        metadata={"note": "test"},
    )


def test_written_recording_reads_back_exactly(tmp_path):
    store = Store.create(tmp_path / "s")
    arrays = make_arrays()
    info = store.write_recording(arrays)
    assert store.recordings() == [info]
    window = store.read_signals(info, ["EOG E1-M2"], 1000, 5000)
    np.testing.assert_array_equal(window[0], arrays.signals[1, 1000:5000].astype(np.float32) * 0.2)
    assert window.dtype == np.float32
    np.testing.assert_array_equal(store.read_hypnogram(info), arrays.hypnogram)
    assert info.stage_counts["UNKNOWN"] == int((arrays.hypnogram < 0).sum())


def test_stage_epochs_slice_per_stage(tmp_path):
    store = Store.create(tmp_path / "s")
    arrays = make_arrays(n_epochs=100)
    info = store.write_recording(arrays)
    epochs = store.read_stage_epochs(info)
    for code in (W, N2, N3, REM):
        chosen = epochs[info.stage_offsets[code] : info.stage_offsets[code + 1]]
        np.testing.assert_array_equal(chosen, np.flatnonzero(arrays.hypnogram == code))


@settings(max_examples=50, deadline=None)
@given(st.lists(st.integers(min_value=-1, max_value=4), max_size=300))
def test_stage_index_partitions_scored_epochs(stages):
    hypnogram = np.array(stages, dtype=np.int8)
    epochs, offsets = stage_index(hypnogram)
    assert offsets[-1] == len(epochs) == int((hypnogram >= 0).sum())
    for code in range(5):
        part = epochs[offsets[code] : offsets[code + 1]]
        assert (hypnogram[part] == code).all()
        assert list(part) == sorted(part)


def test_uncommitted_recording_is_invisible(tmp_path):
    store = Store.create(tmp_path / "s")
    info = store.write_recording(make_arrays("r1"))
    (tmp_path / "s" / "commits" / "toy" / "r1.json").unlink()  # as if killed before commit
    assert store.recordings() == []
    assert store.recording("toy", "r1") is None
    store.write_recording(make_arrays("r1"))  # the rewrite replaces the leftover folder
    assert store.recording("toy", "r1").content_hash == info.content_hash


def test_content_hash_depends_on_data_not_on_write_order(tmp_path):
    a, b = Store.create(tmp_path / "a"), Store.create(tmp_path / "b")
    a.write_recording(make_arrays("r1", seed=1))
    a.write_recording(make_arrays("r2", seed=2))
    b.write_recording(make_arrays("r2", seed=2))
    b.write_recording(make_arrays("r1", seed=1))
    assert a.content_hash() == b.content_hash()
    b.write_recording(make_arrays("r1", seed=3))
    assert a.content_hash() != b.content_hash()


def test_window_outside_recording_is_refused(tmp_path):
    store = Store.create(tmp_path / "s")
    info = store.write_recording(make_arrays(n_epochs=2))
    with pytest.raises(StoreError, match=r"outside 0:7680"):
        store.read_signals(info, None, 0, 10_000)
    with pytest.raises(StoreError, match=r"no channels \['EEG Fpz-Cz'\]"):
        store.read_signals(info, ["EEG Fpz-Cz"])


def test_folder_with_other_content_is_refused(tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "thesis.tex").write_text("x")
    with pytest.raises(StoreError, match="is not a medscale store"):
        Store.create(tmp_path / "mine")
    (tmp_path / "afile").write_text("x")
    with pytest.raises(StoreError, match="is a file"):
        Store.create(tmp_path / "afile")


def test_unknown_layout_version_is_refused_with_versions_named(tmp_path):
    Store.create(tmp_path / "s")
    meta_path = tmp_path / "s" / "zarr.json"
    meta = json.loads(meta_path.read_text())
    meta["attributes"]["medscale_store"]["layout_version"] = 99
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(StoreVersionError, match=r"layout version 99 .* reads versions \[1\]"):
        Store(tmp_path / "s")


def test_store_works_through_fsspec_urls():
    location = "memory://medscale-test/store"
    store = Store.create(location)
    arrays = make_arrays()
    info = store.write_recording(arrays)
    reopened = Store(location)
    assert [r.key for r in reopened.recordings()] == ["toy/r1"]
    np.testing.assert_array_equal(
        reopened.read_signals(info, ["EEG C4-M1"], 0, 100)[0],
        arrays.signals[0, :100].astype(np.float32) * np.float32(0.1),
    )


def test_few_files_per_recording(tmp_path):
    store = Store.create(tmp_path / "s")
    store.write_recording(make_arrays())
    files = [p for p in (tmp_path / "s" / "recordings" / "toy" / "r1").rglob("*") if p.is_file()]
    assert len(files) <= 8, files


def test_create_finishes_a_create_that_was_killed_after_a_bare_zarr_json(tmp_path):
    location = tmp_path / "s"
    location.mkdir()
    (location / "zarr.json").write_text('{"zarr_format": 3, "node_type": "group", "attri')
    store = Store.create(location)
    assert store.layout_version == 1
    (tmp_path / "t").mkdir()
    (tmp_path / "t" / "zarr.json").write_text('{"zarr_format": 3, "node_type": "group"}')
    (tmp_path / "t" / "data.bin").write_bytes(b"x")  # more than a bare group: someone's data
    with pytest.raises(StoreError, match="is not a medscale store"):
        Store.create(tmp_path / "t")
