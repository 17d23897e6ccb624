"""Configs sized for a 2-core CPU, on the `train_store` fixture (tests/conftest.py).

Four half-hour surrogate nights, one subject each: the split puts two in train, one in val and
one in test. Windows are 2 epochs and validation uses a single channel combination per night
(unless a test asks for more), so a step and a validation take well under a second.
"""

from __future__ import annotations

from typing import Any

import pytest

pytest.importorskip("torch")


def tiny_config(**overrides: Any) -> dict[str, Any]:
    """A config dict for a tiny U-Sleep (usleep-small, depth 3) that trains in seconds."""
    config: dict[str, Any] = {
        "model": "usleep-small",
        "model_kwargs": {"depth": 3, "init_filters": 4},
        "data": {
            "sampling": {
                "window_epochs": 2,
                "samples_per_epoch": 16,
                "channel_groups": [
                    {"name": "eeg", "names": ["EEG C4-M1"]},
                    {"name": "eog", "names": ["EOG E1-M2"]},
                ],
            },
            "eval_chunk_epochs": 60,
        },
        "optimizer": {"lr": 0.003},
        "schedule": {"kind": "cosine", "warmup_steps": 2},
        "grad_clip_norm": 1.0,
        "batch_size": 2,
        "max_steps": 8,
        "val_every": 4,
        "checkpoint_every": 4,
        "log_every": 1,
        "split": {"val_fraction": 0.25, "test_fraction": 0.25},
        "seed": 3,
    }
    for key, value in overrides.items():
        config[key] = value
    return config
