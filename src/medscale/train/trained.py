"""A finished (or checkpointed) run's model, ready to predict: the run's config and manifest
decide what is built, and the checkpoint is checked against them before any weight loads."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medscale.errors import SpecError
from medscale.train.checkpoint import check_checkpoint, load_checkpoint
from medscale.train.config import TrainConfig


@dataclass
class TrainedModel:
    model: Any  # torch.nn.Module, in eval mode
    config: TrainConfig
    run_dir: Path
    checkpoint: Path
    step: int


def load_trained_model(run_dir: str | Path, which: str = "best") -> TrainedModel:
    """The model of ``run_dir`` from ``checkpoints/<which>.pt`` (``best``, falling back to
    ``last`` when the run never validated)."""
    from medscale.train.trainer import build_run_model

    run_dir = Path(run_dir)
    config_path, manifest_path = run_dir / "config.yaml", run_dir / "manifest.json"
    if not config_path.is_file() or not manifest_path.is_file():
        raise SpecError(
            f"{run_dir} is not a training run (config.yaml and manifest.json are needed; "
            "make one with `medscale train`)"
        )
    config = TrainConfig.load(config_path)
    manifest = json.loads(manifest_path.read_text())
    candidates = [run_dir / "checkpoints" / f"{which}.pt", run_dir / "checkpoints" / "last.pt"]
    checkpoint = next((p for p in candidates if p.is_file()), None)
    if checkpoint is None:
        raise SpecError(f"{run_dir}: no checkpoint in {run_dir / 'checkpoints'}")
    state = load_checkpoint(checkpoint)
    # the input channels the run's data served (an image's channels are not in the config)
    model, _ = build_run_model(config, manifest["run"]["model_kwargs"].get("in_channels"))
    check_checkpoint(
        state,
        model_name=config.model,
        config_hash=manifest["config_hash"],
        model_state=model.state_dict(),
        path=checkpoint,
    )
    model.load_state_dict(state["model"])
    model.eval()
    return TrainedModel(model, config, run_dir, checkpoint, int(state["step"]))
