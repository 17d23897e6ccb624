"""Flat indexes of what the samplers need about every record, held in numpy arrays.

`WindowIndex` (signals: segment labels and per-class segment indices, channel groups) and
`RecordIndex` (images and volumes: per-record labels, shapes and class voxels) share
`DatasetDraw`, the table that draws a dataset then a record.

One index of 20,000 records is a few dozen arrays, not 20,000 Python objects: forked
DataLoader workers share its pages instead of copying them (touching a Python object writes
its reference count, which copies the page; reading a numpy array's data does not).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from medscale.data.config import ChannelGroup, SamplingConfig
from medscale.errors import ChannelError, SpecError, StoreError, StoreVersionError
from medscale.store.layout import RecordingInfo
from medscale.store.shard_reader import LocalArrayReader, UnsupportedLayoutError
from medscale.store.store import Store, class_index
from medscale.tasks import Task

# Store layout versions this data layer reads (it relies on the v2 commit record and arrays).
SUPPORTED_LAYOUT_VERSIONS = (2,)


def check_layout(store: Store) -> None:
    """Refuse a store whose layout version the data layer was not written for."""
    if store.layout_version not in SUPPORTED_LAYOUT_VERSIONS:
        raise StoreVersionError(
            f"{store.location}: store layout version {store.layout_version} is not one the data "
            f"layer reads (it reads {list(SUPPORTED_LAYOUT_VERSIONS)})"
        )


def read_small_array(store: Store, info: RecordingInfo, name: str) -> np.ndarray:
    """A record's whole (small) array; by byte range for local stores, through zarr otherwise."""
    folder = store.array_folder(info, name)
    if folder is not None:
        try:
            with LocalArrayReader(folder) as reader:
                return reader.read_box((0,) * reader.ndim, reader.shape)
        except UnsupportedLayoutError:
            pass
    return store.read_array(info, name)


def read_segment_labels(store: Store, info: RecordingInfo) -> np.ndarray:
    """One record's class per segment (sleep: its hypnogram; events: `event_segments`)."""
    if store.task.label_kind == "time_events":
        from medscale.tasks import event_segments

        assert info.segment_s is not None
        events = read_small_array(store, info, "events")
        return event_segments(events, info.n_segments, info.segment_s)
    return np.asarray(read_small_array(store, info, "segment_labels"), dtype=np.int8)


def _infos_of(store: Store, recordings: Iterable[str] | None) -> list[RecordingInfo]:
    check_layout(store)
    infos = store.recordings()
    if recordings is not None:
        wanted = set(recordings)
        missing = sorted(wanted - {i.key for i in infos})
        if missing:
            raise StoreError(
                f"{store.location}: {len(missing)} requested recording(s) are not in the "
                f"store, e.g. {missing[:3]}"
            )
        infos = [i for i in infos if i.key in wanted]
    return sorted(infos, key=lambda i: (i.dataset, i.recording_id))


class DatasetDraw:
    """Eligible records grouped by dataset, and the dataset probabilities of U-Sleep's recipe:
    ``alpha * share + (1 - alpha) * uniform``; datasets with no eligible record are never drawn.
    """

    def __init__(self, dataset_id: np.ndarray, n_datasets: int, eligible: np.ndarray, alpha: float):
        self.eligible_rows = np.flatnonzero(eligible).astype(np.int64)
        order = np.argsort(dataset_id[self.eligible_rows], kind="stable")
        self.eligible_rows = self.eligible_rows[order]
        counts = np.bincount(dataset_id[self.eligible_rows], minlength=n_datasets).astype(np.int64)
        self.dataset_row_offsets = np.zeros(len(counts) + 1, dtype=np.int64)
        self.dataset_row_offsets[1:] = np.cumsum(counts)
        present = counts > 0
        # An evaluation-only index may have nothing to sample: then every probability is 0.
        share = counts / max(1, counts.sum())
        uniform = present / max(1, present.sum())
        self.dataset_probability = alpha * share + (1 - alpha) * uniform
        self.dataset_cumulative = np.cumsum(self.dataset_probability)
        if len(self.dataset_cumulative):
            self.dataset_cumulative[-1] = 1.0

    def record(self, rng: np.random.Generator) -> int:
        """Draw a dataset, then one of its eligible records uniformly (two numbers of ``rng``)."""
        n = len(self.dataset_row_offsets) - 1
        dataset = min(
            int(np.searchsorted(self.dataset_cumulative, rng.random(), side="right")), n - 1
        )
        lo, hi = self.dataset_row_offsets[dataset], self.dataset_row_offsets[dataset + 1]
        return int(self.eligible_rows[lo + rng.integers(hi - lo)])


@dataclass(frozen=True)
class GroupCandidates:
    """Per recording, the stored row numbers of a group's channels: ``rows[offsets[r]:...]``."""

    offsets: np.ndarray  # int64 (n_recordings + 1,)
    rows: np.ndarray  # int16


class _FlatIndex:
    """What both indexes hold: record keys, datasets and the channel table, as flat arrays."""

    store_location: str | None = None

    def _records(self, infos: Sequence[RecordingInfo]) -> None:
        self.keys = np.array([i.key.encode() for i in infos])
        self.dataset_names = tuple(sorted({i.dataset for i in infos}))
        ds_lookup = {d: k for k, d in enumerate(self.dataset_names)}
        self.dataset_id = np.array([ds_lookup[i.dataset] for i in infos], dtype=np.int32)

    def _channels(self, infos: Sequence[RecordingInfo]) -> None:
        names = sorted({c.name for i in infos for c in i.channels})
        lookup = {c: k for k, c in enumerate(names)}
        self.channel_names = tuple(names)
        counts = np.array([len(i.channels) for i in infos], dtype=np.int64)
        self.channel_offsets = np.zeros(len(infos) + 1, dtype=np.int64)
        self.channel_offsets[1:] = np.cumsum(counts)
        flat = [c for i in infos for c in i.channels]
        self.channel_name_id = np.array([lookup[c.name] for c in flat], dtype=np.int32)
        self.channel_scale = np.array([c.scale for c in flat], dtype=np.float32)
        self.channel_median = np.array([c.median for c in flat], dtype=np.float32)
        # A flat channel has IQR 0: scale it by 1 rather than divide by zero.
        iqr = np.array([c.iqr for c in flat], dtype=np.float32)
        self.channel_iqr = np.where(iqr > 0, iqr, np.float32(1.0))

    def __len__(self) -> int:
        return len(self.keys)

    def key(self, r: int) -> str:
        return self.keys[r].decode()


class WindowIndex(_FlatIndex):
    """Flat arrays over the signal records a window sampler may draw from.

    Attributes (``R`` recordings, ``S`` segments in all, ``K`` classes)
    -------------------------------------------------------------------
    keys : bytes (R,)             ``dataset/recording_id``
    dataset_names : tuple[str]    datasets, sorted; ``dataset_id`` indexes it
    dataset_id : int32 (R,)
    n_segments : int32 (R,)
    segment_offsets : int64 (R+1,) slices ``segment_labels`` per recording
    segment_labels : int8 (S,)    class per segment (sleep: AASM codes), unknown = -1
    class_segments : int32 (S',)  labelled segments grouped by class, per recording
    class_offsets : int64 (R, K+1) absolute offsets into ``class_segments`` per class
    channel_offsets : int64 (R+1,) slices the per-channel arrays below
    channel_scale, channel_median, channel_iqr : float32  stored statistics
    channel_name_id : int32, channel_names : tuple[str]
    groups : one `GroupCandidates` per configured channel group
    eligible : bool (R,)          drawn by the training sampler
    draw : `DatasetDraw`          the dataset-then-recording draw over eligible recordings
    """

    def __init__(
        self,
        infos: Sequence[RecordingInfo],
        segment_labels: Iterable[np.ndarray],
        sampling: SamplingConfig,
        *,
        task: Task,
        for_training: bool = True,
    ) -> None:
        if not task.segmented:
            raise SpecError(f"task {task.name!r} has no segments: windows need a signals task")
        self.task = task
        self.n_classes = task.n_outputs
        self.for_training = for_training
        label_list = list(segment_labels)
        if len(label_list) != len(infos):
            raise SpecError(f"got {len(label_list)} label arrays for {len(infos)} recordings")
        order = sorted(range(len(infos)), key=lambda k: (infos[k].dataset, infos[k].recording_id))
        infos = [infos[k] for k in order]
        label_list = [label_list[k] for k in order]
        if not infos:
            raise SpecError("the window index needs at least one recording; none were given")
        self.sampling = sampling
        rates = {(i.sfreq_hz, i.segment_s) for i in infos}
        if len(rates) != 1:
            raise SpecError(
                f"recordings have different (sfreq_hz, segment_s) {sorted(rates)}; "
                "serve them from separate indexes"
            )
        ((self.sfreq_hz, self.segment_s),) = rates
        self.samples_per_segment = round(self.sfreq_hz * self.segment_s)
        n = len(infos)
        self._records(infos)
        self.n_segments = np.array([i.n_segments for i in infos], dtype=np.int32)
        self.segment_offsets = np.zeros(n + 1, dtype=np.int64)
        self.segment_offsets[1:] = np.cumsum(self.n_segments)
        self.segment_labels = np.empty(int(self.segment_offsets[-1]), dtype=np.int8)
        parts, self.class_offsets = [], np.zeros((n, self.n_classes + 1), dtype=np.int64)
        base = 0
        for r, (info, labels) in enumerate(zip(infos, label_list, strict=True)):
            labels = np.asarray(labels, dtype=np.int8)
            if len(labels) != info.n_segments:
                raise StoreError(
                    f"{info.key}: labels have {len(labels)} segments, the commit record says "
                    f"{info.n_segments}"
                )
            self.segment_labels[self.segment_offsets[r] : self.segment_offsets[r + 1]] = labels
            entries, offsets = class_index(labels, self.n_classes)
            parts.append(entries)
            self.class_offsets[r] = base + np.asarray(offsets, dtype=np.int64)
            base += len(entries)
        self.class_segments = (
            np.concatenate(parts).astype(np.int32) if parts else np.zeros(0, np.int32)
        )
        self._channels(infos)
        self.groups = tuple(self._group(g, infos) for g in sampling.channel_groups)
        self._eligibility(infos)

    def _group(self, group: ChannelGroup, infos: Sequence[RecordingInfo]) -> GroupCandidates:
        rows, offsets = [], [0]
        for info in infos:
            rows += [k for k, c in enumerate(info.channels) if group.matches(c.name, c.type)]
            offsets.append(len(rows))
        if not rows:
            types = sorted({c.type for i in infos for c in i.channels})
            raise ChannelError(
                f"channel group {group.name!r} (types {list(group.types)}, names "
                f"{list(group.names)}) matches no channel of any of the {len(infos)} recordings; "
                f"stored types are {types} and names are {list(self.channel_names)}"
            )
        return GroupCandidates(np.array(offsets, np.int64), np.array(rows, np.int16))

    def _eligibility(self, infos: Sequence[RecordingInfo]) -> None:
        L = self.sampling.window_epochs
        has_groups = np.ones(len(infos), dtype=bool)
        for g in self.groups:
            has_groups &= np.diff(g.offsets) > 0
        labelled = self.class_offsets[:, -1] > self.class_offsets[:, 0]
        long_enough = self.n_segments >= L
        short = np.flatnonzero(~long_enough)
        if len(short) and self.sampling.short_recordings == "raise":
            shown = ", ".join(
                f"{self.keys[r].decode()} ({self.n_segments[r]} segments)" for r in short[:5]
            )
            raise SpecError(
                f"window_epochs={L} is longer than {len(short)} recording(s): {shown}"
                f"{' ...' if len(short) > 5 else ''}; use a shorter window or set "
                "sampling.short_recordings='skip'"
            )
        keep_missing = self.sampling.missing_group == "zeros"
        self.eligible = long_enough & labelled & (has_groups | keep_missing)
        if not self.eligible.any() and self.for_training:
            raise SpecError(
                f"no recording can be sampled: of {len(infos)}, {int((~long_enough).sum())} are "
                f"shorter than {L} segments, {int((~labelled).sum())} have no labelled segment "
                f"and {int((~has_groups).sum())} lack a channel group "
                f"({[g.name for g in self.sampling.channel_groups]})"
            )
        self.has_groups = has_groups
        self.draw = DatasetDraw(
            self.dataset_id, len(self.dataset_names), self.eligible, self.sampling.alpha
        )

    # -- construction -----------------------------------------------------------------------

    @classmethod
    def from_store(
        cls,
        store: Store | str,
        sampling: SamplingConfig | None = None,
        recordings: Iterable[str] | None = None,
        *,
        for_training: bool = True,
    ) -> WindowIndex:
        """Index the committed recordings of ``store`` (all, or the ``dataset/id`` keys given).

        ``for_training=False`` indexes recordings only to read them whole (evaluation,
        prediction): unscored nights are then fine, and nothing needs to be drawable.
        """
        store = store if isinstance(store, Store) else Store(store, read_only=True)
        infos = _infos_of(store, recordings)
        labels = [read_segment_labels(store, i) for i in infos]
        index = cls(
            infos, labels, sampling or SamplingConfig(), task=store.task, for_training=for_training
        )
        index.store_location = store.location
        return index

    # -- facts ------------------------------------------------------------------------------

    def labels(self, r: int) -> np.ndarray:
        """Recording ``r``'s class per segment (sleep: its hypnogram)."""
        return self.segment_labels[self.segment_offsets[r] : self.segment_offsets[r + 1]]

    def candidates(self, r: int, group: int) -> np.ndarray:
        g = self.groups[group]
        return g.rows[g.offsets[r] : g.offsets[r + 1]]

    def channel_slice(self, r: int) -> slice:
        return slice(int(self.channel_offsets[r]), int(self.channel_offsets[r + 1]))

    def channel_name(self, r: int, row: int) -> str:
        return self.channel_names[self.channel_name_id[self.channel_offsets[r] + row]]

    @property
    def nbytes(self) -> int:
        arrays = [v for v in vars(self).values() if isinstance(v, np.ndarray)]
        arrays += [v for v in vars(self.draw).values() if isinstance(v, np.ndarray)]
        arrays += [a for g in self.groups for a in (g.offsets, g.rows)]
        return int(sum(a.nbytes for a in arrays))

    def skipped(self) -> dict[str, str]:
        """Recordings the training sampler leaves out, with the reason for each."""
        out = {}
        for r in np.flatnonzero(~self.eligible):
            if self.n_segments[r] < self.sampling.window_epochs:
                out[self.key(r)] = f"shorter than {self.sampling.window_epochs} segments"
            elif self.class_offsets[r, -1] == self.class_offsets[r, 0]:
                out[self.key(r)] = "no labelled segment"
            else:
                out[self.key(r)] = "lacks a channel group"
        return out


class RecordIndex(_FlatIndex):
    """Flat arrays over image or volume records, for the per-image and patch samplers.

    Attributes (``R`` records, ``K`` classes)
    ------------------------------------------
    keys, dataset_names, dataset_id : as in `WindowIndex`
    shapes : int64 (R, D)          the input array's shape per record (channel first)
    image_labels : uint8 (R, K)    multi-hot labels (``image_multilabel`` tasks)
    class_voxels : int32 (V, 3)    sampled voxel coordinates per class (``voxel_mask`` tasks)
    class_offsets : int64 (R, K+1) absolute offsets into ``class_voxels`` per class
    channel_offsets, channel_scale, channel_median, channel_iqr, ... : as in `WindowIndex`
    eligible : bool (R,), draw : `DatasetDraw`
    """

    def __init__(
        self,
        store: Store,
        infos: Sequence[RecordingInfo],
        sampling: SamplingConfig,
        *,
        for_training: bool = True,
    ) -> None:
        task = store.task
        if task.segmented:
            raise SpecError(f"task {task.name!r} is a signals task: index it with WindowIndex")
        if not infos:
            raise SpecError("the record index needs at least one record; none were given")
        self.task, self.sampling, self.for_training = task, sampling, for_training
        self.n_classes = task.n_outputs
        self._records(infos)
        ndims = {len(i.arrays[task.input_kind].shape) for i in infos}
        if len(ndims) != 1:
            raise SpecError(f"records of {task.input_kind} have different dimensions {ndims}")
        self.shapes = np.array([i.arrays[task.input_kind].shape for i in infos], dtype=np.int64)
        channels = {int(s[0]) for s in self.shapes}
        if len(channels) != 1:
            raise SpecError(f"records have different channel counts {sorted(channels)}")
        self._channels(infos)
        eligible = np.ones(len(infos), dtype=bool)
        if task.label_kind == "image_multilabel":
            self.image_labels = np.stack(
                [read_small_array(store, i, "image_labels") for i in infos]
            ).astype(np.uint8)
        else:
            parts, self.class_offsets = [], np.zeros((len(infos), self.n_classes + 1), np.int64)
            base = 0
            for r, info in enumerate(infos):
                voxels = read_small_array(store, info, "class_voxels")
                parts.append(voxels)
                self.class_offsets[r] = base + np.asarray(info.class_offsets, dtype=np.int64)
                base += len(voxels)
            self.class_voxels = np.concatenate(parts).astype(np.int32)
            patch = np.asarray(sampling.patch_size, dtype=np.int64)
            eligible = (self.shapes[:, 1:] >= patch).all(axis=1)
            small = np.flatnonzero(~eligible)
            if len(small) and for_training:
                shown = ", ".join(f"{self.key(r)} {tuple(self.shapes[r, 1:])}" for r in small[:5])
                raise SpecError(
                    f"patch_size {tuple(sampling.patch_size)} is larger than {len(small)} "
                    f"volume(s): {shown}; use a smaller patch"
                )
        self.eligible = eligible
        self.draw = DatasetDraw(self.dataset_id, len(self.dataset_names), eligible, sampling.alpha)

    @classmethod
    def from_store(
        cls,
        store: Store | str,
        sampling: SamplingConfig | None = None,
        recordings: Iterable[str] | None = None,
        *,
        for_training: bool = True,
    ) -> RecordIndex:
        """Index the committed records of ``store`` (all, or the ``dataset/id`` keys given)."""
        store = store if isinstance(store, Store) else Store(store, read_only=True)
        infos = _infos_of(store, recordings)
        index = cls(store, infos, sampling or SamplingConfig(), for_training=for_training)
        index.store_location = store.location
        return index
