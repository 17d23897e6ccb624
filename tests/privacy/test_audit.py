from __future__ import annotations

import json

from medscale.cli.main import main
from medscale.ingest import ingest
from medscale.privacy.audit import audit_store, identifiers_from_sources
from medscale.store import Store

from .conftest import ADMIN_CODE, PATIENT_CODE, write_identified_edf


def ingest_identified(spec, tmp_path):
    write_identified_edf(tmp_path / "src" / "Jane_Doe-PSG.edf")
    ingest(spec, tmp_path / "src", tmp_path / "store", progress=False)
    return Store(tmp_path / "store")


def test_identifiers_are_read_from_the_source_headers(hospital_spec, tmp_path):
    spec_file = tmp_path / "hospital.yaml"
    spec_file.write_text(json.dumps(hospital_spec.model_dump()))  # JSON is YAML
    write_identified_edf(tmp_path / "src" / "Jane_Doe-PSG.edf")
    found = identifiers_from_sources(spec_file, tmp_path / "src")
    for expected in (PATIENT_CODE, "Jane", "Doe", ADMIN_CODE, "TechSmithers"):
        assert expected in found
    assert "Jane_Doe" in found  # the source id, since the spec pseudonymises


def test_a_clean_store_has_no_findings(hospital_spec, tmp_path):
    store = ingest_identified(hospital_spec, tmp_path)
    assert audit_store(store, [PATIENT_CODE, "Jane", "Doe", ADMIN_CODE, "Jane_Doe"]) == []


def test_planted_identifiers_dates_and_free_text_are_found(hospital_spec, tmp_path):
    store = ingest_identified(hospital_spec, tmp_path)
    (commit,) = (tmp_path / "store" / "commits" / "hospital").glob("*.json")
    record = json.loads(commit.read_text())
    record["metadata"]["warnings"].append(f"patient {PATIENT_CODE} born 02-MAR-1961")
    record["metadata"]["lights"].append(
        {"onset_s": 1.0, "duration_s": 0.0, "label": "Jane said hi"}
    )
    record["metadata"]["note"] = "X F 02-MAR-1961 Jane_Doe"
    commit.write_text(json.dumps(record))
    findings = audit_store(store, [PATIENT_CODE, "Jane"])
    kinds = {f.kind for f in findings}
    assert kinds == {"identifier", "date", "free-text", "edf-patient-field"}
    assert any(f.kind == "identifier" and "metadata.warnings" in f.location for f in findings)
    assert all(PATIENT_CODE not in f.excerpt for f in findings)  # the output masks them too


def test_audit_command_exits_1_on_findings(hospital_spec, tmp_path, capsys):
    ingest_identified(hospital_spec, tmp_path)
    assert main(["privacy", "audit", str(tmp_path / "store")]) == 0
    report = next((tmp_path / "store" / "reports").glob("*.md"))
    report.write_text(report.read_text() + "\nscored by TechSmithers on 14.06.2021\n")
    (tmp_path / "store" / "reports" / "extra-notes.md").write_text("TechSmithers 14.06.2021")
    assert main(["privacy", "audit", str(tmp_path / "store")]) == 1
    out = capsys.readouterr().out
    assert "date" in out and "finding(s)" in out
