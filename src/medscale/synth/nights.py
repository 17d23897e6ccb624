"""Write surrogate PSG nights as EDF+ files, always labelled as synthetic.

Per night ``synth-NNN`` there is a signal file ``synth-NNN-PSG.edf`` (EDF+C, 1-s data records)
and an annotation-only hypnogram ``synth-NNN-Hypnogram.edf`` with one "Sleep stage W/N1/N2/N3/R"
annotation per 30-s epoch (the HMC layout). A ``SYNTHETIC.json`` manifest in the output folder
records the seed, the model, the medscale version, the stage counts and any quirks.

Night ``i`` draws from streams seeded by ``(seed, i)`` only, so nights are independent and
reproducible: the same seed gives byte-identical files (on the same platform and library
versions), and generating 20 nights repeats the first 10 of a 10-night run.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import edfio
import numpy as np
from tqdm import tqdm

from medscale.atomic import write_json_atomic
from medscale.errors import SpecError
from medscale.io.edf_annotations import write_edf_atomic, write_hypnogram_edf
from medscale.io.stages import STAGE_NAMES
from medscale.synth.hypnogram_model import MODEL_FILE, load_transition_model, sample_hypnogram
from medscale.synth.signals import channel_specs, synthesize_psg

EPOCH_LENGTH_S = 30.0
DATA_RECORD_S = 1
MANIFEST_NAME = "SYNTHETIC.json"
GENERATOR = "medscale-synth"
_FIRST_DATE = dt.date(2000, 1, 1)
_DATE_SPAN_DAYS = 20 * 365


@dataclass(frozen=True)
class SynthNight:
    """One written night: its two files, its subject id, its length and its quirk if any."""

    signal_path: Path
    hypnogram_path: Path
    subject: str
    n_epochs: int
    quirk: str | None = None


def subject_id(index: int) -> str:
    """The subject id of night ``index``: ``synth-000``, ``synth-001``, ..."""
    return f"synth-{index:03d}"


def _night_streams(seed: int, index: int) -> tuple[np.random.Generator, ...]:
    """Independent generators for the hypnogram, the signals and the header of one night."""
    children = np.random.SeedSequence([seed, index]).spawn(3)
    return tuple(np.random.default_rng(child) for child in children)


def _start(rng: np.random.Generator) -> dt.datetime:
    """A lights-off time between 21:00 and 23:59 on a day in 2000-2019, from the seed only."""
    day = _FIRST_DATE + dt.timedelta(days=int(rng.integers(0, _DATE_SPAN_DAYS)))
    minutes = int(rng.integers(21 * 60, 24 * 60))
    return dt.datetime.combine(day, dt.time(minutes // 60, minutes % 60))


def _headers(subject: str, seed: int, start: dt.datetime) -> dict:
    return {
        "patient": edfio.Patient(code=subject, name="SYNTHETIC"),
        "recording": edfio.Recording(
            startdate=start.date(),
            hospital_administration_code="SYNTHETIC",
            investigator_technician_code=GENERATOR,
            equipment_code=f"seed={seed}",
        ),
        "starttime": start.time(),
    }


def _write_psg(
    path: Path, stages: np.ndarray, sfreq_hz: int, rng: np.random.Generator, headers: dict
) -> None:
    signals = synthesize_psg(stages, sfreq_hz=sfreq_hz, rng=rng, epoch_length_s=EPOCH_LENGTH_S)
    edf_signals = []
    for spec, signal in zip(channel_specs(sfreq_hz), signals, strict=True):
        edf_signals.append(
            edfio.EdfSignal(
                signal.data,
                spec.sfreq_hz,
                label=spec.label,
                transducer_type=spec.transducer,
                physical_dimension=spec.unit,
                physical_range=spec.physical_range,
                digital_range=spec.digital_range,
                prefiltering=spec.prefiltering,
            )
        )
        signal.data = np.empty(0)  # the EdfSignal holds the quantised copy now
    # An (empty) annotation list makes edfio write EDF+C with a timekeeping signal.
    edf = edfio.Edf(edf_signals, data_record_duration=DATA_RECORD_S, annotations=[], **headers)
    write_edf_atomic(edf, path)


def _quirk_injector(quirks: Sequence[str]) -> Callable[[Path, str], str] | None:
    """Check quirk names up front; return ``inject_quirk`` (None when there are no quirks)."""
    if not quirks:
        return None
    # Imported here: quirks are optional and live in their own module.
    from medscale.synth.quirks import QUIRKS, inject_quirk

    for name in quirks:
        if name not in QUIRKS:
            raise SpecError(f"unknown quirk {name!r}; known quirks are {', '.join(QUIRKS)}")
    return inject_quirk


def _model_summary() -> dict:
    raw = (resources.files("medscale.synth") / MODEL_FILE).read_bytes()
    model = load_transition_model()
    return {
        "file": f"medscale/synth/{MODEL_FILE}",
        "sha256": hashlib.sha256(raw).hexdigest(),
        "fitted_from": {
            name: {"nights": entry["nights"], "epochs": entry["epochs"]}
            for name, entry in model.sources.items()
        },
    }


def _check_arguments(nights: int, seed: int, duration_h: float) -> int:
    for name, value, low in (("nights", nights, 1), ("seed", seed, 0)):
        if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < low:
            raise SpecError(f"{name} must be an integer >= {low}, got {value!r}")
    if not isinstance(duration_h, int | float) or not math.isfinite(duration_h):
        raise SpecError(f"duration_h must be a finite number of hours, got {duration_h!r}")
    n_epochs = math.floor(duration_h * 3600 / EPOCH_LENGTH_S + 1e-9)
    if n_epochs < 1:
        raise SpecError(f"duration_h={duration_h} is shorter than one {EPOCH_LENGTH_S:g}-s epoch")
    return n_epochs


def synthesize_nights(
    out_dir: Path,
    nights: int,
    *,
    seed: int = 0,
    duration_h: float = 8.0,
    quirks: Sequence[str] = (),
    sfreq_hz: int = 256,
    progress: bool = True,
) -> list[SynthNight]:
    """Write ``nights`` surrogate PSG nights and their hypnograms to ``out_dir``.

    Parameters
    ----------
    out_dir : Path
        Folder to write to (created if missing). Existing files of the same names are replaced.
    nights : int
        How many nights; night ``i`` is subject ``synth-{i:03d}``.
    seed : int
        Master seed (>= 0). Night ``i`` depends only on ``(seed, i)`` and the other arguments.
    duration_h : float
        Length of each night, rounded down to whole 30-s epochs.
    quirks : Sequence[str]
        Names from ``medscale.synth.quirks.QUIRKS``; night ``i`` gets ``quirks[i % len(quirks)]``
        injected into its PSG file. A single string counts as one quirk.
    sfreq_hz : int
        Rate of the EEG, EOG and EMG channels (at least 64 Hz).
    progress : bool
        Show a progress bar over nights on stderr.

    Returns
    -------
    list[SynthNight]
        The nights written, in order.
    """
    n_epochs = _check_arguments(nights, seed, duration_h)
    channel_specs(sfreq_hz)  # raises SpecError on a bad rate before anything is written
    quirks = (quirks,) if isinstance(quirks, str) else tuple(quirks)
    inject_quirk = _quirk_injector(quirks)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)

    written: list[SynthNight] = []
    entries: list[dict] = []
    for index in tqdm(range(nights), desc="synth nights", unit="night", disable=not progress):
        subject = subject_id(index)
        hypnogram_rng, signal_rng, header_rng = _night_streams(seed, index)
        start = _start(header_rng)
        headers = _headers(subject, seed, start)
        stages = sample_hypnogram(n_epochs, hypnogram_rng)
        signal_path = out_dir / f"{subject}-PSG.edf"
        hypnogram_path = out_dir / f"{subject}-Hypnogram.edf"
        _write_psg(signal_path, stages, sfreq_hz, signal_rng, headers)
        write_hypnogram_edf(hypnogram_path, stages, EPOCH_LENGTH_S, **headers)
        quirk = quirks[index % len(quirks)] if quirks else None
        description = inject_quirk(signal_path, quirk) if inject_quirk and quirk else None
        written.append(SynthNight(signal_path, hypnogram_path, subject, n_epochs, quirk))
        counts = np.bincount(stages, minlength=5)
        entries.append(
            {
                "subject": subject,
                "signal_file": signal_path.name,
                "hypnogram_file": hypnogram_path.name,
                "start": start.isoformat(),
                "n_epochs": n_epochs,
                "stage_counts": {STAGE_NAMES[code]: int(counts[code]) for code in range(5)},
                "quirk": quirk,
                "quirk_description": description,
            }
        )

    from medscale import __version__

    manifest = {
        "synthetic": True,
        "generator": GENERATOR,
        "medscale_version": __version__,
        "seed": int(seed),
        "duration_h": float(duration_h),
        "epoch_length_s": EPOCH_LENGTH_S,
        "sfreq_hz": int(sfreq_hz),
        "channels": [
            {"label": spec.label, "sfreq_hz": spec.sfreq_hz, "unit": spec.unit}
            for spec in channel_specs(sfreq_hz)
        ],
        "model": _model_summary(),
        "quirks": list(quirks),
        "nights": entries,
    }
    manifest_path = out_dir / MANIFEST_NAME
    write_json_atomic(manifest_path, manifest, indent=2)
    return written
