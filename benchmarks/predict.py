"""Prediction speed: one 8-h night staged by U-Sleep on one CPU thread, beside YASA.

Run: ``python benchmarks/predict.py [--hours 8] [--repeats 3] [--model usleep]``.

A synthetic night (EDF, 256 Hz) is staged from one EEG + EOG pair, as `medscale predict`
does: channel choice, conversion into a scratch store, load-time processing, the model over
whole-night chunks. The model's weights are untrained (speed does not depend on them). YASA
(feature extraction + LightGBM, its shipped classifier) stages the same night from the same
two signals at the source rate. Both run in this one process with torch and BLAS limited to
one thread; figures are medians over repeats, and the ratio is YASA's time over medscale's.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")  # before numpy, torch and lightgbm load

import argparse  # noqa: E402
import statistics  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import torch  # noqa: E402

from medscale.baselines.yasa import yasa_probabilities  # noqa: E402
from medscale.data import DataConfig, EvalNights  # noqa: E402
from medscale.evaluate.inference import predict_nights  # noqa: E402
from medscale.io.signals import read_signals  # noqa: E402
from medscale.models import build_model  # noqa: E402
from medscale.predict.night import prepare_night  # noqa: E402
from medscale.synth import synthesize_nights  # noqa: E402

EEG, EOG = "EEG C4-M1", "EOG E1-M2"


def stage_with_medscale(edf: Path, model, config: DataConfig, scratch: Path) -> float:
    started = time.perf_counter()
    groups = config.sampling.channel_groups
    night = prepare_night(edf, groups, scratch, overrides={"eeg": [EEG], "eog": [EOG]})
    nights = EvalNights(night.store, config, recordings=[night.key])
    (prediction,) = predict_nights(model, nights).values()
    assert prediction.probabilities.shape == (night.n_epochs, 5)
    return time.perf_counter() - started


def stage_with_yasa(edf: Path) -> float:
    started = time.perf_counter()
    recording = read_signals(edf, [EEG, EOG])
    eeg, eog = recording.signal(EEG), recording.signal(EOG)
    yasa_probabilities(eeg.data, eeg.sfreq_hz, eog_uv=eog.data)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hours", type=float, default=8.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--model", default="usleep")
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    config = DataConfig(eval_chunk_epochs=1200)  # a whole 8-h night (960 epochs) per forward
    model = build_model(args.model, in_channels=2).eval()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        synthesize_nights(tmp / "night", 1, seed=11, duration_h=args.hours, progress=False)
        edf = next((tmp / "night").glob("*-PSG.edf"))
        stage_with_medscale(edf, model, config, tmp / "warm")  # imports, allocator warm-up
        stage_with_yasa(edf)
        ours, theirs = [], []
        for k in range(args.repeats):
            ours.append(stage_with_medscale(edf, model, config, tmp / f"scratch{k}"))
            theirs.append(stage_with_yasa(edf))
    m, y = statistics.median(ours), statistics.median(theirs)
    print(f"{args.hours:g}-h night, one EEG + EOG pair, 1 thread, median of {args.repeats}")
    print(
        f"medscale predict ({args.model}): {m:6.2f} s   runs {', '.join(f'{t:.2f}' for t in ours)}"
    )
    print(f"YASA                    : {y:6.2f} s   runs {', '.join(f'{t:.2f}' for t in theirs)}")
    print(f"YASA time / medscale time: {y / m:.2f}")


if __name__ == "__main__":
    main()
