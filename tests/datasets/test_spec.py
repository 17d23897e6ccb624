from __future__ import annotations

import pytest
import yaml

from medscale.datasets.spec import list_datasets, load_dataset_spec, parse_dataset_spec
from medscale.errors import SpecError

MINIMAL = {
    "name": "toy",
    "version": 1,
    "signals": {"pattern": r"(?P<id>rec\d+)\.edf$"},
    "annotations": {"pattern": "{dir}/{id}.txt", "format": "epoch_text", "label_map": "yasa"},
    "recording_id": "{id}",
    "subject": "{id}",
    "channels": {"EEG C4-M1": ["C4-M1"]},
}


def test_every_shipped_spec_loads_and_is_short():
    names = list_datasets()
    for expected in (
        "sleep-edf-sc",
        "sleep-edf-st",
        "dreams",
        "hmc",
        "mitbih-slpdb",
        "nsrr",
        "mne-generic",
    ):
        assert expected in names
    for name in names:
        spec = load_dataset_spec(name)
        assert spec.name == name
        assert spec.kept_channels


def test_shipped_specs_are_30_lines_or_fewer():
    from importlib import resources

    folder = resources.files("medscale.datasets") / "specs"
    for path in folder.iterdir():
        if path.name.endswith(".yaml"):
            assert len(path.read_text().splitlines()) <= 30, path.name


def test_unknown_key_is_named_with_the_file(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(MINIMAL | {"chanels": {}}))
    with pytest.raises(SpecError, match=rf"{path}: unknown key 'chanels'"):
        load_dataset_spec(path)


def test_nested_unknown_key_and_wrong_type_are_named():
    bad = MINIMAL | {"align": {"mismatch": "trim", "wake_margin": 3}}
    with pytest.raises(SpecError, match=r"unknown key 'align.wake_margin'"):
        parse_dataset_spec(bad, "x.yaml")
    with pytest.raises(SpecError, match=r"field 'version'.*got 'one'"):
        parse_dataset_spec(MINIMAL | {"version": "one"}, "x.yaml")
    with pytest.raises(SpecError, match=r"field 'align.mismatch'"):
        parse_dataset_spec(MINIMAL | {"align": {"mismatch": "longest"}}, "x.yaml")


def test_missing_required_key_is_named():
    data = dict(MINIMAL)
    del data["subject"]
    with pytest.raises(SpecError, match=r"missing required key 'subject'"):
        parse_dataset_spec(data, "x.yaml")


def test_template_groups_must_exist_in_the_signal_pattern():
    with pytest.raises(SpecError, match=r"recording_id uses \['night'\]"):
        parse_dataset_spec(MINIMAL | {"recording_id": "{id}-{night}"}, "x.yaml")
    annotations = dict(MINIMAL["annotations"], pattern="{dir}/{stem}.txt")
    with pytest.raises(SpecError, match=r"annotations.pattern uses \['stem'\]"):
        parse_dataset_spec(MINIMAL | {"annotations": annotations}, "x.yaml")


def test_bad_derivation_regex_and_label_map_are_refused():
    with pytest.raises(SpecError, match=r"'C3 \+ M2' is not of the form 'A - B'"):
        parse_dataset_spec(MINIMAL | {"derivations": {"EEG C3-M2": "C3 + M2"}}, "x.yaml")
    with pytest.raises(SpecError, match=r"not a valid regular expression"):
        parse_dataset_spec(MINIMAL | {"signals": {"pattern": "(unclosed"}}, "x.yaml")
    annotations = dict(MINIMAL["annotations"], label_map="klingon")
    with pytest.raises(SpecError, match=r"unknown label map 'klingon'; shipped maps are"):
        parse_dataset_spec(MINIMAL | {"annotations": annotations}, "x.yaml")
    annotations = dict(MINIMAL["annotations"], label_map={"S1": "N5"})
    with pytest.raises(SpecError, match=r"label 'S1' maps to 'N5'"):
        parse_dataset_spec(MINIMAL | {"annotations": annotations}, "x.yaml")


def test_required_channel_must_be_declared():
    with pytest.raises(SpecError, match=r"required channels \['EEG O2-M1'\] are not declared"):
        parse_dataset_spec(MINIMAL | {"required": ["EEG O2-M1"]}, "x.yaml")


def test_unknown_dataset_name_lists_the_shipped_ones():
    with pytest.raises(
        SpecError, match=r"unknown dataset 'sleep-edf'; shipped specs are \[.*'sleep-edf-sc'"
    ):
        load_dataset_spec("sleep-edf")


def test_yaml_is_read_safely(tmp_path):
    path = tmp_path / "evil.yaml"
    path.write_text("name: !!python/object/apply:os.system ['echo pwned']\n")
    with pytest.raises(SpecError, match="not valid YAML"):
        load_dataset_spec(path)


def test_config_hash_ignores_formatting_but_not_content():
    a = parse_dataset_spec(MINIMAL)
    b = parse_dataset_spec(dict(reversed(list(MINIMAL.items()))))
    c = parse_dataset_spec(MINIMAL | {"version": 2})
    assert a.config_hash() == b.config_hash() != c.config_hash()
