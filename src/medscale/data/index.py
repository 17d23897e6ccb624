"""`WindowIndex`: what the sampler needs about every recording, held in flat numpy arrays.

One index of 20,000 recordings is a few dozen arrays, not 20,000 Python objects: forked
DataLoader workers share its pages instead of copying them (touching a Python object writes
its reference count, which copies the page; reading a numpy array's data does not).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from medscale.data.config import ChannelGroup, SamplingConfig
from medscale.errors import ChannelError, SpecError, StoreError, StoreVersionError
from medscale.io.stages import SCORED_STAGES
from medscale.store.layout import RecordingInfo
from medscale.store.shard_reader import LocalArrayReader, UnsupportedLayoutError
from medscale.store.store import Store, stage_index

# Store layout versions this data layer reads (it relies on the v1 commit record and arrays).
SUPPORTED_LAYOUT_VERSIONS = (1,)
N_STAGES = len(SCORED_STAGES)


def check_layout(store: Store) -> None:
    """Refuse a store whose layout version the data layer was not written for."""
    if store.layout_version not in SUPPORTED_LAYOUT_VERSIONS:
        raise StoreVersionError(
            f"{store.location}: store layout version {store.layout_version} is not one the data "
            f"layer reads (it reads {list(SUPPORTED_LAYOUT_VERSIONS)})"
        )


def read_hypnogram(store: Store, info: RecordingInfo) -> np.ndarray:
    """One recording's hypnogram; by byte range for local stores, through zarr otherwise."""
    folder = local_array_folder(store, info.dataset, info.recording_id, "hypnogram")
    if folder is not None:
        try:
            with LocalArrayReader(folder) as reader:
                return np.asarray(reader.read(), dtype=np.int8)
        except UnsupportedLayoutError:
            pass
    return store.read_hypnogram(info)


def local_array_folder(store: Store, dataset: str, recording_id: str, name: str) -> str | None:
    """The folder of a recording's array on a local disk, or None for a URL store."""
    if "://" in store.location and not store.location.startswith("file://"):
        return None
    root = store.location.removeprefix("file://")
    return f"{root}/recordings/{dataset}/{recording_id}/{name}"


@dataclass(frozen=True)
class GroupCandidates:
    """Per recording, the stored row numbers of a group's channels: ``rows[offsets[r]:...]``."""

    offsets: np.ndarray  # int64 (n_recordings + 1,)
    rows: np.ndarray  # int16


class WindowIndex:
    """Flat arrays over the recordings a sampler may draw from.

    Attributes (``R`` recordings, ``E`` epochs in all)
    ----------------------------------------------------
    keys : bytes (R,)            ``dataset/recording_id``
    dataset_names : tuple[str]   datasets, sorted; ``dataset_id`` indexes it
    dataset_id : int32 (R,)
    n_epochs : int32 (R,)
    epoch_offsets : int64 (R+1,) slices ``hypnograms`` and ``stage_epochs`` per recording
    hypnograms : int8 (E,)       AASM codes, UNKNOWN = -1
    stage_epochs : int32 (E',)   scored epochs grouped by stage, per recording
    stage_offsets : int64 (R, 6) absolute offsets into ``stage_epochs`` per stage
    channel_offsets : int64 (R+1,) slices the per-channel arrays below
    channel_scale, channel_median, channel_iqr : float32  stored statistics
    channel_name_id : int32, channel_names : tuple[str]
    groups : one `GroupCandidates` per configured channel group
    eligible : bool (R,)         drawn by the training sampler
    """

    def __init__(
        self,
        infos: Sequence[RecordingInfo],
        hypnograms: Iterable[np.ndarray],
        sampling: SamplingConfig,
        *,
        for_training: bool = True,
    ) -> None:
        self.for_training = for_training
        hyp_list = list(hypnograms)
        if len(hyp_list) != len(infos):
            raise SpecError(f"got {len(hyp_list)} hypnograms for {len(infos)} recordings")
        order = sorted(range(len(infos)), key=lambda k: (infos[k].dataset, infos[k].recording_id))
        infos = [infos[k] for k in order]
        hyp_list = [hyp_list[k] for k in order]
        if not infos:
            raise SpecError("the window index needs at least one recording; none were given")
        self.sampling = sampling
        rates = {(i.sfreq_hz, i.epoch_length_s) for i in infos}
        if len(rates) != 1:
            raise SpecError(
                f"recordings have different (sfreq_hz, epoch_length_s) {sorted(rates)}; "
                "serve them from separate indexes"
            )
        ((self.sfreq_hz, self.epoch_length_s),) = rates
        self.samples_per_epoch = round(self.sfreq_hz * self.epoch_length_s)
        n = len(infos)
        self.keys = np.array([i.key.encode() for i in infos])
        self.dataset_names = tuple(sorted({i.dataset for i in infos}))
        ds_lookup = {d: k for k, d in enumerate(self.dataset_names)}
        self.dataset_id = np.array([ds_lookup[i.dataset] for i in infos], dtype=np.int32)
        self.n_epochs = np.array([i.n_epochs for i in infos], dtype=np.int32)
        self.epoch_offsets = np.zeros(n + 1, dtype=np.int64)
        self.epoch_offsets[1:] = np.cumsum(self.n_epochs)
        self.hypnograms = np.empty(int(self.epoch_offsets[-1]), dtype=np.int8)
        stage_parts, self.stage_offsets = [], np.zeros((n, N_STAGES + 1), dtype=np.int64)
        base = 0
        for r, (info, hyp) in enumerate(zip(infos, hyp_list, strict=True)):
            hyp = np.asarray(hyp, dtype=np.int8)
            if len(hyp) != info.n_epochs:
                raise StoreError(
                    f"{info.key}: hypnogram has {len(hyp)} epochs, the commit record says "
                    f"{info.n_epochs}"
                )
            self.hypnograms[self.epoch_offsets[r] : self.epoch_offsets[r + 1]] = hyp
            epochs, offsets = stage_index(hyp)
            stage_parts.append(epochs)
            self.stage_offsets[r] = base + np.asarray(offsets, dtype=np.int64)
            base += len(epochs)
        self.stage_epochs = (
            np.concatenate(stage_parts).astype(np.int32) if stage_parts else np.zeros(0, np.int32)
        )
        self._channels(infos)
        self.groups = tuple(self._group(g, infos) for g in sampling.channel_groups)
        self._eligibility(infos)

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
        scored = self.stage_offsets[:, -1] > self.stage_offsets[:, 0]
        long_enough = self.n_epochs >= L
        short = np.flatnonzero(~long_enough)
        if len(short) and self.sampling.short_recordings == "raise":
            shown = ", ".join(
                f"{self.keys[r].decode()} ({self.n_epochs[r]} epochs)" for r in short[:5]
            )
            raise SpecError(
                f"window_epochs={L} is longer than {len(short)} recording(s): {shown}"
                f"{' ...' if len(short) > 5 else ''}; use a shorter window or set "
                "sampling.short_recordings='skip'"
            )
        keep_missing = self.sampling.missing_group == "zeros"
        self.eligible = long_enough & scored & (has_groups | keep_missing)
        if not self.eligible.any() and self.for_training:
            raise SpecError(
                f"no recording can be sampled: of {len(infos)}, {int((~long_enough).sum())} are "
                f"shorter than {L} epochs, {int((~scored).sum())} have no scored epoch and "
                f"{int((~has_groups).sum())} lack a channel group "
                f"({[g.name for g in self.sampling.channel_groups]})"
            )
        self.has_groups = has_groups
        # Eligible recordings grouped by dataset; datasets with none are never drawn.
        self.eligible_rows = np.flatnonzero(self.eligible).astype(np.int64)
        order = np.argsort(self.dataset_id[self.eligible_rows], kind="stable")
        self.eligible_rows = self.eligible_rows[order]
        counts = np.bincount(
            self.dataset_id[self.eligible_rows], minlength=len(self.dataset_names)
        ).astype(np.int64)
        self.dataset_row_offsets = np.zeros(len(counts) + 1, dtype=np.int64)
        self.dataset_row_offsets[1:] = np.cumsum(counts)
        present = counts > 0
        # An evaluation-only index may have nothing to sample: then every probability is 0.
        share = counts / max(1, counts.sum())
        uniform = present / max(1, present.sum())
        alpha = self.sampling.alpha
        self.dataset_probability = alpha * share + (1 - alpha) * uniform
        self.dataset_cumulative = np.cumsum(self.dataset_probability)
        self.dataset_cumulative[-1] = 1.0

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

        ``for_training=False`` indexes nights only to read them whole (evaluation,
        prediction): unscored nights are then fine, and nothing needs to be drawable.
        """
        store = store if isinstance(store, Store) else Store(store, read_only=True)
        check_layout(store)
        infos = store.recordings()
        if recordings is not None:
            wanted = set(recordings)
            by_key = {i.key for i in infos}
            missing = sorted(wanted - by_key)
            if missing:
                raise StoreError(
                    f"{store.location}: {len(missing)} requested recording(s) are not in the "
                    f"store, e.g. {missing[:3]}"
                )
            infos = [i for i in infos if i.key in wanted]
        infos = sorted(infos, key=lambda i: (i.dataset, i.recording_id))
        hyps = [read_hypnogram(store, i) for i in infos]
        index = cls(infos, hyps, sampling or SamplingConfig(), for_training=for_training)
        index.store_location = store.location
        return index

    store_location: str | None = None

    # -- facts ------------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self.keys)

    def key(self, r: int) -> str:
        return self.keys[r].decode()

    def hypnogram(self, r: int) -> np.ndarray:
        return self.hypnograms[self.epoch_offsets[r] : self.epoch_offsets[r + 1]]

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
        arrays += [a for g in self.groups for a in (g.offsets, g.rows)]
        return int(sum(a.nbytes for a in arrays))

    def skipped(self) -> dict[str, str]:
        """Recordings the training sampler leaves out, with the reason for each."""
        out = {}
        for r in np.flatnonzero(~self.eligible):
            if self.n_epochs[r] < self.sampling.window_epochs:
                out[self.key(r)] = f"shorter than {self.sampling.window_epochs} epochs"
            elif self.stage_offsets[r, -1] == self.stage_offsets[r, 0]:
                out[self.key(r)] = "no scored epoch"
            else:
                out[self.key(r)] = "lacks a channel group"
        return out
