from __future__ import annotations

import pytest

from medscale.datasets.spec import load_dataset_spec, parse_dataset_spec
from medscale.errors import SpecError
from medscale.ingest.plan import plan_ingest


def touch(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x")
    return path


def test_sleep_edf_pairs_psg_with_hypnogram_and_reports_the_rest(tmp_path):
    touch(tmp_path / "SC4001E0-PSG.edf")
    touch(tmp_path / "SC4001EC-Hypnogram.edf")
    touch(tmp_path / "SC4002E0-PSG.edf")  # no hypnogram
    touch(tmp_path / "SC4011EH-Hypnogram.edf")  # no PSG
    touch(tmp_path / "notes.txt")
    plan = plan_ingest(load_dataset_spec("sleep-edf-sc"), tmp_path)
    assert [(u.recording_id, u.subject, u.session) for u in plan.units] == [
        ("SC4001", "SC400", "1")
    ]
    assert plan.units[0].annotation_path.name == "SC4001EC-Hypnogram.edf"
    reasons = {f.path: f.reason for f in plan.unmatched}
    assert set(reasons) == {"SC4002E0-PSG.edf", "SC4011EH-Hypnogram.edf", "notes.txt"}
    assert "no annotation file matches" in reasons["SC4002E0-PSG.edf"]


def test_nsrr_layout_pairs_across_folders(tmp_path):
    for cohort, visit, stem in [
        ("shhs", "shhs1", "shhs1-200001"),
        ("mesa", "", "mesa-sleep-0001"),
        ("cfs", "", "cfs-visit5-800002"),
    ]:
        sub = f"{visit}/" if visit else ""
        touch(tmp_path / cohort / "polysomnography" / "edfs" / f"{sub}{stem}.edf")
        touch(
            tmp_path
            / cohort
            / "polysomnography"
            / "annotations-events-nsrr"
            / f"{sub}{stem}-nsrr.xml"
        )
    plan = plan_ingest(load_dataset_spec("nsrr"), tmp_path)
    assert sorted(u.recording_id for u in plan.units) == [
        "cfs-visit5-800002",
        "mesa-sleep-0001",
        "shhs1-200001",
    ]
    assert {u.subject for u in plan.units} == {"shhs-200001", "mesa-0001", "cfs-800002"}
    assert plan.unmatched == []


def test_annotation_pattern_cannot_leave_the_source_root(tmp_path):
    spec = parse_dataset_spec(
        {
            "name": "toy",
            "version": 1,
            "signals": {"pattern": r"(?P<id>rec\d)\.edf$"},
            "annotations": {"pattern": "../{id}.txt", "format": "epoch_text", "label_map": "yasa"},
            "recording_id": "{id}",
            "subject": "{id}",
            "channels": {"EEG": ["C4"]},
        }
    )
    root = tmp_path / "root"
    touch(root / "rec1.edf")
    touch(tmp_path / "rec1.txt")  # exists, but outside the root
    plan = plan_ingest(spec, root)
    assert plan.units == []
    assert "leaves the source folder" in plan.unmatched[0].reason


def test_symlink_pointing_outside_the_root_is_not_followed(tmp_path):
    spec = load_dataset_spec("sleep-edf-sc")
    root = tmp_path / "root"
    touch(root / "SC4001E0-PSG.edf")
    outside = touch(tmp_path / "elsewhere" / "SC4001EC-Hypnogram.edf")
    (root / "SC4001EC-Hypnogram.edf").symlink_to(outside)
    plan = plan_ingest(spec, root)
    assert plan.units == []


def test_duplicate_recording_ids_are_reported_not_merged(tmp_path):
    spec = load_dataset_spec("sleep-edf-sc")
    for folder in ("a", "b"):
        touch(tmp_path / folder / "SC4001E0-PSG.edf")
        touch(tmp_path / folder / "SC4001EC-Hypnogram.edf")
    plan = plan_ingest(spec, tmp_path)
    assert plan.units == []
    assert sum("is shared by" in f.reason for f in plan.unmatched) == 2


def test_missing_source_folder_is_a_clear_error(tmp_path):
    with pytest.raises(SpecError, match=r"source folder .*nope does not exist"):
        plan_ingest(load_dataset_spec("hmc"), tmp_path / "nope")


def test_a_signal_file_linked_from_outside_the_root_is_reported_not_read(tmp_path):
    root = tmp_path / "root"
    outside = touch(tmp_path / "elsewhere" / "SC4001E0-PSG.edf")
    touch(root / "SC4001EC-Hypnogram.edf")
    (root / "SC4001E0-PSG.edf").symlink_to(outside)
    plan = plan_ingest(load_dataset_spec("sleep-edf-sc"), root)
    assert plan.units == []
    reasons = {f.path: f.reason for f in plan.unmatched}
    assert reasons["SC4001E0-PSG.edf"] == "a link that leaves the source folder"
