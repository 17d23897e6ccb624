from __future__ import annotations

import datetime as dt
from pathlib import Path

import edfio
import numpy as np
import pytest

from medscale.datasets import load_dataset_spec, parse_dataset_spec
from medscale.synth import synthesize_psg

# Identifiers planted in the headers; none of them may reach the store, a report or a log.
PATIENT_CODE, PATIENT_NAME, BIRTH = "MRN48213", "Jane_Doe", dt.date(1961, 3, 2)
ADMIN_CODE, TECHNICIAN, WARD = "ADM77731", "TechSmithers", "Hospital_Ward7"
PLANTED = [PATIENT_CODE, "Jane", "Doe", "02-MAR-1961", ADMIN_CODE, TECHNICIAN, WARD]
# The recording date is an identifier too (HIPAA): the clock time is kept, the date is not.
# How the EDF+ header writes it (recording field, then the legacy startdate field), and how
# medscale would if it kept it.
START_DATE = dt.date(2021, 6, 14)
DATE_SPELLINGS = ["14-JUN-2021", "14.06.21", "2021-06-14", "20210614", "14.06.2021"]


def write_identified_edf(path: Path, seed: int = 0, n_epochs: int = 20) -> None:
    """A SYNTHETIC night whose EDF+ header carries a real-looking patient identity: every
    token of `PLANTED` and the start date (`DATE_SPELLINGS`) are in the header bytes (the
    file name holds `PATIENT_NAME` too)."""
    rng = np.random.default_rng(seed)
    stages = rng.choice(np.array([0, 1, 2, 3, 4], dtype=np.int8), n_epochs)
    signals = {s.label: s for s in synthesize_psg(stages, sfreq_hz=64, rng=rng)}
    edf_signals = [
        edfio.EdfSignal(
            np.clip(signals[label].data, -3276.8, 3276.7),
            64,
            label=label,
            physical_dimension="uV",
            physical_range=(-3276.8, 3276.7),
            digital_range=(-32768, 32767),
        )
        for label in ("EEG C4-M1", "EOG E1-M2")
    ]
    edf = edfio.Edf(
        edf_signals,
        patient=edfio.Patient(
            code=PATIENT_CODE, sex="F", birthdate=BIRTH, name=PATIENT_NAME, additional=[WARD]
        ),
        recording=edfio.Recording(
            startdate=START_DATE,
            hospital_administration_code=ADMIN_CODE,
            investigator_technician_code=TECHNICIAN,
            equipment_code="SYNTHETIC",
            additional=[WARD],
        ),
        starttime=dt.time(22, 30),
        annotations=[],
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    edf.write(path)
    labels = {0: "W", 1: "N1", 2: "N2", 3: "N3", 4: "R"}
    annotations = [
        edfio.EdfAnnotation(30.0 * i, 30.0, f"Sleep stage {labels[int(s)]}")
        for i, s in enumerate(stages)
    ]
    annotations.append(edfio.EdfAnnotation(15.0, None, "Patient Jane Doe said she slept badly"))
    edfio.Edf(
        [], annotations=annotations, patient=edfio.Patient(code=PATIENT_CODE, name=PATIENT_NAME)
    ).write(path.with_name(path.name.replace("-PSG.edf", "-Hypnogram.edf")))


@pytest.fixture
def hospital_spec():
    """A hospital dataset: ids pseudonymised (the default), banded age and sex allowed."""
    spec = load_dataset_spec("synthetic").model_dump()
    spec.update(
        name="hospital",
        synthetic=True,
        channels={"EEG C4-M1": ["EEG C4-M1"], "EOG E1-M2": ["EOG E1-M2"]},
        required=["EEG C4-M1"],
        privacy={"ids": "pseudonymize", "age": "band", "sex": "keep"},
    )
    spec["signals"]["pattern"] = r"(^|/)(?P<id>[A-Za-z_]+\d*)-PSG\.edf$"
    spec["annotations"]["pattern"] = "{dir}/{id}-Hypnogram.edf"
    return parse_dataset_spec(spec, "hospital.yaml")
