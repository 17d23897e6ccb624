"""Read a PhysioNet WFDB record (``.hea`` header plus its signal files) into a `Recording`."""

from __future__ import annotations

import re
import tempfile
from collections.abc import Collection
from pathlib import Path

import numpy as np
import wfdb

from medscale.errors import RecordingReadError
from medscale.io.reader_rules import check_labels_present, unit_scale_to_uv
from medscale.io.recording import Recording, Signal


def read_wfdb(path: str | Path, labels: Collection[str] | None = None) -> Recording:
    """Read a WFDB record with the ``wfdb`` package.

    Parameters
    ----------
    path
        The header file (``rec.hea``) or the record name without extension (``rec``).
    labels
        Signal names to load; None loads all.

    Returns
    -------
    Recording
        Voltages in µV, other units as the header writes them. Each signal keeps its own
        rate (``fs`` times its samples per frame). The header comments (often age and sex)
        and the base date/time are in ``identifiers``.

    Raises
    ------
    RecordingReadError
        The header is missing or malformed, or a signal file it names is missing.
    ChannelError
        A requested label is not in the record.
    """
    path = Path(path)
    record_path = path.with_suffix("") if path.suffix.lower() == ".hea" else path
    header_path = record_path.with_name(record_path.name + ".hea")
    if not header_path.is_file():
        raise RecordingReadError(f"{header_path}: WFDB header file not found")
    warnings: list[str] = []
    with tempfile.TemporaryDirectory(prefix="medscale-wfdb-") as scratch:
        try:
            header = wfdb.rdheader(str(record_path))
        except ValueError as exc:  # old headers write a two-digit year, which wfdb refuses
            fixed = _with_four_digit_year(header_path, Path(scratch))
            if fixed is None:
                raise RecordingReadError(
                    f"{header_path}: not a readable WFDB header: {exc}"
                ) from exc
            record_path, note = fixed
            header = wfdb.rdheader(str(record_path))
            warnings.append(note)
        except (OSError, IndexError, TypeError) as exc:
            raise RecordingReadError(f"{header_path}: not a readable WFDB header: {exc}") from exc
        return _read(path, header_path, record_path, header, labels, warnings)


def _with_four_digit_year(header_path: Path, scratch: Path) -> tuple[Path, str] | None:
    """A copy of the header with dd/mm/yy made dd/mm/yyyy (yy >= 70 -> 19yy), beside links
    to the signal files; None when the record line holds no such date."""
    lines = header_path.read_text(encoding="latin-1").splitlines()
    for i, line in enumerate(lines):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        match = re.search(r"(\s\d{1,2}/\d{1,2}/)(\d{2})\s*$", line)
        if match is None:
            return None
        yy = int(match.group(2))
        year = 1900 + yy if yy >= 70 else 2000 + yy
        lines[i] = line[: match.start(2)] + str(year)
        break
    else:
        return None
    for other in header_path.parent.glob(f"{header_path.stem}.*"):
        if other != header_path:
            (scratch / other.name).symlink_to(other.resolve())
    (scratch / header_path.name).write_text("\n".join(lines) + "\n", encoding="latin-1")
    note = f"header date has a two-digit year; read as {year} (yy >= 70 -> 19yy)"
    return scratch / header_path.stem, note


def _read(
    path: Path,
    header_path: Path,
    record_path: Path,
    header: wfdb.Record,
    labels: Collection[str] | None,
    warnings: list[str],
) -> Recording:
    names = list(header.sig_name or [])
    if labels is not None:
        check_labels_present(header_path, labels, names)
        names = [n for n in names if n in set(labels)]
    indices = [header.sig_name.index(n) for n in names]
    _check_signal_files(header_path, header, indices)
    signals = []
    if indices:
        record = _read_record(header_path, record_path, indices)
        for k, i in enumerate(indices):
            signals.append(_signal(header, record.e_p_signal[k], i))
    comments = "\n".join(header.comments or [])
    identifiers = {"comments": comments} if comments else {}
    if header.base_date is not None or header.base_time is not None:
        identifiers["base_datetime"] = f"{header.base_date or ''} {header.base_time or ''}".strip()
    return Recording(
        source=path,
        signals=signals,
        start=header.base_datetime,
        identifiers=identifiers,
        warnings=warnings + ([] if header.base_datetime else ["header has no base date and time"]),
    )


def _check_signal_files(header_path: Path, header: wfdb.Record, indices: list[int]) -> None:
    for i in indices:
        name = header.file_name[i]
        if name and name != "~" and not (header_path.parent / name).is_file():
            raise RecordingReadError(
                f"{header_path}: signal file {name!r} named by the header is missing "
                f"(looked for {header_path.parent / name})"
            )


def _read_record(header_path: Path, record_path: Path, indices: list[int]) -> wfdb.Record:
    try:
        return wfdb.rdrecord(str(record_path), channels=indices, smooth_frames=False)
    except (ValueError, OSError, IndexError) as exc:
        raise RecordingReadError(f"{header_path}: signal data cannot be read: {exc}") from exc


def _signal(header: wfdb.Record, data: np.ndarray, index: int) -> Signal:
    unit, factor, _ = unit_scale_to_uv(header.units[index] if header.units else "")
    samples_per_frame = header.samps_per_frame[index] if header.samps_per_frame else 1
    gain = header.adc_gain[index] if header.adc_gain else 0.0
    # WFDB's adc_gain is counts per physical unit; 0 means "uncalibrated".
    resolution = factor / abs(gain) if gain else float("nan")
    return Signal(
        label=header.sig_name[index],
        sfreq_hz=float(header.fs) * samples_per_frame,
        data=np.asarray(data, dtype=np.float64) * factor,
        unit=unit,
        resolution=resolution,
    )
