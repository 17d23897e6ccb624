"""`Task`: what is predicted from a stored record, how targets come from its labels, and how
it is scored. One engine serves every task; nothing below ``medscale.tasks`` knows sleep.

Contract (read by the store, the samplers, the trainer, evaluation and prediction)
---------------------------------------------------------------------------------
A `Task` is a frozen, JSON-serialisable description, stored in the store's root attributes
(`Task.to_json` / `Task.from_json`), so data and task travel together. It declares:

- ``input_kind``: which stored array a model reads — ``"signals"`` ``(channel, time)``,
  ``"image"`` ``(channel, y, x)`` or ``"volume"`` ``(channel, z, y, x)``.
- ``label_kind``: how truth is stored and turned into training targets:

  ===================  ====================================  ===================================
  label kind           stored per record                     targets (`Task.targets`)
  ===================  ====================================  ===================================
  ``segment_classes``  ``segment_labels`` int8 (segment,),   int64 (segments,), class codes,
                       codes ``0..K-1``, unknown = -1        ``IGNORE_INDEX`` (-1) where unknown
  ``time_events``      ``events`` float64 (event, 4):        int64 (segments,): the class of the
                       onset_s, offset_s, channel row (-1 =  event covering most of each segment
                       all channels), class code ``1..K-1``  (0 = background when none does)
  ``image_multilabel`` ``image_labels`` uint8 (class,),      float32 (classes,) in {0, 1}
                       1 where the class is present
  ``voxel_mask``       ``mask`` uint8 (z, y, x), class per   int64 (z, y, x) patch of the mask
                       voxel (0 = background)
  ===================  ====================================  ===================================

- ``class_names``: one per output class (for ``time_events`` index 0 is the background).
- ``segment_s``: length of one scoring segment in seconds for ``segment_classes`` and
  ``time_events`` (sleep's 30-s epoch), None otherwise. A segment is the unit of scoring; a
  training *pass* (formerly "epoch") is never called a segment.
- ``metrics``: the names the evaluation of this task reports, each with its direction
  (``"max"``: higher is better, ``"min"``: lower is better); ``monitor`` names the default
  early-stopping metric among them.
- `Task.n_outputs`: the width of the model's last layer — ``len(class_names)`` for every kind
  (per segment, per image or per voxel).
- `Task.loss`: ``"cross_entropy"`` (one class per segment/voxel, targets equal to
  ``IGNORE_INDEX`` ignored) or ``"binary_cross_entropy"`` (independent classes per image).
  The training side maps the name to a torch loss; this module does not import torch.

Tasks are registered by name (`register_task`, `get_task`, `list_tasks`); a store carries its
own copy, so reading a store never needs the registry.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from medscale.errors import SpecError

LabelKind = Literal["segment_classes", "time_events", "image_multilabel", "voxel_mask"]
InputKind = Literal["signals", "image", "volume"]
MetricMode = Literal["max", "min"]
LossName = Literal["cross_entropy", "binary_cross_entropy"]

LABEL_KINDS: tuple[str, ...] = ("segment_classes", "time_events", "image_multilabel", "voxel_mask")
INPUT_KINDS: tuple[str, ...] = ("signals", "image", "volume")
#: the target value that losses and metrics skip (an unscored segment)
IGNORE_INDEX = -1
#: the stored array that holds each label kind's truth
LABEL_ARRAY: dict[str, str] = {
    "segment_classes": "segment_labels",
    "time_events": "events",
    "image_multilabel": "image_labels",
    "voxel_mask": "mask",
}
#: the columns of the stored ``events`` table
EVENT_FIELDS: tuple[str, ...] = ("onset_s", "offset_s", "channel", "class")
_SEGMENTED = ("segment_classes", "time_events")
_INPUT_FOR_LABEL: dict[str, tuple[str, ...]] = {
    "segment_classes": ("signals",),
    "time_events": ("signals",),
    "image_multilabel": ("image", "volume"),
    "voxel_mask": ("volume", "image"),
}


@dataclass(frozen=True)
class Metric:
    """A metric a task's evaluation reports, and whether higher (``max``) or lower is better."""

    name: str
    mode: MetricMode = "max"

    def better(self, new: float, old: float) -> bool:
        """Whether ``new`` improves on ``old`` in this metric's direction."""
        return new > old if self.mode == "max" else new < old


@dataclass(frozen=True)
class Task:
    """A prediction task over stored records (see the module docstring for the contract)."""

    name: str
    input_kind: InputKind
    label_kind: LabelKind
    class_names: tuple[str, ...]
    metrics: tuple[Metric, ...]
    monitor: str
    segment_s: float | None = None
    description: str = ""
    synthetic: bool = False

    def __post_init__(self) -> None:
        where = f"task {self.name!r}"
        if not self.name or not self.name.replace("_", "").replace("-", "").isalnum():
            raise SpecError(f"{where}: a task name is letters, digits, '_' and '-'")
        if self.label_kind not in LABEL_KINDS:
            raise SpecError(f"{where}: label_kind {self.label_kind!r} is not one of {LABEL_KINDS}")
        if self.input_kind not in _INPUT_FOR_LABEL[self.label_kind]:
            raise SpecError(
                f"{where}: input_kind {self.input_kind!r} does not go with label_kind "
                f"{self.label_kind!r} (expected one of {_INPUT_FOR_LABEL[self.label_kind]})"
            )
        if len(self.class_names) < 1 or len(set(self.class_names)) != len(self.class_names):
            raise SpecError(f"{where}: class_names must be unique and non-empty")
        if self.label_kind != "image_multilabel" and len(self.class_names) < 2:
            raise SpecError(f"{where}: a {self.label_kind} task needs at least two classes")
        segmented = self.label_kind in _SEGMENTED
        if segmented and (self.segment_s is None or self.segment_s <= 0):
            raise SpecError(f"{where}: a {self.label_kind} task needs segment_s > 0")
        if not segmented and self.segment_s is not None:
            raise SpecError(f"{where}: segment_s applies to segment and event tasks only")
        names = [m.name for m in self.metrics]
        if len(set(names)) != len(names) or any(m.mode not in ("max", "min") for m in self.metrics):
            raise SpecError(f"{where}: metric names must be unique, modes 'max' or 'min'")
        if self.monitor not in names:
            raise SpecError(f"{where}: monitor {self.monitor!r} is not one of its metrics {names}")

    # -- what the trainer needs -------------------------------------------------------------

    @property
    def n_outputs(self) -> int:
        """Model outputs per prediction unit (segment, image or voxel)."""
        return len(self.class_names)

    @property
    def loss(self) -> LossName:
        return "binary_cross_entropy" if self.label_kind == "image_multilabel" else "cross_entropy"

    @property
    def label_array(self) -> str:
        """The name of the stored array that holds this task's truth."""
        return LABEL_ARRAY[self.label_kind]

    @property
    def segmented(self) -> bool:
        """Whether records are scored per fixed-length segment (signals tasks)."""
        return self.label_kind in _SEGMENTED

    def metric(self, name: str) -> Metric:
        """The declared metric ``name``; an unknown name is an error listing the known ones."""
        for m in self.metrics:
            if m.name == name:
                return m
        raise SpecError(
            f"task {self.name!r} reports no metric {name!r}; it reports "
            f"{[m.name for m in self.metrics]}"
        )

    def targets(self, labels: np.ndarray, **where: Any) -> np.ndarray:
        """Training targets from stored labels (see the table in the module docstring).

        ``segment_classes``: ``labels`` is the record's ``segment_labels``; pass ``start`` and
        ``stop`` (segments). ``time_events``: ``labels`` is the ``events`` table; pass
        ``start`` and ``stop`` (segments). ``image_multilabel``: ``labels`` is the record's
        ``image_labels``. ``voxel_mask``: ``labels`` is an already cut mask patch.
        """
        if self.label_kind == "segment_classes":
            return np.asarray(labels[where["start"] : where["stop"]], dtype=np.int64)
        if self.label_kind == "time_events":
            start, stop = where["start"], where["stop"]
            assert self.segment_s is not None
            return event_segments(labels, stop, self.segment_s)[start:stop].astype(np.int64)
        if self.label_kind == "image_multilabel":
            return np.asarray(labels, dtype=np.float32)
        return np.asarray(labels, dtype=np.int64)

    # -- storage ----------------------------------------------------------------------------

    def to_json_kwargs(self) -> dict[str, Any]:
        """The constructor's arguments (``Task(**task.to_json_kwargs())`` equals ``task``)."""
        return {f: getattr(self, f) for f in _FIELDS}

    def to_json(self) -> dict[str, Any]:
        out = self.to_json_kwargs()
        out["class_names"] = list(self.class_names)
        out["metrics"] = [{"name": m.name, "mode": m.mode} for m in self.metrics]
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, Any], where: str = "task") -> Task:
        """Read a task back; a missing or unknown field is a `SpecError` naming it."""
        unknown = sorted(set(data) - set(_FIELDS))
        missing = sorted(set(_FIELDS[:6]) - set(data))
        if unknown or missing:
            raise SpecError(f"{where}: unknown fields {unknown}, missing fields {missing}")
        try:
            metrics = tuple(Metric(str(m["name"]), m.get("mode", "max")) for m in data["metrics"])
        except (TypeError, KeyError) as exc:
            raise SpecError(f"{where}: metrics must be a list of {{name, mode}} ({exc})") from None
        return cls(
            name=str(data["name"]),
            input_kind=data["input_kind"],
            label_kind=data["label_kind"],
            class_names=tuple(str(c) for c in data["class_names"]),
            metrics=metrics,
            monitor=str(data["monitor"]),
            segment_s=None if data.get("segment_s") is None else float(data["segment_s"]),
            description=str(data.get("description", "")),
            synthetic=bool(data.get("synthetic", False)),
        )


def event_segments(events: np.ndarray, n_segments: int, segment_s: float) -> np.ndarray:
    """int8 (n_segments,): per segment, the class of the event that covers most of it, 0 when
    events cover less than half of it (the background).

    ``events`` is the stored table, float64 (n, 4): onset_s, offset_s, channel, class (see
    ``EVENT_FIELDS``); times are seconds from the record's start. Channels do not matter here:
    a segment is labelled when an event on any channel covers it.
    """
    events = np.asarray(events, dtype=np.float64).reshape(-1, len(EVENT_FIELDS))
    n_classes = int(events[:, 3].max()) + 1 if len(events) else 1
    cover = np.zeros((n_classes, n_segments), dtype=np.float64)
    edges = np.arange(n_segments + 1) * segment_s
    for onset, offset, _channel, code in events:
        first = max(0, int(onset // segment_s))
        last = min(n_segments, int(np.ceil(offset / segment_s)))
        for s in range(first, last):
            cover[int(code), s] += max(0.0, min(offset, edges[s + 1]) - max(onset, edges[s]))
    cover[0] = 0.0
    best = cover.argmax(axis=0)
    return np.where(cover.max(axis=0) >= segment_s / 2, best, 0).astype(np.int8)


_FIELDS = (
    "name", "input_kind", "label_kind", "class_names", "metrics", "monitor",  # required
    "segment_s", "description", "synthetic",
)  # fmt: skip
_REGISTRY: dict[str, Task] = {}


def register_task(task: Task) -> Task:
    """Add ``task`` to the registry; registering another task under a taken name is refused."""
    known = _REGISTRY.get(task.name)
    if known is not None and known != task:
        raise SpecError(f"a different task is already registered as {task.name!r}")
    _REGISTRY[task.name] = task
    return task


def get_task(name: str) -> Task:
    """The registered task ``name``; an unknown name is an error listing the known ones."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise SpecError(f"unknown task {name!r}; registered tasks are {list_tasks()}") from None


def list_tasks() -> list[str]:
    return sorted(_REGISTRY)
