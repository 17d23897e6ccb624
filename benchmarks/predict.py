"""Prediction and loader speed: `medscale predict` on 8-h nights beside YASA, the forward
pass against this CPU's compute floor, and DataLoader windows/s (float32 vs int16 codes).

Run: ``python benchmarks/predict.py [--hours 8] [--repeats 3] [--batch-nights 3]``.

1. **End to end, process start included**: ``medscale predict NIGHT --threads 2`` in a fresh
   process (full U-Sleep, untrained weights: speed does not depend on them), once with one
   EEG + EOG pair (``--channels``) and once with every combination the night offers; YASA in
   a fresh process (import, read, features, LightGBM) on the same pair.
2. **Batch steady state**: `predict_many` over ``--batch-nights`` copies of the night in one
   process (one pair), seconds per night after the first; YASA per night, warm, same process.
3. **Forward vs the compute floor**: U-Sleep's multiply-accumulates over a 35-epoch chunk
   (counted from the conv layers' shapes), this CPU's attainable float32 FLOP/s (a
   2048 x 2048 matmul on the same threads), and the measured forward per chunk.
4. **DataLoader**: windows/s of 35 x 30 s x 128 Hz x 2 channels, batches of 64, from 1 and
   2 workers, serving float32 windows and serving int16 codes (scaled in the main process by
   `scale_on_device`, on the CPU here; on a GPU that step runs on the device).

Figures are medians over ``--repeats``; ratios are taken within this run.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

EEG, EOG = "EEG C4-M1", "EOG E1-M2"
YASA_SCRIPT = """
import sys
from medscale.baselines.yasa import yasa_probabilities
from medscale.io.signals import read_signals
recording = read_signals(sys.argv[1], [sys.argv[2], sys.argv[3]])
eeg, eog = recording.signal(sys.argv[2]), recording.signal(sys.argv[3])
yasa_probabilities(eeg.data, eeg.sfreq_hz, eog_uv=eog.data)
"""


def make_run(work: Path, model: str = "usleep") -> Path:
    """A one-step training run of ``model`` (speed does not depend on the weights)."""
    from medscale.ingest import ingest
    from medscale.synth import synthesize_nights
    from medscale.train import TrainConfig, train

    synthesize_nights(work / "train-nights", 3, seed=12, duration_h=0.5, progress=False)
    ingest("synthetic", work / "train-nights", work / "store", progress=False)
    config = TrainConfig.from_dict(
        {
            "model": model,
            "data": {"sampling": {"window_epochs": 35, "samples_per_epoch": 2}},
            "batch_size": 1,
            "max_steps": 1,
            "val_every": 1,
            "checkpoint_every": 1,
            "log_every": 1,
            "split": {"val_fraction": 0.34, "test_fraction": 0.0},
        }
    )
    train(config, work / "store", work / "run", progress=False)
    return work / "run"


def timed(cmd: list[str], threads: int) -> float:
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    started = time.perf_counter()
    subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL)
    return time.perf_counter() - started


def end_to_end(edf: Path, run: Path, out: Path, threads: int, repeats: int) -> dict:
    medscale = [sys.executable, "-m", "medscale.cli.main", "predict", str(edf)]
    common = ["--model", str(run), "--threads", str(threads), "-q", "--no-resume"]
    pair = ["--channels", f"eeg={EEG}", "--channels", f"eog={EOG}"]
    yasa = [sys.executable, "-c", YASA_SCRIPT, str(edf), EEG, EOG]
    runs: dict[str, list[float]] = {"pair": [], "all": [], "yasa": []}
    for k in range(repeats):  # interleaved, so load drifts hit all three alike
        runs["pair"].append(
            timed([*medscale, *common, *pair, "--out", str(out / f"p{k}")], threads)
        )
        runs["all"].append(timed([*medscale, *common, "--out", str(out / f"a{k}")], threads))
        runs["yasa"].append(timed(yasa, threads))
    return runs


def batch_steady(edf: Path, run: Path, work: Path, n: int, threads: int) -> dict:
    from medscale.baselines.yasa import yasa_probabilities
    from medscale.io.signals import read_signals
    from medscale.predict import load_staging_model, predict_many

    folder = work / "batch"
    folder.mkdir()
    for k in range(n):
        (folder / f"night{k}.edf").symlink_to(edf)
    model = load_staging_model(run, threads=threads)
    started = time.perf_counter()
    ends: list[float] = []
    predict_many(
        [folder],
        model,
        work / "batch-out",
        channels={"eeg": [EEG], "eog": [EOG]},
        progress=False,
        on_night=lambda _: ends.append(time.perf_counter()),
    )
    ours = [b - a for a, b in zip([started, *ends[:-1]], ends, strict=True)][1:]
    theirs = []
    for _ in range(n):
        t = time.perf_counter()
        recording = read_signals(edf, [EEG, EOG])
        eeg, eog = recording.signal(EEG), recording.signal(EOG)
        yasa_probabilities(eeg.data, eeg.sfreq_hz, eog_uv=eog.data)
        theirs.append(time.perf_counter() - t)
    return {"medscale": ours, "yasa": theirs[1:]}


def forward_vs_floor(threads: int, repeats: int) -> dict:
    import torch

    from medscale.models import build_model

    torch.set_num_threads(threads)
    model = build_model("usleep", in_channels=2).eval()
    x = torch.randn(1, 2, 35 * 3840)
    macs = [0]

    def count(module, inputs, output) -> None:
        c_in, k = module.in_channels // module.groups, module.kernel_size[0]
        macs[0] += output.numel() * c_in * k

    hooks = [
        m.register_forward_hook(count) for m in model.modules() if type(m).__name__ == "Conv1d"
    ]
    with torch.inference_mode():
        model(x)
    for h in hooks:
        h.remove()
    n = 2048
    a, b = torch.randn(n, n), torch.randn(n, n)
    torch.mm(a, b)
    flops = []
    for _ in range(repeats):
        t = time.perf_counter()
        torch.mm(a, b)
        flops.append(2 * n**3 / (time.perf_counter() - t))
    forward = []
    with torch.inference_mode():
        model(x)
        for _ in range(repeats):
            t = time.perf_counter()
            model(x)
            forward.append(time.perf_counter() - t)
    return {"macs": macs[0], "flops": flops, "forward": forward}


def loader_rates(work: Path, n_windows: int, repeats: int) -> dict:
    from medscale.data import DataConfig, SamplingConfig
    from medscale.data.torch_data import create_train_loader, scale_on_device
    from medscale.ingest import ingest
    from medscale.synth import synthesize_nights

    synthesize_nights(work / "loader-nights", 4, seed=21, duration_h=1.0, progress=False)
    ingest("synthetic", work / "loader-nights", work / "loader-store", progress=False)
    config = DataConfig(sampling=SamplingConfig(samples_per_epoch=n_windows))
    rates: dict[str, list[float]] = {}
    for _ in range(repeats):
        for workers in (1, 2):
            for codes in (False, True):
                loader = create_train_loader(
                    work / "loader-store", config, num_workers=workers, serve_codes=codes
                )
                iterator = iter(loader)
                next(iterator)  # workers started, first batch served
                started, served = time.perf_counter(), 0
                for batch in iterator:
                    x = scale_on_device(batch, "cpu", 20.0) if codes else batch["x"]
                    served += len(x)
                elapsed = time.perf_counter() - started
                key = f"{workers} worker(s), {'int16 codes' if codes else 'float32'}"
                rates.setdefault(key, []).append(served / elapsed)
                del iterator, loader
    return rates


def fmt(values: list[float]) -> str:
    return ", ".join(f"{v:.2f}" for v in values)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hours", type=float, default=8.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch-nights", type=int, default=3)
    parser.add_argument("--loader-windows", type=int, default=1280)
    parser.add_argument("--parts", default="e2e,batch,floor,loader")
    args = parser.parse_args()
    parts = set(args.parts.split(","))
    print(f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at start")
    work = Path(tempfile.mkdtemp(prefix="medscale-bench-predict-"))
    try:
        from medscale.synth import synthesize_nights

        if parts & {"e2e", "batch"}:
            run = make_run(work)
            synthesize_nights(work / "night", 1, seed=11, duration_h=args.hours, progress=False)
            edf = next((work / "night").glob("*-PSG.edf"))
        if "e2e" in parts:
            r = end_to_end(edf, run, work / "e2e", args.threads, args.repeats)
            m = {k: statistics.median(v) for k, v in r.items()}
            print(f"\n1. {args.hours:g}-h night end to end, fresh process, {args.threads} threads")
            print(f"  medscale, one EEG+EOG pair : {m['pair']:6.2f} s  ({fmt(r['pair'])})")
            print(f"  medscale, all combinations: {m['all']:6.2f} s  ({fmt(r['all'])})")
            print(f"  YASA, same pair            : {m['yasa']:6.2f} s  ({fmt(r['yasa'])})")
            print(f"  YASA / medscale (pair): {m['yasa'] / m['pair']:.2f}")
        if "batch" in parts:
            r = batch_steady(edf, run, work, args.batch_nights, args.threads)
            m = {k: statistics.median(v) for k, v in r.items()}
            print(f"\n2. batch steady state, s per {args.hours:g}-h night (first night dropped)")
            print(
                f"  medscale predict_many, one pair: {m['medscale']:6.2f} s  ({fmt(r['medscale'])})"
            )
            print(f"  YASA, warm                     : {m['yasa']:6.2f} s  ({fmt(r['yasa'])})")
            print(f"  YASA / medscale: {m['yasa'] / m['medscale']:.2f}")
        if "floor" in parts:
            r = forward_vs_floor(args.threads, args.repeats)
            flops, forward = max(r["flops"]), statistics.median(r["forward"])
            floor = 2 * r["macs"] / flops
            print(f"\n3. U-Sleep forward, one 35-epoch chunk, {args.threads} threads")
            print(
                f"  {r['macs'] / 1e9:.2f} GMAC per chunk; matmul {flops / 1e9:.1f} GFLOP/s (best)"
            )
            print(f"  floor {floor:.3f} s, measured {forward:.3f} s ({fmt(r['forward'])})")
            print(f"  measured / floor: {forward / floor:.1f}x")
        if "loader" in parts:
            r = loader_rates(work, args.loader_windows, args.repeats)
            print("\n4. DataLoader windows/s (35 x 30 s x 128 Hz x 2 channels, batches of 64)")
            for key, values in r.items():
                print(f"  {key:<28}: {statistics.median(values):7.0f}  ({fmt(values)})")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
