"""PyTorch data sets and the rank sampler.

Training uses a *map-style* `TrainWindows` and a `RankSampler` that yields ``(epoch, i)``
keys. A map-style set is the one kind whose output order a DataLoader keeps whatever its
worker count: the loader hands batches of keys to workers round-robin and returns them in
sampler order. Since sample ``i`` is a pure function of (seed, epoch, i), the sequence each
rank sees is fixed by (seed, epoch, rank, world size) alone. The epoch travels inside the
key, so persistent workers need no ``set_epoch`` call.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, IterableDataset, Sampler, get_worker_info

from medscale.data.config import DataConfig
from medscale.data.evaluation import eval_recordings, iter_eval_nights
from medscale.data.index import WindowIndex
from medscale.data.processing import WindowProcessor
from medscale.data.reader import ArrayReader
from medscale.data.samplers import make_sampler
from medscale.errors import SpecError
from medscale.store.store import Store


class TrainWindows(Dataset):
    """Training samples of the store's task (see `medscale.data.samplers`), U-Sleep style for
    signals.

    ``dataset[i]`` or ``dataset[(epoch, i)]`` returns the sampler's dict with ``x`` and ``y``
    as tensors and its integer facts (``recording``, ``epoch``, ``sample``, ...) as int64
    scalars. For sleep: ``x`` float32 (channels, samples) (or (channels, segments, freqs,
    frames) with a spectrogram), ``y`` int64 (window_epochs,) with UNKNOWN = -1. Reading opens
    files lazily in each worker and keeps them open.
    """

    def __init__(
        self,
        store: Store | str,
        config: DataConfig | None = None,
        *,
        recordings: Iterable[str] | None = None,
        augment: bool = True,
        serve_codes: bool = False,
    ) -> None:
        self.config = config or DataConfig()
        self.sampler = make_sampler(store, self.config, recordings=recordings, augment=augment)
        self.index = self.sampler.index
        self.epoch = 0
        if serve_codes and not can_serve_codes(self.config, self.index.task.input_kind):
            raise SpecError(
                "serve_codes leaves scaling to the device, which has no band-pass or STFT and "
                f"serves signals only: task {self.index.task.name!r}, processing "
                f"{self.config.processing.model_dump()}; serve float32 instead"
            )
        self.serve_codes = serve_codes

    def __len__(self) -> int:
        return self.config.sampling.samples_per_epoch

    def set_epoch(self, epoch: int) -> None:
        """The epoch used for plain integer keys."""
        self.epoch = int(epoch)

    def load(self, epoch: int, sample: int) -> dict[str, Any]:
        """Sample ``sample`` of ``epoch`` as numpy arrays (int16 codes and their scaling with
        ``serve_codes``: see `scale_on_device`)."""
        if self.serve_codes:
            return self.sampler.load_codes(epoch, sample)
        return self.sampler.load(epoch, sample)

    def __getitem__(self, key: int | tuple[int, int]) -> dict[str, Any]:
        epoch, sample = (self.epoch, key) if isinstance(key, int | np.integer) else key
        if not 0 <= sample < len(self):
            raise IndexError(f"sample {sample} is outside 0..{len(self) - 1}")
        out = self.load(int(epoch), int(sample))
        for name, value in out.items():
            if isinstance(value, np.ndarray):
                out[name] = torch.from_numpy(value)
            else:
                out[name] = torch.tensor(value, dtype=torch.int64)
        return out


class RankSampler(Sampler):
    """This rank's keys ``(epoch, i)`` for ``i = rank, rank + world_size, ...`` below
    ``n_samples``, starting after the first ``start`` of them.

    Ranks take disjoint, strided slices: together they cover every sample once, and the
    first ``k`` steps of all ranks are exactly the global samples ``0 .. k*world_size - 1``.
    Resuming a rank that consumed ``k`` samples is ``set_start(k)``.
    """

    def __init__(
        self,
        n_samples: int,
        *,
        rank: int = 0,
        world_size: int = 1,
        epoch: int = 0,
        start: int = 0,
    ) -> None:
        if world_size < 1 or not 0 <= rank < world_size:
            raise SpecError(f"rank {rank} is outside 0..{world_size - 1} (world_size)")
        if n_samples < 0 or start < 0:
            raise SpecError(f"n_samples ({n_samples}) and start ({start}) must be >= 0")
        self.n_samples, self.rank, self.world_size = n_samples, rank, world_size
        self.epoch, self.start = epoch, start

    def set_epoch(self, epoch: int) -> None:
        """Next epoch's keys; also resets ``start`` to 0."""
        self.epoch, self.start = int(epoch), 0

    def set_start(self, start: int) -> None:
        self.start = int(start)

    def __iter__(self) -> Iterator[tuple[int, int]]:
        first = self.rank + self.start * self.world_size
        for i in range(first, self.n_samples, self.world_size):
            yield (self.epoch, i)

    def __len__(self) -> int:
        total = len(range(self.rank, self.n_samples, self.world_size))
        return max(0, total - self.start)


class EvalNights(IterableDataset):
    """Whole nights for evaluation, each channel combination, in chunks of
    ``config.eval_chunk_epochs`` epochs (see `medscale.data.evaluation.NightChunk`).

    Nights are split over ranks and DataLoader workers (night ``k`` goes to the reader
    ``k mod (world_size × workers)``); each night is read by one worker, whole, in order.
    Use ``batch_size=None`` in the DataLoader: chunks differ in length at the end of a night.
    """

    def __init__(
        self,
        store: Store | str,
        config: DataConfig | None = None,
        *,
        recordings: Iterable[str] | None = None,
        index: WindowIndex | None = None,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        self.config = config or DataConfig()
        store_obj = store if isinstance(store, Store) else Store(store, read_only=True)
        sampling = self.config.sampling
        if index is None:
            # Evaluation covers short nights too: they are read whole, never windowed.
            sampling = sampling.model_copy(update={"short_recordings": "skip"})
            index = WindowIndex.from_store(store_obj, sampling, recordings, for_training=False)
        self.index = index
        self.reader = ArrayReader(
            store_obj.location, self.index, max_open=self.config.max_open_recordings
        )
        self.processor = WindowProcessor(self.index, self.config.processing)
        if world_size < 1 or not 0 <= rank < world_size:
            raise SpecError(f"rank {rank} is outside 0..{world_size - 1} (world_size)")
        self.rank, self.world_size = rank, world_size

    def __iter__(self) -> Iterator[dict[str, Any]]:
        info = get_worker_info()
        workers, worker = (info.num_workers, info.id) if info is not None else (1, 0)
        readers = self.world_size * workers
        mine = eval_recordings(self.index)[self.rank * workers + worker :: readers]
        chunk_epochs = self.config.eval_chunk_epochs
        for chunk in iter_eval_nights(self.index, self.reader, self.processor, chunk_epochs, mine):
            yield {
                "x": torch.from_numpy(chunk.x),
                "y": torch.from_numpy(chunk.y.astype(np.int64)),
                "recording": chunk.recording,
                "combination": chunk.combination,
                "channels": chunk.channels,
                "start_epoch": chunk.start_epoch,
            }


def can_serve_codes(config: DataConfig, input_kind: str) -> bool:
    """Whether ``serve_codes`` works for this processing and task: signals, scaled and
    clipped only (a band-pass or an STFT needs the float32 signal in the worker)."""
    processing = config.processing
    return (
        input_kind == "signals"
        and processing.bandpass_hz is None
        and processing.spectrogram is None
    )


def scale_on_device(batch: dict[str, Any], device: Any, clip: float | None) -> torch.Tensor:
    """A batch served with ``serve_codes`` as the model input ``x`` on ``device``: int16
    codes cross from the workers (half the bytes of float32) and are scaled here. The same
    float32 operations in the same order as `WindowProcessor.scale` and ``augment`` (multiply,
    subtract, clip, zero), so the result equals the float32 path bit for bit."""
    x = batch["codes"].to(device, non_blocking=True).float()
    x.mul_(batch["gain"].to(device)[..., None])
    x.sub_(batch["offset"].to(device)[..., None])
    if clip is not None:
        x.clamp_(-clip, clip)
    x.masked_fill_(~batch["keep"].to(device)[..., None], 0.0)
    for k, (start, length) in enumerate(batch["erase"].tolist()):
        if length:
            x[k, :, start : start + length] = 0.0
    return x


def create_train_loader(
    store: Store | str,
    config: DataConfig | None = None,
    *,
    batch_size: int = 64,
    num_workers: int = 0,
    rank: int = 0,
    world_size: int = 1,
    epoch: int = 0,
    start: int = 0,
    recordings: Iterable[str] | None = None,
    serve_codes: bool = False,
    **loader_options: Any,
) -> DataLoader:
    """A DataLoader over `TrainWindows` with a `RankSampler` (``loader.sampler``).

    Call ``loader.sampler.set_epoch(e)`` each epoch. The batches are the same for any
    ``num_workers``; ``start`` resumes after this rank's first ``start`` samples.
    ``serve_codes`` yields int16 codes to scale with `scale_on_device` (fewer bytes through
    the workers' shared memory, which is what limits a worker's rate).
    """
    dataset = TrainWindows(store, config, recordings=recordings, serve_codes=serve_codes)
    sampler = RankSampler(len(dataset), rank=rank, world_size=world_size, epoch=epoch, start=start)
    if num_workers > 0:
        loader_options.setdefault("persistent_workers", True)
        loader_options.setdefault("multiprocessing_context", _fork_context())
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        num_workers=num_workers,
        **loader_options,
    )


def _fork_context() -> str | None:
    # Fork shares the index's pages with workers; macOS and Windows lack a safe fork.
    return "fork" if os.name == "posix" and os.uname().sysname == "Linux" else None
