"""ONNX export of a training run's model (`medscale.predict.model.load_onnx_model` runs it).

``MODEL.onnx`` holds the graph with a dynamic batch and a dynamic number of epochs, so a
chunk of any length (the shorter last chunk of a night included) runs as it does in PyTorch.
``MODEL.onnx.json`` beside it records what prediction needs and the graph cannot say: the
run's `DataConfig` (channel groups, processing, chunk length), the model's input contract,
the export format version and the ONNX file's sha256 (so a sidecar is never paired with
another file). The format version is also written into the graph's metadata.
"""

from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path
from typing import Any

from medscale import __version__
from medscale.atomic import write_json_atomic
from medscale.data.config import DataConfig
from medscale.errors import SpecError
from medscale.train.manifest import file_sha256

EXPORT_FORMAT = "medscale-onnx"
EXPORT_FORMAT_VERSION = 1
OPSET = 18
# what `medscale.predict.night.read_night` serves
PREDICT_SFREQ_HZ, PREDICT_EPOCH_S = 128, 30


def sidecar_path(onnx_path: Path) -> Path:
    return onnx_path.with_name(onnx_path.name + ".json")


def export_onnx(run_dir: str | Path, out: str | Path | None = None) -> Path:
    """Write the best checkpoint of ``run_dir`` as ``out`` (default ``RUN/model.onnx``) and
    its sidecar ``out.json``; return the ONNX path."""
    from medscale.train.trained import load_trained_model

    run_dir = Path(run_dir)
    trained = load_trained_model(run_dir)
    data = trained.config.data
    out = Path(out) if out is not None else run_dir / "model.onnx"
    in_channels = len(data.sampling.channel_groups)
    epoch_samples = export_graph(trained.model, in_channels, data, out)
    record = {
        "format": EXPORT_FORMAT,
        "format_version": EXPORT_FORMAT_VERSION,
        "medscale_version": __version__,
        "onnx_sha256": file_sha256(out),
        "opset": OPSET,
        "model": trained.config.model,
        "model_kwargs": trained.config.model_kwargs,
        "run": run_dir.name,
        "checkpoint_step": trained.step,
        "in_channels": in_channels,
        "epoch_samples": epoch_samples,
        "data": data.to_dict(),
    }
    write_json_atomic(sidecar_path(out), record, indent=1, sort_keys=True)
    return out


def export_graph(model: Any, in_channels: int, data: DataConfig, out: Path) -> int | None:
    """``model`` (eval mode) as an ONNX graph at ``out``, input ``x`` with a dynamic batch and
    a dynamic number of epochs, output ``logits``. Returns the samples per epoch a signal
    model takes (None for a spectrogram model)."""
    import torch

    out.parent.mkdir(parents=True, exist_ok=True)
    model = model.eval()
    epochs = torch.export.Dim("epochs", min=1, max=100_000)
    batch = torch.export.Dim("batch", min=1, max=4096)
    spec = model.data_spec
    if spec.input_kind == "signals":
        epoch_samples = int(spec.segment_samples)
        example = torch.zeros(2, in_channels, 2 * epoch_samples)
        dynamic = {0: batch, 2: epoch_samples * epochs}
    elif spec.input_kind == "spectrogram":  # (batch, channels, epochs, freqs, frames)
        epoch_samples = None
        stft, spe = data.processing.spectrogram, PREDICT_SFREQ_HZ * PREDICT_EPOCH_S
        win = round(stft.window_s * PREDICT_SFREQ_HZ)  # type: ignore[union-attr]
        hop = round(stft.hop_s * PREDICT_SFREQ_HZ)  # type: ignore[union-attr]
        example = torch.zeros(2, in_channels, 2, win // 2 + 1, (spe - win) // hop + 1)
        dynamic = {0: batch, 2: epochs}
    else:
        raise SpecError(
            f"ONNX export serves sleep staging models; this one takes {spec.input_kind}"
        )
    partial = out.with_name(out.name + ".partial")
    with warnings.catch_warnings(), _quiet_logger("torch.onnx"):
        warnings.simplefilter("ignore")  # the exporter's own deprecation notices
        program = torch.onnx.export(
            model,
            (example,),
            dynamo=True,
            dynamic_shapes=(dynamic,),
            input_names=["x"],
            output_names=["logits"],
            opset_version=OPSET,
            optimize=True,
            verbose=False,
        )
    program.model.metadata_props.update(
        {"medscale_format": EXPORT_FORMAT, "medscale_format_version": str(EXPORT_FORMAT_VERSION)}
    )
    program.save(str(partial))
    os.replace(partial, out)
    return epoch_samples


class _quiet_logger:
    """Raise a logger's level for a block (the exporter logs optional-package notices)."""

    def __init__(self, name: str) -> None:
        self.logger, self.level = logging.getLogger(name), logging.getLogger(name).level

    def __enter__(self) -> None:
        self.logger.setLevel(logging.ERROR)

    def __exit__(self, *exc: Any) -> None:
        self.logger.setLevel(self.level)
