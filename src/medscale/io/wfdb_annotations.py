"""Sleep stages from WFDB annotations: MIT-BIH Polysomnographic DB (slpdb) style.

slpdb scores each 30-s epoch with one annotation whose aux note holds the stage first and
then the respiratory events of that epoch, e.g. ``"4 LA LA"`` or ``"W HA"``. The first token
is the stage label; each further token becomes an `Event` spanning that epoch.

Two sources of the same annotations are read:

- the binary annotation file (``slp01a.st``), through ``wfdb.rdann``;
- its text dump as printed by ``rdann`` (``slp01a.an``), columns ``Elapsed time``,
  ``Sample #``, ``Type``, ``Sub``, ``Chan``, ``Num`` and ``Aux``.

Epoch grid rule: annotation times are ``sample / sfreq_hz``. The grid origin is the median,
over all annotations, of each time's offset from a 30-s grid through the first one, so one
stray annotation cannot move the grid. slpdb puts its first annotation at sample 1 rather
than 0 (0.004 s at 250 Hz); that one-sample offset is within tolerance and the first epoch
starts at 0 s. Annotations more than one sample off the grid are snapped to it with a
warning. Epochs with no annotation between scored ones are labelled ``"?"`` with a warning.

The sampling rate comes from the annotation file (binary only), else from the ``.hea``
header beside it, read by ``wfdb.rdheader``. That refuses some original slpdb headers
(slp32's date ``20/7/89`` has a two-digit year); the rate is then taken from the header's
record line, with a warning.
"""

from __future__ import annotations

import re
import statistics
import warnings
from pathlib import Path
from types import ModuleType

from medscale.errors import AnnotationReadError
from medscale.io.epoch_tables import StageRun, check_epoch_length, expand_stage_runs
from medscale.io.recording import Event, RawHypnogram

UNSCORED_LABEL = "?"


def _import_wfdb() -> ModuleType:
    """Import wfdb on first use: it pulls in pandas (slow), and its import trips a pandas
    DeprecationWarning (``set_index(inplace=...)``) that is wfdb's to fix, not ours."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import wfdb
    return wfdb


def header_sfreq_hz(record: Path | str) -> tuple[float, list[str]]:
    """Sampling rate in Hz from ``<record>.hea``, and warnings about how it was read."""
    record = Path(record)
    header = Path(f"{record}.hea")
    if not header.is_file():
        raise AnnotationReadError(
            f"{record}: no sampling rate given and no header {header} to read it from; "
            "pass sfreq_hz"
        )
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            warnings.simplefilter("ignore", DeprecationWarning)  # the libraries' own upkeep
            sfreq_hz = float(_import_wfdb().rdheader(str(record)).fs)
        return sfreq_hz, [f"{w.category.__name__}: {w.message}" for w in caught]
    except Exception as exc:  # wfdb refuses some old headers; the rate is still in line 1
        reason = f"{type(exc).__name__}: {exc}"
    for line in header.read_text(encoding="latin-1").splitlines():
        fields = line.split()
        if not fields or fields[0].startswith("#"):
            continue
        match = re.match(r"\d+(\.\d*)?([eE][+-]?\d+)?", fields[2]) if len(fields) > 2 else None
        if match is None or float(match.group(0)) <= 0:
            break
        return float(match.group(0)), [
            f"wfdb.rdheader could not read {header} ({reason}); sampling rate "
            f"{match.group(0)} Hz taken from its record line"
        ]
    raise AnnotationReadError(f"{header}: cannot read the sampling rate ({reason})")


def _hypnogram_from_annotations(
    rows: list[tuple[int, str, str]],
    *,
    sfreq_hz: float,
    epoch_length_s: float,
    source: Path,
    notes: list[str],
) -> RawHypnogram:
    """Build the hypnogram from ``(sample, type symbol, aux note)`` rows."""
    if not sfreq_hz > 0:
        raise AnnotationReadError(f"{source}: sampling rate {sfreq_hz} Hz; expected > 0")
    events: list[Event] = []
    scored = [(sample / sfreq_hz, aux.split()) for sample, _, aux in rows if aux.strip()]
    for sample, symbol, aux in rows:
        if not aux.strip():  # not a stage annotation: keep it, labelled by its type
            events.append(Event(sample / sfreq_hz, 0.0, symbol))
    if not scored:
        raise AnnotationReadError(f"{source}: no annotation carries a stage in its aux note")
    first_s = scored[0][0]
    offsets = [t - epoch_length_s * round((t - first_s) / epoch_length_s) for t, _ in scored]
    origin_s = statistics.median(offsets)
    runs: list[StageRun] = []
    n_off_grid = 0
    for time_s, tokens in scored:
        epoch_s = origin_s + epoch_length_s * round((time_s - origin_s) / epoch_length_s)
        if abs(time_s - epoch_s) > 1.0 / sfreq_hz + 1e-9:
            n_off_grid += 1
        runs.append(StageRun(epoch_s, epoch_length_s, tokens[0]))
        events.extend(Event(epoch_s, epoch_length_s, token) for token in tokens[1:])
    if n_off_grid:
        notes.append(
            f"{n_off_grid} stage annotation(s) are more than one sample off the "
            f"{epoch_length_s:g}-s grid that starts at {origin_s:g} s; they were snapped to it"
        )
    labels, onset_s, run_notes = expand_stage_runs(
        runs, epoch_length_s=epoch_length_s, unscored_label=UNSCORED_LABEL, source=source
    )
    events.sort(key=lambda event: event.onset_s)
    return RawHypnogram(source, labels, epoch_length_s, onset_s, events, notes + run_notes)


def read_wfdb_stage_annotations(
    path: Path | str,
    *,
    extension: str = "st",
    sfreq_hz: float | None = None,
    epoch_length_s: float = 30.0,
) -> RawHypnogram:
    """Read a binary WFDB stage annotation file (slpdb ``.st``) with ``wfdb.rdann``.

    Parameters
    ----------
    path
        The annotation file (``slp01a.st``) or its record name (``slp01a``).
    extension
        Annotation file extension.
    sfreq_hz
        Sampling rate; ``None`` takes the file's, else the ``.hea`` header's.
    epoch_length_s
        Scoring epoch length.
    """
    path = Path(path)
    epoch_length_s = check_epoch_length(epoch_length_s)
    suffix = f".{extension}"
    record = path.with_suffix("") if path.suffix == suffix else path
    annotation_file = Path(f"{record}{suffix}")
    if not annotation_file.is_file():
        raise FileNotFoundError(f"{annotation_file}: no such annotation file")
    notes: list[str] = []
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            warnings.simplefilter("ignore", DeprecationWarning)  # the libraries' own upkeep
            annotation = _import_wfdb().rdann(str(record), extension)
    except Exception as exc:  # wfdb raises many kinds of error on a corrupt file
        raise AnnotationReadError(
            f"{annotation_file}: wfdb.rdann cannot read it ({type(exc).__name__}: {exc})"
        ) from exc
    notes.extend(f"{w.category.__name__}: {w.message}" for w in caught)
    if sfreq_hz is None:
        if annotation.fs:
            sfreq_hz = float(annotation.fs)
        else:
            sfreq_hz, header_notes = header_sfreq_hz(record)
            notes.extend(header_notes)
    aux_notes = annotation.aux_note or [""] * len(annotation.sample)
    rows = [
        (int(sample), str(symbol), (aux or "").rstrip("\x00"))
        for sample, symbol, aux in zip(annotation.sample, annotation.symbol, aux_notes, strict=True)
    ]
    return _hypnogram_from_annotations(
        rows, sfreq_hz=sfreq_hz, epoch_length_s=epoch_length_s, source=annotation_file, notes=notes
    )


def read_rdann_text(
    path: Path | str,
    sfreq_hz: float | None = None,
    *,
    epoch_length_s: float = 30.0,
) -> RawHypnogram:
    """Read a text dump of WFDB annotations as printed by ``rdann`` (slpdb ``.an`` files).

    Parameters
    ----------
    path
        The text dump.
    sfreq_hz
        Sampling rate; ``None`` reads it from the ``.hea`` header of the same name.
    epoch_length_s
        Scoring epoch length.
    """
    path = Path(path)
    epoch_length_s = check_epoch_length(epoch_length_s)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such annotation file")
    text = path.read_bytes().decode("latin-1")
    rows: list[tuple[int, str, str]] = []
    for line_no, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or (line_no == 1 and line.lstrip().startswith("Elapsed")):
            continue
        fields = line.split(None, 6)
        if len(fields) < 6 or not fields[1].isdigit():
            raise AnnotationReadError(
                f"{path}: line {line_no} is not an rdann row ({line.strip()[:60]!r}); expected "
                "columns Elapsed time, Sample #, Type, Sub, Chan, Num and an optional Aux"
            )
        rows.append((int(fields[1]), fields[2], fields[6] if len(fields) == 7 else ""))
    if not rows:
        raise AnnotationReadError(f"{path}: no annotation rows")
    notes: list[str] = []
    if sfreq_hz is None:
        sfreq_hz, notes = header_sfreq_hz(path.with_suffix(""))
    return _hypnogram_from_annotations(
        rows, sfreq_hz=float(sfreq_hz), epoch_length_s=epoch_length_s, source=path, notes=notes
    )
