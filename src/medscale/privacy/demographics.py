"""Age and sex from a recording's header, kept only as the dataset spec allows.

EDF+ writes the patient field as ``code sex birthdate name`` (``X`` for unknown), and the
recording start date is in the header; MIT-BIH-style WFDB headers carry ``# age sex ...``
comments. Ages are computed at the recording date and, by default, banded.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Literal

from medscale.io.recording import Recording

AgePolicy = Literal["drop", "band", "exact"]
SexPolicy = Literal["drop", "keep"]
_MONTHS = {m: i for i, m in enumerate(
    ["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"], 1
)}  # fmt: skip
_WFDB_AGE_SEX = re.compile(r"^\s*(?P<age>\d{1,3})\s+(?P<sex>[MF])\b")


def _edf_plus_birthdate(patient: str) -> tuple[str | None, dt.date | None]:
    fields = patient.split()
    if len(fields) < 3:
        return None, None
    sex = fields[1] if fields[1] in ("M", "F") else None
    match = re.match(r"^(\d{2})-([A-Z]{3})-(\d{4})$", fields[2].upper())
    if match is None or match.group(2) not in _MONTHS:
        return sex, None
    try:
        born = dt.date(int(match.group(3)), _MONTHS[match.group(2)], int(match.group(1)))
    except ValueError:
        return sex, None
    return sex, born


def age_band(age_years: float, width: int = 5) -> str:
    """``"40-44"`` style bands; 90 and over become ``"90+"`` (HIPAA safe harbour)."""
    if age_years >= 90:
        return "90+"
    low = int(age_years // width) * width
    return f"{low}-{low + width - 1}"


def demographics(recording: Recording, age: AgePolicy, sex: SexPolicy) -> dict[str, str | int]:
    """The age and sex the policies allow, from the header fields; empty when unknown."""
    found_sex: str | None = None
    age_years: float | None = None
    patient = recording.identifiers.get("patient", "")
    comments = recording.identifiers.get("comments", "")
    if patient:
        found_sex, born = _edf_plus_birthdate(patient)
        if born is not None and recording.start is not None:
            age_years = (recording.start.date() - born).days / 365.25
    elif comments and (match := _WFDB_AGE_SEX.match(comments)):
        age_years, found_sex = float(match["age"]), match["sex"]
    out: dict[str, str | int] = {}
    if age_years is not None and 0 <= age_years < 130:
        if age == "band":
            out["age_band"] = age_band(age_years)
        elif age == "exact":
            out["age_years"] = int(age_years)
    if sex == "keep" and found_sex:
        out["sex"] = found_sex
    return out
