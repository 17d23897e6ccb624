"""Serving benchmark: medscale's training sampler against two h5py references, on one machine.

    python benchmarks/serving.py [--nights 8] [--hours 8] [--windows 3000] [--scale 10]

Surrogate nights are written by `medscale.synth` and ingested by the funnel; the references
read an HDF5 copy of the same values. Windows are 35 epochs × 30 s × 128 Hz × 2 channels
(one EEG, one EOG), float32 out, warm page cache (every file is read once before timing).

- ``medscale in-process``: `TrainWindows.load` in this process (robust scaling + clipping).
- ``medscale DataLoader, N workers``: the same through a torch DataLoader (batches of 64),
  after one warm-up batch per worker; worker memory comes from the workers' own
  ``/proc/self/status`` (VmHWM) and ``smaps_rollup`` (private pages), sent back with each batch.
- ``CSDP-style h5py``: per sample, open the HDF5 file, pick a recording, scan its hypnogram in
  Python for the epochs of a random stage, read the float64 window, scale it, close the file.
- ``h5py, persistent handle``: the file stays open and the stage index is precomputed with numpy.

The RSS check repeats the DataLoader run on a store with ``--scale`` times more recordings:
the extra recordings are hard links to the same chunk files under new ids (same bytes, new
commit records), so only the index grows. The evaluation iterator is timed over every night,
all 3 EEG × 2 EOG combinations, in 35-epoch chunks.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np
import torch
from torch.utils.data import DataLoader, default_collate

from medscale.data import DataConfig, EvalNights, RankSampler, SamplingConfig, TrainWindows
from medscale.ingest import ingest
from medscale.store import Store
from medscale.synth import synthesize_nights

L_EPOCHS = 35


# -- fixtures -------------------------------------------------------------------------------


def build_store(work: Path, nights: int, hours: float) -> Path:
    store = work / "store"
    if not (store / "zarr.json").exists():
        synthesize_nights(work / "nights", nights, seed=0, duration_h=hours, progress=False)
        ingest("synthetic", work / "nights", store, workers=2, progress=False)
        shutil.rmtree(work / "nights")
    return store


def scaled_copy(store: Path, out: Path, factor: int) -> Path:
    """``factor`` × the recordings: hard-linked chunk files under new ids, new commit records."""
    if (out / "zarr.json").exists():
        return out
    shutil.copytree(store, out, copy_function=os.link)
    base = Store(store).recordings()
    for copy in range(1, factor):
        for info in base:
            new_id = f"{info.recording_id}-x{copy}"
            src = store / "recordings" / info.dataset / info.recording_id
            shutil.copytree(src, out / "recordings" / info.dataset / new_id, copy_function=os.link)
            record = info.to_json() | {"recording_id": new_id}
            (out / "commits" / info.dataset / f"{new_id}.json").write_text(json.dumps(record))
    return out


def build_hdf5(store_path: Path, out: Path) -> Path:
    """CSDP's layout: one file per dataset, a group per recording, float64 µV, hypnogram."""
    if out.exists():
        return out
    store = Store(store_path)
    with h5py.File(out, "w") as f:
        for info in store.recordings():
            group = f.create_group(info.recording_id)
            group["signals"] = store.read_signals(info).astype(np.float64)
            group["hypnogram"] = store.read_segment_labels(info)
            group.attrs["median"] = [c.median for c in info.channels]
            group.attrs["iqr"] = [c.iqr for c in info.channels]
            group.attrs["types"] = [c.type for c in info.channels]
    return out


def warm(path: Path) -> None:
    for p in path.rglob("*") if path.is_dir() else [path]:
        if p.is_file():
            p.read_bytes()


# -- references -----------------------------------------------------------------------------


def csdp_style(h5_path: Path, n: int, seed: int) -> float:
    rng = random.Random(seed)
    spe = 30 * 128
    started = time.perf_counter()
    for _ in range(n):
        with h5py.File(h5_path, "r") as f:  # CSDP opens the file on every sample
            rec = f[rng.choice(list(f.keys()))]
            hyp = rec["hypnogram"][()]
            stages = sorted({int(s) for s in hyp if s >= 0})
            stage = rng.choice(stages)
            epochs = [i for i, s in enumerate(hyp) if s == stage]  # Python scan per sample
            anchor = rng.choice(epochs)
            start = min(max(0, anchor - rng.randrange(L_EPOCHS)), len(hyp) - L_EPOCHS)
            types = list(rec.attrs["types"])
            rows = [rng.choice([i for i, t in enumerate(types) if t == k]) for k in ("EEG", "EOG")]
            x = np.stack([rec["signals"][r, start * spe : (start + L_EPOCHS) * spe] for r in rows])
            med, iqr = rec.attrs["median"][rows], rec.attrs["iqr"][rows]
            x = np.clip((x - med[:, None]) / iqr[:, None], -20, 20)  # float64 throughout
    return n / (time.perf_counter() - started)


def h5py_persistent(h5_path: Path, n: int, seed: int) -> float:
    rng = np.random.default_rng(seed)
    spe = 30 * 128
    f = h5py.File(h5_path, "r")
    recs = []
    for name in f:
        hyp = f[name]["hypnogram"][()]
        types = list(f[name].attrs["types"])
        by_stage = [np.flatnonzero(hyp == s) for s in range(5)]
        recs.append(
            (
                f[name]["signals"],
                [e for e in by_stage if len(e)],
                len(hyp),
                [[i for i, t in enumerate(types) if t == k] for k in ("EEG", "EOG")],
                f[name].attrs["median"].astype(np.float32),
                f[name].attrs["iqr"].astype(np.float32),
            )
        )
    started = time.perf_counter()
    for _ in range(n):
        signals, stages, n_epochs, groups, med, iqr = recs[rng.integers(len(recs))]
        epochs = stages[rng.integers(len(stages))]
        anchor = int(epochs[rng.integers(len(epochs))])
        start = min(max(0, anchor - int(rng.integers(L_EPOCHS))), n_epochs - L_EPOCHS)
        rows = [g[rng.integers(len(g))] for g in groups]
        x = np.stack([signals[r, start * spe : (start + L_EPOCHS) * spe] for r in rows])
        x = np.clip((x.astype(np.float32) - med[rows, None]) / iqr[rows, None], -20, 20)
    f.close()
    return n / (time.perf_counter() - started)


# -- medscale -------------------------------------------------------------------------------


def medscale_in_process(store: Path, n: int, config: DataConfig) -> float:
    dataset = TrainWindows(store, config)
    for i in range(50):
        dataset.load(99, i)  # open the files first, as a worker does once
    started = time.perf_counter()
    for i in range(n):
        dataset.load(0, i)
    return n / (time.perf_counter() - started)


def _memory() -> tuple[float, float]:
    status = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines())
    rollup = Path("/proc/self/smaps_rollup").read_text().splitlines()[1:]
    fields = dict(line.split(":", 1) for line in rollup)
    private = sum(int(fields[k].split()[0]) for k in ("Private_Clean", "Private_Dirty"))
    return int(status["VmHWM"].split()[0]) / 1024, private / 1024


def _collate(batch):
    out = default_collate(batch)
    out["memory_mib"] = torch.tensor(_memory())  # measured in the worker that made the batch
    return out


def medscale_loader(store: Path, n: int, workers: int, config: DataConfig, batch: int = 64):
    dataset = TrainWindows(store, config)
    loader = DataLoader(
        dataset,
        batch_size=batch,
        sampler=RankSampler(n + batch * workers),
        num_workers=workers,
        collate_fn=_collate,
        multiprocessing_context="fork",
        prefetch_factor=4,
    )
    it = iter(loader)
    for _ in range(workers):  # warm-up: one batch per worker (fork, first file opens)
        next(it)
    started, count, peak, private = time.perf_counter(), 0, 0.0, 0.0
    for b in it:
        count += len(b["sample"])
        peak = max(peak, float(b["memory_mib"][0]))
        private = max(private, float(b["memory_mib"][1]))
    return count / (time.perf_counter() - started), peak, private


def eval_nights_per_s(store: Path, config: DataConfig) -> tuple[float, int]:
    nights = EvalNights(store, config)
    started, seen = time.perf_counter(), set()
    for chunk in nights:
        seen.add(chunk["recording"])
    return len(seen) / (time.perf_counter() - started), len(seen)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--nights", type=int, default=8)
    parser.add_argument("--hours", type=float, default=8.0)
    parser.add_argument("--windows", type=int, default=3000)
    parser.add_argument("--csdp-windows", type=int, default=300)
    parser.add_argument("--scale", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workdir", type=Path, default=None, help="reuse stores between runs")
    args = parser.parse_args(argv)
    work = args.workdir or Path(tempfile.mkdtemp(prefix="medscale-serving-"))
    work.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(1)

    t0 = time.perf_counter()
    store = build_store(work, args.nights, args.hours)
    big = scaled_copy(store, work / f"store-x{args.scale}", args.scale)
    h5 = build_hdf5(store, work / "csdp.h5")
    for path in (store, h5):
        warm(path)
    print(f"fixtures ready in {time.perf_counter() - t0:.1f} s under {work}")
    config = DataConfig(sampling=SamplingConfig(window_epochs=L_EPOCHS))
    n_base, n_big = len(Store(store).recordings()), len(Store(big).recordings())

    def med(fn, *a):
        results = [fn(*a) for _ in range(args.repeats)]
        if isinstance(results[0], tuple):
            return tuple(statistics.median(r[k] for r in results) for k in range(len(results[0])))
        return statistics.median(results)

    rows = []
    csdp = med(csdp_style, h5, args.csdp_windows, 0)
    rows.append(("CSDP-style h5py (open per sample, Python scan, float64)", csdp, None, None))
    rows.append(("h5py, persistent handle", med(h5py_persistent, h5, args.windows, 0), None, None))
    rows.append(
        ("medscale in-process", med(medscale_in_process, store, args.windows, config), None, None)
    )
    loader = {}
    for workers in (1, 2):
        rate, peak, private = med(medscale_loader, store, args.windows, workers, config)
        loader[workers] = rate
        rows.append(
            (f"medscale DataLoader, {workers} worker(s), {n_base} recs", rate, peak, private)
        )
    rate, peak, private = med(medscale_loader, big, args.windows, 1, config)
    rows.append((f"medscale DataLoader, 1 worker(s), {n_big} recs", rate, peak, private))
    warm(store)
    nights_s, n_nights = eval_nights_per_s(store, config)

    print(
        f"\n{n_base} nights of {args.hours} h, {args.windows} windows "
        f"(CSDP-style: {args.csdp_windows}), median of {args.repeats}"
    )
    print(f"{'reader':<58}{'windows/s':>11}{'vs CSDP':>9}{'worker RSS MiB':>16}{'private MiB':>13}")
    for name, rate, peak, private in rows:
        peak_s = f"{peak:16.0f}" if peak is not None else f"{'':>16}"
        priv_s = f"{private:13.0f}" if private is not None else f"{'':>13}"
        print(f"{name:<58}{rate:>11.0f}{rate / csdp:>8.1f}x{peak_s}{priv_s}")
    print(
        f"\nDataLoader scaling 1 -> 2 workers: {loader[2] / loader[1]:.2f}x ({os.cpu_count()} CPUs)"
    )
    print(
        f"evaluation iterator: {nights_s:.2f} nights/s over {n_nights} nights "
        "(6 channel combinations each, 35-epoch chunks)"
    )
    if args.workdir is None:
        shutil.rmtree(work)


if __name__ == "__main__":
    main()
