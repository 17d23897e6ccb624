"""Task-driven prediction: a recording or an image in, the task's outputs out, with no store.

The input is what the model takes, processed as in training (the run's load-time scaling):
a recording of a signals task as an iterable of ``(channels, samples)`` float32 chunks of any
length (a file read piece by piece: only one chunk and the state are held, no scratch store),
an image as ``(channels, y, x)`` float32. The outputs follow the task (`medscale.tasks`):

- per-segment tasks: probabilities per segment (softmax), the class per segment, and for
  ``time_events`` tasks the events, consecutive segments of one non-background class merged
  into ``(onset_s, offset_s, channel, class)`` rows (channel -1: not localised);
- ``image_multilabel``: probabilities per class (sigmoid) and the classes present (p >= 0.5).

A causal model (``model.data_spec.causal`` and a ``stream`` method) carries its state from
chunk to chunk, so the outputs equal one forward over the whole recording. Any other model
sees ``chunk_segments`` segments at a time, as evaluation does. The sleep fast path with
channel aliasing and output files is `medscale.predict.predict_recording`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from medscale.errors import SpecError
from medscale.tasks import EVENT_FIELDS, Task


@dataclass(frozen=True)
class TaskOutput:
    """What a task predicts for one record (see the module docstring)."""

    task: Task
    probabilities: np.ndarray  # (segments, classes) or (classes,)
    classes: np.ndarray  # (segments,) codes, or (classes,) 0/1 multi-hot
    events: np.ndarray | None = None  # (n, 4) as the store's event table, time_events only


def predict_signals(
    model: object,
    task: Task,
    chunks: Iterable[np.ndarray],
    *,
    segment_samples: int,
    chunk_segments: int = 35,
) -> TaskOutput:
    """Predict a recording of a per-segment ``task`` from its ``chunks`` (see the module
    docstring); samples after the last whole segment are not scored."""
    import torch

    if not task.segmented:
        raise SpecError(f"task {task.name!r} is not a per-segment signals task")
    causal = bool(getattr(model.data_spec, "causal", False)) and hasattr(model, "stream")
    step = segment_samples if causal else segment_samples * chunk_segments
    parts: list[np.ndarray] = []
    state = None
    pending = np.zeros((0, 0), dtype=np.float32)

    def run(x: np.ndarray) -> None:
        nonlocal state
        batch = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))[None]
        if causal:
            logits, state = model.stream(batch, state)
        else:
            logits = model(batch)
        parts.append(torch.softmax(logits.float(), dim=1)[0].T.numpy().astype(np.float64))

    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            for chunk in chunks:
                pending = chunk if not pending.size else np.concatenate([pending, chunk], axis=1)
                usable = pending.shape[1] // step * step
                if usable:
                    run(pending[:, :usable])
                    pending = pending[:, usable:]
            tail = pending.shape[1] // segment_samples * segment_samples if pending.size else 0
            if tail:
                run(pending[:, :tail])
    finally:
        model.train(was_training)
    if not parts:
        raise SpecError(f"the recording is shorter than one segment ({segment_samples} samples)")
    probabilities = np.concatenate(parts)
    classes = probabilities.argmax(axis=1)
    events = segment_events(classes, task.segment_s) if task.label_kind == "time_events" else None
    return TaskOutput(task, probabilities, classes, events)


def segment_events(classes: np.ndarray, segment_s: float) -> np.ndarray:
    """Runs of one non-background class (background = 0) as event rows ``(onset_s,
    offset_s, -1, class)``, the store's event table layout."""
    rows = []
    start = 0
    for k in range(1, len(classes) + 1):
        if k == len(classes) or classes[k] != classes[start]:
            if classes[start] != 0:
                rows.append((start * segment_s, k * segment_s, -1, int(classes[start])))
            start = k
    return np.array(rows, dtype=np.float64).reshape(-1, len(EVENT_FIELDS))


def predict_image(model: object, task: Task, image: np.ndarray) -> TaskOutput:
    """Predict one ``(channels, y, x)`` image of a multi-label ``task``."""
    import torch

    if task.label_kind != "image_multilabel":
        raise SpecError(f"task {task.name!r} is not a multi-label image task")
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            logits = model(torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32))[None])
    finally:
        model.train(was_training)
    probabilities = torch.sigmoid(logits.float())[0].numpy().astype(np.float64)
    return TaskOutput(task, probabilities, (probabilities >= 0.5).astype(np.uint8))
