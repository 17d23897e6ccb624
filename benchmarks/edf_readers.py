"""Compare EDF readers (edfio, pyedflib, mne) on speed and on tolerance to real-world quirks.

Run: ``python benchmarks/edf_readers.py [--repeats 5] [--hours 8]``. Prints two tables:

1. Speed: median wall time over repeats to read the kept channels (3 of 6, and all 6) of a
   synthetic 6-channel 256 Hz EDF written with edfio, as physical values; ratio against the
   fastest reader. medscale's own `read_edf` (header checks + the chosen engine) is listed too.
2. Tolerance: for each quirk of `medscale.synth.quirks` injected into a small file, and for
   files that cannot be read, what each reader does: ``ok`` (right data, silent), ``ok+warn``
   (right data, with a warning), ``WRONG`` (values off), ``error`` (raises) — for the
   unreadable files an error is the right outcome.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import edfio
import mne
import numpy as np
import pyedflib

from medscale.io.edf import read_edf
from medscale.io.reader_rules import unit_scale_to_uv
from medscale.synth.quirks import QUIRKS, inject_quirk

N_CHANNELS = 6
SFREQ_HZ = 256
KEPT = ("EEG C3-A2", "EEG C4-A1", "EOG E1")
LABELS = ("EEG C3-A2", "EEG C4-A1", "EOG E1", "EOG E2", "EMG chin", "ECG")

Reader = Callable[[Path, "tuple[str, ...] | None"], list[np.ndarray]]


def write_test_edf(path: Path, duration_s: int, seed: int = 0) -> list[np.ndarray]:
    """Write a 6-channel 256 Hz EDF (µV, 16-bit) and return its physical values as read."""
    rng = np.random.default_rng(seed)
    t = np.arange(duration_s * SFREQ_HZ) / SFREQ_HZ
    signals = []
    for i, label in enumerate(LABELS):
        data = 40 * np.sin(2 * np.pi * (1 + i) * t) + rng.normal(0, 15, t.size)
        signals.append(
            edfio.EdfSignal(
                np.clip(data, -500, 500),
                SFREQ_HZ,
                label=label,
                physical_dimension="uV",
                physical_range=(-500, 500),
            )
        )
    edfio.Edf(signals).write(path)
    return [s.data.copy() for s in edfio.read_edf(path).signals]


# edfio and pyedflib return values in the file's own unit; the caller scales them to µV with
# medscale's unit rule, as the funnel would. mne converts to volts itself.
def read_edfio(path: Path, labels: tuple[str, ...] | None) -> list[np.ndarray]:
    edf = edfio.read_edf(path, lazy_load_data=True)
    return [
        s.data * unit_scale_to_uv(s.physical_dimension)[1]
        for s in edf.signals
        if labels is None or s.label in labels
    ]


def read_pyedflib(path: Path, labels: tuple[str, ...] | None) -> list[np.ndarray]:
    with pyedflib.EdfReader(str(path)) as reader:
        names = reader.getSignalLabels()
        return [
            reader.readSignal(i) * unit_scale_to_uv(reader.getPhysicalDimension(i))[1]
            for i, n in enumerate(names)
            if labels is None or n in labels
        ]


def read_mne(path: Path, labels: tuple[str, ...] | None) -> list[np.ndarray]:
    raw = mne.io.read_raw_edf(
        path, include=list(labels) if labels else None, preload=True, verbose="error"
    )
    # mne gives volts for voltage channels; compare in µV.
    return list(raw.get_data() * 1e6)


def read_medscale(path: Path, labels: tuple[str, ...] | None) -> list[np.ndarray]:
    return [s.data for s in read_edf(path, labels).signals]


READERS: dict[str, Reader] = {
    "edfio": read_edfio,
    "pyedflib": read_pyedflib,
    "mne": read_mne,
    "medscale.read_edf": read_medscale,
}


def time_readers(path: Path, labels: tuple[str, ...] | None, repeats: int) -> dict[str, float]:
    medians = {}
    for name, reader in READERS.items():
        times = []
        for _ in range(repeats):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                start = time.perf_counter()
                arrays = reader(path, labels)
                times.append(time.perf_counter() - start)
            del arrays
        medians[name] = float(np.median(times))
    return medians


def tolerance(folder: Path) -> dict[str, dict[str, str]]:
    """Outcome of each reader on each quirk and on each unreadable file."""
    clean = folder / "clean.edf"
    expected = write_test_edf(clean, duration_s=60)
    cases: dict[str, tuple[Path, bool]] = {}
    for quirk in QUIRKS:
        path = folder / f"{quirk}.edf"
        shutil.copy(clean, path)
        inject_quirk(path, quirk)
        cases[quirk] = (path, True)
    for name, make in UNREADABLE.items():
        path = folder / f"{name}.edf"
        path.write_bytes(make(clean.read_bytes()))
        cases[name] = (path, False)
    table: dict[str, dict[str, str]] = {}
    for case, (path, readable) in cases.items():
        table[case] = {}
        for name, reader in READERS.items():
            table[case][name] = _outcome(reader, path, expected if readable else None)
    return table


def _outcome(reader: Reader, path: Path, expected: list[np.ndarray] | None) -> str:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            arrays = reader(path, None)
        except Exception as exc:  # any failure is a result to report here
            return f"error ({type(exc).__name__})"
    if expected is None:
        return "no error (BAD)"
    warned = bool(caught) or (reader is read_medscale and bool(read_edf(path).warnings))
    n = min(len(e) for e in expected)
    if len(arrays) != len(expected) or any(
        not np.allclose(a[:n], e[:n], atol=1e-6) for a, e in zip(arrays, expected, strict=True)
    ):
        return "WRONG"
    return "ok+warn" if warned else "ok"


def _zero_records(clean: bytes) -> bytes:
    n_signals = int(clean[252:256])
    header = bytearray(clean[: 256 * (n_signals + 1)])
    header[236:244] = b"0".ljust(8)
    return bytes(header)


def _huge_sizes(clean: bytes) -> bytes:
    # A corrupt header claiming 99,999,999 samples per record for every signal.
    n_signals = int(clean[252:256])
    raw = bytearray(clean)
    start = 256 + n_signals * (16 + 80 + 8 * 5 + 80)
    raw[start : start + 8 * n_signals] = b"99999999" * n_signals
    return bytes(raw)


UNREADABLE: dict[str, Callable[[bytes], bytes]] = {
    "random_bytes": lambda clean: np.random.default_rng(1).bytes(len(clean)),
    "truncated_header": lambda clean: clean[:700],
    "zero_records": _zero_records,
    "huge_sizes": _huge_sizes,
}


def print_speed(title: str, medians: dict[str, float]) -> None:
    fastest = min(medians.values())
    print(f"\n{title}")
    print("| reader | median s | x fastest |\n|---|---:|---:|")
    for name, seconds in sorted(medians.items(), key=lambda kv: kv[1]):
        print(f"| {name} | {seconds:.3f} | {seconds / fastest:.1f} |")


def print_tolerance(table: dict[str, dict[str, str]]) -> None:
    names = list(READERS)
    print("\nTolerance (quirks: ok / ok+warn wanted; unreadable files: error wanted)")
    print("| case | " + " | ".join(names) + " |")
    print("|---|" + "---|" * len(names))
    for case, row in table.items():
        print(f"| {case} | " + " | ".join(row[n] for n in names) + " |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--hours", type=float, default=8.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        long_path = folder / "long.edf"
        write_test_edf(long_path, duration_s=round(args.hours * 3600))
        size_mb = long_path.stat().st_size / 1e6
        print(
            f"{args.hours:g} h, {N_CHANNELS} channels @ {SFREQ_HZ} Hz EDF ({size_mb:.0f} MB); "
            f"median of {args.repeats} repeats"
        )
        print_speed(
            f"Read {len(KEPT)} of {N_CHANNELS} channels",
            time_readers(long_path, KEPT, args.repeats),
        )
        print_speed(f"Read all {N_CHANNELS} channels", time_readers(long_path, None, args.repeats))
        long_path.unlink()
        print_tolerance(tolerance(folder))


if __name__ == "__main__":
    main()
