"""Ingest benchmark: medscale against a CSDP-style reference chain and against the floor.

    python benchmarks/ingest_throughput.py [--nights 4] [--hours 8] [--repeats 3]

All three paths process the same synthetic nights (8 h, 6 channels at 256 Hz) in one run:
- medscale: `medscale.ingest.ingest` into a fresh store (hashing, conversion, QC report);
- reference: the chain CSDP runs per recording, written here: mne read, 0.1-40 Hz Butterworth
  `sosfiltfilt`, RobustScaler, clip at ±20 IQR, `resample_poly`, float64 HDF5 write;
- floor: reading the kept channels of the EDF and resampling them, nothing else.
Reported: medians of seconds per night over repeats, the ratios, the 1 -> 2 worker speed-up of
medscale, and the store size against the source EDF bytes of the kept channels.
"""

from __future__ import annotations

import argparse
import functools
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import h5py
import mne
import numpy as np
from scipy.signal import butter, resample_poly, sosfiltfilt
from sklearn.preprocessing import RobustScaler

from medscale.datasets.spec import load_dataset_spec
from medscale.ingest.convert import resample
from medscale.ingest.run import ingest
from medscale.io.signals import read_signals
from medscale.store.store import Store
from medscale.synth import synthesize_nights

SFREQ = 128


def kept_labels() -> list[str]:
    spec = load_dataset_spec("synthetic")
    return [spec.channels[name][0] for name in spec.kept_channels]


def reference_chain(edf: Path, out: Path, labels: list[str]) -> None:
    raw = mne.io.read_raw_edf(edf, include=labels, preload=True, verbose="error")
    data = raw.get_data() * 1e6
    sos = butter(4, [0.1, 40], btype="band", fs=raw.info["sfreq"], output="sos")
    data = sosfiltfilt(sos, data, axis=1)
    data = RobustScaler().fit_transform(data.T).T
    data = np.clip(data, -20, 20)
    data = resample_poly(data, SFREQ, int(raw.info["sfreq"]), axis=1)
    with h5py.File(out, "w") as f:
        f.create_dataset(edf.stem, data=data.astype(np.float64))


def run_reference(edfs: list[Path], out: Path, labels: list[str]) -> None:
    for edf in edfs:
        reference_chain(edf, out / f"{edf.stem}.h5", labels)


def floor_chain(edf: Path, labels: list[str]) -> None:
    recording = read_signals(edf, labels)
    for label in labels:
        signal = recording.signal(label)
        resample(signal.data, signal.sfreq_hz, SFREQ)


def timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nights", type=int, default=4)
    parser.add_argument("--hours", type=float, default=8.0)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="medscale-ingest-bench-"))
    labels = kept_labels()
    try:
        nights = synthesize_nights(
            work / "nights", args.nights, seed=0, duration_h=args.hours, progress=False
        )
        edfs = [n.signal_path for n in nights]
        source_bytes = 0
        recording = read_signals(edfs[0], labels)
        source_bytes = sum(2 * len(recording.signal(label).data) for label in labels) * len(edfs)
        rows: dict[str, list[float]] = {
            "medscale 1 worker": [],
            "medscale 2 workers": [],
            "reference": [],
            "floor": [],
        }
        store_bytes = 0
        for repeat in range(args.repeats):
            for workers in (1, 2):
                store = work / f"store-{repeat}-{workers}"
                seconds = timed(
                    functools.partial(
                        ingest, "synthetic", work / "nights", store, workers=workers, progress=False
                    )
                )
                rows[f"medscale {workers} worker" + ("s" if workers > 1 else "")].append(
                    seconds / len(edfs)
                )
                store_bytes = Store(store).size_bytes()
                shutil.rmtree(store)
            out = work / "ref"
            out.mkdir(exist_ok=True)
            rows["reference"].append(
                timed(functools.partial(run_reference, edfs, out, labels)) / len(edfs)
            )
            rows["floor"].append(timed(lambda: [floor_chain(e, labels) for e in edfs]) / len(edfs))
        med = {k: statistics.median(v) for k, v in rows.items()}
        one, two = med["medscale 1 worker"], med["medscale 2 workers"]
        print(
            f"{args.nights} synthetic nights of {args.hours:g} h, 6 channels at 256 Hz; "
            f"medians of {args.repeats} repeats; cores: {os.cpu_count()}"
        )
        print("| path | s per night | ratio |")
        print("|---|---|---|")
        print(f"| medscale, 1 worker | {one:.2f} | 1.00 |")
        print(f"| medscale, 2 workers (wall / nights) | {two:.2f} | speed-up {one / two:.2f}x |")
        ref, floor = med["reference"], med["floor"]
        print(f"| reference (CSDP-style chain) | {ref:.2f} | {ref / one:.2f}x medscale's time |")
        print(f"| floor (read + resample) | {floor:.2f} | medscale takes {one / floor:.2f}x |")
        print(
            f"store size: {store_bytes / 1e6:.1f} MB for {source_bytes / 1e6:.1f} MB of source EDF "
            f"samples of the kept channels ({store_bytes / source_bytes:.2f}x)"
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
