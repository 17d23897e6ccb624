"""Hypnograms stored as plain text: one label per epoch, or a table of stage rows.

Two readers live here, plus the run expander every reader of timed stage annotations
shares:

- `read_epoch_text`: one label per line (DREAMS, YASA, Sleep-EDF CSV exports).
- `read_stage_table`: CSV/TSV with a stage column and optional onset/duration columns.
- `expand_stage_runs`: timed stage runs (onset, duration, label) -> one label per epoch.

Run expansion rule (used by the EDF+, NSRR XML and table readers): every run boundary
(onset and onset + duration) is snapped to the nearest epoch boundary of a grid that starts
at the first run's onset, halves rounding up. A run therefore covers
``round(end) - round(start)`` epochs. Boundaries more than 1 ms off the grid add one warning
that counts them. A run that snaps to zero epochs (shorter than half an epoch) is dropped
with a warning. A run with no duration (0 or missing) counts as one epoch. Where runs
overlap, the epoch keeps the label of the run that starts first. Epochs between runs are
filled with the reader's unscored label, with a warning.
"""

from __future__ import annotations

import csv
import itertools
import math
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

from medscale.errors import AnnotationReadError, SpecError
from medscale.io.recording import RawHypnogram

#: Boundaries closer than this to the epoch grid count as on it.
GRID_TOLERANCE_S = 1e-3
#: A hypnogram longer than this is taken for a corrupt file rather than expanded in memory.
MAX_HYPNOGRAM_DURATION_S = 7 * 24 * 3600.0

TIME_UNITS_S: dict[str, float] = {"s": 1.0, "ms": 1e-3, "min": 60.0, "h": 3600.0}


class StageRun(NamedTuple):
    """One stage annotation: ``label`` from ``onset_s`` for ``duration_s`` seconds."""

    onset_s: float
    duration_s: float
    label: str


def check_epoch_length(epoch_length_s: float) -> float:
    """Return ``epoch_length_s`` as a float, or raise SpecError if it is not positive."""
    value = float(epoch_length_s)
    if not math.isfinite(value) or value <= 0:
        raise SpecError(
            f"epoch_length_s must be a positive number of seconds, got {epoch_length_s!r}"
        )
    return value


def _snap(position: float) -> int:
    """Nearest integer, halves rounding up (Python's round() would round halves to even)."""
    return math.floor(position + 0.5)


def expand_stage_runs(
    runs: Sequence[StageRun],
    *,
    epoch_length_s: float,
    unscored_label: str,
    source: Path | str,
) -> tuple[list[str], float, list[str]]:
    """Expand timed stage runs into one label per epoch (rule in the module docstring).

    Parameters
    ----------
    runs
        Stage runs in any order; onsets in seconds from recording start.
    epoch_length_s
        Length of the output epochs.
    unscored_label
        Label given to epochs that no run covers.
    source
        File the runs came from, for error messages.

    Returns
    -------
    labels, onset_s, warnings
        One label per epoch, the onset of the first epoch, and what was repaired.
    """
    epoch_length_s = check_epoch_length(epoch_length_s)
    if not runs:
        raise AnnotationReadError(f"{source}: no stage annotations to expand")
    ordered = sorted(runs, key=lambda run: run.onset_s)
    origin_s = ordered[0].onset_s
    last_end_s = max(run.onset_s + max(run.duration_s, epoch_length_s) for run in ordered)
    if last_end_s - origin_s > MAX_HYPNOGRAM_DURATION_S:
        raise AnnotationReadError(
            f"{source}: stage annotations span {last_end_s - origin_s:.0f} s, more than the "
            f"{MAX_HYPNOGRAM_DURATION_S:.0f} s accepted; the onsets or durations look corrupt"
        )
    slots: list[str | None] = []
    off_grid: list[StageRun] = []
    dropped: list[StageRun] = []
    n_without_duration = 0
    n_overlapping = 0
    for run in ordered:
        duration_s = run.duration_s
        if not duration_s > 0:
            duration_s = epoch_length_s
            n_without_duration += 1
        start_pos = (run.onset_s - origin_s) / epoch_length_s
        end_pos = (run.onset_s + duration_s - origin_s) / epoch_length_s
        start, end = _snap(start_pos), _snap(end_pos)
        off_by_s = max(abs(start_pos - start), abs(end_pos - end)) * epoch_length_s
        if off_by_s > GRID_TOLERANCE_S:
            off_grid.append(run)
        if end <= start:
            dropped.append(run)
            continue
        if end > len(slots):
            slots.extend([None] * (end - len(slots)))
        for i in range(start, end):
            if slots[i] is None:
                slots[i] = run.label
            else:
                n_overlapping += 1

    warnings: list[str] = []
    if off_grid:
        first = off_grid[0]
        warnings.append(
            f"{len(off_grid)} stage annotation(s) do not start and end on the "
            f"{epoch_length_s:g}-s epoch grid that starts at {origin_s:g} s (first: "
            f"{first.label!r} at {first.onset_s:g} s for {first.duration_s:g} s); boundaries "
            "were snapped to the nearest epoch boundary"
        )
    if dropped:
        first = dropped[0]
        warnings.append(
            f"{len(dropped)} stage annotation(s) shorter than half an epoch were dropped "
            f"(first: {first.label!r} at {first.onset_s:g} s for {first.duration_s:g} s)"
        )
    if n_without_duration:
        warnings.append(
            f"{n_without_duration} stage annotation(s) have no duration; each was taken as "
            f"one {epoch_length_s:g}-s epoch"
        )
    if n_overlapping:
        warnings.append(
            f"{n_overlapping} epoch(s) are covered by more than one stage annotation; each "
            "kept the label of the annotation that starts first"
        )
    gaps = [i for i, label in enumerate(slots) if label is None]
    if gaps:
        n_gaps = 1 + sum(1 for a, b in itertools.pairwise(gaps) if b != a + 1)
        warnings.append(
            f"{len(gaps)} epoch(s) in {n_gaps} gap(s) between stage annotations (first at "
            f"{origin_s + gaps[0] * epoch_length_s:g} s) were labelled {unscored_label!r}"
        )
    labels = [unscored_label if label is None else label for label in slots]
    return labels, origin_s, warnings


def _read_text(path: Path) -> tuple[str, list[str]]:
    """Decode a text file: UTF-8 (BOM allowed), else Latin-1 with a warning."""
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such hypnogram file")
    data = path.read_bytes()
    try:
        return data.decode("utf-8-sig"), []
    except UnicodeDecodeError as exc:
        note = f"not valid UTF-8 ({exc.reason} at byte {exc.start}); read as Latin-1"
        return data.decode("latin-1"), [note]


def _is_header_line(line: str) -> bool:
    text = line.strip()
    return not text or text.startswith("#") or (text.startswith("[") and text.endswith("]"))


def read_epoch_text(
    path: Path | str,
    *,
    epoch_length_s: float,
    header_lines: int | str = "auto",
    onset_s: float = 0.0,
) -> RawHypnogram:
    """Read a hypnogram written as one label per line (ints or strings).

    Lines may end in LF, CRLF or a bare CR (Sleep-EDF CSV exports). Blank lines at the end
    are ignored; a blank line between labels is an error.

    Parameters
    ----------
    path
        The text file.
    epoch_length_s
        Length of one epoch (5 for DREAMS, 30 for most others).
    header_lines
        How many lines to skip before the labels; ``"auto"`` skips leading lines that are
        blank, start with ``#``, or are a section name in brackets such as ``[Hypnogram]``.
    onset_s
        Start of the first epoch, in seconds from the recording start.
    """
    path = Path(path)
    epoch_length_s = check_epoch_length(epoch_length_s)
    text, warnings = _read_text(path)
    lines = text.splitlines()
    if header_lines == "auto":
        first = 0
        while first < len(lines) and _is_header_line(lines[first]):
            first += 1
    elif isinstance(header_lines, int) and not isinstance(header_lines, bool) and header_lines >= 0:
        first = header_lines
    else:
        raise SpecError(f"header_lines must be 'auto' or a non-negative int, got {header_lines!r}")
    body = lines[first:]
    while body and not body[-1].strip():
        body.pop()
    labels: list[str] = []
    for offset, line in enumerate(body):
        label = line.strip()
        if not label:
            raise AnnotationReadError(
                f"{path}: line {first + offset + 1} is blank, between epoch labels; expected "
                "one label per line with blank lines only at the end"
            )
        labels.append(label)
    if not labels:
        raise AnnotationReadError(f"{path}: no epoch labels after {first} header line(s)")
    return RawHypnogram(
        source=path,
        labels=labels,
        epoch_length_s=epoch_length_s,
        onset_s=float(onset_s),
        warnings=warnings,
    )


def _sniff_delimiter(sample: str) -> str:
    try:
        return csv.Sniffer().sniff(sample, delimiters=",;\t|").delimiter
    except csv.Error:
        # One column (nothing to sniff) or an ambiguous sample: comma is the CSV default.
        return ","


def _parse_time(value: str, column: str, line_no: int, scale_s: float, path: Path) -> float:
    try:
        seconds = float(value) * scale_s
    except ValueError:
        raise AnnotationReadError(
            f"{path}: line {line_no}, column {column!r} holds {value!r}; expected a number"
        ) from None
    if not math.isfinite(seconds):
        raise AnnotationReadError(f"{path}: line {line_no}, column {column!r} holds {value!r}")
    return seconds


def read_stage_table(
    path: Path | str,
    *,
    stage_column: str,
    onset_column: str | None = None,
    duration_column: str | None = None,
    epoch_length_s: float = 30.0,
    delimiter: str | None = None,
    time_unit: str = "s",
    unscored_label: str = "?",
) -> RawHypnogram:
    """Read a CSV/TSV table with a header row and one stage per row.

    Without an onset column, rows are consecutive epochs starting at 0 (with a duration
    column, consecutive runs of that length). With an onset column, rows are runs expanded
    to epochs by `expand_stage_runs` (one epoch each when there is no duration column).

    Parameters
    ----------
    path
        The table.
    stage_column, onset_column, duration_column
        Header names of the columns holding the stage label, onset and duration.
    epoch_length_s
        Length of one epoch.
    delimiter
        Field separator; ``None`` sniffs it among ``, ; tab |``.
    time_unit
        Unit of the onset and duration columns: ``"s"``, ``"ms"``, ``"min"`` or ``"h"``.
    unscored_label
        Label given to epochs between runs that no row covers.
    """
    path = Path(path)
    epoch_length_s = check_epoch_length(epoch_length_s)
    if time_unit not in TIME_UNITS_S:
        raise SpecError(f"time_unit {time_unit!r} is not one of {list(TIME_UNITS_S)}")
    scale_s = TIME_UNITS_S[time_unit]
    text, warnings = _read_text(path)
    if delimiter is None:
        delimiter = _sniff_delimiter(text[:8192])
    rows = list(csv.reader(text.splitlines(), delimiter=delimiter))
    while rows and not any(cell.strip() for cell in rows[-1]):
        rows.pop()
    if not rows:
        raise AnnotationReadError(f"{path}: the table is empty; expected a header row")
    header = [cell.strip() for cell in rows[0]]
    wanted = {"stage_column": stage_column}
    if onset_column is not None:
        wanted["onset_column"] = onset_column
    if duration_column is not None:
        wanted["duration_column"] = duration_column
    index: dict[str, int] = {}
    for option, name in wanted.items():
        if name not in header:
            raise AnnotationReadError(
                f"{path}: no column {name!r} (given as {option}); columns found with "
                f"delimiter {delimiter!r}: {header}"
            )
        index[option] = header.index(name)

    runs: list[StageRun] = []
    next_onset_s = 0.0
    for row_no, row in enumerate(rows[1:], start=2):
        if len(row) < len(header):
            raise AnnotationReadError(
                f"{path}: line {row_no} has {len(row)} field(s); the header has {len(header)}"
            )
        label = row[index["stage_column"]].strip()
        if not label:
            raise AnnotationReadError(f"{path}: line {row_no} has an empty {stage_column!r} cell")
        duration_s = epoch_length_s
        if "duration_column" in index:
            duration_s = _parse_time(
                row[index["duration_column"]], duration_column or "", row_no, scale_s, path
            )
        if "onset_column" in index:
            onset_s = _parse_time(
                row[index["onset_column"]], onset_column or "", row_no, scale_s, path
            )
        else:
            onset_s = next_onset_s
            next_onset_s += duration_s
        runs.append(StageRun(onset_s, duration_s, label))
    if not runs:
        raise AnnotationReadError(f"{path}: the table has a header row but no stage rows")

    if "onset_column" not in index and "duration_column" not in index:
        labels, first_onset_s = [run.label for run in runs], 0.0
    else:
        labels, first_onset_s, run_warnings = expand_stage_runs(
            runs, epoch_length_s=epoch_length_s, unscored_label=unscored_label, source=path
        )
        warnings.extend(run_warnings)
    return RawHypnogram(
        source=path,
        labels=labels,
        epoch_length_s=epoch_length_s,
        onset_s=first_onset_s,
        warnings=warnings,
    )
