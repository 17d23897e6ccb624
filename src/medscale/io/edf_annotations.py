"""Sleep stages and events from EDF+/BDF+ annotations (TALs).

Works for annotation-only files (Sleep-EDF ``*-Hypnogram.edf``, HMC ``*_sleepscoring.edf``)
and for EDF+ recordings that carry an annotation signal next to their data.

Which library reads the TALs, and why: edfio parses the file structure (header, data
records) and reads only the annotation signals, lazily, so a full-night PSG is not loaded
to get its annotations; it also accepts header fields other readers refuse (non-ASCII
patient names, impossible dates, a wrong record count: tried on damaged copies of
SN001_sleepscoring.edf, pyedflib refused five of these six and read no annotation from the
sixth). edfio fails on a truncated last data record, the common damage in downloaded files.
For files edfio cannot parse, we fall back to ``mne.read_annotations``, which loads the whole
file and scans its bytes for the TAL pattern, so it recovers every complete annotation of a
truncated file; the hypnogram then carries a warning saying so. That scan is not the first
choice because it reads signal bytes too (memory, and a chance of a false match in a PSG).

Stage annotations are those whose text starts with ``stage_prefix`` or is one of
``extra_stage_labels`` (by default "Movement time"); they are expanded into epochs by
`medscale.io.epoch_tables.expand_stage_runs`: Sleep-EDF's variable-length runs and HMC's one
annotation per epoch alike. Gaps become epochs labelled ``f"{stage_prefix} ?"``. Every
other annotation becomes an `Event`. A channel suffix written as ``text@@channel`` (HMC)
is dropped from the label.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path

import edfio

from medscale.atomic import atomic_open
from medscale.errors import AnnotationReadError
from medscale.io.epoch_tables import StageRun, check_epoch_length, expand_stage_runs
from medscale.io.recording import Event, RawHypnogram
from medscale.io.stages import N1, N2, N3, REM, UNKNOWN, W

# How medscale writes stages into EDF+ annotations (Sleep-EDF's spelling, AASM's R for REM).
EDF_STAGE_LABELS: dict[int, str] = {
    W: "Sleep stage W",
    N1: "Sleep stage N1",
    N2: "Sleep stage N2",
    N3: "Sleep stage N3",
    REM: "Sleep stage R",
    UNKNOWN: "Sleep stage ?",
}

EDF_MAGIC = b"0       "
BDF_MAGIC = b"\xffBIOSEMI"


def _read_with_edfio(path: Path, magic: bytes) -> list[tuple[float, float, str]]:
    reader = edfio.read_bdf if magic == BDF_MAGIC else edfio.read_edf
    edf = reader(path, lazy_load_data=True)
    return [(a.onset, a.duration or 0.0, a.text) for a in edf.annotations]


def _read_with_mne(path: Path) -> list[tuple[float, float, str]]:
    import mne  # slow import; only damaged files need it

    annotations = mne.read_annotations(path)
    return [
        (float(o), float(d), str(t))
        for o, d, t in zip(
            annotations.onset, annotations.duration, annotations.description, strict=True
        )
    ]


def read_tal_annotations(path: Path | str) -> tuple[list[tuple[float, float, str]], list[str]]:
    """Every annotation of an EDF+/BDF+ file as ``(onset_s, duration_s, text)``.

    Returns the annotations and the warnings raised while reading (library warnings about
    the header, and the fallback to mne when edfio could not parse the file).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such annotation file")
    with path.open("rb") as file:
        magic = file.read(8)
    if magic not in (EDF_MAGIC, BDF_MAGIC):
        raise AnnotationReadError(
            f"{path}: not an EDF/BDF file (first bytes {magic!r}; expected {EDF_MAGIC!r} "
            f"or {BDF_MAGIC!r})"
        )
    notes: list[str] = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        warnings.simplefilter("ignore", DeprecationWarning)  # the libraries' own upkeep
        try:
            annotations = _read_with_edfio(path, magic)
        except Exception as edfio_error:  # edfio refuses damaged files in many ways
            notes.append(
                f"edfio could not parse the file ({type(edfio_error).__name__}: {edfio_error}); "
                "annotations were recovered by mne.read_annotations, which scans the raw bytes"
            )
            try:
                annotations = _read_with_mne(path)
            except Exception as mne_error:
                raise AnnotationReadError(
                    f"{path}: cannot read EDF+ annotations: edfio said "
                    f"{type(edfio_error).__name__}: {edfio_error}; mne said "
                    f"{type(mne_error).__name__}: {mne_error}"
                ) from mne_error
    notes[:0] = [f"{w.category.__name__}: {w.message}" for w in caught]
    if not annotations:
        raise AnnotationReadError(
            f"{path}: holds no annotations; expected an EDF+/BDF+ file with an "
            "'EDF Annotations' signal (a plain EDF has none)"
        )
    return annotations, notes


def read_edf_annotations(
    path: Path | str,
    *,
    epoch_length_s: float = 30.0,
    stage_prefix: str = "Sleep stage",
    extra_stage_labels: Sequence[str] = ("Movement time",),
) -> RawHypnogram:
    """Read the hypnogram and events of an EDF+/BDF+ file from its annotations.

    Parameters
    ----------
    path
        EDF+ or BDF+ file (annotation-only, or with signals).
    epoch_length_s
        Length of the output epochs; stage runs are cut into epochs of this length.
    stage_prefix
        Annotation texts starting with this are stages (``"Sleep stage W"``...).
    extra_stage_labels
        Other texts that are stages too (Sleep-EDF's ``"Movement time"``).

    Returns
    -------
    RawHypnogram
        Labels as the file spells them, without any ``@@channel`` suffix.
    """
    path = Path(path)
    epoch_length_s = check_epoch_length(epoch_length_s)
    annotations, notes = read_tal_annotations(path)
    runs: list[StageRun] = []
    events: list[Event] = []
    for onset_s, duration_s, text in annotations:
        label = text.split("@@", 1)[0].strip()
        if label.startswith(stage_prefix) or label in extra_stage_labels:
            runs.append(StageRun(onset_s, duration_s, label))
        else:
            events.append(Event(onset_s, duration_s, label))
    if not runs:
        found = sorted({text for _, _, text in annotations})
        raise AnnotationReadError(
            f"{path}: no stage annotations (text starting with {stage_prefix!r} or one of "
            f"{list(extra_stage_labels)}); annotation texts found: {found[:10]}"
            + (f" and {len(found) - 10} more" if len(found) > 10 else "")
        )
    labels, onset_s, run_notes = expand_stage_runs(
        runs,
        epoch_length_s=epoch_length_s,
        unscored_label=f"{stage_prefix} ?",
        source=path,
    )
    return RawHypnogram(
        source=path,
        labels=labels,
        epoch_length_s=epoch_length_s,
        onset_s=onset_s,
        events=events,
        warnings=notes + run_notes,
    )


def write_edf_atomic(edf: edfio.Edf, path: Path) -> None:
    """Write ``edf`` to ``path`` atomically (`medscale.atomic`): never half a file."""
    with atomic_open(path, "wb") as f:
        edf.write(f)


def write_hypnogram_edf(
    path: Path, stages: Sequence[int], epoch_length_s: float = 30.0, **headers: object
) -> None:
    """An EDF+ annotation-only file with one annotation per epoch (HMC/Sleep-EDF style)."""
    annotations = [
        edfio.EdfAnnotation(k * epoch_length_s, epoch_length_s, EDF_STAGE_LABELS[int(stage)])
        for k, stage in enumerate(stages)
    ]
    write_edf_atomic(edfio.Edf([], annotations=annotations, **headers), path)
