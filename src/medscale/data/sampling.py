"""The training sampler: sample ``i`` of epoch ``e`` is a pure function of (seed, e, i).

Each sample owns a counter-based random stream: Philox keyed by the seed, with the counter set
to ``(0, i, e, 0)``. Any process can compute any sample without knowing what others drew, so
the sequence is the same whatever the number of workers or ranks, and resuming at sample ``k``
is computing samples ``k, k+1, ...``. The draws, in order (U-Sleep's recipe):

1. a dataset, with probability ``alpha * share + (1 - alpha) * uniform``;
2. a recording of that dataset, uniformly;
3. a sleep stage present in that recording, uniformly (class balancing);
4. an epoch of that stage, uniformly;
5. a window of ``L`` epochs holding that epoch, uniformly among those that fit;
6. one channel per group, uniformly among the recording's candidates.

The same stream then feeds augmentation, so augmented samples are reproducible too.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from medscale.data.index import N_STAGES, WindowIndex

_SEED_MASK = 2**64 - 1


def sample_stream(seed: int, epoch: int, sample: int) -> np.random.Generator:
    """The random stream of one sample: the same numbers on every process and platform."""
    # uint64 arrays: a plain list of ints above 2**63 would pass through float64 and lose bits
    key = np.array([seed & _SEED_MASK, (seed >> 64) & _SEED_MASK], dtype=np.uint64)
    counter = np.array([0, sample, epoch, 0], dtype=np.uint64)
    return np.random.Generator(np.random.Philox(key=key, counter=counter))


@dataclass(frozen=True)
class WindowDraw:
    """Where sample ``sample`` of ``epoch`` comes from. ``rows[g]`` is the stored row of group
    ``g``'s channel, or -1 where the recording lacks the group (filled with zeros)."""

    epoch: int
    sample: int
    recording: int
    stage: int
    anchor_epoch: int
    start_epoch: int
    rows: tuple[int, ...]


def draw_window(
    index: WindowIndex, seed: int, epoch: int, sample: int
) -> tuple[WindowDraw, np.random.Generator]:
    """Draw sample ``sample`` of ``epoch``; also return its stream for augmentation."""
    rng = sample_stream(seed, epoch, sample)
    dataset = int(np.searchsorted(index.dataset_cumulative, rng.random(), side="right"))
    dataset = min(dataset, len(index.dataset_names) - 1)
    lo, hi = index.dataset_row_offsets[dataset], index.dataset_row_offsets[dataset + 1]
    recording = int(index.eligible_rows[lo + rng.integers(hi - lo)])
    offsets = index.stage_offsets[recording]
    counts = offsets[1:] - offsets[:-1]
    present = np.flatnonzero(counts[:N_STAGES])
    stage = int(present[rng.integers(len(present))])
    anchor = int(index.stage_epochs[offsets[stage] + rng.integers(counts[stage])])
    L = index.sampling.window_epochs
    n = int(index.n_epochs[recording])
    first, last = max(0, anchor - L + 1), min(anchor, n - L)
    start = int(first + rng.integers(last - first + 1))
    rows = []
    for g in range(len(index.groups)):
        cand = index.candidates(recording, g)
        rows.append(int(cand[rng.integers(len(cand))]) if len(cand) else -1)
    draw = WindowDraw(epoch, sample, recording, stage, anchor, start, tuple(rows))
    return draw, rng
