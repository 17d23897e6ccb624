"""Read a single-channel text signal (one value per line, as in the DREAMS databases)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from medscale.errors import RecordingReadError, SpecError
from medscale.io.recording import Recording, Signal


def read_text_signal(path: str | Path, sfreq_hz: float, label: str | None = None) -> Recording:
    """Read a text file holding one channel in µV, one value per line.

    The first line may be a ``[label]`` header, as in DREAMS (``[C3-A1]``). CRLF and LF
    line endings both work; blank lines at the end are ignored.

    Parameters
    ----------
    path
        The text file.
    sfreq_hz
        Sampling rate: text files do not record it.
    label
        Channel label; None takes it from the ``[label]`` header, or from the file name
        (with a warning) when there is none.

    Raises
    ------
    SpecError
        ``sfreq_hz`` is not a positive finite number.
    RecordingReadError
        The file cannot be read, holds no values, or a line is not a finite number (the
        message gives the line number).
    """
    path = Path(path)
    try:
        rate_hz = float(sfreq_hz)
    except (TypeError, ValueError):
        rate_hz = math.nan
    if not (math.isfinite(rate_hz) and rate_hz > 0):
        raise SpecError(f"{path}: sfreq_hz must be a positive number, got {sfreq_hz!r}")
    try:
        lines = path.read_bytes().splitlines()
    except OSError as exc:
        raise RecordingReadError(f"{path}: cannot be read: {exc.strerror or exc}") from exc
    while lines and not lines[-1].strip():
        lines.pop()
    warnings = []
    first_value_line = 0
    header = lines[0].strip() if lines else b""
    if header.startswith(b"[") and header.endswith(b"]"):
        first_value_line = 1
        if label is None:
            label = header[1:-1].decode("latin-1").strip()
    elif label is None:
        label = path.stem
        warnings.append(f"no [label] header line; label taken from the file name: {label!r}")
    values = lines[first_value_line:]
    if not values:
        raise RecordingReadError(f"{path}: holds no sample values")
    data = _parse_values(path, values, first_value_line)
    return Recording(
        source=path,
        signals=[Signal(label=label, sfreq_hz=rate_hz, data=data, unit="uV")],
        warnings=warnings,
    )


def _parse_values(path: Path, lines: list[bytes], line_offset: int) -> np.ndarray:
    """Parse one number per line with numpy; on failure find the first bad line to report."""
    try:
        data = np.array(lines, dtype=np.float64)
        if np.isfinite(data).all():
            return data
    except ValueError:
        pass
    for k, line in enumerate(lines):
        try:
            ok = math.isfinite(float(line))
        except ValueError:
            ok = False
        if not ok:
            text = line.decode("latin-1").strip()[:40]
            raise RecordingReadError(
                f"{path}: line {k + line_offset + 1} is {text!r}; expected one finite number "
                "per line"
            )
    raise RecordingReadError(f"{path}: values cannot be parsed as numbers")  # not reached
