"""The model `medscale predict` runs: a training run's checkpoint through PyTorch, or an
exported ONNX file (`medscale export`) through ONNX Runtime. Both take a batch of processed
chunks and return per-epoch stage probabilities, and name the exact weights they hold
(``identity``), so a batch can skip nights already predicted with the same model."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from medscale import __version__
from medscale.data.config import DataConfig
from medscale.errors import SpecError
from medscale.export.onnx import EXPORT_FORMAT, EXPORT_FORMAT_VERSION, sidecar_path
from medscale.train.manifest import file_sha256


class StagingModel(Protocol):
    name: str  # for titles and the summary, e.g. "usleep (my-run)"
    data: DataConfig  # the run's channel groups, processing and chunking
    identity: str  # sha256 of the weights file
    in_channels: int
    epoch_samples: int | None  # samples per scored epoch the model expects (None: not fixed)

    def probabilities(self, x: np.ndarray) -> np.ndarray:
        """``x`` float32 (batch, channels, ...) -> float64 (batch, epochs, 5), rows sum to 1."""
        ...


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


@dataclass
class OnnxStagingModel(StagingModelFacts):
    """An exported model in an ONNX Runtime session (`medscale.predict.model.StagingModel`)."""

    session: Any  # onnxruntime.InferenceSession

    def probabilities(self, x: np.ndarray) -> np.ndarray:
        (logits,) = self.session.run(["logits"], {"x": np.ascontiguousarray(x, np.float32)})
        return softmax_over_classes(logits)


def load_onnx_model(path: str | Path, *, threads: int | None = None) -> OnnxStagingModel:
    """Open ``path`` and its sidecar; refuse, naming the file and the fix, a missing or
    foreign sidecar, another export format version, or a graph ONNX Runtime cannot load."""
    import onnxruntime as ort

    path = Path(path)
    side = sidecar_path(path)
    if not path.is_file():
        raise SpecError(f"{path}: no such ONNX file")
    try:
        record = json.loads(side.read_text())
    except FileNotFoundError:
        raise SpecError(
            f"{path}: its sidecar {side.name} is missing; medscale needs the run's processing "
            "recorded there: export with `medscale export RUN --format onnx`"
        ) from None
    except ValueError as exc:
        raise SpecError(f"{side}: not valid JSON ({exc})") from None
    if (
        record.get("format") != EXPORT_FORMAT
        or record.get("format_version") != EXPORT_FORMAT_VERSION
    ):
        raise SpecError(
            f"{path}: written by medscale {record.get('medscale_version', '?')} as "
            f"{record.get('format')!r} version {record.get('format_version')!r}; this medscale "
            f"({__version__}) reads {EXPORT_FORMAT!r} version {EXPORT_FORMAT_VERSION}: export "
            "the run again with this version"
        )
    identity = file_sha256(path)
    if record.get("onnx_sha256") != identity:
        raise SpecError(
            f"{side} describes another ONNX file (sha256 {record.get('onnx_sha256')!r}, "
            f"{path.name} has {identity}): export again to get a matching pair"
        )
    options = ort.SessionOptions()
    if threads is not None:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    available = ort.get_available_providers()
    providers = [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in available]
    try:
        session = ort.InferenceSession(str(path), options, providers=providers)
    except Exception as exc:  # ORT raises its own types (Fail, InvalidGraph, ...) for bad files
        raise SpecError(f"{path}: ONNX Runtime {ort.__version__} cannot load it: {exc}") from None
    channels = session.get_inputs()[0].shape[1]
    if channels != record["in_channels"]:
        raise SpecError(
            f"{path}: the graph takes {channels} channel(s), its sidecar's run has "
            f"{record['in_channels']} channel group(s): the model and the run do not match"
        )
    return OnnxStagingModel(
        session=session,
        name=f"{record['model']} ({record['run']}, ONNX)",
        data=DataConfig.from_dict(record["data"]),
        identity=identity,
        in_channels=int(record["in_channels"]),
        epoch_samples=record["epoch_samples"],
    )
