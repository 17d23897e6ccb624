"""Store format benchmark: medscale's Zarr v3 layout against HDF5 variants, on one night.

    python benchmarks/store_formats.py [--hours 8] [--windows 300] [--repeats 3]

Every format stores the same int16 codes of one synthetic 8-h night (6 channels, 256 Hz in the
EDF, 128 Hz stored); float64 HDF5 stores the µV values as CSDP does. Reported per format: write
time (median of repeats), bytes on disk against the source EDF bytes of the same channels,
files per recording, and the median latency of reading a random 35-epoch window of two channels
(mean over random windows, warm page cache). Ratios are against medscale's layout measured in
the same run.
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
import numpy as np

from medscale.datasets.spec import load_dataset_spec
from medscale.ingest.convert import quantise, resample
from medscale.io.signals import read_signals
from medscale.store.layout import ChannelInfo, RecordingInfo
from medscale.store.store import Record, Store
from medscale.synth import synthesize_nights
from medscale.tasks import SLEEP_STAGING

SFREQ = 128.0
WINDOW = 35 * 30 * int(SFREQ)


def folder_bytes(path: Path) -> tuple[int, int]:
    if path.is_file():
        return path.stat().st_size, 1
    files = [p for p in path.rglob("*") if p.is_file()]
    return sum(p.stat().st_size for p in files), len(files)


def load_night(work: Path, hours: float) -> tuple[np.ndarray, np.ndarray, list[float], int]:
    night = synthesize_nights(work / "night", 1, seed=0, duration_h=hours, progress=False)[0]
    spec = load_dataset_spec("synthetic")
    recording = read_signals(night.signal_path)
    rows, floats, scales, source_bytes = [], [], [], 0
    for name in spec.kept_channels:
        signal = recording.signal(spec.channels[name][0])
        source_bytes += 2 * len(signal.data)  # EDF stores 2 bytes per sample
        data = resample(signal.data, signal.sfreq_hz, SFREQ)
        codes, step, _ = quantise(data, signal.resolution)
        rows.append(codes)
        floats.append(codes.astype(np.float64) * step)
        scales.append(step)
    n = min(len(r) for r in rows) // WINDOW * WINDOW
    codes = np.stack([r[:n] for r in rows])
    return codes, np.stack([f[:n] for f in floats]), scales, source_bytes * n // len(rows[0])


def write_zarr(path: Path, codes: np.ndarray, scales: list[float]) -> None:
    store = Store.create(path, task=SLEEP_STAGING)
    channels = [
        ChannelInfo(f"EEG {i}", "EEG", f"c{i}", 256.0, "uV", s, 0.0, 1.0)
        for i, s in enumerate(scales)
    ]
    n_segments = codes.shape[1] // int(30 * SFREQ)
    store.write_record(
        Record(
            dataset="bench",
            recording_id="night",
            subject="night",
            session="",
            arrays={"signals": codes, "segment_labels": np.zeros(n_segments, np.int8)},
            channels=channels,
            source_hash="",
            config_hash="",
            synthetic=True,
            sfreq_hz=SFREQ,
            segment_s=30.0,
        )
    )


def write_h5(path: Path, data: np.ndarray, **kwargs) -> None:
    with h5py.File(path, "w") as f:
        f.create_dataset("signals", data=data, **kwargs)


def read_zarr_window(store: Store, info: RecordingInfo, start: int) -> np.ndarray:
    return store.read_signals(info, info.channel_names[:2], start, start + WINDOW)


def read_h5_window(dset: h5py.Dataset, start: int) -> np.ndarray:
    return dset[0:2, start : start + WINDOW].astype(np.float32)


def time_reads(read, n_samples: int, windows: int, seed: int = 1) -> float:
    """Mean seconds per window over random windows (the rate a sampler would see)."""
    rng = np.random.default_rng(seed)
    starts = rng.integers(0, n_samples - WINDOW, size=windows)
    read(int(starts[0]))  # open handles, warm the page cache
    t0 = time.perf_counter()
    for start in starts:
        read(int(start))
    return (time.perf_counter() - t0) / windows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hours", type=float, default=8.0)
    parser.add_argument("--windows", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="medscale-bench-"))
    try:
        codes, floats, scales, source_bytes = load_night(work, args.hours)
        n = codes.shape[1]
        chunk = (1, 30720)
        formats = {
            "zarr v3 sharded blosc-lz4 (medscale)": (
                lambda p: write_zarr(p, codes, scales),
                "zarr",
            ),
            "hdf5 chunked gzip-4 int16": (
                lambda p: write_h5(p, codes, chunks=chunk, compression="gzip", compression_opts=4),
                "h5",
            ),
            "hdf5 chunked lzf int16": (
                lambda p: write_h5(p, codes, chunks=chunk, compression="lzf"),
                "h5",
            ),
            "hdf5 contiguous int16": (lambda p: write_h5(p, codes), "h5"),
            "hdf5 contiguous float64 (CSDP)": (lambda p: write_h5(p, floats), "h5"),
        }
        results = []
        for name, (writer, kind) in formats.items():
            write_times = []
            for repeat in range(args.repeats):
                path = work / f"fmt{len(results)}-{repeat}.{kind}"
                t0 = time.perf_counter()
                writer(path)
                write_times.append(time.perf_counter() - t0)
            size, files = folder_bytes(path)
            if kind == "zarr":
                store = Store(path)
                read = functools.partial(read_zarr_window, store, store.recordings()[0])
                latency = time_reads(read, n, args.windows)
            else:
                with h5py.File(path, "r") as handle:
                    read = functools.partial(read_h5_window, handle["signals"])
                    latency = time_reads(read, n, args.windows)
            results.append((name, statistics.median(write_times), size, files, latency))
        base = results[0]
        print(
            f"one {args.hours:g}-h night, 6 channels, {n} samples each at {SFREQ:g} Hz; "
            f"source EDF bytes of these channels: {source_bytes / 1e6:.1f} MB"
        )
        print(
            "| format | write s | MB | size / source EDF | files | window read ms | vs medscale |"
        )
        print("|---|---|---|---|---|---|---|")
        for name, write_s, size, files, latency in results:
            print(
                f"| {name} | {write_s:.2f} | {size / 1e6:.1f} | {size / source_bytes:.2f} | "
                f"{files} | {latency * 1e3:.2f} | {latency / base[4]:.2f} |"
            )
        print_codecs(codes)
        print_real_sample_size(work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def print_codecs(codes: np.ndarray) -> None:
    """Size and decode time of candidate codecs on the night's int16 codes (one chunk)."""
    import numcodecs

    chunk = np.ascontiguousarray(codes[0, :61440])
    candidates = {
        "zstd-3": numcodecs.Zstd(level=3),
        "zstd-1": numcodecs.Zstd(level=1),
        "blosc-lz4 bitshuffle (medscale)": numcodecs.Blosc("lz4", 5, numcodecs.Blosc.BITSHUFFLE),
        "blosc-zstd-1 bitshuffle": numcodecs.Blosc("zstd", 1, numcodecs.Blosc.BITSHUFFLE),
        "blosc-lz4 byte shuffle": numcodecs.Blosc("lz4", 5, numcodecs.Blosc.SHUFFLE),
    }
    print("| codec | size / raw int16 (whole night) | decode ms per 61,440-sample chunk |")
    print("|---|---|---|")
    for name, codec in candidates.items():
        size = sum(len(codec.encode(np.ascontiguousarray(row))) for row in codes)
        encoded = codec.encode(chunk)
        t0 = time.perf_counter()
        for _ in range(200):
            codec.decode(encoded)
        decode_ms = (time.perf_counter() - t0) / 200 * 1e3
        print(f"| {name} | {size / codes.nbytes:.3f} | {decode_ms:.3f} |")


def print_real_sample_size(work: Path) -> None:
    """The size goal on real data: the bundled Sleep-EDF crop (100 Hz source, 128 Hz stored)."""
    from importlib import resources

    from medscale.ingest import ingest

    sample = Path(str(resources.files("medscale.datasets") / "samples" / "sleep-edf-sc"))
    ingest("sleep-edf-sc", sample, work / "real", progress=False)
    store = Store(work / "real")
    info = store.recordings()[0]
    recording = read_signals(sample / "SC4001E0-PSG.edf", [c.source for c in info.channels])
    source = sum(2 * len(s.data) for s in recording.signals)
    stored = store.size_bytes()
    print(
        f"real Sleep-EDF crop ({', '.join(info.channel_names)}): {stored} bytes stored for "
        f"{source} source EDF bytes of those channels ({stored / source:.2f}x)"
    )


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    main()
