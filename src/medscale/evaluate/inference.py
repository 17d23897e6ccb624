"""A model's predictions over whole records: per-segment class probabilities over whole
recordings, soft-voted over channel combinations (`predict_nights`), or per-class
probabilities of whole images (`predict_images`). Validation during training, `medscale
evaluate` and `medscale predict` all go through them, so they score a model the same way."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import Any

import numpy as np

from medscale.evaluate.metrics import soft_vote
from medscale.tasks import Task


def masked_cross_entropy(logits: Any, y: Any) -> Any:
    """Mean cross-entropy over the scored epochs (UNKNOWN = -1 ignored); 0 when none is.

    Written with ``log_softmax`` and ``gather`` rather than ``F.cross_entropy``: CUDA's
    NLL loss has no deterministic kernel and raises under ``use_deterministic_algorithms``.
    """
    import torch

    logp = torch.log_softmax(logits.float(), dim=1)  # (batch, classes, epochs)
    scored = y >= 0
    picked = logp.gather(1, y.clamp(min=0).unsqueeze(1)).squeeze(1)
    return -(picked * scored).sum() / scored.sum().clamp(min=1)


def binary_cross_entropy(logits: Any, y: Any) -> Any:
    """Mean binary cross-entropy of independent classes (multi-label), from logits."""
    import torch

    return torch.nn.functional.binary_cross_entropy_with_logits(logits.float(), y.float())


def task_loss(task: Task) -> Callable[[Any, Any], Any]:
    """The training loss ``(logits, targets) -> scalar`` that ``task.loss`` names."""
    losses = {"cross_entropy": masked_cross_entropy, "binary_cross_entropy": binary_cross_entropy}
    return losses[task.loss]


@dataclass
class RecordPrediction:
    """One record. A recording of a segment task: ``probabilities`` (n_segments, classes)
    after the soft vote, ``y_true`` (n_segments,) the scored classes (unscored = -1). An
    image: ``probabilities`` (1, classes) sigmoid, ``y_true`` (1, classes) multi-hot.
    ``loss_sum`` / ``loss_count`` is the mean loss (per scored segment and combination, or
    per image)."""

    probabilities: np.ndarray
    y_true: np.ndarray
    n_combinations: int
    loss_sum: float
    loss_count: int


def predict_nights(
    model: Any,
    nights: Iterable[dict[str, Any]],
    device: Any = "cpu",
    autocast: Callable[[], AbstractContextManager] = nullcontext,
) -> dict[str, RecordPrediction]:
    """Run ``model`` (eval mode, no grad) over the chunks of `EvalNights`; return each
    night's soft-voted probabilities keyed by ``dataset/recording_id``."""
    import torch

    parts: dict[str, dict[int, list[tuple[int, np.ndarray]]]] = defaultdict(
        lambda: defaultdict(list)
    )
    labels: dict[str, dict[int, np.ndarray]] = defaultdict(dict)
    losses: dict[str, list[float]] = defaultdict(lambda: [0.0, 0])
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            for chunk in nights:
                x = chunk["x"][None].to(device)
                y = chunk["y"][None].to(device)
                with autocast():
                    logits = model(x)
                key = chunk["recording"]
                scored = int((y >= 0).sum())
                losses[key][0] += float(masked_cross_entropy(logits, y)) * scored
                losses[key][1] += scored
                p = torch.softmax(logits.float(), dim=1)[0].T.cpu().numpy().astype(np.float64)
                parts[key][chunk["combination"]].append((chunk["start_epoch"], p))
                labels[key][chunk["start_epoch"]] = chunk["y"].numpy()
    finally:
        model.train(was_training)
    out = {}
    for key in sorted(parts):
        per_combination = [
            np.concatenate([p for _, p in sorted(chunks, key=lambda t: t[0])])
            for _, chunks in sorted(parts[key].items())
        ]
        out[key] = RecordPrediction(
            probabilities=soft_vote(per_combination),
            y_true=np.concatenate([labels[key][s] for s in sorted(labels[key])]),
            n_combinations=len(per_combination),
            loss_sum=losses[key][0],
            loss_count=int(losses[key][1]),
        )
    return out


def predict_images(
    model: Any,
    images: Iterable[dict[str, Any]],
    device: Any = "cpu",
    autocast: Callable[[], AbstractContextManager] = nullcontext,
) -> dict[str, RecordPrediction]:
    """Run ``model`` (eval mode, no grad) over the images of `EvalImages`; return each
    image's class probabilities (sigmoid, multi-label) keyed by ``dataset/id``."""
    import torch

    out = {}
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            for image in images:
                x = torch.as_tensor(image["x"])[None].to(device)
                y = torch.as_tensor(image["y"])[None].to(device)
                with autocast():
                    logits = model(x)
                out[image["recording"]] = RecordPrediction(
                    probabilities=torch.sigmoid(logits.float()).cpu().numpy().astype(np.float64),
                    y_true=image["y"][None],
                    n_combinations=1,
                    loss_sum=float(binary_cross_entropy(logits, y)),
                    loss_count=1,
                )
    finally:
        model.train(was_training)
    return {key: out[key] for key in sorted(out)}
