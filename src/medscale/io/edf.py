"""Read EDF, EDF+ (continuous or discontinuous) and BDF files into a `Recording`.

The header is parsed here from its raw bytes first: it is small, and checking its declared
sizes against the real file size lets a malformed file fail fast instead of allocating
gigabytes. The same pass finds the real-world quirks (odd unit spellings, non-ASCII labels,
out-of-range digital limits, partial or uncounted data records) and turns each into a
warning. The samples are then read with edfio, which memory-maps EDF files so that only the
requested signals are touched (see docs/design/edf-reader.md for the measurements).
"""

from __future__ import annotations

import datetime as dt
import re
import warnings
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path

import edfio
import numpy as np

from medscale.errors import RecordingReadError
from medscale.io.reader_rules import check_labels_present, unit_scale_to_uv
from medscale.io.recording import Recording, Signal

# Byte layout of the fixed header: (field, width). Then each per-signal field, as one block of
# `width` bytes for every signal in turn.
HEADER_FIELDS: tuple[tuple[str, int], ...] = (
    ("version", 8),
    ("patient", 80),
    ("recording", 80),
    ("startdate", 8),
    ("starttime", 8),
    ("header_bytes", 8),
    ("reserved", 44),
    ("n_records", 8),
    ("record_duration", 8),
    ("n_signals", 4),
)
SIGNAL_FIELDS: tuple[tuple[str, int], ...] = (
    ("label", 16),
    ("transducer", 80),
    ("physical_dimension", 8),
    ("physical_min", 8),
    ("physical_max", 8),
    ("digital_min", 8),
    ("digital_max", 8),
    ("prefiltering", 80),
    ("samples_per_record", 8),
    ("reserved", 32),
)
FIXED_HEADER_BYTES = 256
SIGNAL_HEADER_BYTES = 256
_BDF_VERSION = b"\xffBIOSEMI"
_ANNOTATION_LABEL = {"EDF": "EDF Annotations", "BDF": "BDF Annotations"}
_DIGITAL_LIMITS = {"EDF": (-32768, 32767), "BDF": (-(2**23), 2**23 - 1)}
# The first TAL of each EDF+ annotation record holds that record's onset: "+12.5\x14\x14".
_RECORD_ONSET = re.compile(rb"^\x00*([+-]\d+(?:\.\d*)?)\x14")


def header_field_slice(field: str) -> slice:
    """Byte range of a fixed-header field (one of `HEADER_FIELDS`)."""
    offset = 0
    for name, width in HEADER_FIELDS:
        if name == field:
            return slice(offset, offset + width)
        offset += width
    raise ValueError(f"no EDF header field {field!r}; valid: {[n for n, _ in HEADER_FIELDS]}")


def signal_field_slice(n_signals: int, field: str, index: int) -> slice:
    """Byte range of signal ``index``'s ``field`` (one of `SIGNAL_FIELDS`) in the header."""
    offset = FIXED_HEADER_BYTES
    for name, width in SIGNAL_FIELDS:
        if name == field:
            start = offset + index * width
            return slice(start, start + width)
        offset += n_signals * width
    raise ValueError(f"no EDF signal field {field!r}; valid: {[n for n, _ in SIGNAL_FIELDS]}")


@dataclass(frozen=True)
class EdfSignalHeader:
    """One signal's header fields, decoded but not yet interpreted."""

    label: str
    transducer: str
    physical_dimension: str
    physical_min: float
    physical_max: float
    digital_min: int
    digital_max: int
    prefiltering: str
    samples_per_record: int
    is_annotation: bool  # an EDF+/BDF+ annotation signal, not samples


@dataclass(frozen=True)
class EdfHeader:
    """The header of an EDF/BDF file, with the data-record count checked against the file.

    ``n_records`` is the number of whole data records the file really holds; the header's
    own claim is kept in ``n_records_declared``.
    """

    fmt: str  # "EDF" or "BDF"
    patient: str
    recording: str
    startdate: str
    starttime: str
    header_bytes: int
    reserved: str
    n_records_declared: int
    n_records: int
    trailing_bytes: int
    record_duration_s: float
    signals: tuple[EdfSignalHeader, ...]

    @property
    def bytes_per_sample(self) -> int:
        return 3 if self.fmt == "BDF" else 2

    @property
    def record_bytes(self) -> int:
        return self.bytes_per_sample * sum(s.samples_per_record for s in self.signals)

    @property
    def is_discontinuous(self) -> bool:
        return self.reserved.startswith(("EDF+D", "BDF+D"))


def read_edf(path: str | Path, labels: Collection[str] | None = None) -> Recording:
    """Read an EDF, EDF+C, EDF+D or BDF file; only the requested signals' data is loaded.

    Parameters
    ----------
    path
        The file. BDF is recognised by its header, whatever the extension.
    labels
        Signal labels to load; None loads every ordinary signal. Signals come back in file
        order. EDF+ annotation signals are never returned as signals.

    Returns
    -------
    Recording
        Signals in physical units (voltages in µV), each with its own ``sfreq_hz``. Every
        tolerated deviation from the standard is described in ``warnings``; the patient and
        recording fields and the start date/time strings are in ``identifiers``.

    Raises
    ------
    RecordingReadError
        The file is not EDF/BDF, its header is truncated or malformed, declares sizes the
        file cannot hold, or the file holds no whole data record.
    ChannelError
        A requested label is not in the file.
    """
    path = Path(path)
    header, warns = read_edf_header(path)
    ordinary = [i for i, s in enumerate(header.signals) if not s.is_annotation]
    if labels is not None:
        check_labels_present(path, labels, [header.signals[i].label for i in ordinary])
        wanted = set(labels)
        ordinary = [i for i in ordinary if header.signals[i].label in wanted]
    digital = _read_digital(path, header, ordinary)
    signals = []
    for i in ordinary:
        sig_header = header.signals[i]
        data, resolution, unit = _to_physical(path, sig_header, digital[i], header.fmt, warns)
        signals.append(
            Signal(
                label=sig_header.label,
                sfreq_hz=sig_header.samples_per_record / header.record_duration_s,
                data=data,
                unit=unit,
                resolution=resolution,
            )
        )
    if header.is_discontinuous:
        warns.append(_gap_warning(path, header))
    return Recording(
        source=path,
        signals=signals,
        start=_start_datetime(header, warns),
        identifiers={
            "patient": header.patient,
            "recording": header.recording,
            "startdate": header.startdate,
            "starttime": header.starttime,
        },
        warnings=warns,
    )


def read_edf_header(path: str | Path) -> tuple[EdfHeader, list[str]]:
    """Parse and check an EDF/BDF header without reading any samples.

    Returns the header and the warnings its quirks raised. Raises `RecordingReadError`
    when the header is malformed or declares more than the file holds.
    """
    path = Path(path)
    try:
        file_bytes = path.stat().st_size
        with path.open("rb") as f:
            fixed = f.read(FIXED_HEADER_BYTES)
            if len(fixed) < FIXED_HEADER_BYTES:
                raise _error(path, f"file is {file_bytes} bytes, shorter than an EDF header")
            version = fixed[header_field_slice("version")]
            if version == _BDF_VERSION:
                fmt = "BDF"
            elif version.strip() == b"0":
                fmt = "EDF"
            else:
                raise _error(path, f"version field is {version!r}: not an EDF or BDF file")
            n_signals = _int_field(path, fixed, "n_signals")
            if not 1 <= n_signals <= (file_bytes - FIXED_HEADER_BYTES) // SIGNAL_HEADER_BYTES:
                raise _error(
                    path,
                    f"header declares {n_signals} signals, which needs "
                    f"{FIXED_HEADER_BYTES + max(n_signals, 1) * SIGNAL_HEADER_BYTES} header "
                    f"bytes; the file has {file_bytes} bytes",
                )
            raw = fixed + f.read(n_signals * SIGNAL_HEADER_BYTES)
    except OSError as exc:
        if isinstance(exc, RecordingReadError):
            raise
        raise _error(path, f"cannot be opened: {exc.strerror or exc}") from exc
    warns: list[str] = []
    header_bytes = _int_field(path, raw, "header_bytes")
    expected_header_bytes = FIXED_HEADER_BYTES + n_signals * SIGNAL_HEADER_BYTES
    if header_bytes != expected_header_bytes:
        raise _error(
            path,
            f"header-size field says {header_bytes} bytes but {n_signals} signals need "
            f"{expected_header_bytes}; the header is inconsistent",
        )
    signals = tuple(
        _signal_header(path, raw, n_signals, i, _ANNOTATION_LABEL[fmt], warns)
        for i in range(n_signals)
    )
    ordinary_labels = [s.label for s in signals if not s.is_annotation]
    repeated = sorted({label for label in ordinary_labels if ordinary_labels.count(label) > 1})
    if repeated:
        warns.append(f"signal labels occur more than once: {repeated}")
    record_duration_s = _float_field(path, raw, "record_duration")
    # EDF+ allows a zero duration only in annotation-only files (no samples to time).
    if record_duration_s < 0 or (record_duration_s == 0 and ordinary_labels):
        raise _error(path, f"data-record duration is {record_duration_s} s; expected > 0")
    n_records_declared = _int_field(path, raw, "n_records")
    bytes_per_sample = 3 if fmt == "BDF" else 2
    record_bytes = bytes_per_sample * sum(s.samples_per_record for s in signals)
    data_bytes = file_bytes - expected_header_bytes
    n_records, trailing_bytes = divmod(data_bytes, record_bytes)
    if n_records == 0:
        raise _error(
            path,
            f"holds no whole data record: {data_bytes} data bytes, one record needs "
            f"{record_bytes} (header declares {n_records_declared} records)",
        )
    if n_records_declared == -1:
        warns.append(
            f"header gives the number of data records as -1 (unknown); counted {n_records} "
            "from the file size"
        )
    elif n_records_declared != n_records:
        warns.append(
            f"header declares {n_records_declared} data records but the file holds "
            f"{n_records}; read the {n_records} whole records"
        )
    if trailing_bytes:
        warns.append(
            f"file ends with a partial data record: dropped the last {trailing_bytes} bytes "
            f"({record_bytes} make a record)"
        )
    header = EdfHeader(
        fmt=fmt,
        patient=_text(raw[header_field_slice("patient")]),
        recording=_text(raw[header_field_slice("recording")]),
        startdate=_text(raw[header_field_slice("startdate")]),
        starttime=_text(raw[header_field_slice("starttime")]),
        header_bytes=expected_header_bytes,
        reserved=_text(raw[header_field_slice("reserved")]),
        n_records_declared=n_records_declared,
        n_records=n_records,
        trailing_bytes=trailing_bytes,
        record_duration_s=record_duration_s,
        signals=signals,
    )
    return header, warns


def _signal_header(
    path: Path, raw: bytes, n_signals: int, index: int, annotation_label: str, warns: list[str]
) -> EdfSignalHeader:
    def field(name: str) -> bytes:
        return raw[signal_field_slice(n_signals, name, index)]

    label = _text(field("label"))
    if not field("label").isascii():
        warns.append(
            f"signal {index} label {label!r} has non-ASCII bytes (EDF allows ASCII only); "
            "decoded as UTF-8 where valid, else latin-1"
        )
    where = f" of signal {index} ({label!r})"
    samples = _int_from(path, field("samples_per_record"), f"samples per record{where}")
    if samples < 1:
        raise _error(path, f"samples per record{where} is {samples}; expected >= 1")
    return EdfSignalHeader(
        label=label,
        transducer=_text(field("transducer")),
        physical_dimension=_text(field("physical_dimension")),
        physical_min=_float_from(path, field("physical_min"), f"physical minimum{where}"),
        physical_max=_float_from(path, field("physical_max"), f"physical maximum{where}"),
        digital_min=_int_from(path, field("digital_min"), f"digital minimum{where}"),
        digital_max=_int_from(path, field("digital_max"), f"digital maximum{where}"),
        prefiltering=_text(field("prefiltering")),
        samples_per_record=samples,
        # Same rule as edfio, whose signal list read_edf lines up with this header.
        is_annotation=field("label").rstrip() == annotation_label.encode(),
    )


def _read_digital(path: Path, header: EdfHeader, indices: list[int]) -> dict[int, np.ndarray]:
    """Digital samples of the signals at ``indices`` (positions in the header), whole records."""
    if not indices:
        return {}
    try:
        with warnings.catch_warnings():
            # edfio warns about the quirks read_edf_header has already reported.
            warnings.simplefilter("ignore")
            if header.fmt == "BDF":
                edf = edfio.read_bdf(path)
            else:
                edf = edfio.read_edf(path, lazy_load_data=True)
            # edfio's `signals` skips annotation signals by the same rule as our header.
            ordinary = [i for i, s in enumerate(header.signals) if not s.is_annotation]
            by_position = dict(zip(ordinary, edf.signals, strict=True))
            return {i: by_position[i].digital[: _n_samples(header, i)] for i in indices}
    except (ValueError, OSError) as exc:
        raise _error(path, f"data cannot be read: {exc}") from exc


def _n_samples(header: EdfHeader, index: int) -> int:
    return header.n_records * header.signals[index].samples_per_record


def _to_physical(
    path: Path, sig: EdfSignalHeader, digital: np.ndarray, fmt: str, warns: list[str]
) -> tuple[np.ndarray, float, str]:
    """Calibrate to physical units, then to µV for voltages. Returns data, resolution, unit."""
    low, high = _DIGITAL_LIMITS[fmt]
    if sig.digital_min < low or sig.digital_max > high:
        warns.append(
            f"signal {sig.label!r}: digital range [{sig.digital_min}, {sig.digital_max}] "
            f"exceeds the {fmt} limits [{low}, {high}]; calibrated with the header values "
            "anyway"
        )
    if sig.digital_max == sig.digital_min or sig.physical_max == sig.physical_min:
        warns.append(
            f"signal {sig.label!r}: digital [{sig.digital_min}, {sig.digital_max}] or physical "
            f"[{sig.physical_min}, {sig.physical_max}] range is empty; kept digital values "
            "uncalibrated"
        )
        gain, offset = 1.0, 0.0
    else:
        gain = (sig.physical_max - sig.physical_min) / (sig.digital_max - sig.digital_min)
        offset = sig.physical_min - gain * sig.digital_min
    unit, factor, standard = unit_scale_to_uv(sig.physical_dimension)
    if not standard:
        warns.append(
            f"signal {sig.label!r}: unit {sig.physical_dimension!r} is not a standard "
            f"spelling; read as {unit}"
        )
    # float32 holds every 16-bit EDF value exactly and halves memory traffic; 24-bit BDF
    # values need float64 to keep their last bits through the calibration.
    data = digital.astype(np.float32 if fmt == "EDF" else np.float64)
    data *= gain * factor
    data += offset * factor
    return data, abs(gain) * factor, unit


def _gap_warning(path: Path, header: EdfHeader) -> str:
    """Describe the gaps of an EDF+D file from the onsets its annotation records hold."""
    onsets = _record_onsets_s(path, header)
    if onsets is None:
        return (
            "EDF+D (discontinuous) file without readable record onsets; gaps unknown. The "
            "data records are concatenated in file order"
        )
    gaps_s = np.diff(onsets) - header.record_duration_s
    gaps_s = gaps_s[gaps_s > 1e-9]
    return (
        f"EDF+D (discontinuous) file: {len(gaps_s)} gaps totalling {gaps_s.sum():g} s. The "
        "data records are concatenated in file order, so times after a gap are shifted "
        "earlier by the gaps before them"
    )


def _record_onsets_s(path: Path, header: EdfHeader) -> np.ndarray | None:
    """Onset of each data record in seconds (EDF+ time-keeping TALs), or None if unreadable."""
    index = next((i for i, s in enumerate(header.signals) if s.is_annotation), None)
    if index is None:
        return None
    start = header.bytes_per_sample * sum(s.samples_per_record for s in header.signals[:index])
    width = header.bytes_per_sample * header.signals[index].samples_per_record
    records = np.memmap(
        path,
        dtype=np.uint8,
        mode="r",
        offset=header.header_bytes,
        shape=(header.n_records, header.record_bytes),
    )
    onsets = np.empty(header.n_records)
    for r in range(header.n_records):
        match = _RECORD_ONSET.match(records[r, start : start + width].tobytes())
        if match is None:
            return None
        onsets[r] = float(match.group(1))
    return onsets


def _start_datetime(header: EdfHeader, warns: list[str]) -> dt.datetime | None:
    """Start from the dd.mm.yy and hh.mm.ss fields (years 85-99 are 1985-1999)."""
    try:
        day, month, year = (int(x) for x in re.split(r"[.:\-/ ]", header.startdate))
        hour, minute, second = (int(x) for x in re.split(r"[.:\-/ ]", header.starttime))
        year += 1900 if year >= 85 else 2000
        return dt.datetime(year, month, day, hour, minute, second)
    except ValueError:
        # The values themselves are left out: a start date can help identify a person.
        warns.append(
            "start date/time fields are not a valid dd.mm.yy / hh.mm.ss date; start left "
            "unknown (None)"
        )
        return None


def _text(field: bytes) -> str:
    """Decode a header text field: ASCII per the spec, UTF-8 or latin-1 in the wild."""
    try:
        text = field.decode("utf-8")
    except UnicodeDecodeError:
        text = field.decode("latin-1")
    return text.strip(" \x00")


def _int_field(path: Path, raw: bytes, field: str) -> int:
    return _int_from(path, raw[header_field_slice(field)], f"header field {field!r}")


def _float_field(path: Path, raw: bytes, field: str) -> float:
    return _float_from(path, raw[header_field_slice(field)], f"header field {field!r}")


def _int_from(path: Path, field: bytes, what: str) -> int:
    value = _float_from(path, field, what)
    if not value.is_integer():
        raise _error(path, f"{what} is {_text(field)!r}; expected an integer")
    return int(value)


def _float_from(path: Path, field: bytes, what: str) -> float:
    text = _text(field)
    try:
        # Some writers use a decimal comma.
        value = float(text.replace(",", "."))
    except ValueError:
        raise _error(path, f"{what} is {text!r}; expected a number") from None
    if not np.isfinite(value):
        raise _error(path, f"{what} is {text!r}; expected a finite number")
    return value


def _error(path: Path, reason: str) -> RecordingReadError:
    return RecordingReadError(f"{path}: {reason}")
