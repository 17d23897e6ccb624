"""`Store`: the standard chunked store of many datasets, on a local disk or any fsspec URL.

Contract:
- A store serves one `Task` (`medscale.tasks`), kept in its root attributes: `Store.create`
  writes it, every record written must carry that task's input and label arrays.
- Writers of *different* records may run in many processes at once without locks: each
  record lives in its own folder, and shared files are only written by `Store.create`.
- A record becomes visible only when its commit record is written, after all its arrays.
  A process killed mid-write leaves an uncommitted folder that readers ignore and the next
  write of that record replaces.
- Readers refuse a store whose layout version they do not know; a version-1 store is refused
  with the command that migrates it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import fsspec
import numpy as np
import zarr
from zarr.codecs import BloscCodec
from zarr.storage import FsspecStore, LocalStore

from medscale import __version__
from medscale.atomic import write_bytes_atomic
from medscale.errors import StoreError, StoreVersionError
from medscale.store.layout import (
    ARRAY_DIMS,
    DERIVED_ARRAYS,
    KNOWN_LAYOUT_VERSIONS,
    LAYOUT_VERSION,
    STORE_ATTRIBUTE,
    ArrayInfo,
    ChannelInfo,
    RecordingInfo,
)
from medscale.tasks import Task, event_segments

# One inner chunk is 8 min at 128 Hz: a 35-segment window touches 3 to 4 chunks per channel.
SIGNAL_CHUNK_SAMPLES = 61440
# Images: planes of up to 256 x 256 per chunk; volumes and masks: cubes of up to 64.
IMAGE_CHUNK = 256
VOLUME_CHUNK = 64
# At most this many voxel coordinates per class are kept for patch sampling (as nnU-Net does).
MAX_CLASS_VOXELS = 10_000
# Measured on EEG-like int16 (docs/design/store.md): smaller than zstd-3 and ~4x faster to decode.
_CODECS = (BloscCodec(cname="lz4", clevel=5, shuffle="bitshuffle"),)


@dataclass
class Record:
    """What a writer hands to `Store.write_record`: named arrays and their description.

    ``arrays`` maps names of `medscale.store.layout.ARRAY_DIMS` to numpy arrays with those
    dimensions; it holds the task's input array (``signals``, ``image`` or ``volume``) and its
    label array. ``sfreq_hz`` and ``segment_s`` describe signals, ``spacing`` images/volumes.
    """

    dataset: str
    recording_id: str
    subject: str
    session: str
    arrays: dict[str, np.ndarray]
    channels: list[ChannelInfo]
    source_hash: str
    config_hash: str
    synthetic: bool
    metadata: dict[str, Any] = field(default_factory=dict)
    sfreq_hz: float | None = None
    segment_s: float | None = None
    spacing: tuple[float, ...] | None = None


def _is_url(location: str) -> bool:
    return "://" in location and not location.startswith("file://")


def replace_file(
    fs: fsspec.AbstractFileSystem, path: str, payload: bytes, *, atomic_put: bool
) -> None:
    """Write ``path`` so that readers see the old or the new content, never a part: one PUT on
    object stores (``atomic_put``), an fsync'd temporary file renamed over the target elsewhere."""
    fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
    if atomic_put:
        fs.pipe_file(path, payload)
        return
    write_bytes_atomic(path, payload)


def class_index(labels: np.ndarray, n_classes: int) -> tuple[np.ndarray, tuple[int, ...]]:
    """Indices of labelled entries grouped by class code, and the offsets slicing them."""
    labels = np.asarray(labels)
    scored = np.flatnonzero(labels >= 0)
    order = np.argsort(labels[scored], kind="stable")
    entries = scored[order].astype(np.int32)
    counts = np.bincount(labels[scored], minlength=n_classes)[:n_classes]
    offsets = (0, *np.cumsum(counts).tolist())
    return entries, tuple(int(o) for o in offsets)


def class_voxels(mask: np.ndarray, n_classes: int) -> tuple[np.ndarray, tuple[int, ...]]:
    """Up to `MAX_CLASS_VOXELS` (z, y, x) coordinates per class present in ``mask`` (a fixed,
    evenly spaced subset), grouped by class, and the offsets slicing them."""
    parts, offsets = [], [0]
    for code in range(n_classes):
        where = np.flatnonzero(mask.ravel() == code)
        if len(where) > MAX_CLASS_VOXELS:
            where = where[np.linspace(0, len(where) - 1, MAX_CLASS_VOXELS).astype(np.int64)]
        parts.append(np.stack(np.unravel_index(where, mask.shape), axis=1).astype(np.int32))
        offsets.append(offsets[-1] + len(where))
    return np.concatenate(parts), tuple(offsets)


def content_hash(record: Record, task: Task) -> str:
    """sha256 over the stored input and label arrays, the channel table and the geometry.

    For signals this is the layout-1 formula (samples, labels, channels, ``sfreq/segment``),
    so a migrated sleep record keeps its hash; images and volumes add shapes and dtypes.
    """
    h = hashlib.sha256()
    for name in (task.input_kind, task.label_array):
        data = np.ascontiguousarray(record.arrays[name])
        if task.input_kind != "signals":
            h.update(f"{name}{data.shape}{data.dtype.str}".encode())
        h.update(data.tobytes())
    h.update(json.dumps([c.__dict__ for c in record.channels], sort_keys=True).encode())
    if task.input_kind == "signals":
        h.update(f"{record.sfreq_hz}/{record.segment_s}".encode())
    else:
        h.update(f"{record.spacing}".encode())
    return h.hexdigest()


def _chunking(name: str, shape: tuple[int, ...]) -> tuple[tuple[int, ...], tuple[int, ...] | None]:
    """(inner chunk shape, shard shape or None) of array ``name``: one shard per array."""

    def whole(chunks: tuple[int, ...]) -> tuple[int, ...]:
        return tuple(-(-max(s, 1) // c) * c for s, c in zip(shape, chunks, strict=True))

    if name == "signals":
        chunks: tuple[int, ...] = (1, min(SIGNAL_CHUNK_SAMPLES, max(shape[1], 1)))
    elif name == "image":
        chunks = (1, *(min(IMAGE_CHUNK, max(s, 1)) for s in shape[1:]))
    elif name in ("volume", "mask"):
        lead = (1,) if name == "volume" else ()
        chunks = (*lead, *(min(VOLUME_CHUNK, max(s, 1)) for s in shape[len(lead) :]))
    else:  # small label and index arrays: one chunk, no shard
        return tuple(max(s, 1) for s in shape), None
    return chunks, whole(chunks)


class Store:
    """A medscale store at ``location`` (a local path or an fsspec URL such as ``s3://b/x``).

    Open an existing one with ``Store(location)``; make a new one with `Store.create`.
    """

    def __init__(self, location: str | Path, *, read_only: bool = False) -> None:
        self.location = str(location)
        self.read_only = read_only
        self._fs, self._root = fsspec.core.url_to_fs(self.location)
        attrs = self._read_root_attributes()
        if attrs is None:
            raise StoreError(
                f"{self.location} is not a medscale store (no zarr.json with "
                f"'{STORE_ATTRIBUTE}' attributes); create one with `medscale ingest` "
                "or Store.create"
            )
        version = attrs.get("layout_version")
        if version == 1:
            raise StoreVersionError(
                f"{self.location}: store layout version 1 (sleep only) is not read by medscale "
                f"{__version__}; migrate it in place with `medscale store migrate "
                f"{self.location}` (or medscale.store.migrate_store), then open it again"
            )
        if version not in KNOWN_LAYOUT_VERSIONS:
            raise StoreVersionError(
                f"{self.location}: store layout version {version!r} is not known to medscale "
                f"{__version__} (it reads versions {list(KNOWN_LAYOUT_VERSIONS)}); "
                "upgrade medscale or re-ingest into a new store"
            )
        self.layout_version: int = version
        self.attributes: dict[str, Any] = attrs
        self.task = Task.from_json(attrs.get("task") or {}, f"{self.location} task")

    # -- creation ---------------------------------------------------------------------------

    @classmethod
    def create(
        cls, location: str | Path, *, task: Task | None = None, exist_ok: bool = True
    ) -> Store:
        """Create an empty store for ``task``, or open the store already there when
        ``exist_ok`` (its task must then be ``task``, when one is given).

        A location that holds anything other than a medscale store is refused.
        """
        location = str(location)
        fs, root = fsspec.core.url_to_fs(location)
        if fs.exists(root):
            if fs.isfile(root):
                raise StoreError(f"{location} is a file, not a store folder")
            entries = [p.rstrip("/").rsplit("/", 1)[-1] for p in fs.ls(root, detail=False)]
            # A create killed mid-write leaves at most a bare zarr.json: finish that create.
            if entries and not (entries == ["zarr.json"] and cls._is_bare_group(fs, root)):
                store = cls(location)  # raises StoreError when it is something else
                if not exist_ok:
                    raise StoreError(f"{location} already holds a medscale store")
                if task is not None and store.task != task:
                    raise StoreError(
                        f"{location} holds task {store.task.name!r}, not {task.name!r}; a store "
                        "serves one task: use another store for this one"
                    )
                return store
        if task is None:
            raise StoreError(f"{location}: a new store needs its task (Store.create(task=...))")
        attributes = {
            STORE_ATTRIBUTE: {
                "layout_version": LAYOUT_VERSION,
                "created_by": f"medscale {__version__}",
                "task": task.to_json(),
            }
        }
        # One write of zarr.json, attributes included: no window with a group but no version.
        zarr.create_group(cls._zarr_store_for(location), attributes=attributes, overwrite=True)
        return cls(location)

    @staticmethod
    def _is_bare_group(fs: fsspec.AbstractFileSystem, root: str) -> bool:
        try:
            meta = json.loads(fs.cat_file(f"{root}/zarr.json"))
        except (ValueError, OSError):
            return True  # an unreadable, half-written zarr.json
        return isinstance(meta, dict) and STORE_ATTRIBUTE not in meta.get("attributes", {})

    @staticmethod
    def _zarr_store_for(location: str, read_only: bool = False) -> LocalStore | FsspecStore:
        if _is_url(location):
            return FsspecStore.from_url(location, read_only=read_only)
        return LocalStore(location.removeprefix("file://"), read_only=read_only)

    def _read_root_attributes(self) -> dict[str, Any] | None:
        path = f"{self._root}/zarr.json"
        if not self._fs.isfile(path):
            return None
        try:
            meta = json.loads(self._fs.cat_file(path))
        except (ValueError, OSError):
            return None
        attrs = meta.get("attributes", {}).get(STORE_ATTRIBUTE)
        return attrs if isinstance(attrs, dict) else None

    # -- paths ------------------------------------------------------------------------------

    def _commit_path(self, dataset: str, recording_id: str) -> str:
        return f"{self._root}/commits/{dataset}/{recording_id}.json"

    @staticmethod
    def _group_path(dataset: str, recording_id: str) -> str:
        return f"recordings/{dataset}/{recording_id}"

    def array_folder(self, info: RecordingInfo, name: str) -> str | None:
        """The folder of a record's array on a local disk, or None for a URL store."""
        if _is_url(self.location):
            return None
        root = self.location.removeprefix("file://")
        return f"{root}/{self._group_path(info.dataset, info.recording_id)}/{name}"

    # -- writing ----------------------------------------------------------------------------

    def _check_record(self, record: Record) -> tuple[int, np.ndarray | None, tuple[int, ...]]:
        """Refuse a record that does not fit the task; return (segments, class index entries,
        class offsets)."""
        task, where = self.task, f"{record.dataset}/{record.recording_id}"
        needed = [task.input_kind, task.label_array]
        missing = [n for n in needed if n not in record.arrays]
        other = sorted(set(record.arrays) - set(needed))
        if other or missing:
            raise StoreError(
                f"{where}: task {task.name!r} stores exactly arrays {needed}; missing "
                f"{missing}, not of this task {other} (derived arrays {list(DERIVED_ARRAYS)} "
                "are the store's to write)"
            )
        for name, data in record.arrays.items():
            if data.ndim != len(ARRAY_DIMS[name]):
                raise StoreError(
                    f"{where}: array {name!r} has shape {data.shape}; expected dimensions "
                    f"{ARRAY_DIMS[name]}"
                )
        data = record.arrays[task.input_kind]
        if data.shape[0] != len(record.channels):
            raise StoreError(
                f"{where}: {task.input_kind} has {data.shape[0]} channels, the channel table "
                f"{len(record.channels)}"
            )
        labels = record.arrays[task.label_array]
        k = task.n_outputs
        if task.segmented:
            if record.sfreq_hz is None or record.segment_s != task.segment_s:
                raise StoreError(
                    f"{where}: signals need sfreq_hz and segment_s = {task.segment_s} s "
                    f"(task {task.name!r}), got {record.sfreq_hz} Hz and {record.segment_s} s"
                )
            if data.dtype != np.int16:
                raise StoreError(f"{where}: signals must be int16 (channel, time)")
            n_segments = int(data.shape[1] // round(record.sfreq_hz * record.segment_s))
            if task.label_kind == "segment_classes":
                in_range = not labels.size or -1 <= labels.min() <= labels.max() < k
                if len(labels) != n_segments or not in_range:
                    raise StoreError(
                        f"{where}: segment_labels must hold {n_segments} codes in -1..{k - 1} "
                        f"(one per {task.segment_s}-s segment); got {len(labels)}"
                    )
                per_segment = labels
            else:
                bad = labels.size and not (1 <= labels[:, 3].min() <= labels[:, 3].max() < k)
                if labels.shape[1:] != (4,) or bad:
                    raise StoreError(
                        f"{where}: events must be (n, 4) onset_s, offset_s, channel, class with "
                        f"classes in 1..{k - 1}"
                    )
                per_segment = event_segments(labels, n_segments, task.segment_s)
            entries, offsets = class_index(per_segment, k)
            return n_segments, entries, offsets
        if task.label_kind == "image_multilabel":
            if labels.shape != (k,) or not np.isin(labels, (0, 1)).all():
                raise StoreError(f"{where}: image_labels must be {k} values of 0 or 1")
            return 0, None, ()
        in_range = not labels.size or 0 <= labels.min() <= labels.max() < k
        if labels.shape != data.shape[1:] or not in_range:
            raise StoreError(
                f"{where}: mask must be {data.shape[1:]} (the volume's spatial shape) with "
                f"classes in 0..{k - 1}; got shape {labels.shape}"
            )
        entries, offsets = class_voxels(labels, k)
        return 0, entries, offsets

    def _class_counts(self, record: Record, offsets: tuple[int, ...]) -> dict[str, int]:
        task = self.task
        if task.label_kind == "image_multilabel":
            labels = record.arrays["image_labels"]
            return {c: int(labels[i]) for i, c in enumerate(task.class_names)}
        counts = {c: offsets[i + 1] - offsets[i] for i, c in enumerate(task.class_names)}
        if task.label_kind == "segment_classes":
            counts["UNKNOWN"] = int((record.arrays["segment_labels"] < 0).sum())
        if task.label_kind == "voxel_mask":  # sampled coordinates, not all voxels: count them
            mask = record.arrays["mask"]
            counts = {c: int((mask == i).sum()) for i, c in enumerate(task.class_names)}
        return counts

    def write_record(self, record: Record) -> RecordingInfo:
        """Write one record and commit it; replaces any earlier version of it."""
        if self.read_only:
            raise StoreError(f"{self.location} is open read-only")
        n_segments, entries, offsets = self._check_record(record)
        self.remove_recording(record.dataset, record.recording_id)
        root = zarr.open_group(self._zarr_store_for(self.location), mode="a")
        group = root.require_group(self._group_path(record.dataset, record.recording_id))
        arrays = dict(record.arrays)
        if entries is not None:
            name = "class_voxels" if self.task.label_kind == "voxel_mask" else "class_segments"
            arrays[name] = entries
        infos = {}
        for name, data in arrays.items():
            dims = ARRAY_DIMS[name]
            chunks, shards = _chunking(name, data.shape)
            array = group.create_array(
                name,
                shape=data.shape,
                dtype=data.dtype,
                chunks=chunks,
                shards=shards,
                compressors=_CODECS if shards else "auto",
                fill_value=0,
                dimension_names=dims,
                overwrite=True,
            )
            if data.size:
                array[...] = data
            infos[name] = ArrayInfo(dims, tuple(int(s) for s in data.shape), data.dtype.str)
        info = RecordingInfo(
            dataset=record.dataset,
            recording_id=record.recording_id,
            subject=record.subject,
            session=record.session,
            arrays=infos,
            channels=tuple(record.channels),
            sfreq_hz=record.sfreq_hz,
            segment_s=record.segment_s,
            n_segments=n_segments,
            spacing=record.spacing,
            class_counts=self._class_counts(record, offsets),
            class_offsets=offsets,
            content_hash=content_hash(record, self.task),
            source_hash=record.source_hash,
            config_hash=record.config_hash,
            synthetic=record.synthetic,
            metadata=record.metadata,
        )
        self._write_commit(info)
        return info

    def _write_commit(self, info: RecordingInfo) -> None:
        path = self._commit_path(info.dataset, info.recording_id)
        payload = json.dumps(info.to_json(), indent=1, sort_keys=True).encode()
        replace_file(self._fs, path, payload, atomic_put=_is_url(self.location))

    def remove_recording(self, dataset: str, recording_id: str) -> None:
        """Uncommit first, then delete the arrays, so no reader sees a half-deleted record."""
        commit = self._commit_path(dataset, recording_id)
        if self._fs.exists(commit):
            self._fs.rm(commit)
        group = f"{self._root}/{self._group_path(dataset, recording_id)}"
        if self._fs.exists(group):
            self._fs.rm(group, recursive=True)

    # -- reading ----------------------------------------------------------------------------

    def datasets(self) -> list[str]:
        base = f"{self._root}/commits"
        if not self._fs.exists(base):
            return []
        return sorted(p.rstrip("/").rsplit("/", 1)[-1] for p in self._fs.ls(base, detail=False))

    def recordings(self, dataset: str | None = None) -> list[RecordingInfo]:
        """Committed records, sorted by dataset then record id."""
        out = []
        for ds in [dataset] if dataset else self.datasets():
            base = f"{self._root}/commits/{ds}"
            if not self._fs.exists(base):
                continue
            for path in sorted(self._fs.ls(base, detail=False)):
                if path.endswith(".json"):
                    out.append(RecordingInfo.from_json(json.loads(self._fs.cat_file(path))))
        return out

    def recording(self, dataset: str, recording_id: str) -> RecordingInfo | None:
        """The commit record of one record, or None when it is not (fully) stored."""
        path = self._commit_path(dataset, recording_id)
        if not self._fs.isfile(path):
            return None
        return RecordingInfo.from_json(json.loads(self._fs.cat_file(path)))

    def open_array(self, info: RecordingInfo, name: str) -> zarr.Array:
        """A record's array through zarr-python (any store; see `LocalArrayReader` for speed)."""
        if name not in info.arrays:
            raise StoreError(f"{info.key}: no array {name!r}; it stores {sorted(info.arrays)}")
        store = self._zarr_store_for(self.location, read_only=True)
        return zarr.open_array(
            store, path=f"{self._group_path(info.dataset, info.recording_id)}/{name}"
        )

    def read_array(
        self, info: RecordingInfo, name: str, box: tuple[slice, ...] | None = None
    ) -> np.ndarray:
        """Stored values of array ``name`` (all of it, or the N-D ``box`` of slices)."""
        return np.asarray(self.open_array(info, name)[box if box is not None else ...])

    def read_signals(
        self,
        info: RecordingInfo,
        channels: Sequence[str] | None = None,
        start: int = 0,
        stop: int | None = None,
    ) -> np.ndarray:
        """Samples ``start:stop`` of ``channels`` in physical units (float32, µV for voltages).

        Only the chunks that overlap the window are read, never the whole recording.
        """
        names = info.channel_names
        wanted = list(channels) if channels is not None else names
        missing = [c for c in wanted if c not in names]
        if missing:
            raise StoreError(f"{info.key}: no channels {missing}; stored channels are {names}")
        rows = [names.index(c) for c in wanted]
        stop = info.n_samples if stop is None else stop
        if not 0 <= start <= stop <= info.n_samples:
            raise StoreError(
                f"{info.key}: window {start}:{stop} is outside 0:{info.n_samples} samples"
            )
        array = self.open_array(info, "signals")
        if not rows:
            raw = np.empty((0, stop - start), dtype=np.int16)
        elif rows == list(range(rows[0], rows[0] + len(rows))):
            raw = array[rows[0] : rows[0] + len(rows), start:stop]
        else:  # zarr's orthogonal (list) indexing is ~5x slower than one basic slice per row
            raw = np.stack([array[r, start:stop] for r in rows])
        scale = np.array([info.channels[r].scale for r in rows], dtype=np.float32)
        return raw.astype(np.float32) * scale[:, None]

    def read_segment_labels(self, info: RecordingInfo) -> np.ndarray:
        """Class code per segment (sleep: the hypnogram), unknown = -1; for event tasks, the
        segments the events cover (`medscale.tasks.event_segments`)."""
        if self.task.label_kind == "time_events":
            assert info.segment_s is not None
            return event_segments(self.read_array(info, "events"), info.n_segments, info.segment_s)
        return self.read_array(info, "segment_labels").astype(np.int8, copy=False)

    # -- whole-store facts ------------------------------------------------------------------

    def content_hash(self) -> str:
        """sha256 over every committed record's key and content hash: cite it in runs."""
        h = hashlib.sha256(f"layout={self.layout_version}\n".encode())
        for info in self.recordings():
            h.update(f"{info.key} {info.content_hash}\n".encode())
        return h.hexdigest()

    def size_bytes(self, dataset: str | None = None) -> int:
        base = f"{self._root}/recordings" + (f"/{dataset}" if dataset else "")
        if not self._fs.exists(base):
            return 0
        return int(sum(self._fs.du(base, total=False).values()))

    def reports_path(self) -> str:
        return f"{self._root}/reports"

    @property
    def fs(self) -> fsspec.AbstractFileSystem:
        return self._fs
