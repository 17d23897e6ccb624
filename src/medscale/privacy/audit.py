"""`audit_store`: look through a store for things that could identify a person.

It reads every JSON and Markdown file of the store (commit records, group attributes, ingest
reports) and reports:
- *identifier*: a string known to identify someone (names, codes, ids taken from the source
  headers with `identifiers_from_sources`, or given by the caller) found anywhere;
- *date*: a calendar date (birth dates, recording dates) outside the fields medscale writes
  for its own runs (``ingested_at``, ``started_at``, ``finished_at``);
- *edf-patient-field*: text shaped like an EDF+ patient field (``code sex dd-MMM-yyyy name``);
- *free-text*: an event label outside the known vocabulary.
The arrays hold numbers only and are not read.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medscale.store.store import Store

_RUN_TIME_KEYS = {"ingested_at", "started_at", "finished_at"}
_KNOWN_EVENT_LABELS = {"lights off", "lights on"}
_DATE = re.compile(
    r"\b(?:\d{1,2}[-./](?:\d{1,2}|[A-Za-z]{3})[-./](?:\d{4}|\d{2})|(?:19|20)\d\d-[01]\d-[0-3]\d)\b"
)
_EDF_PATIENT = re.compile(r"\b\S+ [MFX] \d{2}-[A-Za-z]{3}-\d{4}\b")
_NOT_IDENTIFYING = {"x", "m", "f", "edf", "startdate", "synthetic", "patient", "recording"}


@dataclass(frozen=True)
class Finding:
    """Something that looks identifying: where it is, what kind, and a short masked excerpt."""

    location: str
    kind: str
    excerpt: str


def _mask(text: str) -> str:
    return text if len(text) <= 4 else text[:2] + "*" * (len(text) - 4) + text[-2:]


def _strings(value: Any, path: str) -> Iterator[tuple[str, str]]:
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _strings(item, f"{path}.{key}" if path else str(key))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from _strings(item, f"{path}[{i}]")
    elif isinstance(value, str):
        yield path, value


def _text_findings(location: str, text: str, needles: list[str]) -> Iterator[Finding]:
    lowered = text.lower()
    for needle in needles:
        if needle in lowered:
            yield Finding(location, "identifier", _mask(needle))
    for match in _EDF_PATIENT.finditer(text):
        yield Finding(location, "edf-patient-field", _mask(match.group()))
    for match in _DATE.finditer(text):
        yield Finding(location, "date", _mask(match.group()))


def audit_store(store: Store, identifiers: Iterable[str] = ()) -> list[Finding]:
    """Every finding in the store's text files (see the module docstring)."""
    needles = sorted(
        {i.strip().lower() for i in identifiers if len(i.strip()) >= 3} - _NOT_IDENTIFYING,
        key=len,
        reverse=True,
    )
    fs, root = store.fs, store._root
    findings: list[Finding] = []
    paths = sorted(fs.find(root))
    json_paths = {p for p in paths if p.endswith(".json")}
    for path in paths:
        rel = path[len(root) :].lstrip("/")
        if path.endswith(".md") and path[:-3] + ".json" in json_paths:
            continue  # a report's Markdown repeats its JSON twin
        if not path.endswith((".json", ".md")):
            continue
        text = fs.cat_file(path).decode("utf-8", errors="replace")
        if path.endswith(".md"):
            findings += _text_findings(rel, text, needles)
            continue
        try:
            data = json.loads(text)
        except ValueError:
            findings.append(Finding(rel, "unreadable", "not valid JSON"))
            continue
        for key_path, value in _strings(data, ""):
            where = f"{rel}:{key_path}"
            if key_path.rsplit(".", 1)[-1] in _RUN_TIME_KEYS or ".libraries." in key_path:
                value = _DATE.sub("", value)  # run times and versions ("0.4.18") are not dates
            findings += _text_findings(where, value, needles)
            if re.search(r"lights\[\d+\]\.label$", key_path) and value.lower() not in (
                _KNOWN_EVENT_LABELS
            ):
                findings.append(Finding(where, "free-text", _mask(value)))
    return findings


def identifiers_from_sources(spec_name_or_path: str | Path, source: str | Path) -> list[str]:
    """Strings that identify people in a dataset's sources: header patient and recording
    fields, comments, and (when the spec pseudonymises) the source ids. For the audit only:
    they are returned to the caller, never written anywhere."""
    from medscale.datasets.spec import load_dataset_spec
    from medscale.ingest.plan import plan_ingest
    from medscale.io.signals import read_signals

    spec = load_dataset_spec(spec_name_or_path)
    plan = plan_ingest(spec, source)
    found: set[str] = set()
    for unit in plan.units:
        if unit.redact:
            found.update(value for _, value in unit.groups if len(value) >= 3)
        try:
            recording = read_signals(unit.signal_path, [], reader=spec.signals.reader)
        except Exception:  # an unreadable file holds nothing the store could have copied
            continue
        found.update(_header_tokens(recording.identifiers))
    return sorted(found)


def _header_tokens(identifiers: dict[str, str]) -> set[str]:
    """Identifying tokens of header fields: the EDF+ patient code and name, the recording
    admin code and technician, free-text patient fields and WFDB comments."""
    chosen: list[str] = []
    patient = identifiers.get("patient", "").split()
    if len(patient) >= 4:  # EDF+: code sex birthdate name
        chosen += [patient[0], *patient[3:]]
    else:
        chosen += patient
    recording = identifiers.get("recording", "").split()
    if recording[:1] == ["Startdate"] and len(recording) >= 4:  # EDF+: admin code, technician
        chosen += recording[2:4]
    chosen += identifiers.get("comments", "").split()
    tokens = {t for c in chosen for t in re.split(r"[_,;]+", c)}
    return {
        t
        for t in tokens
        if len(t) >= 3
        and t.lower() not in _NOT_IDENTIFYING
        and not _DATE.fullmatch(t)
        and not (t.isdigit() and len(t) < 5)  # ages and weights match random numbers
    }
