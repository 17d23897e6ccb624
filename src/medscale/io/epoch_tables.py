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
import re
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


#: What gaps between stage rows of a table are labelled: `to_aasm` maps it to UNKNOWN
#: whatever the label map, so a label map never has to know it.
GAP_LABEL = "(no stage annotation)"

_BOMS = (
    (b"\xef\xbb\xbf", "utf-8-sig"),
    (b"\xff\xfe", "utf-16"),  # the utf-16 codec reads and drops the BOM itself
    (b"\xfe\xff", "utf-16"),
)


def _guess_encoding(data: bytes) -> tuple[str, list[str]]:
    """A byte-order mark, else UTF-16 told by its NUL bytes, else UTF-8, else Latin-1."""
    for bom, codec in _BOMS:
        if data.startswith(bom):
            return codec, []
    sample = data[:4096]
    if len(sample) >= 4 and sample.count(0) >= len(sample) // 4:  # ASCII text in UTF-16
        odd_nuls = sample[1::2].count(0)
        return ("utf-16-le" if odd_nuls > sample[0::2].count(0) else "utf-16-be"), []
    try:
        data.decode("utf-8")
        return "utf-8", []
    except UnicodeDecodeError as exc:
        note = f"not valid UTF-8 ({exc.reason} at byte {exc.start}); read as Latin-1"
        return "latin-1", [note]


def _read_text(path: Path, encoding: str = "auto") -> tuple[str, list[str]]:
    """Decode a text file with ``encoding``, or the one `_guess_encoding` finds."""
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such hypnogram file")
    data = path.read_bytes()
    codec, notes = _guess_encoding(data) if encoding == "auto" else (encoding, [])
    try:
        return data.decode(codec), notes
    except LookupError:
        raise SpecError(f"encoding {encoding!r} is not a known text encoding") from None
    except UnicodeDecodeError as exc:
        raise AnnotationReadError(
            f"{path}: not valid {codec} ({exc.reason} at byte {exc.start}); give the file's "
            "encoding (option encoding), or 'auto' to detect it"
        ) from None


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


def _parse_seconds(value: str, column: str, line_no: int, scale_s: float, path: Path) -> float:
    text = value.strip()
    if "," in text and "." not in text:  # a decimal comma (European exports)
        text = text.replace(",", ".")
    try:
        seconds = float(text) * scale_s
    except ValueError:
        raise AnnotationReadError(
            f"{path}: line {line_no}, column {column!r} holds {value!r}; expected a number"
        ) from None
    if not math.isfinite(seconds):
        raise AnnotationReadError(f"{path}: line {line_no}, column {column!r} holds {value!r}")
    return seconds


_CLOCK = re.compile(
    r"^\s*(?:(?P<date>\d{1,4}[./-]\d{1,2}[./-]\d{1,4})[ T]+)?"
    r"(?P<h>\d{1,2}):(?P<m>\d{2})(?::(?P<s>\d{2})(?:[.,](?P<frac>\d+))?)?"
    r"\s*(?P<ampm>[AaPp][Mm])?\s*$"
)


def _parse_clock(value: str, column: str, line_no: int, path: Path) -> float:
    """Seconds after midnight of ``hh:mm[:ss[.fff]]`` (``,fff`` and AM/PM too). A date in
    front is allowed and ignored: roll-over past midnight is told by the times' order."""
    match = _CLOCK.match(value)
    if match is None:
        raise AnnotationReadError(
            f"{path}: line {line_no}, column {column!r} holds {value!r}; expected a clock time "
            "such as 23:41:30, 23:41:30.5 or 12.03.2023 23:41:30 (onset_format: clock)"
        )
    hours, minutes = int(match["h"]), int(match["m"])
    seconds = int(match["s"] or 0) + float(f"0.{match['frac']}" if match["frac"] else 0)
    if match["ampm"]:
        hours = hours % 12 + (12 if match["ampm"].lower() == "pm" else 0)
    if hours > 23 or minutes > 59 or seconds >= 61:
        raise AnnotationReadError(
            f"{path}: line {line_no}, column {column!r} holds {value!r}; not a time of day"
        )
    return hours * 3600 + minutes * 60 + seconds


def _find_header(
    lines: list[str],
    skip_rows: int | str,
    stage_column: str,
    column_names: list[str] | None,
    delimiter: str | None,
    path: Path,
) -> int:
    """The index of the header row (or, with ``column_names``, of the first data row)."""
    if isinstance(skip_rows, int) and not isinstance(skip_rows, bool) and skip_rows >= 0:
        return skip_rows
    if skip_rows != "auto":
        raise SpecError(f"skip_rows must be 'auto' or a non-negative int, got {skip_rows!r}")
    delimiters = [delimiter] if delimiter else [",", ";", "\t", "|"]
    for i, line in enumerate(lines):
        splits = [[cell.strip() for cell in line.split(d)] for d in delimiters]
        if column_names is None and any(stage_column in cells for cells in splits):
            return i
        if column_names is not None and any(len(c) == len(column_names) for c in splits):
            return i
    if column_names is None:
        return 0  # no line names the column: the error about the header will list its columns
    raise AnnotationReadError(
        f"{path}: found no line with {len(column_names)} fields; give skip_rows"
    )


def read_stage_table(
    path: Path | str,
    *,
    stage_column: str,
    onset_column: str | None = None,
    duration_column: str | None = None,
    epoch_length_s: float = 30.0,
    delimiter: str | None = None,
    time_unit: str = "s",
    onset_format: str = "seconds",
    encoding: str = "auto",
    skip_rows: int | str = "auto",
    units_row: bool = False,
    column_names: list[str] | None = None,
    stage_row_pattern: str | None = None,
    stage_row_column: str | None = None,
    unscored_label: str | None = None,
) -> RawHypnogram:
    """Read a stage table (CSV/TSV or a vendor's text export) with one stage or event per row.

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
        Field separator; ``None`` sniffs it among ``, ; tab |`` from the header on.
    time_unit
        Unit of numeric onsets and durations: ``"s"``, ``"ms"``, ``"min"`` or ``"h"``.
        A decimal comma is accepted.
    onset_format
        ``"seconds"`` (numbers in ``time_unit`` from the recording start) or ``"clock"``
        (times of day; a time earlier than the one before it by over 12 h is the next day).
        Clock onsets set the hypnogram's ``clock_s``, so ingest places it against the
        signal's start time.
    encoding
        ``"auto"``: a byte-order mark (UTF-8, UTF-16), else UTF-16 told by its NUL bytes,
        else UTF-8, else Latin-1 (with a warning). Or any Python codec name.
    skip_rows
        Lines before the header row (preamble: patient, device, date); ``"auto"`` skips to
        the first line that holds ``stage_column`` (with ``column_names``: to the first line
        that splits into that many fields).
    units_row
        The row after the header holds units (``[s]``, ``[hh:mm:ss]``): skip it.
    column_names
        For files with no header row: the names of the columns, in order.
    stage_row_pattern, stage_row_column
        Keep only rows whose ``stage_row_column`` cell (default: the stage column) matches
        this regular expression; the other rows (arousals, desaturations...) are counted
        in a warning. Without a pattern every row must be a stage row.
    unscored_label
        Label given to epochs between runs that no row covers; by default `GAP_LABEL`,
        which maps to UNKNOWN without being in the label map.
    """
    path = Path(path)
    epoch_length_s = check_epoch_length(epoch_length_s)
    if time_unit not in TIME_UNITS_S:
        raise SpecError(f"time_unit {time_unit!r} is not one of {list(TIME_UNITS_S)}")
    if onset_format not in ("seconds", "clock"):
        raise SpecError(f"onset_format must be 'seconds' or 'clock', got {onset_format!r}")
    if onset_format == "clock" and onset_column is None:
        raise SpecError("onset_format: clock needs an onset_column")
    try:
        keep = re.compile(stage_row_pattern) if stage_row_pattern is not None else None
    except re.error as exc:
        raise SpecError(f"stage_row_pattern {stage_row_pattern!r} is not a regex: {exc}") from None
    scale_s = TIME_UNITS_S[time_unit]
    text, warnings = _read_text(path, encoding)
    lines = text.splitlines()
    first = _find_header(lines, skip_rows, stage_column, column_names, delimiter, path)
    if delimiter is None:
        delimiter = _sniff_delimiter("\n".join(lines[first : first + 50]))
    rows = list(csv.reader(lines[first:], delimiter=delimiter))
    while rows and not any(cell.strip() for cell in rows[-1]):
        rows.pop()
    if column_names is not None:
        header, body_start = list(column_names), 0
    else:
        if not rows:
            raise AnnotationReadError(f"{path}: the table is empty; expected a header row")
        header, body_start = [cell.strip() for cell in rows[0]], 1
    body_start += int(units_row)
    wanted = {"stage_column": stage_column}
    for option, name in (
        ("onset_column", onset_column),
        ("duration_column", duration_column),
        ("stage_row_column", stage_row_column),
    ):
        if name is not None:
            wanted[option] = name
    index: dict[str, int] = {}
    for option, name in wanted.items():
        if name not in header:
            raise AnnotationReadError(
                f"{path}: no column {name!r} (given as {option}); columns found with "
                f"delimiter {delimiter!r} in line {first + 1}: {header}"
            )
        index[option] = header.index(name)
    filter_at = index.get("stage_row_column", index["stage_column"])

    runs: list[StageRun] = []
    other_rows: list[str] = []
    next_onset_s = 0.0
    clock_start: float | None = None
    day_s, previous_clock = 0.0, None
    for row_no, row in enumerate(rows[body_start:], start=first + body_start + 1):
        if not any(cell.strip() for cell in row):
            continue
        if len(row) < len(header):
            row = row + [""] * (len(header) - len(row))  # trailing empty cells left out
        if keep is not None and not keep.search(row[filter_at].strip()):
            other_rows.append(row[filter_at].strip())
            continue
        label = row[index["stage_column"]].strip()
        if not label:
            raise AnnotationReadError(f"{path}: line {row_no} has an empty {stage_column!r} cell")
        duration_s = epoch_length_s
        if "duration_column" in index:
            duration_s = _parse_seconds(
                row[index["duration_column"]], duration_column or "", row_no, scale_s, path
            )
        if "onset_column" not in index:
            onset_s = next_onset_s
            next_onset_s += duration_s
        elif onset_format == "clock":
            clock = _parse_clock(row[index["onset_column"]], onset_column or "", row_no, path)
            if previous_clock is not None and clock < previous_clock - 43_200:
                day_s += 86_400.0  # past midnight
            previous_clock = clock
            if clock_start is None:
                clock_start = clock
            onset_s = clock + day_s - clock_start
        else:
            onset_s = _parse_seconds(
                row[index["onset_column"]], onset_column or "", row_no, scale_s, path
            )
        runs.append(StageRun(onset_s, duration_s, label))
    if other_rows:
        kinds = sorted(set(other_rows))
        warnings.append(
            f"{len(other_rows)} row(s) that are not stages were left out "
            f"({', '.join(repr(k) for k in kinds[:5])}{', ...' if len(kinds) > 5 else ''})"
        )
    if not runs:
        raise AnnotationReadError(
            f"{path}: no stage rows after line {first + body_start}"
            + (f" (none matches stage_row_pattern {stage_row_pattern!r})" if keep else "")
        )

    if "onset_column" not in index and "duration_column" not in index:
        labels, first_onset_s = [run.label for run in runs], 0.0
    else:
        labels, first_onset_s, run_warnings = expand_stage_runs(
            runs,
            epoch_length_s=epoch_length_s,
            unscored_label=GAP_LABEL if unscored_label is None else unscored_label,
            source=path,
        )
        warnings.extend(run_warnings)
    return RawHypnogram(
        source=path,
        labels=labels,
        epoch_length_s=epoch_length_s,
        onset_s=first_onset_s,
        warnings=warnings,
        clock_s=clock_start,
    )
