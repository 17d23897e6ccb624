"""Checkpoints that are written atomically and loaded without running anyone's code.

A checkpoint is a plain container (dicts, lists, numbers, strings, tensors). `load_checkpoint`
uses ``torch.load(weights_only=True)``, whose unpickler accepts only those types: a file whose
pickle would build other objects (and so could run code) is refused with a clear message.
"""

from __future__ import annotations

import os
import pickle
import uuid
import warnings
from pathlib import Path
from typing import Any

from medscale.errors import MedscaleError


class UnsafeCheckpointError(MedscaleError, ValueError):
    """A checkpoint needs arbitrary unpickling to load, or is not a checkpoint at all."""


def save_checkpoint(state: dict[str, Any], path: str | Path) -> Path:
    """Write ``state`` to ``path`` atomically: a temporary file, fsync, then a rename."""
    import torch

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{uuid.uuid4().hex}.partial")
    try:
        with open(partial, "wb") as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)
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
