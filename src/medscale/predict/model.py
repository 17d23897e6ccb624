"""The model `medscale predict` runs: a training run's checkpoint through PyTorch, or an
exported ONNX file (`medscale export`) through ONNX Runtime. Both take a batch of processed
chunks and return per-epoch stage probabilities, and name the exact weights they hold
(``identity``), so a batch can skip nights already predicted with the same model."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from medscale.data.config import DataConfig
from medscale.errors import SpecError


class StagingModel(Protocol):
    name: str  # for titles and the summary, e.g. "usleep (my-run)"
    data: DataConfig  # the run's channel groups, processing and chunking
    identity: str  # sha256 of the weights file
    in_channels: int
    epoch_samples: int | None  # samples per scored epoch the model expects (None: not fixed)

    def probabilities(self, x: np.ndarray) -> np.ndarray:
        """``x`` float32 (batch, channels, ...) -> float64 (batch, epochs, 5), rows sum to 1."""
        ...


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def softmax_over_classes(logits: np.ndarray) -> np.ndarray:
    """(batch, classes, epochs) logits -> float64 (batch, epochs, classes) probabilities."""
    z = logits.astype(np.float64)
    z -= z.max(axis=1, keepdims=True)
    np.exp(z, out=z)
    z /= z.sum(axis=1, keepdims=True)
    return np.ascontiguousarray(z.transpose(0, 2, 1))


@dataclass
class StagingModelFacts:
    """What every `StagingModel` states about itself (see the protocol)."""

    name: str
    data: DataConfig
    identity: str
    in_channels: int
    epoch_samples: int | None


@dataclass
class TorchStagingModel(StagingModelFacts):
    """A training run's checkpoint, in eval mode, on the CPU."""

    model: Any  # torch.nn.Module

    def probabilities(self, x: np.ndarray) -> np.ndarray:
        import torch

        with torch.inference_mode():
            logits = self.model(torch.from_numpy(x))
            # torch's softmax, as evaluation computes it, so both paths agree to the last bit
            p = torch.softmax(logits.float(), dim=1).transpose(1, 2)
        return p.numpy().astype(np.float64)


def load_staging_model(path: str | Path, *, threads: int | None = None) -> StagingModel:
    """A training run folder (PyTorch) or an ``.onnx`` file written by `medscale export`
    (ONNX Runtime). ``threads`` caps the intra-op threads (default: the library's own)."""
    path = Path(path)
    if threads is not None and threads < 1:
        raise SpecError(f"--threads must be >= 1, got {threads}")
    if path.suffix == ".onnx":
        from medscale.export.onnx import load_onnx_model

        return load_onnx_model(path, threads=threads)
    import torch

    from medscale.train.trained import load_trained_model

    if threads is not None:
        torch.set_num_threads(threads)
    trained = load_trained_model(path)
    return TorchStagingModel(
        model=trained.model,
        name=f"{trained.config.model} ({path.name})",
        data=trained.config.data,
        identity=file_sha256(trained.checkpoint),
        in_channels=len(trained.config.data.sampling.channel_groups),
        epoch_samples=trained.model.data_spec.segment_samples,
    )
