"""The in-memory types every reader returns: `Recording` (signals) and `Hypnogram` (stages)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from medscale.io.stages import UNKNOWN


@dataclass
class Signal:
    """One channel in physical units of microvolts (µV) where the source unit is a voltage.

    ``resolution`` is the physical step of one digital unit in the source (``unit`` per
    count), or ``nan`` when the source is not quantised (text, float files). The store
    uses it to quantise without losing more than the source's own resolution.
    """

    label: str
    sfreq_hz: float
    data: np.ndarray
    unit: str = "uV"
    resolution: float = float("nan")

    @property
    def duration_s(self) -> float:
        return len(self.data) / self.sfreq_hz


@dataclass
class Recording:
    """Signals of one recording plus what the header said.

    ``identifiers`` holds the header fields that can identify a person (patient field,
    recording field, ...). They are kept apart so that nothing downstream copies them by
    accident; the funnel never writes them to the store.
    """

    source: Path
    signals: list[Signal]
    start: dt.datetime | None = None
    identifiers: dict[str, str] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    synthetic: bool = False

    @property
    def labels(self) -> list[str]:
        return [s.label for s in self.signals]

    def signal(self, label: str) -> Signal:
        for s in self.signals:
            if s.label == label:
                return s
        raise KeyError(f"{self.source}: no signal {label!r}; found {self.labels}")


@dataclass
class Event:
    """A timed annotation that is not a stage (lights off, arousal, apnea...)."""

    onset_s: float
    duration_s: float
    label: str


@dataclass
class RawHypnogram:
    """Stages exactly as the file names them, one label per epoch of ``epoch_length_s``.

    ``onset_s`` is where the first epoch starts, in seconds from the recording start (or
    from ``clock_s``, when the file gives clock times).
    Mapping to AASM happens separately, through a label map declared in data.
    """

    source: Path
    labels: list[str]
    epoch_length_s: float
    onset_s: float = 0.0
    events: list[Event] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    #: Time of day of ``onset_s`` = 0, in seconds after midnight, when the file gives clock
    #: times; the funnel then places the hypnogram by clock against the signal's start.
    clock_s: float | None = None


@dataclass
class Hypnogram:
    """AASM stages as int8 codes (see `medscale.io.stages`), one per epoch."""

    stages: np.ndarray
    epoch_length_s: float
    onset_s: float = 0.0
    events: list[Event] = field(default_factory=list)

    @property
    def duration_s(self) -> float:
        return len(self.stages) * self.epoch_length_s

    def to_epoch_length(self, epoch_length_s: float) -> Hypnogram:
        """Re-grid to another epoch length by majority vote over time.

        Each target epoch takes the stage that covers most of it; ties go to the
        earliest-scored stage. Target epochs not fully covered by the source are UNKNOWN.
        """
        if epoch_length_s == self.epoch_length_s:
            return self
        n_target = int(np.floor(self.duration_s / epoch_length_s + 1e-9))
        # Sample the source on a fine grid that divides both epoch lengths.
        step = float(np.gcd(round(self.epoch_length_s * 1000), round(epoch_length_s * 1000))) / 1000
        per_source = round(self.epoch_length_s / step)
        per_target = round(epoch_length_s / step)
        fine = np.repeat(self.stages, per_source)[: n_target * per_target]
        fine = fine.reshape(n_target, per_target)
        out = np.full(n_target, UNKNOWN, dtype=np.int8)
        for i, row in enumerate(fine):
            values, first_pos, counts = np.unique(row, return_index=True, return_counts=True)
            best = np.flatnonzero(counts == counts.max())
            out[i] = values[best[np.argmin(first_pos[best])]]
        return Hypnogram(out, epoch_length_s, self.onset_s, list(self.events))
