"""Serving: indexes, deterministic samplers for every task, processing, splits, torch loaders.

``import medscale.data`` does not import torch; the torch classes (`TrainWindows`,
`RankSampler`, `EvalNights`, `create_train_loader`) load it on first use.
"""

from __future__ import annotations

from typing import Any

from medscale.data.config import (
    AugmentConfig,
    ChannelGroup,
    DataConfig,
    ProcessingConfig,
    SamplingConfig,
    SpectrogramConfig,
)
from medscale.data.evaluation import NightChunk, channel_combinations, iter_eval_nights
from medscale.data.index import SUPPORTED_LAYOUT_VERSIONS, RecordIndex, WindowIndex
from medscale.data.processing import WindowProcessor
from medscale.data.reader import ArrayReader
from medscale.data.samplers import (
    ImageSampler,
    PatchSampler,
    Sampler,
    WindowSampler,
    make_sampler,
)
from medscale.data.sampling import (
    RecordDraw,
    WindowDraw,
    draw_event_window,
    draw_image,
    draw_patch,
    draw_window,
    sample_stream,
)
from medscale.data.splits import (
    Split,
    SplitMismatchError,
    load_split,
    make_kfold_splits,
    make_split,
    write_split,
)

_TORCH_NAMES = ("EvalNights", "RankSampler", "TrainWindows", "create_train_loader")

__all__ = [
    "SUPPORTED_LAYOUT_VERSIONS",
    "ArrayReader",
    "AugmentConfig",
    "ChannelGroup",
    "DataConfig",
    "EvalNights",
    "ImageSampler",
    "NightChunk",
    "PatchSampler",
    "ProcessingConfig",
    "RankSampler",
    "RecordDraw",
    "RecordIndex",
    "Sampler",
    "SamplingConfig",
    "SpectrogramConfig",
    "Split",
    "SplitMismatchError",
    "TrainWindows",
    "WindowDraw",
    "WindowIndex",
    "WindowProcessor",
    "WindowSampler",
    "channel_combinations",
    "create_train_loader",
    "draw_event_window",
    "draw_image",
    "draw_patch",
    "draw_window",
    "iter_eval_nights",
    "load_split",
    "make_kfold_splits",
    "make_sampler",
    "make_split",
    "sample_stream",
    "write_split",
]


def __getattr__(name: str) -> Any:
    if name in _TORCH_NAMES:
        from medscale.data import torch_data  # torch is imported only here

        return getattr(torch_data, name)
    raise AttributeError(f"module 'medscale.data' has no attribute {name!r}")
