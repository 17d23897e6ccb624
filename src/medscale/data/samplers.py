"""Samplers: training sample ``i`` of pass ``epoch`` as a pure function of (seed, epoch, i).

The protocol (`Sampler`) is two methods. ``draw(epoch, i)`` says where the sample comes from
without reading anything; ``load(epoch, i)`` reads it and returns numpy arrays: ``x`` (model
input, float32), ``y`` (targets as `medscale.tasks.Task.targets` builds them) and integer
facts (``recording``, ``epoch``, ``sample`` and the sampler's own). Both draw every random
number from `medscale.data.sampling.sample_stream`, so any worker of any rank computes the
same sample, and the torch layer (`medscale.data.torch_data`) only maps keys to samples.

=========================  ==================  =============================================
sampler                    task label kind     sample
=========================  ==================  =============================================
`WindowSampler` (classes)  segment_classes     ``window_epochs`` segments around a segment of
                                               a class drawn uniformly (sleep: stages)
`WindowSampler` (events)   time_events         the same, anchored on an event segment with
                                               probability ``event_ratio``
`ImageSampler`             image_multilabel    one whole image and its multi-hot labels
`PatchSampler`             voxel_mask          a ``patch_size`` box of volume and mask,
                                               foreground-centred with ``foreground_ratio``;
                                               reads only the chunks the box overlaps
=========================  ==================  =============================================

`make_sampler` picks the one the store's task needs.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Protocol

import numpy as np

from medscale.data.config import DataConfig
from medscale.data.index import RecordIndex, WindowIndex
from medscale.data.processing import WindowProcessor
from medscale.data.reader import ArrayReader
from medscale.data.sampling import (
    RecordDraw,
    WindowDraw,
    draw_event_window,
    draw_image,
    draw_patch,
    draw_window,
)
from medscale.errors import SpecError
from medscale.store.store import Store


class Sampler(Protocol):
    """What the training loader needs of a sampler (see the module docstring)."""

    config: DataConfig
    index: WindowIndex | RecordIndex

    def draw(self, epoch: int, sample: int) -> WindowDraw | RecordDraw: ...

    def load(self, epoch: int, sample: int) -> dict[str, Any]: ...


def _store(store: Store | str) -> Store:
    return store if isinstance(store, Store) else Store(store, read_only=True)


class WindowSampler:
    """Windows of signals: class-balanced for segment tasks (sleep's stage balancing, draws
    bit-identical to earlier medscale), event-balanced for event tasks.

    ``load`` returns ``x`` float32 (channels, samples) (or (channels, segments, freqs, frames)
    with a spectrogram), ``y`` int64 (window_epochs,) class per segment (-1 unknown), and
    ``recording``, ``start_segment``, ``epoch``, ``sample``.
    """

    def __init__(
        self,
        store: Store | str,
        config: DataConfig | None = None,
        *,
        recordings: Iterable[str] | None = None,
        index: WindowIndex | None = None,
        augment: bool = True,
    ) -> None:
        self.config = config or DataConfig()
        store_obj = _store(store)
        self.index = index or WindowIndex.from_store(store_obj, self.config.sampling, recordings)
        self._draw = (
            draw_event_window if self.index.task.label_kind == "time_events" else draw_window
        )
        self.reader = ArrayReader(
            store_obj.location,
            self.index,
            max_open=self.config.max_open_recordings,
            cache_bytes=self.config.cache_bytes,
        )
        self.processor = WindowProcessor(self.index, self.config.processing)
        self.augment = augment

    def draw(self, epoch: int, sample: int) -> WindowDraw:
        return self._draw(self.index, self.config.seed, epoch, sample)[0]

    def load(self, epoch: int, sample: int) -> dict[str, Any]:
        draw, rng, codes, out = self._read(epoch, sample)
        x = self.processor.scale(codes, draw.recording, draw.rows)
        if self.augment:
            x = self.processor.augment(x, rng)
        if self.config.processing.spectrogram is not None:
            x = self.processor.spectrogram(x, self.config.sampling.window_epochs)
        return {"x": x, **out}

    def load_codes(self, epoch: int, sample: int) -> dict[str, Any]:
        """`load` with the scaling left to the consumer (`medscale.data.torch_data`): int16
        ``codes``, per-channel float32 ``gain`` and ``offset``, ``keep`` (False for a missing
        or dropped channel) and the erased span ``erase`` (start, length); `scale_on_device`
        turns them into ``load``'s ``x``, bit for bit. Processing without band-pass or STFT."""
        draw, rng, codes, rest = self._read(epoch, sample)
        gain, offset = self.processor.gain_offset(draw.recording, draw.rows)
        keep = np.asarray(draw.rows) >= 0
        erase = np.zeros(2, dtype=np.int64)
        if self.augment:  # the same draws as `load`'s, recorded instead of applied
            mask = self.processor.augment(np.ones(codes.shape, dtype=np.float32), rng)
            kept = mask.any(axis=1)
            erased = np.flatnonzero(mask[int(np.argmax(kept))] == 0)
            if len(erased):
                erase[:] = (erased[0], len(erased))
            keep &= kept
        out = {"codes": codes, "gain": gain, "offset": offset, "keep": keep, "erase": erase}
        return out | rest

    def _read(
        self, epoch: int, sample: int
    ) -> tuple[WindowDraw, np.random.Generator, np.ndarray, dict[str, Any]]:
        draw, rng = self._draw(self.index, self.config.seed, epoch, sample)
        L = self.config.sampling.window_epochs
        sps = self.index.samples_per_segment
        start, stop = draw.start_segment * sps, (draw.start_segment + L) * sps
        valid = [r for r in draw.rows if r >= 0]
        codes = self.reader.read(draw.recording, valid, start, stop)
        if len(valid) != len(draw.rows):
            full = np.zeros((len(draw.rows), stop - start), dtype=codes.dtype)
            full[[k for k, r in enumerate(draw.rows) if r >= 0]] = codes
            codes = full
        labels = self.index.labels(draw.recording)
        return (
            draw,
            rng,
            codes,
            {
                "y": labels[draw.start_segment : draw.start_segment + L].astype(np.int64),
                "recording": draw.recording,
                "start_segment": draw.start_segment,
                "epoch": epoch,
                "sample": sample,
            },
        )


class _RecordSampler:
    """What the image and patch samplers share: a `RecordIndex` and readers of its arrays."""

    def __init__(
        self,
        store: Store | str,
        config: DataConfig | None = None,
        *,
        recordings: Iterable[str] | None = None,
        index: RecordIndex | None = None,
        arrays: tuple[str, ...] = (),
    ) -> None:
        self.config = config or DataConfig()
        store_obj = _store(store)
        self.index = index or RecordIndex.from_store(store_obj, self.config.sampling, recordings)
        self.readers = {
            name: ArrayReader(
                store_obj.location,
                self.index,
                array=name,
                max_open=self.config.max_open_recordings,
                cache_bytes=self.config.cache_bytes,
            )
            for name in arrays or (self.index.task.input_kind,)
        }
        self.processor = WindowProcessor(self.index, self.config.processing)

    def _scaled(self, raw: np.ndarray, recording: int) -> np.ndarray:
        """Robust scaling and clipping of every channel of an image or volume box."""
        flat = raw.reshape(raw.shape[0], -1)
        return self.processor.scale(flat, recording, list(range(raw.shape[0]))).reshape(raw.shape)


class ImageSampler(_RecordSampler):
    """Whole images of a multi-label task. ``load`` returns ``x`` float32 (channels, y, x),
    ``y`` float32 (classes,) multi-hot, and ``recording``, ``epoch``, ``sample``. Images and
    patches get robust scaling and clipping; augmentation is implemented for windows only."""

    def draw(self, epoch: int, sample: int) -> RecordDraw:
        return draw_image(self.index, self.config.seed, epoch, sample)[0]

    def load(self, epoch: int, sample: int) -> dict[str, Any]:
        draw, _ = draw_image(self.index, self.config.seed, epoch, sample)
        x, y = self.record(draw.recording)
        return {"x": x, "y": y, "recording": draw.recording, "epoch": epoch, "sample": sample}

    def record(self, recording: int) -> tuple[np.ndarray, np.ndarray]:
        """Row ``recording``'s whole image, scaled, and its targets (evaluation reads these)."""
        shape = tuple(int(s) for s in self.index.shapes[recording])
        reader = self.readers[self.index.task.input_kind]
        x = self._scaled(reader.read_box(recording, (0,) * len(shape), shape), recording)
        return x, self.index.task.targets(self.index.image_labels[recording])


class PatchSampler(_RecordSampler):
    """Foreground/background-balanced 3-D patches of a volume task. ``load`` reads only the
    chunks of volume and mask that the box overlaps, and returns ``x`` float32 (channels, z, y,
    x), ``y`` int64 (z, y, x) classes, and ``recording``, ``start`` (z, y, x), ``label`` (the
    class the patch is centred on, -1 for a uniform one), ``epoch``, ``sample``."""

    def __init__(
        self,
        store: Store | str,
        config: DataConfig | None = None,
        *,
        recordings: Iterable[str] | None = None,
        index: RecordIndex | None = None,
    ) -> None:
        arrays = ("volume", "mask")
        super().__init__(store, config, recordings=recordings, index=index, arrays=arrays)

    def draw(self, epoch: int, sample: int) -> RecordDraw:
        return draw_patch(self.index, self.config.seed, epoch, sample)[0]

    def load(self, epoch: int, sample: int) -> dict[str, Any]:
        draw, _ = draw_patch(self.index, self.config.seed, epoch, sample)
        stop = tuple(
            a + p for a, p in zip(draw.start, self.config.sampling.patch_size, strict=True)
        )
        n_channels = int(self.index.shapes[draw.recording, 0])
        raw = self.readers["volume"].read_box(draw.recording, (0, *draw.start), (n_channels, *stop))
        mask = self.readers["mask"].read_box(draw.recording, draw.start, stop)
        return {
            "x": self._scaled(raw, draw.recording),
            "y": self.index.task.targets(mask),
            "recording": draw.recording,
            "start": np.asarray(draw.start, dtype=np.int64),
            "label": draw.label,
            "epoch": epoch,
            "sample": sample,
        }


_SAMPLERS: dict[str, type[WindowSampler] | type[ImageSampler] | type[PatchSampler]] = {
    "segment_classes": WindowSampler,
    "time_events": WindowSampler,
    "image_multilabel": ImageSampler,
    "voxel_mask": PatchSampler,
}


def make_sampler(
    store: Store | str,
    config: DataConfig | None = None,
    *,
    recordings: Iterable[str] | None = None,
    augment: bool = True,
) -> WindowSampler | ImageSampler | PatchSampler:
    """The sampler the store's task needs (see the table in the module docstring);
    ``augment`` applies to windows."""
    store_obj = _store(store)
    kind = store_obj.task.label_kind
    if kind not in _SAMPLERS:
        raise SpecError(f"no sampler serves label kind {kind!r}")
    if _SAMPLERS[kind] is WindowSampler:
        return WindowSampler(store_obj, config, recordings=recordings, augment=augment)
    return _SAMPLERS[kind](store_obj, config, recordings=recordings)
