"""Leave-one-subject-out on the real DREAMS excerpts, beside YASA: the full form of the test
suite's light check (tests/evaluate/test_crossval.py trains 2 folds for a few steps).

Run: ``python benchmarks/loso_dreams.py [--data ../shared/data] [--steps 100] [--k K]``.

Ingests ``DATA/dreams_spindles`` (8 half-hour excerpts, one subject each) into a scratch
store, cross-validates the bundled ``usleep-small-eeg`` config (one fold per subject unless
``--k``) with torch on one thread, runs YASA's pretrained classifier on the same excerpts and
prints the pooled kappa, accuracy and macro-F1 with their 95 % bootstrap intervals over
recordings, the majority-stage rate and the wall time. The figures are in docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from medscale.evaluate.crossval import cross_validate
from medscale.ingest import ingest
from medscale.train.config import TrainConfig


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("../shared/data"))
    parser.add_argument("--steps", type=int, help="training steps per fold (default: config's)")
    parser.add_argument("--k", type=int, help="k subject folds (default: one per subject)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    config = TrainConfig.load("usleep-small-eeg")
    if args.steps is not None:
        config = TrainConfig.from_dict(config.to_dict() | {"max_steps": args.steps})
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="medscale-loso-") as scratch:
        store = Path(scratch) / "store"
        ingest("dreams", args.data / "dreams_spindles", store, progress=False)
        result, _ = cross_validate(store, config, Path(scratch) / "cv", k=args.k, progress=True)
    seconds = time.perf_counter() - started
    confusion = result.confusion[result.models[0]]
    majority = confusion.sum(axis=1).max() / confusion.sum()
    kind = "leave-one-subject-out" if args.k is None else f"{args.k}-fold"
    print(f"{kind}, {config.max_steps} steps per fold, {seconds:.0f} s in all")
    print("| model | n recordings | kappa | accuracy | macro-F1 |")
    print("|---|---|---|---|---|")
    for name in result.models:
        pooled = result.pooled[name]
        cells = [
            f"{pooled[m]:.3f} [{pooled['ci'][m][0]:.3f}, {pooled['ci'][m][1]:.3f}]"
            for m in ("kappa", "accuracy", "macro_f1")
        ]
        print(f"| {name} | {pooled['n_recordings']} | " + " | ".join(cells) + " |")
    print(f"majority stage rate: {majority:.3f} of {int(np.sum(confusion))} epochs")


if __name__ == "__main__":
    main()
