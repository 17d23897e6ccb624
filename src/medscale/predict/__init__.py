"""Prediction: a hypnogram and hypnodensity for any recording the funnel reads.

`predict_recording` picks the channels through the alias tables, converts them exactly as
ingest does, applies the training run's load-time processing, runs the model over each
channel combination in chunks, soft-votes the combinations and writes CSV, EDF+ and PNG
outputs. `predict_many` does it for many nights with one loaded model (`medscale.predict.batch`).
"""

from __future__ import annotations

from medscale.predict.batch import BatchReport, NightOutcome, expand_sources, predict_many
from medscale.predict.model import load_staging_model
from medscale.predict.outputs import PredictionFiles, write_prediction
from medscale.predict.staging import (
    PredictionResult,
    predict_night,
    predict_recording,
)

__all__ = [
    "BatchReport",
    "NightOutcome",
    "PredictionFiles",
    "PredictionResult",
    "expand_sources",
    "load_staging_model",
    "predict_many",
    "predict_night",
    "predict_recording",
    "write_prediction",
]
