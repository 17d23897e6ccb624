"""Evaluation data: `iter_eval_nights` (whole recordings of a signals task in order, every
channel combination, fixed-size chunks) and `EvalImages` (every image of an image task once)."""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from medscale.data.config import DataConfig
from medscale.data.index import WindowIndex
from medscale.data.processing import WindowProcessor
from medscale.data.reader import ArrayReader
from medscale.data.samplers import ImageSampler
from medscale.store.store import Store


@dataclass(frozen=True)
class NightChunk:
    """``chunk_epochs`` epochs (fewer at the end of a night) of one channel combination.

    ``x`` is float32 (channels, samples) or, with a spectrogram, (channels, epochs, freqs,
    frames); ``y`` the AASM codes (UNKNOWN = -1). ``channels`` names the combination, one
    name per group (``None`` for a missing group filled with zeros), so predictions of the
    same ``recording`` and ``start_epoch`` can be soft-voted over combinations.
    """

    recording: str
    combination: int
    channels: tuple[str | None, ...]
    start_epoch: int
    x: np.ndarray
    y: np.ndarray


def eval_recordings(index: WindowIndex) -> np.ndarray:
    """Rows of the recordings evaluation covers: those with every group, or all of them when
    missing groups are filled with zeros."""
    if index.sampling.missing_group == "zeros":
        return np.arange(len(index))
    return np.flatnonzero(index.has_groups)


def channel_combinations(index: WindowIndex, recording: int) -> list[tuple[int, ...]]:
    """Every choice of one stored row per group (-1 for a missing group), in a fixed order."""
    choices = []
    for g in range(len(index.groups)):
        cand = [int(c) for c in index.candidates(recording, g)]
        choices.append(cand or [-1])
    return list(itertools.product(*choices))


def iter_eval_nights(
    index: WindowIndex,
    reader: ArrayReader,
    processor: WindowProcessor,
    chunk_epochs: int,
    recordings: np.ndarray | None = None,
) -> Iterator[NightChunk]:
    """Yield each night (in index order) × each combination × consecutive chunks."""
    rows_to_do = eval_recordings(index) if recordings is None else recordings
    spe = index.samples_per_segment
    for r in rows_to_do:
        r = int(r)
        n = int(index.n_segments[r])
        combos = channel_combinations(index, r)
        used = sorted({row for combo in combos for row in combo if row >= 0})
        codes = reader.read(r, used, 0, n * spe)  # the whole night, once for all combinations
        where = {row: k for k, row in enumerate(used)}
        hyp = index.labels(r)
        key = index.key(r)
        for c, combo in enumerate(combos):
            picked = np.zeros((len(combo), n * spe), dtype=codes.dtype)
            for k, row in enumerate(combo):
                if row >= 0:
                    picked[k] = codes[where[row]]
            x = processor.scale(picked, r, combo)
            names = tuple(index.channel_name(r, row) if row >= 0 else None for row in combo)
            for start in range(0, n, chunk_epochs):
                stop = min(n, start + chunk_epochs)
                chunk = x[:, start * spe : stop * spe]
                if processor.config.spectrogram is not None:
                    chunk = processor.spectrogram(chunk, stop - start)
                yield NightChunk(
                    key, c, names, start, np.ascontiguousarray(chunk), hyp[start:stop].copy()
                )


class EvalImages:
    """Every image of ``recordings`` (all committed ones by default) once, in index order,
    as dicts of ``x`` float32 (channels, y, x), ``y`` float32 (classes,) multi-hot and
    ``recording`` (the ``dataset/id`` key). Rank ``r`` of ``world_size`` takes every
    ``world_size``-th image from the ``r``-th."""

    def __init__(
        self,
        store: Store | str,
        config: DataConfig | None = None,
        *,
        recordings: Iterable[str] | None = None,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        self.sampler = ImageSampler(store, config, recordings=recordings)
        self.rows = np.arange(len(self.sampler.index))[rank::world_size]

    def __iter__(self) -> Iterator[dict[str, Any]]:
        for r in self.rows:
            x, y = self.sampler.record(int(r))
            yield {"x": x, "y": y, "recording": self.sampler.index.key(int(r))}
