"""Training: the config, the loop, checkpoints, run manifests and reruns.

``import medscale.train`` does not import torch; `train` and `rerun` import it when called.
"""

from __future__ import annotations

from medscale.train.checkpoint import (
    CheckpointMismatchError,
    UnsafeCheckpointError,
    check_checkpoint,
    load_checkpoint,
    save_checkpoint,
)
from medscale.train.config import (
    EarlyStoppingConfig,
    OptimizerConfig,
    ScheduleConfig,
    SplitConfig,
    TrainConfig,
    bundled_configs,
)
from medscale.train.reproduce import RerunError, RerunResult, rerun
from medscale.train.trainer import TrainResult, train

__all__ = [
    "CheckpointMismatchError",
    "EarlyStoppingConfig",
    "OptimizerConfig",
    "RerunError",
    "RerunResult",
    "ScheduleConfig",
    "SplitConfig",
    "TrainConfig",
    "TrainResult",
    "UnsafeCheckpointError",
    "bundled_configs",
    "check_checkpoint",
    "load_checkpoint",
    "rerun",
    "save_checkpoint",
    "train",
]
