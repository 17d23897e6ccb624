"""What `medscale predict` writes: the hypnogram as CSV and as EDF+ annotations, the
hypnodensity (per-epoch stage probabilities), and a picture of both."""

from __future__ import annotations

import csv
import datetime as dt
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from medscale.atomic import atomic_open
from medscale.evaluate.plots import plot_hypnogram
from medscale.io.edf_annotations import write_hypnogram_edf
from medscale.io.stages import SCORED_STAGES, STAGE_NAMES


@dataclass(frozen=True)
class PredictionFiles:
    csv: Path
    edf: Path
    hypnodensity: Path
    png: Path


def write_prediction(
    out_dir: str | Path,
    probabilities: np.ndarray,
    *,
    name: str = "night",
    epoch_length_s: float = 30.0,
    start_time_of_day: str | None = None,
    title: str | None = None,
) -> PredictionFiles:
    """Write ``probabilities`` (n_epochs, 5) of one night under ``out_dir``; the hypnogram is
    the most probable stage per epoch."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    probabilities = np.asarray(probabilities, dtype=np.float32)
    stages = probabilities.argmax(axis=1)
    files = PredictionFiles(
        csv=out / f"{name}.hypnogram.csv",
        edf=out / f"{name}.hypnogram.edf",
        hypnodensity=out / f"{name}.hypnodensity.npy",
        png=out / f"{name}.hypnogram.png",
    )
    _write_csv(files.csv, stages, probabilities, epoch_length_s, start_time_of_day)
    write_hypnogram_edf(files.edf, stages, epoch_length_s)
    with atomic_open(files.hypnodensity, "wb") as f:
        np.save(f, probabilities)
    figure = plot_hypnogram(
        None, stages, probabilities, epoch_s=epoch_length_s, title=title or name
    )
    figure.savefig(files.png, dpi=100)
    return files


def _write_csv(
    path: Path,
    stages: np.ndarray,
    probabilities: np.ndarray,
    epoch_length_s: float,
    start_time_of_day: str | None,
) -> None:
    start = (
        dt.datetime.combine(dt.date(2000, 1, 1), dt.time.fromisoformat(start_time_of_day))
        if (start_time_of_day)
        else None
    )
    with atomic_open(path, "w", newline="") as f:
        writer = csv.writer(f)
        header = ["epoch", "onset_s", "clock_time", "stage"]
        writer.writerow(header + [f"p_{STAGE_NAMES[s]}" for s in SCORED_STAGES])
        for k, (stage, p) in enumerate(zip(stages, probabilities, strict=True)):
            onset = k * epoch_length_s
            clock = (start + dt.timedelta(seconds=onset)).time().isoformat() if start else ""
            row = [k, f"{onset:g}", clock, STAGE_NAMES[int(stage)]]
            writer.writerow(row + [f"{v:.4f}" for v in p])
