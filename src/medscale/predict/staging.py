"""One night: check the model fits, run it over every channel combination in chunks,
soft-vote, write the outputs (`medscale.predict.predict_recording`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from medscale.errors import SpecError
from medscale.predict.model import StagingModel, load_staging_model
from medscale.predict.night import Night, night_inputs, read_night
from medscale.predict.outputs import PredictionFiles, write_prediction

# Full-length chunks go through the model this many at a time: it bounds the activations
# kept at once (U-Sleep: tens of MB per 35-epoch chunk) while amortising per-call overhead.
BATCH_CHUNKS = 4


@dataclass
class PredictionResult:
    probabilities: np.ndarray  # (n_epochs, 5), W N1 N2 N3 REM
    channels: dict[str, list[tuple[str, str]]]  # group -> (canonical name, source label)
    files: PredictionFiles
    warnings: list[str]

    @property
    def stages(self) -> np.ndarray:
        return self.probabilities.argmax(axis=1)


def check_night_fits(night: Night, model: StagingModel, source: str) -> None:
    """A model/run mismatch (channel count, samples per epoch) as a clear error."""
    n_groups = len(night.channels)
    if n_groups != model.in_channels:
        raise SpecError(
            f"{source}: the model {model.name} takes {model.in_channels} channel(s), but its "
            f"run's channel groups give {n_groups}: the model and its run do not match"
        )
    spe = round(night.sfreq_hz * night.epoch_length_s)
    if model.epoch_samples is not None and model.epoch_samples != spe:
        raise SpecError(
            f"{source}: the model {model.name} expects {model.epoch_samples} samples per epoch, "
            f"prediction serves {spe} ({night.sfreq_hz:g} Hz x {night.epoch_length_s:g} s)"
        )


def predict_night(night: Night, model: StagingModel) -> np.ndarray:
    """Soft-voted probabilities (n_epochs, 5) of ``night``: each combination's chunks through
    the model, full-length chunks batched, then the mean over combinations."""
    from medscale.evaluate.metrics import soft_vote

    n_combinations = len(night.combinations())
    parts: list[list[np.ndarray]] = [[] for _ in range(n_combinations)]
    pending: list[tuple[int, np.ndarray]] = []

    def flush() -> None:
        batch = np.stack([x for _, x in pending])
        for (c, _), p in zip(pending, model.probabilities(batch), strict=True):
            parts[c].append(p)
        pending.clear()

    for item in night_inputs(night, model.data):
        # Chunks arrive in (combination, start) order; a shorter last chunk goes alone.
        if pending and pending[0][1].shape != item.x.shape:
            flush()
        pending.append((item.combination, item.x))
        if len(pending) == BATCH_CHUNKS:
            flush()
    if pending:
        flush()
    return soft_vote([np.concatenate(chunks) for chunks in parts])


def predict_recording(
    path: str | Path,
    model: str | Path | StagingModel,
    out_dir: str | Path,
    *,
    channels: dict[str, list[str]] | None = None,
    reader: str = "auto",
    reader_options: dict[str, Any] | None = None,
    threads: int | None = None,
) -> PredictionResult:
    """Stage ``path`` with ``model`` (a training run folder, an exported ``.onnx`` file or a
    loaded `StagingModel`); write into ``out_dir``.

    ``channels`` overrides the automatic choice per channel group (``{"eeg": ["C3"]}``);
    ``reader_options`` go to the signal reader (a text signal needs ``{"sfreq_hz": ...}``).
    """
    staging = (
        model if not isinstance(model, str | Path) else load_staging_model(model, threads=threads)
    )
    path = Path(path)
    night = read_night(
        path,
        staging.data.sampling.channel_groups,
        overrides=channels,
        reader=reader,
        reader_options=reader_options,
    )
    probabilities, files = stage_and_write(path, night, staging, out_dir)
    return PredictionResult(probabilities, night.channels, files, night.warnings)


def stage_and_write(
    path: Path, night: Night, model: StagingModel, out_dir: str | Path
) -> tuple[np.ndarray, PredictionFiles]:
    """Check that ``night`` fits ``model``, predict it and write its outputs as ``path``'s."""
    check_night_fits(night, model, str(path))
    probabilities = predict_night(night, model)
    files = write_prediction(
        out_dir,
        probabilities,
        name=path.stem,
        start_time_of_day=night.start_time_of_day,
        title=f"{path.name}: {model.name}",
    )
    return probabilities, files
