"""A task's metrics from its predictions: what validation, early stopping and evaluation read.

`score_task` returns every metric the task declares (`medscale.tasks.Task.metrics`) except
``loss``, which the caller adds (it needs the model's logits). Per label kind:

- ``segment_classes`` / ``time_events`` (one class per segment, -1 = unscored):
  ``accuracy``, ``macro_f1``, ``kappa`` (Cohen's), ``mcc`` over the scored segments, and
  ``f1_event``: the F1 of the non-background classes (index 0 is the background) counted
  per segment, averaged over those classes. Sleep staging keeps its own scorer
  (`medscale.evaluate.metrics.score`, which also reports F1 per stage).
- ``image_multilabel``: ``macro_auroc``, the mean over classes of the area under the ROC
  curve (classes whose truth is all 0 or all 1 have none and are left out), and
  ``macro_f1`` at a 0.5 threshold.

The computations are scikit-learn's.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from medscale.errors import SpecError
from medscale.tasks import IGNORE_INDEX, Task

#: metric names computed from the model's loss, not from its predictions
LOSS_METRIC = "loss"


def _sleep(task: Task, y_true: np.ndarray, probabilities: np.ndarray) -> dict[str, Any]:
    from medscale.evaluate.metrics import score

    return score(y_true, probabilities.argmax(axis=1))


def _segments(task: Task, y_true: np.ndarray, probabilities: np.ndarray) -> dict[str, Any]:
    from sklearn.metrics import accuracy_score, cohen_kappa_score, f1_score, matthews_corrcoef

    scored = y_true != IGNORE_INDEX
    t, p = y_true[scored], probabilities[scored].argmax(axis=1)
    if not t.size:
        raise SpecError(f"task {task.name!r}: nothing to score (every segment is unscored)")
    labels = list(range(task.n_outputs))
    events = labels[1:]
    return {
        "accuracy": float(accuracy_score(t, p)),
        "macro_f1": float(f1_score(t, p, labels=labels, average="macro", zero_division=0)),
        "kappa": float(cohen_kappa_score(t, p, labels=labels)),
        "mcc": float(matthews_corrcoef(t, p)),
        "f1_event": float(f1_score(t, p, labels=events, average="macro", zero_division=0)),
        "n_segments": int(t.size),
    }


def _images(task: Task, y_true: np.ndarray, probabilities: np.ndarray) -> dict[str, Any]:
    from sklearn.metrics import f1_score, roc_auc_score

    t = np.asarray(y_true, dtype=np.int64)
    both = [c for c in range(t.shape[1]) if 0 < t[:, c].sum() < len(t)]
    auroc = (
        float(roc_auc_score(t[:, both], probabilities[:, both], average="macro"))
        if both
        else float("nan")
    )
    predicted = (probabilities >= 0.5).astype(np.int64)
    return {
        "macro_auroc": auroc,
        "macro_f1": float(f1_score(t, predicted, average="macro", zero_division=0)),
        "n_images": len(t),
    }


Scorer = Callable[[Task, np.ndarray, np.ndarray], dict[str, Any]]
_BY_TASK: dict[str, Scorer] = {"sleep_staging": _sleep}
_BY_LABEL_KIND: dict[str, Scorer] = {
    "segment_classes": _segments,
    "time_events": _segments,
    "image_multilabel": _images,
}


def score_task(task: Task, y_true: np.ndarray, probabilities: np.ndarray) -> dict[str, Any]:
    """The task's metrics: ``y_true`` per segment (codes, -1 unscored) or per image
    (multi-hot); ``probabilities`` (units, classes): softmax per segment, sigmoid per image."""
    scorer = _BY_TASK.get(task.name) or _BY_LABEL_KIND.get(task.label_kind)
    if scorer is None:
        raise SpecError(f"task {task.name!r}: no scorer for label kind {task.label_kind!r} yet")
    metrics = scorer(task, np.asarray(y_true), np.asarray(probabilities))
    missing = [m.name for m in task.metrics if m.name != LOSS_METRIC and m.name not in metrics]
    if missing:
        raise SpecError(f"task {task.name!r} declares metrics {missing} that its scorer lacks")
    return metrics
