"""No identifier from a source header, file name or annotation reaches the store or a report."""

from __future__ import annotations

import json
import logging
import os

import edfio
import pytest

from medscale.errors import SpecError
from medscale.ingest import ingest
from medscale.privacy import load_pseudonym_key, mask_credentials
from medscale.store import Store

from .conftest import DATE_SPELLINGS, PLANTED, START_DATE, write_identified_edf


def all_bytes(folder) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file())


def assert_nothing_planted(blob: bytes, where: str) -> None:
    lowered = blob.lower()
    for token in [*PLANTED, *DATE_SPELLINGS]:
        assert token.lower().encode() not in lowered, f"{token!r} leaked into {where}"


def test_the_source_really_holds_what_is_planted(tmp_path):
    """The control for the tests below: each planted value is in the source header."""
    path = tmp_path / "Jane_Doe-PSG.edf"
    write_identified_edf(path)
    header = path.read_bytes()[:256]
    for token in [*PLANTED, "14-JUN-2021", "14.06.21"]:
        assert token.encode() in header, f"{token!r} is not in the EDF header"
    edf = edfio.read_edf(path)
    assert edf.recording.startdate == START_DATE and "Hospital_Ward7" in edf.patient.additional


def test_identifiers_never_reach_store_report_or_logs(hospital_spec, tmp_path, caplog, capsys):
    write_identified_edf(tmp_path / "src" / "Jane_Doe-PSG.edf")
    caplog.set_level(logging.DEBUG)
    report = ingest(hospital_spec, tmp_path / "src", tmp_path / "store", progress=True)
    assert report.ok, [u.reason for u in report.units]
    (info,) = Store(tmp_path / "store").recordings()
    assert info.recording_id.startswith("rec-") and info.subject.startswith("sub-")
    assert info.metadata["demographics"] == {"age_band": "60-64", "sex": "F"}
    assert info.metadata["start_time_of_day"] == "22:30:00"  # clock time kept, the date not
    assert_nothing_planted(json.dumps(info.to_json()).encode(), "the commit record")
    assert_nothing_planted(all_bytes(tmp_path / "store"), "the store")
    assert_nothing_planted(report.to_json().encode(), "the JSON report")
    assert_nothing_planted(report.to_markdown().encode(), "the Markdown report")
    out, err = capsys.readouterr()
    assert_nothing_planted((out + err + caplog.text).encode(), "the logs")
    assert b"Jane_Doe" not in all_bytes(tmp_path / "store")  # the file name either


def test_failed_recordings_report_no_file_names_either(hospital_spec, tmp_path):
    source = tmp_path / "src"
    write_identified_edf(source / "Jane_Doe-PSG.edf")
    (source / "Jane_Doe-PSG.edf").write_bytes(b"0       " + b"\x00" * 100)  # now unreadable
    (source / "Jane_Doe_notes.txt").write_text("not a PSG")
    report = ingest(hospital_spec, source, tmp_path / "store", progress=False)
    assert report.units[0].status == "failed" and "RecordingReadError" in report.units[0].reason
    assert_nothing_planted(report.to_json().encode(), "a failure report")


def test_pseudonyms_are_stable_under_one_key_and_differ_under_another(monkeypatch):
    key = load_pseudonym_key()
    assert key.subject("ds", "Jane") == load_pseudonym_key().subject("ds", "Jane")
    assert key.subject("ds", "Jane") != key.subject("other", "Jane")
    monkeypatch.setenv("MEDSCALE_PSEUDONYM_KEY", "another-secret-of-enough-length")
    other = load_pseudonym_key()
    assert other.subject("ds", "Jane") != key.subject("ds", "Jane")
    assert "another-secret" not in repr(other)
    assert key.session("ds", "2") == "2"  # night numbers carry order, not identity


def test_a_new_key_file_is_private_and_never_stored(hospital_spec, tmp_path, monkeypatch):
    key_file = tmp_path / "cfg" / "pseudonym.key"
    monkeypatch.setenv("MEDSCALE_PSEUDONYM_KEY_FILE", str(key_file))
    write_identified_edf(tmp_path / "src" / "Jane_Doe-PSG.edf")
    report = ingest(hospital_spec, tmp_path / "src", tmp_path / "store", progress=False)
    assert oct(key_file.stat().st_mode & 0o777) == "0o600"
    assert any("created a new pseudonym key" in w for w in report.run_warnings)
    assert key_file.read_text().strip().encode() not in all_bytes(tmp_path / "store")


def test_a_second_key_for_the_same_dataset_is_refused(hospital_spec, tmp_path, monkeypatch):
    write_identified_edf(tmp_path / "src" / "Jane_Doe-PSG.edf")
    ingest(hospital_spec, tmp_path / "src", tmp_path / "store", progress=False)
    monkeypatch.setenv("MEDSCALE_PSEUDONYM_KEY", "a-different-key-0123456789")
    with pytest.raises(SpecError, match=r"ingested with pseudonym key id '\w+', this run has"):
        ingest(hospital_spec, tmp_path / "src", tmp_path / "store", progress=False)


def test_credentials_are_masked():
    assert mask_credentials("postgresql://medscale:s3cret@127.0.0.1/ledger") == (
        "postgresql://medscale:***@127.0.0.1/ledger"
    )
    assert mask_credentials("https://h/x?token=abc123&n=1") == "https://h/x?token=***&n=1"
    assert mask_credentials("/plain/path") == "/plain/path"


def test_store_location_with_a_password_is_masked_in_the_report(hospital_spec, tmp_path):
    write_identified_edf(tmp_path / "src" / "Jane_Doe-PSG.edf")
    report = ingest(hospital_spec, tmp_path / "src", "memory://u:hunter2@bucket/s", progress=False)
    assert "hunter2" not in report.to_json()
    assert json.loads(report.to_json())["store"] == "memory://u:***@bucket/s"
    assert os.environ.get("MEDSCALE_PSEUDONYM_KEY") is None
