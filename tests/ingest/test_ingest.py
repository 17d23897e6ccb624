from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from medscale.datasets import load_dataset_spec, parse_dataset_spec
from medscale.ingest import ingest
from medscale.ingest.convert import resample
from medscale.io.signals import read_signals
from medscale.store import Store
from medscale.synth import synthesize_nights


def test_ingest_stores_every_night_with_report(synth_nights, tmp_path):
    report = ingest("synthetic", synth_nights, tmp_path / "s", progress=False)
    assert report.ok
    assert [u.status for u in report.units] == ["ingested"] * 3
    assert [f["path"] for f in report.unmatched_files] == ["SYNTHETIC.json"]
    json_path, md_path = report.report_paths
    saved = json.loads(Path(json_path).read_text())
    assert [u["recording_id"] for u in saved["units"]] == ["synth-000", "synth-001", "synth-002"]
    assert "| synth-000 | ingested |" in Path(md_path).read_text()
    store = Store(tmp_path / "s")
    infos = store.recordings()
    assert [i.recording_id for i in infos] == ["synth-000", "synth-001", "synth-002"]
    for info, unit in zip(infos, report.units, strict=True):
        assert info.synthetic
        assert info.n_segments == 60
        assert sum(info.class_counts.values()) == 60 == sum(unit.stage_counts.values())
        assert info.channel_names == load_dataset_spec("synthetic").kept_channels
        assert info.metadata["provenance"]["adapter"] == "synthetic"
        assert {f["role"] for f in info.metadata["source_files"]} == {"signals", "annotations"}


def test_stored_values_stay_within_half_a_source_step(synth_nights, tmp_path):
    ingest("synthetic", synth_nights, tmp_path / "s", progress=False)
    store = Store(tmp_path / "s")
    info = store.recordings()[0]
    source = read_signals(synth_nights / "synth-000-PSG.edf", ["EEG C4-M1"]).signal("EEG C4-M1")
    expected = resample(source.data, source.sfreq_hz, 128.0)[: info.n_samples]
    stored = store.read_signals(info, ["EEG C4-M1"])[0]
    step = info.channels[info.channel_names.index("EEG C4-M1")].scale
    assert step == pytest.approx(source.resolution)
    assert np.max(np.abs(stored - expected)) <= step / 2 + 1e-3


def test_hypnogram_in_store_matches_the_annotation_file(synth_nights, tmp_path):
    from medscale.io.hypnograms import read_hypnogram, to_aasm
    from medscale.io.stages import load_label_map

    ingest("synthetic", synth_nights, tmp_path / "s", progress=False)
    store = Store(tmp_path / "s")
    raw = read_hypnogram(synth_nights / "synth-001-Hypnogram.edf", "edf_annotations")
    expected = to_aasm(raw, load_label_map("aasm_sleep_stage")).stages
    np.testing.assert_array_equal(store.read_segment_labels(store.recordings()[1]), expected)


def test_rerun_skips_what_is_up_to_date_and_redoes_what_changed(synth_nights, tmp_path):
    store_path = tmp_path / "s"
    first = ingest("synthetic", synth_nights, store_path, progress=False)
    before = Store(store_path).content_hash()
    again = ingest("synthetic", synth_nights, store_path, progress=False)
    assert [u.status for u in again.units] == ["skipped"] * 3
    assert Store(store_path).content_hash() == before == first.store_content_hash

    # A changed source re-ingests that recording only.
    other = synthesize_nights(tmp_path / "other", 2, seed=99, duration_h=0.5, progress=False)[1]
    other.signal_path.replace(synth_nights / "synth-001-PSG.edf")
    other.hypnogram_path.replace(synth_nights / "synth-001-Hypnogram.edf")
    changed = ingest("synthetic", synth_nights, store_path, progress=False)
    assert [u.status for u in changed.units] == ["skipped", "ingested", "skipped"]
    assert Store(store_path).content_hash() != before

    # A changed spec (config) re-ingests everything; --overwrite does too.
    spec = load_dataset_spec("synthetic")
    bumped = parse_dataset_spec(spec.model_dump() | {"version": spec.version + 1}, "bumped")
    assert [u.status for u in ingest(bumped, synth_nights, store_path, progress=False).units] == [
        "ingested"
    ] * 3
    forced = ingest(bumped, synth_nights, store_path, overwrite=True, progress=False)
    assert [u.status for u in forced.units] == ["ingested"] * 3


@pytest.mark.slow
def test_two_workers_give_the_same_store_as_one(synth_nights, tmp_path):
    one = ingest("synthetic", synth_nights, tmp_path / "one", workers=1, progress=False)
    two = ingest("synthetic", synth_nights, tmp_path / "two", workers=2, progress=False)
    assert one.store_content_hash == two.store_content_hash
    assert [u.status for u in two.units] == ["ingested"] * 3


def test_quirky_files_are_ingested_with_warnings(tmp_path):
    from medscale.synth.quirks import QUIRKS

    synthesize_nights(
        tmp_path / "q", len(QUIRKS), seed=3, duration_h=0.25, quirks=QUIRKS, progress=False
    )
    report = ingest("synthetic", tmp_path / "q", tmp_path / "s", progress=False)
    assert [u.status for u in report.units] == ["ingested"] * len(QUIRKS), [
        u.reason for u in report.units
    ]
    for unit in report.units:
        assert unit.warnings, f"{unit.recording_id} carries a quirk but reports no warning"


def test_synthetic_files_never_enter_a_real_dataset(synth_nights, tmp_path):
    spec = load_dataset_spec("synthetic")
    real = parse_dataset_spec(spec.model_dump() | {"name": "real-looking", "synthetic": False}, "x")
    report = ingest(real, synth_nights, tmp_path / "s", progress=False)
    assert {u.status for u in report.units} == {"failed"}
    assert "synthetic recording cannot go into dataset 'real-looking'" in report.units[0].reason
    assert Store(tmp_path / "s").recordings() == []


def test_missing_required_channel_fails_that_recording_naming_what_was_found(
    synth_nights, tmp_path
):
    spec = load_dataset_spec("synthetic").model_dump()
    spec["channels"]["EEG C3-M2"] = ["EEG C3-M2", "C3-M2"]
    spec["required"] = ["EEG C3-M2"]
    report = ingest(parse_dataset_spec(spec, "x"), synth_nights, tmp_path / "s", progress=False)
    assert not report.ok
    reason = report.units[0].reason
    assert "required channels ['EEG C3-M2'] not found" in reason
    assert "'EEG C4-M1'" in reason  # what the file has


def test_alias_matching_nothing_is_a_run_warning_naming_the_field(synth_nights, tmp_path):
    spec = load_dataset_spec("synthetic").model_dump()
    spec["channels"]["EEG Fpz-Cz"] = ["EEG Fpz-Cz"]
    report = ingest(parse_dataset_spec(spec, "x"), synth_nights, tmp_path / "s", progress=False)
    assert report.ok
    assert any("channels.EEG Fpz-Cz matched no recording" in w for w in report.run_warnings)
    assert all("EEG Fpz-Cz" in u.channels_missing for u in report.units)


def test_derived_channel_is_the_difference_of_its_operands(synth_nights, tmp_path):
    spec = load_dataset_spec("synthetic").model_dump()
    spec["derivations"] = {"EOG E1-E2": "EOG E1-M2 - EOG E2-M2"}
    ingest(parse_dataset_spec(spec, "x"), synth_nights, tmp_path / "s", progress=False)
    store = Store(tmp_path / "s")
    info = store.recordings()[0]
    e1, e2, diff = store.read_signals(info, ["EOG E1-M2", "EOG E2-M2", "EOG E1-E2"], 0, 3840)
    step = info.channels[info.channel_names.index("EOG E1-E2")].scale
    assert np.max(np.abs((e1 - e2) - diff)) <= 2 * step
    assert info.channels[-1].source == "EOG E1-M2 - EOG E2-M2"


def test_ingest_writes_to_object_storage_through_fsspec(synth_nights):
    import fsspec

    location = "memory://medscale-ingest-test/store"
    report = ingest("synthetic", synth_nights, location, progress=False)
    assert report.ok and report.count("ingested") == 3
    store = Store(location)
    assert len(store.recordings()) == 3
    assert store.content_hash() == report.store_content_hash
    fs = fsspec.filesystem("memory")
    assert fs.exists("/medscale-ingest-test/store/reports")
    fs.rm("/medscale-ingest-test", recursive=True)


def test_code_quantiles_match_numpy_on_the_stored_values():
    from medscale.ingest.convert import code_quantiles

    rng = np.random.default_rng(0)
    codes = rng.normal(0, 300, size=10_001).round().astype(np.int16)
    expected = np.percentile(codes, [25, 50, 75], method="inverted_cdf")
    np.testing.assert_array_equal(code_quantiles(codes, (0.25, 0.5, 0.75)), expected)
