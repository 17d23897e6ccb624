"""Convert one recording: read, map channels, resample, align with the hypnogram, quantise.

Nothing here filters or scales the signal: those are load-time choices, recorded by the run
that makes them. What is stored is the source signal in physical units at a common rate.
"""

from __future__ import annotations

import hashlib
import importlib
import math
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
from scipy.signal import resample_poly

from medscale.datasets.spec import DatasetSpec
from medscale.errors import AlignmentError, ChannelError, SpecError
from medscale.ingest.plan import IngestUnit
from medscale.io.hypnograms import read_hypnogram, to_aasm
from medscale.io.recording import Hypnogram, RawHypnogram, Recording, Signal
from medscale.io.signals import list_signal_labels, read_signals
from medscale.io.stages import STAGE_NAMES, UNKNOWN, W, load_label_map
from medscale.privacy.demographics import demographics
from medscale.store.layout import ChannelInfo
from medscale.store.store import Record

INT16_MAX = 32767
_CHANNEL_TYPES = ("EEG", "EOG", "EMG", "ECG", "RESP", "SPO2", "POS", "TEMP")


@dataclass
class Trim:
    """What alignment removed, in epochs of the hypnogram and seconds of signal."""

    epochs_dropped_start: int = 0
    epochs_dropped_end: int = 0
    signal_dropped_start_s: float = 0.0
    signal_dropped_end_s: float = 0.0
    reasons: list[str] = field(default_factory=list)


@dataclass
class Converted:
    """A converted recording and the facts the QC report lists about it."""

    record: Record
    channels_found: list[str]
    channels_missing: list[str]
    source_duration_s: float
    trim: Trim
    warnings: list[str]


def sha256_file(path: Path, block_bytes: int = 1 << 22) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(block_bytes):
            h.update(chunk)
    return h.hexdigest()


def source_hash(unit: IngestUnit) -> tuple[str, list[dict[str, Any]]]:
    """Hash of the unit's source files, and the per-file facts for provenance."""
    files = []
    h = hashlib.sha256()
    roles = [("signals", unit.signal_path), ("annotations", unit.annotation_path)]
    roles += [("companion", p) for p in unit.companions]
    for role, path in roles:
        digest = sha256_file(path)
        h.update(f"{role}:{digest}\n".encode())
        files.append(
            {"role": role, "name": path.name, "size": path.stat().st_size, "sha256": digest}
        )
    return h.hexdigest(), files


def channel_type(name: str) -> str:
    """The channel type is the first word of its canonical name (``EEG C3-M2`` -> ``EEG``)."""
    first = name.split()[0].upper() if name.split() else ""
    return first if first in _CHANNEL_TYPES else "MISC"


def resample(data: np.ndarray, from_hz: float, to_hz: float) -> np.ndarray:
    """Polyphase resampling with scipy's anti-aliasing FIR; float32 in and out."""
    data = np.asarray(data, dtype=np.float32)
    if math.isclose(from_hz, to_hz):
        return data
    ratio = Fraction(to_hz / from_hz).limit_denominator(1000)
    return resample_poly(data, ratio.numerator, ratio.denominator).astype(np.float32, copy=False)


def quantise(data: np.ndarray, resolution: float) -> tuple[np.ndarray, float, str | None]:
    """int16 codes and the step (physical units per code).

    The step is the source's own resolution when it has one, so the error stays within half a
    source step. When the resampled signal would overflow int16 at that step, or the source has
    no resolution (text, float files), the step is the smallest that fits.
    """
    peak = float(np.max(np.abs(data))) if data.size else 0.0
    fit = peak / INT16_MAX if peak > 0 else 1e-3
    warning = None
    if math.isfinite(resolution) and resolution > 0:
        step = resolution
        if fit > step:
            warning = (
                f"quantisation step {fit:.4g} is coarser than the source resolution "
                f"{resolution:.4g} (peak {peak:.4g} would overflow int16)"
            )
            step = fit
    else:
        step = fit
    codes = np.clip(np.rint(data / step), -INT16_MAX, INT16_MAX).astype(np.int16)
    return codes, step, warning


def code_quantiles(codes: np.ndarray, quantiles: tuple[float, ...]) -> np.ndarray:
    """Quantiles of int16 codes from their histogram: exact for the stored values, and ~10x
    faster than sorting-based ``np.percentile`` on a night of samples."""
    if codes.size == 0:
        return np.zeros(len(quantiles))
    counts = np.bincount(codes.astype(np.int32) + 32768, minlength=65536)
    cumulative = np.cumsum(counts)
    ranks = np.ceil(np.asarray(quantiles) * codes.size).clip(1, codes.size)
    return np.searchsorted(cumulative, ranks).astype(np.float64) - 32768


def encode_channel(
    name: str,
    sig: Signal,
    source_label: str,
    sfreq_hz: float,
    start_sample: int,
    *,
    out: np.ndarray,
) -> tuple[ChannelInfo, str | None]:
    """Resample ``sig`` to ``sfreq_hz``, cut ``len(out)`` samples from ``start_sample``, and
    write its int16 codes into ``out``. Returns the channel's description and statistics,
    and a quantisation warning or None. Ingest and prediction share it, so a model sees a
    recording it predicts on exactly as it saw its training data."""
    n_samples = len(out)
    data = resample(sig.data, sig.sfreq_hz, sfreq_hz)[start_sample : start_sample + n_samples]
    if len(data) < n_samples:  # resampling rounding can leave a sample short
        data = np.pad(data, (0, n_samples - len(data)), mode="edge")
    out[:], step, warning = quantise(data, sig.resolution)
    q25, median, q75 = code_quantiles(out, (0.25, 0.5, 0.75)) * step
    info = ChannelInfo(
        name=name,
        type=channel_type(name),
        source=source_label,
        source_sfreq_hz=float(sig.sfreq_hz),
        unit=sig.unit,
        scale=float(step),
        median=float(median),
        iqr=float(q75 - q25),
    )
    return info, warning


def _find_label(recording: Recording, aliases: list[str]) -> str | None:
    by_lower = {label.strip().lower(): label for label in recording.labels}
    for alias in aliases:
        hit = by_lower.get(alias.strip().lower())
        if hit is not None:
            return hit
    return None


def _map_channels(
    spec: DatasetSpec, recording: Recording, file_labels: list[str], groups: dict[str, str]
) -> tuple[list[tuple[str, Signal, str]], list[str]]:
    """Canonical channels as (name, signal, source description), and the missing names."""
    out: list[tuple[str, Signal, str]] = []
    missing: list[str] = []
    for name in spec.kept_channels:
        label = _find_label(recording, spec.aliases(name, groups))
        if label is not None:
            out.append((name, recording.signal(label), label))
            continue
        if name in spec.derivations:
            plus, minus = spec.derivation_operands(name)
            plus_label = _find_label(recording, [plus])
            minus_label = _find_label(recording, [minus])
            if plus_label and minus_label:
                a, b = recording.signal(plus_label), recording.signal(minus_label)
                if a.sfreq_hz != b.sfreq_hz or a.unit != b.unit:
                    raise ChannelError(
                        f"{recording.source}: cannot derive {name} = {plus} - {minus}: "
                        f"rates {a.sfreq_hz}/{b.sfreq_hz} Hz, units {a.unit}/{b.unit} differ"
                    )
                n = min(len(a.data), len(b.data))
                data = np.asarray(a.data[:n], np.float32) - np.asarray(b.data[:n], np.float32)
                resolution = max(a.resolution, b.resolution)
                derived = Signal(name, a.sfreq_hz, data, a.unit, resolution)
                out.append((name, derived, f"{plus_label} - {minus_label}"))
                continue
        missing.append(name)
    lacking = [c for c in spec.required if c in missing]
    if lacking:
        wanted = {c: spec.aliases(c, groups) or [spec.derivations.get(c, "")] for c in lacking}
        raise ChannelError(
            f"{recording.source}: required channels {lacking} not found; looked for {wanted}; "
            f"the file has {file_labels}"
        )
    if not out:
        raise ChannelError(
            f"{recording.source}: none of the spec's channels {spec.kept_channels} found; "
            f"the file has {file_labels}"
        )
    return out, missing


# Bounds well outside any physiological recording: a header outside them is corrupt, and
# resampling from it would allocate without limit.
SOURCE_RATE_HZ = (0.01, 100_000.0)
MAX_DURATION_S = 31 * 86_400.0


def _check_plausible(unit: IngestUnit, name: str, sig: Signal) -> None:
    low, high = SOURCE_RATE_HZ
    if not low <= sig.sfreq_hz <= high:
        raise ChannelError(
            f"{unit.signal_path}: channel {name} has a sampling rate of {sig.sfreq_hz:g} Hz; "
            f"expected {low:g} to {high:g} Hz (is the header's record duration corrupt?)"
        )
    if not sig.duration_s <= MAX_DURATION_S:
        raise ChannelError(
            f"{unit.signal_path}: channel {name} lasts {sig.duration_s:g} s; expected at most "
            f"{MAX_DURATION_S:g} s (31 days)"
        )


def _align(
    spec: DatasetSpec, hypnogram: Hypnogram, signal_duration_s: float
) -> tuple[int, int, Trim]:
    """The epoch range [first, stop) to keep, under the spec's alignment rule."""
    epoch = hypnogram.epoch_length_s
    onset, n = hypnogram.onset_s, len(hypnogram.stages)
    first = max(0, math.ceil(-onset / epoch - 1e-9))
    stop = min(n, math.floor((signal_duration_s - onset) / epoch + 1e-9))
    trim = Trim()
    if spec.align.rule == "hypnogram":
        uncovered = max(0.0, -onset) + max(0.0, onset + n * epoch - signal_duration_s)
        if uncovered > spec.align.tolerance_s:
            raise AlignmentError(
                f"the signal ({signal_duration_s:.1f} s) does not cover the hypnogram "
                f"({n} epochs from {onset:.1f} s): {uncovered:.1f} s uncovered, more than "
                f"align.tolerance_s = {spec.align.tolerance_s}"
            )
    if stop <= first:
        raise AlignmentError(
            f"signal ({signal_duration_s:.1f} s) and hypnogram ({n} epochs of {epoch} s "
            f"from {onset:.1f} s) do not overlap by one whole epoch"
        )
    if first or stop < n or onset > 0 or signal_duration_s > onset + stop * epoch:
        trim.reasons.append("signal and hypnogram cover different spans")
    if spec.align.lights == "crop":
        off = [e.onset_s for e in hypnogram.events if e.label.lower() == "lights off"]
        on = [e.onset_s for e in hypnogram.events if e.label.lower() == "lights on"]
        if off:
            first = max(first, math.ceil((off[0] - onset) / epoch - 1e-9))
            trim.reasons.append("cropped at lights off")
        if on:
            stop = min(stop, math.floor((on[-1] - onset) / epoch + 1e-9))
            trim.reasons.append("cropped at lights on")
    if spec.align.wake_margin_min is not None:
        asleep = np.flatnonzero((hypnogram.stages != W) & (hypnogram.stages != UNKNOWN))
        asleep = asleep[(asleep >= first) & (asleep < stop)]
        if asleep.size:
            margin = round(spec.align.wake_margin_min * 60 / epoch)
            first = max(first, int(asleep[0]) - margin)
            stop = min(stop, int(asleep[-1]) + 1 + margin)
            trim.reasons.append(f"kept {spec.align.wake_margin_min} min of wake around sleep")
    if stop <= first:
        raise AlignmentError("nothing is left after cropping to lights off/on")
    trim.epochs_dropped_start, trim.epochs_dropped_end = first, n - stop
    trim.signal_dropped_start_s = onset + first * epoch
    trim.signal_dropped_end_s = max(0.0, signal_duration_s - (onset + stop * epoch))
    return first, stop, trim


def _run_hook(spec: DatasetSpec, recording: Recording, raw: RawHypnogram, unit: IngestUnit):
    module_name, _, func_name = (spec.hook or "").partition(":")
    try:
        func = getattr(importlib.import_module(module_name), func_name)
    except (ImportError, AttributeError, ValueError) as exc:
        raise SpecError(f"{spec.name}: hook {spec.hook!r} cannot be loaded: {exc}") from None
    return func(recording, raw, unit)


def convert_unit(
    unit: IngestUnit,
    spec: DatasetSpec,
    *,
    sfreq_hz: float,
    segment_s: float,
    source_digest: str,
    config_hash: str,
    provenance: dict[str, Any],
    key_id: str | None = None,
) -> Converted:
    """Read and convert one unit into the arrays the store writes. Raises on bad input."""
    options = dict(spec.signals.options) | spec.signals.options_by_recording.get(
        unit.recording_id, {}
    )
    available = list_signal_labels(unit.signal_path, reader=spec.signals.reader)
    labels = None
    if available is not None:  # load only the signals the spec can use
        wanted = {
            a.strip().lower()
            for c in spec.kept_channels
            for a in spec.aliases(c, dict(unit.groups))
        }
        for name in spec.derivations:
            wanted.update(op.strip().lower() for op in spec.derivation_operands(name))
        labels = [label for label in available if label.strip().lower() in wanted]
    recording = read_signals(unit.signal_path, labels, reader=spec.signals.reader, **options)
    raw = read_hypnogram(unit.annotation_path, spec.annotations.format, **spec.annotations.options)
    if spec.hook:
        recording, raw = _run_hook(spec, recording, raw, unit)
    synthetic = recording.synthetic or any(
        "SYNTHETIC" in str(v).upper() for v in recording.identifiers.values()
    )
    if synthetic != spec.synthetic:
        kind = "synthetic" if synthetic else "real"
        raise SpecError(
            f"{unit.signal_path}: a {kind} recording cannot go into dataset {spec.name!r} "
            f"(synthetic: {spec.synthetic}); synthetic and real data are never mixed"
        )
    warnings = list(recording.warnings) + list(raw.warnings)
    hypnogram = to_aasm(raw, load_label_map(spec.annotations.label_map), segment_s)
    file_labels = available if available is not None else list(recording.labels)
    groups = dict(unit.groups)
    mapped, missing = _map_channels(spec, recording, file_labels, groups)
    for name in missing:
        looked = spec.aliases(name, groups) or [spec.derivations.get(name, "")]
        warnings.append(f"channel {name} not found (looked for {looked})")
    for name, sig, _ in mapped:
        _check_plausible(unit, name, sig)
        if sig.sfreq_hz < sfreq_hz / 2:
            warnings.append(
                f"{name}: source rate {sig.sfreq_hz:g} Hz is under half the store rate "
                f"{sfreq_hz:g} Hz: upsampled, it holds nothing above {sig.sfreq_hz / 2:g} Hz"
            )
    source_duration_s = min(sig.duration_s for _, sig, _ in mapped)
    first, stop, trim = _align(spec, hypnogram, source_duration_s)
    n_samples = round((stop - first) * segment_s * sfreq_hz)
    start_sample = round((hypnogram.onset_s + first * segment_s) * sfreq_hz)

    codes = np.empty((len(mapped), n_samples), dtype=np.int16)
    channels: list[ChannelInfo] = []
    for row, (name, sig, source_label) in enumerate(mapped):
        info, warning = encode_channel(
            name, sig, source_label, sfreq_hz, start_sample, out=codes[row]
        )
        channels.append(info)
        if warning:
            warnings.append(f"{name}: {warning}")
    stages = hypnogram.stages[first:stop]
    source_files = provenance["source_files"]
    if unit.redact:  # file names can hold identifiers; hashes and sizes identify the file
        source_files = [{k: v for k, v in f.items() if k != "name"} for f in source_files]
    metadata = {
        "source_files": source_files,
        "privacy": {"ids": spec.privacy.ids, "key_id": key_id},
        "demographics": demographics(recording, spec.privacy.age, spec.privacy.sex),
        "provenance": {k: v for k, v in provenance.items() if k != "source_files"},
        "trim": trim.__dict__,
        "lights": [e.__dict__ for e in hypnogram.events if e.label.lower().startswith("lights")],
        "start_time_of_day": recording.start.time().isoformat() if recording.start else None,
        "warnings": warnings,
    }
    record = Record(
        dataset=unit.dataset,
        recording_id=unit.recording_id,
        subject=unit.subject,
        session=unit.session,
        sfreq_hz=sfreq_hz,
        segment_s=segment_s,
        arrays={"signals": codes, "segment_labels": stages},
        channels=channels,
        source_hash=source_digest,
        config_hash=config_hash,
        synthetic=synthetic,
        metadata=metadata,
    )
    return Converted(
        record=record,
        channels_found=file_labels,
        channels_missing=missing,
        source_duration_s=source_duration_s,
        trim=trim,
        warnings=warnings,
    )


def stage_counts(stages: np.ndarray) -> dict[str, int]:
    return {STAGE_NAMES[int(c)]: int((stages == c).sum()) for c in sorted(STAGE_NAMES)}
