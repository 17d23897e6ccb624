"""Checkpoints that are written atomically and loaded without running anyone's code.

A checkpoint is a plain container (dicts, lists, numbers, strings, tensors). `load_checkpoint`
uses ``torch.load(weights_only=True)``, whose unpickler accepts only those types: a file whose
pickle would build other objects (and so could run code) is refused with a clear message.
"""

from __future__ import annotations

import pickle
import warnings
from pathlib import Path
from typing import Any

from medscale.atomic import atomic_open
from medscale.errors import CheckpointMismatchError, UnsafeCheckpointError

#: The ``format`` entry of a training checkpoint written by `medscale.train.train`.
CHECKPOINT_FORMAT = "medscale-train-checkpoint"


def save_checkpoint(state: dict[str, Any], path: str | Path) -> Path:
    """Write ``state`` to ``path`` atomically (`medscale.atomic`)."""
    import torch

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_open(path, "wb") as f:
        torch.save(state, f)
    return path


def load_checkpoint(path: str | Path, map_location: str = "cpu") -> dict[str, Any]:
    """Load a checkpoint of plain containers and tensors; refuse anything else."""
    import torch

    path = Path(path)
    try:
        with warnings.catch_warnings():  # torch warns on foreign pickle protocols, then decides
            warnings.simplefilter("ignore", UserWarning)
            state = torch.load(path, map_location=map_location, weights_only=True)
    except FileNotFoundError:
        raise
    except (pickle.UnpicklingError, RuntimeError, AttributeError, EOFError) as exc:
        raise UnsafeCheckpointError(
            f"{path}: refused to load: it is not a plain checkpoint of tensors and containers "
            f"(loading it would need arbitrary unpickling, which can run code). "
            f"Only load such a file from a source you trust, outside medscale. Detail: {exc}"
        ) from None
    if not isinstance(state, dict):
        raise UnsafeCheckpointError(
            f"{path}: a checkpoint holds a dict, found {type(state).__name__}"
        )
    return state


def check_checkpoint(
    state: dict[str, Any],
    *,
    model_name: str,
    config_hash: str,
    model_state: dict[str, Any] | None = None,
    path: str | Path = "checkpoint",
) -> None:
    """Refuse ``state`` unless it is a training checkpoint of ``model_name`` made under
    ``config_hash`` and (with ``model_state``) its tensors have exactly the model's names
    and shapes. Call it before applying any part of the checkpoint."""
    if state.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointMismatchError(
            f"{path}: not a medscale training checkpoint (format {state.get('format')!r})"
        )
    if state.get("model_name") != model_name:
        raise CheckpointMismatchError(
            f"{path}: checkpoint of model {state.get('model_name')!r}, this run trains "
            f"{model_name!r}; refused (nothing was loaded)"
        )
    if state.get("config_hash") != config_hash:
        raise CheckpointMismatchError(
            f"{path}: checkpoint made under config hash {str(state.get('config_hash'))[:16]}..., "
            f"this run's is {config_hash[:16]}... (model kwargs, data, optimizer, schedule, "
            "seed, split or store content differ); refused (nothing was loaded). Train into a "
            "new --out folder instead"
        )
    if model_state is not None:
        saved = state.get("model", {})
        ours = {k: tuple(v.shape) for k, v in model_state.items()}
        theirs = {k: tuple(v.shape) for k, v in saved.items()}
        if ours != theirs:
            diff = sorted(set(ours.items()) ^ set(theirs.items()))[:5]
            raise CheckpointMismatchError(
                f"{path}: the checkpoint's tensors do not match the model's "
                f"(first differences: {diff}); refused (nothing was loaded)"
            )
