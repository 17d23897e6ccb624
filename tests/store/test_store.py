from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from medscale.cli.main import main
from medscale.errors import StoreError, StoreVersionError
from medscale.io.stages import N2, N3, REM, UNKNOWN, W
from medscale.store import migrate_store
from medscale.store.layout import ChannelInfo
from medscale.store.store import Record, Store, class_index, content_hash
from medscale.tasks import SLEEP_STAGING, TOY_IMAGES

V1_STORE = Path(__file__).parent / "data" / "v1_store"


def make_record(recording_id: str = "r1", n_segments: int = 40, seed: int = 0) -> Record:
    rng = np.random.default_rng(seed)
    n = n_segments * 30 * 128
    channels = [
        ChannelInfo("EEG C4-M1", "EEG", "C4-M1", 256.0, "uV", 0.1, 0.0, 20.0),
        ChannelInfo("EOG E1-M2", "EOG", "E1-M2", 256.0, "uV", 0.2, 0.0, 30.0),
    ]
    stages = np.array([W, N2, N3, REM, UNKNOWN], dtype=np.int8)
    return Record(
        dataset="toy",
        recording_id=recording_id,
        subject=recording_id,
        session="",
        sfreq_hz=128.0,
        segment_s=30.0,
        arrays={
            "signals": rng.integers(-2000, 2000, size=(2, n), dtype=np.int16),
            "segment_labels": rng.choice(stages, n_segments),
        },
        channels=channels,
        source_hash="s" * 64,
        config_hash="c" * 64,
        synthetic=True,
        metadata={"note": "test"},
    )


def sleep_store(path) -> Store:
    return Store.create(path, task=SLEEP_STAGING)


def test_written_recording_reads_back_exactly(tmp_path):
    store = sleep_store(tmp_path / "s")
    record = make_record()
    info = store.write_record(record)
    assert store.recordings() == [info]
    signals = record.arrays["signals"]
    window = store.read_signals(info, ["EOG E1-M2"], 1000, 5000)
    np.testing.assert_array_equal(window[0], signals[1, 1000:5000].astype(np.float32) * 0.2)
    assert window.dtype == np.float32
    hyp = record.arrays["segment_labels"]
    np.testing.assert_array_equal(store.read_segment_labels(info), hyp)
    assert info.class_counts["UNKNOWN"] == int((hyp < 0).sum())
    assert info.n_segments == 40 and info.segment_s == 30.0
    assert info.arrays["signals"].dims == ("channel", "time")
    assert store.open_array(info, "signals").metadata.dimension_names == ("channel", "time")
    assert store.task == SLEEP_STAGING


def test_class_segments_slice_per_stage(tmp_path):
    store = sleep_store(tmp_path / "s")
    record = make_record(n_segments=100)
    info = store.write_record(record)
    segments = store.read_array(info, "class_segments")
    for code in (W, N2, N3, REM):
        chosen = segments[info.class_offsets[code] : info.class_offsets[code + 1]]
        np.testing.assert_array_equal(
            chosen, np.flatnonzero(record.arrays["segment_labels"] == code)
        )


@settings(max_examples=50, deadline=None)
@given(st.lists(st.integers(min_value=-1, max_value=4), max_size=300))
def test_class_index_partitions_labelled_segments(stages):
    labels = np.array(stages, dtype=np.int8)
    entries, offsets = class_index(labels, 5)
    assert offsets[-1] == len(entries) == int((labels >= 0).sum())
    for code in range(5):
        part = entries[offsets[code] : offsets[code + 1]]
        assert (labels[part] == code).all()
        assert list(part) == sorted(part)


def test_uncommitted_recording_is_invisible(tmp_path):
    store = sleep_store(tmp_path / "s")
    info = store.write_record(make_record("r1"))
    (tmp_path / "s" / "commits" / "toy" / "r1.json").unlink()  # as if killed before commit
    assert store.recordings() == []
    assert store.recording("toy", "r1") is None
    store.write_record(make_record("r1"))  # the rewrite replaces the leftover folder
    assert store.recording("toy", "r1").content_hash == info.content_hash


def test_content_hash_depends_on_data_not_on_write_order(tmp_path):
    a, b = sleep_store(tmp_path / "a"), sleep_store(tmp_path / "b")
    a.write_record(make_record("r1", seed=1))
    a.write_record(make_record("r2", seed=2))
    b.write_record(make_record("r2", seed=2))
    b.write_record(make_record("r1", seed=1))
    assert a.content_hash() == b.content_hash()
    b.write_record(make_record("r1", seed=3))
    assert a.content_hash() != b.content_hash()


def test_window_outside_recording_is_refused(tmp_path):
    store = sleep_store(tmp_path / "s")
    info = store.write_record(make_record(n_segments=2))
    with pytest.raises(StoreError, match=r"outside 0:7680"):
        store.read_signals(info, None, 0, 10_000)
    with pytest.raises(StoreError, match=r"no channels \['EEG Fpz-Cz'\]"):
        store.read_signals(info, ["EEG Fpz-Cz"])


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"arrays": {"signals": np.zeros((2, 3840), np.int16)}}, r"missing \['segment_labels'\]"),
        ({"segment_s": 20.0}, "segment_s = 30.0 s"),
        (
            {
                "arrays": {
                    "signals": np.zeros((2, 3840), np.int16),
                    "segment_labels": np.array([7], np.int8),
                }
            },
            "codes in -1..4",
        ),
        (
            {
                "arrays": {
                    "signals": np.zeros((2, 3840), np.int16),
                    "segment_labels": np.zeros(1, np.int8),
                    "mask": np.zeros((1, 1, 1), np.uint8),
                }
            },
            "not of this task",
        ),
        (
            {
                "arrays": {
                    "signals": np.zeros(3840, np.int16),
                    "segment_labels": np.zeros(1, np.int8),
                }
            },
            r"expected dimensions \('channel', 'time'\)",
        ),
    ],
)
def test_records_that_do_not_fit_the_task_are_refused(tmp_path, change, message):
    store = sleep_store(tmp_path / "s")
    record = make_record(n_segments=1)
    for key, value in change.items():
        setattr(record, key, value)
    with pytest.raises(StoreError, match=message):
        store.write_record(record)


def test_a_store_serves_one_task(tmp_path):
    sleep_store(tmp_path / "s")
    with pytest.raises(StoreError, match="holds task 'sleep_staging', not 'toy_images'"):
        Store.create(tmp_path / "s", task=TOY_IMAGES)
    with pytest.raises(StoreError, match="a new store needs its task"):
        Store.create(tmp_path / "new")
    assert Store.create(tmp_path / "s").task == SLEEP_STAGING  # reopening needs no task


def test_folder_with_other_content_is_refused(tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "thesis.tex").write_text("x")
    with pytest.raises(StoreError, match="is not a medscale store"):
        sleep_store(tmp_path / "mine")
    (tmp_path / "afile").write_text("x")
    with pytest.raises(StoreError, match="is a file"):
        sleep_store(tmp_path / "afile")


def test_unknown_layout_version_is_refused_with_versions_named(tmp_path):
    sleep_store(tmp_path / "s")
    meta_path = tmp_path / "s" / "zarr.json"
    meta = json.loads(meta_path.read_text())
    meta["attributes"]["medscale_store"]["layout_version"] = 99
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(StoreVersionError, match=r"layout version 99 .* reads versions \[2\]"):
        Store(tmp_path / "s")


def test_store_works_through_fsspec_urls():
    location = "memory://medscale-test/store"
    store = sleep_store(location)
    record = make_record()
    info = store.write_record(record)
    reopened = Store(location)
    assert [r.key for r in reopened.recordings()] == ["toy/r1"]
    np.testing.assert_array_equal(
        reopened.read_signals(info, ["EEG C4-M1"], 0, 100)[0],
        record.arrays["signals"][0, :100].astype(np.float32) * np.float32(0.1),
    )


def test_few_files_per_recording(tmp_path):
    store = sleep_store(tmp_path / "s")
    store.write_record(make_record())
    files = [p for p in (tmp_path / "s" / "recordings" / "toy" / "r1").rglob("*") if p.is_file()]
    assert len(files) <= 8, files


def test_create_finishes_a_create_that_was_killed_after_a_bare_zarr_json(tmp_path):
    location = tmp_path / "s"
    location.mkdir()
    (location / "zarr.json").write_text('{"zarr_format": 3, "node_type": "group", "attri')
    store = sleep_store(location)
    assert store.layout_version == 2
    (tmp_path / "t").mkdir()
    (tmp_path / "t" / "zarr.json").write_text('{"zarr_format": 3, "node_type": "group"}')
    (tmp_path / "t" / "data.bin").write_bytes(b"x")  # more than a bare group: someone's data
    with pytest.raises(StoreError, match="is not a medscale store"):
        sleep_store(tmp_path / "t")


# -- layout 1 -> 2 ----------------------------------------------------------------------------


def _v1_copy(tmp_path) -> Path:
    """The checked-in layout-1 store (written by medscale 97488ed), copied so it can change."""
    out = tmp_path / "v1"
    shutil.copytree(V1_STORE, out)
    return out


def _v1_contents(location: Path) -> dict[str, tuple[dict, np.ndarray, np.ndarray]]:
    import zarr

    out = {}
    for path in sorted((location / "commits").glob("*/*.json")):
        commit = json.loads(path.read_text())
        group = location / "recordings" / commit["dataset"] / commit["recording_id"]
        signals = np.asarray(zarr.open_array(group / "signals", mode="r")[:])
        hyp = np.asarray(zarr.open_array(group / "hypnogram", mode="r")[:])
        out[f"{commit['dataset']}/{commit['recording_id']}"] = (commit, signals, hyp)
    return out


def test_v1_store_is_refused_with_the_migrate_command(tmp_path):
    location = _v1_copy(tmp_path)
    with pytest.raises(StoreVersionError, match=f"medscale store migrate {location}"):
        Store(location)


def test_migrate_keeps_every_value_and_content_hash_of_a_v1_store(tmp_path, capsys):
    location = _v1_copy(tmp_path)
    before = _v1_contents(location)
    assert main(["store", "migrate", str(location)]) == 0
    assert "layout v1 -> v2, 2 recording(s) migrated" in capsys.readouterr().out
    store = Store(location)
    assert store.task == SLEEP_STAGING and store.layout_version == 2
    infos = store.recordings()
    assert [i.key for i in infos] == sorted(before)
    for info in infos:
        commit, signals, hyp = before[info.key]
        assert info.n_segments == commit["n_epochs"] and info.segment_s == commit["epoch_length_s"]
        assert info.class_counts == commit["stage_counts"]
        assert info.class_offsets == tuple(commit["stage_offsets"])
        assert info.content_hash == commit["content_hash"]
        np.testing.assert_array_equal(store.read_segment_labels(info), hyp)
        stored = store.read_array(info, "signals")
        np.testing.assert_array_equal(stored, signals)
        record = Record(
            info.dataset, info.recording_id, info.subject, info.session,
            {"signals": stored, "segment_labels": hyp}, list(info.channels), "", "", True,
            sfreq_hz=info.sfreq_hz, segment_s=info.segment_s,
        )  # fmt: skip
        assert content_hash(record, SLEEP_STAGING) == info.content_hash  # the bytes are the same
    assert migrate_store(location).to_text().endswith("already layout v2, nothing to do")


def test_migrate_finishes_a_run_that_was_cut_short(tmp_path):
    location = _v1_copy(tmp_path)
    group = location / "recordings" / "v1demo" / "night0"
    (group / "hypnogram").rename(group / "segment_labels")  # killed after one array's rename
    report = migrate_store(location)
    assert (report.migrated, report.already) == (2, 0)
    np.testing.assert_array_equal(
        Store(location).read_segment_labels(Store(location).recording("v1demo", "night0")),
        [0, 0, 2, 2, -1, 4],
    )


def test_migrate_refuses_what_it_cannot_migrate(tmp_path):
    with pytest.raises(StoreError, match="not a medscale store"):
        migrate_store(tmp_path)
    store = sleep_store(tmp_path / "s")
    meta = json.loads((tmp_path / "s" / "zarr.json").read_text())
    meta["attributes"]["medscale_store"]["layout_version"] = 7
    (tmp_path / "s" / "zarr.json").write_text(json.dumps(meta))
    with pytest.raises(StoreVersionError, match="layout version 7 cannot be migrated"):
        migrate_store(store.location)
