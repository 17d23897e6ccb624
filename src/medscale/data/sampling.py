"""The per-sample random stream and the draws: sample ``i`` of pass ``e`` is a pure function
of (seed, e, i).

Each sample owns a counter-based random stream: Philox keyed by the seed, with the counter set
to ``(0, i, e, 0)``. Any process can compute any sample without knowing what others drew, so
the sequence is the same whatever the number of workers or ranks, and resuming at sample ``k``
is computing samples ``k, k+1, ...``. ``epoch`` here is always a training pass; the scoring
unit of a signal is a *segment* (sleep's 30-s epoch).

The window draws, in order (U-Sleep's recipe, `draw_window`):

1. a dataset, with probability ``alpha * share + (1 - alpha) * uniform``;
2. a recording of that dataset, uniformly;
3. a class present in that recording, uniformly (stage balancing); `draw_event_window`
   instead picks an event class with probability ``event_ratio`` and the background (class 0)
   otherwise;
4. a segment of that class, uniformly;
5. a window of ``L`` segments holding that segment, uniformly among those that fit;
6. one channel per group, uniformly among the recording's candidates.

`draw_image` and `draw_patch` (`medscale.data.samplers`) start with steps 1 and 2 too. The
same stream then feeds augmentation, so augmented samples are reproducible too.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from medscale.data.index import RecordIndex, WindowIndex

_SEED_MASK = 2**64 - 1


def sample_stream(seed: int, epoch: int, sample: int) -> np.random.Generator:
    """The random stream of one sample: the same numbers on every process and platform."""
    # uint64 arrays: a plain list of ints above 2**63 would pass through float64 and lose bits
    key = np.array([seed & _SEED_MASK, (seed >> 64) & _SEED_MASK], dtype=np.uint64)
    counter = np.array([0, sample, epoch, 0], dtype=np.uint64)
    return np.random.Generator(np.random.Philox(key=key, counter=counter))


@dataclass(frozen=True)
class WindowDraw:
    """Where sample ``sample`` of pass ``epoch`` comes from: ``label`` is the drawn class,
    ``anchor_segment`` a segment of it inside the window that starts at ``start_segment``.
    ``rows[g]`` is the stored row of group ``g``'s channel, or -1 where the recording lacks
    the group (filled with zeros)."""

    epoch: int
    sample: int
    recording: int
    label: int
    anchor_segment: int
    start_segment: int
    rows: tuple[int, ...]


def _window(
    index: WindowIndex,
    rng: np.random.Generator,
    epoch: int,
    sample: int,
    recording: int,
    label: int,
) -> WindowDraw:
    """Steps 4 to 6: a segment of class ``label``, the window around it, one channel per group."""
    offsets = index.class_offsets[recording]
    count = offsets[label + 1] - offsets[label]
    anchor = int(index.class_segments[offsets[label] + rng.integers(count)])
    L = index.sampling.window_epochs
    n = int(index.n_segments[recording])
    first, last = max(0, anchor - L + 1), min(anchor, n - L)
    start = int(first + rng.integers(last - first + 1))
    rows = []
    for g in range(len(index.groups)):
        cand = index.candidates(recording, g)
        rows.append(int(cand[rng.integers(len(cand))]) if len(cand) else -1)
    return WindowDraw(epoch, sample, recording, label, anchor, start, tuple(rows))


def draw_window(
    index: WindowIndex, seed: int, epoch: int, sample: int
) -> tuple[WindowDraw, np.random.Generator]:
    """Class-balanced (sleep: stage-balanced) window ``sample`` of pass ``epoch``; also return
    its stream for augmentation."""
    rng = sample_stream(seed, epoch, sample)
    recording = index.draw.record(rng)
    offsets = index.class_offsets[recording]
    present = np.flatnonzero(offsets[1:] - offsets[:-1])
    label = int(present[rng.integers(len(present))])
    return _window(index, rng, epoch, sample, recording, label), rng


def draw_event_window(
    index: WindowIndex, seed: int, epoch: int, sample: int
) -> tuple[WindowDraw, np.random.Generator]:
    """Event-balanced window: anchored on an event segment (a class >= 1, uniformly among
    those present) with probability ``sampling.event_ratio``, on background otherwise. A
    recording without events (or without background) gives what it has."""
    rng = sample_stream(seed, epoch, sample)
    recording = index.draw.record(rng)
    offsets = index.class_offsets[recording]
    counts = offsets[1:] - offsets[:-1]
    events = np.flatnonzero(counts[1:]) + 1
    want_event = rng.random() < index.sampling.event_ratio
    if len(events) and (want_event or counts[0] == 0):
        label = int(events[rng.integers(len(events))])
    else:
        label = 0
    return _window(index, rng, epoch, sample, recording, label), rng


@dataclass(frozen=True)
class RecordDraw:
    """Where a per-image or patch sample comes from: a record and (patches) the box's start
    (z, y, x), with the class it was centred on (-1: a uniformly placed patch)."""

    epoch: int
    sample: int
    recording: int
    start: tuple[int, ...] = ()
    label: int = -1


def draw_image(
    index: RecordIndex, seed: int, epoch: int, sample: int
) -> tuple[RecordDraw, np.random.Generator]:
    """One whole image: a dataset, then one of its records uniformly."""
    rng = sample_stream(seed, epoch, sample)
    return RecordDraw(epoch, sample, index.draw.record(rng)), rng


def draw_patch(
    index: RecordIndex, seed: int, epoch: int, sample: int
) -> tuple[RecordDraw, np.random.Generator]:
    """A ``patch_size`` box of a volume: with probability ``foreground_ratio`` centred on a
    stored voxel of a foreground class (uniformly among the classes >= 1 present), else placed
    uniformly; always inside the volume."""
    rng = sample_stream(seed, epoch, sample)
    recording = index.draw.record(rng)
    patch = np.asarray(index.sampling.patch_size, dtype=np.int64)
    shape = index.shapes[recording, 1:]
    offsets = index.class_offsets[recording]
    foreground = np.flatnonzero(offsets[2:] - offsets[1:-1]) + 1
    label = -1
    if len(foreground) and rng.random() < index.sampling.foreground_ratio:
        label = int(foreground[rng.integers(len(foreground))])
        count = offsets[label + 1] - offsets[label]
        centre = index.class_voxels[offsets[label] + rng.integers(count)].astype(np.int64)
        start = np.clip(centre - patch // 2, 0, shape - patch)
    else:
        start = np.array([rng.integers(n + 1) for n in shape - patch], dtype=np.int64)
    return RecordDraw(epoch, sample, recording, tuple(int(s) for s in start), label), rng
