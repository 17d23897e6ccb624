"""Prediction: a hypnogram and hypnodensity for any recording the funnel reads.

`predict_recording` picks the channels through the alias tables, converts them exactly as
ingest does, applies the training run's load-time processing, soft-votes over channel
combinations and writes CSV, EDF+ and PNG outputs.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from medscale.predict.outputs import PredictionFiles, write_prediction

__all__ = ["PredictionFiles", "PredictionResult", "predict_recording", "write_prediction"]


@dataclass
class PredictionResult:
    probabilities: np.ndarray  # (n_epochs, 5), W N1 N2 N3 REM
    channels: dict[str, list[tuple[str, str]]]  # group -> (canonical name, source label)
    files: PredictionFiles
    warnings: list[str]

    @property
    def stages(self) -> np.ndarray:
        return self.probabilities.argmax(axis=1)


def predict_recording(
    path: str | Path,
    run_dir: str | Path,
    out_dir: str | Path,
    *,
    channels: dict[str, list[str]] | None = None,
    reader: str = "auto",
    reader_options: dict[str, Any] | None = None,
) -> PredictionResult:
    """Stage ``path`` with the model of the training run ``run_dir``; write into ``out_dir``.

    ``channels`` overrides the automatic choice per channel group (``{"eeg": ["C3"]}``);
    ``reader_options`` go to the signal reader (a text signal needs ``{"sfreq_hz": ...}``).
    """
    from medscale.data.torch_data import EvalNights
    from medscale.evaluate.inference import predict_nights
    from medscale.predict.night import prepare_night
    from medscale.train.trained import load_trained_model

    trained = load_trained_model(run_dir)
    data = trained.config.data
    path = Path(path)
    with tempfile.TemporaryDirectory(prefix="medscale-predict-") as scratch:
        night = prepare_night(
            path,
            data.sampling.channel_groups,
            Path(scratch) / "store",
            overrides=channels,
            reader=reader,
            reader_options=reader_options,
        )
        nights = EvalNights(night.store, data, recordings=[night.key])
        (prediction,) = predict_nights(trained.model, nights).values()
    files = write_prediction(
        out_dir,
        prediction.probabilities,
        name=path.stem,
        start_time_of_day=night.start_time_of_day,
        title=f"{path.name}: {trained.config.model} ({Path(run_dir).name})",
    )
    return PredictionResult(prediction.probabilities, night.channels, files, night.warnings)
