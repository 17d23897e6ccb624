"""`Store`: the standard chunked store of many datasets, on a local disk or any fsspec URL.

Contract:
- Writers of *different* recordings may run in many processes at once without locks: each
  recording lives in its own folder, and shared files are only written by `Store.create`.
- A recording becomes visible only when its commit record is written, after all its arrays.
  A process killed mid-write leaves an uncommitted folder that readers ignore and the next
  write of that recording replaces.
- Readers refuse a store whose layout version they do not know.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
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
from medscale.io.stages import SCORED_STAGES, STAGE_NAMES
from medscale.store.layout import (
    KNOWN_LAYOUT_VERSIONS,
    LAYOUT_VERSION,
    STORE_ATTRIBUTE,
    ChannelInfo,
    RecordingInfo,
)

# One inner chunk is 8 min at 128 Hz: a 35-epoch window touches 3 to 4 chunks per channel.
SIGNAL_CHUNK_SAMPLES = 61440
# Measured on EEG-like int16 (docs/design/store.md): smaller than zstd-3 and ~4x faster to decode.
_SIGNAL_CODECS = (BloscCodec(cname="lz4", clevel=5, shuffle="bitshuffle"),)


@dataclass
class RecordingArrays:
    """What a writer hands to `Store.write_recording`: the arrays and their description."""

    dataset: str
    recording_id: str
    subject: str
    session: str
    sfreq_hz: float
    epoch_length_s: float
    signals: np.ndarray  # int16 (channels, samples)
    hypnogram: np.ndarray  # int8 (epochs,)
    channels: list[ChannelInfo]
    source_hash: str
    config_hash: str
    synthetic: bool
    metadata: dict[str, Any]


def _is_url(location: str) -> bool:
    return "://" in location and not location.startswith("file://")


def stage_index(hypnogram: np.ndarray) -> tuple[np.ndarray, tuple[int, ...]]:
    """Epoch indices grouped by scored stage, and the offsets that slice them per stage."""
    scored = np.flatnonzero(hypnogram >= 0)
    order = np.argsort(hypnogram[scored], kind="stable")
    epochs = scored[order].astype(np.int32)
    counts = np.bincount(hypnogram[scored], minlength=len(SCORED_STAGES))[: len(SCORED_STAGES)]
    offsets = (0, *np.cumsum(counts).tolist())
    return epochs, tuple(int(o) for o in offsets)


def content_hash(arrays: RecordingArrays) -> str:
    """sha256 over the stored bytes and the channel table: equal hashes mean equal data."""
    h = hashlib.sha256()
    h.update(np.ascontiguousarray(arrays.signals).tobytes())
    h.update(np.ascontiguousarray(arrays.hypnogram).tobytes())
    h.update(json.dumps([c.__dict__ for c in arrays.channels], sort_keys=True).encode())
    h.update(f"{arrays.sfreq_hz}/{arrays.epoch_length_s}".encode())
    return h.hexdigest()


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
        if version not in KNOWN_LAYOUT_VERSIONS:
            raise StoreVersionError(
                f"{self.location}: store layout version {version!r} is not known to medscale "
                f"{__version__} (it reads versions {list(KNOWN_LAYOUT_VERSIONS)}); "
                "upgrade medscale or re-ingest into a new store"
            )
        self.layout_version: int = version
        self.attributes: dict[str, Any] = attrs
        self._open_arrays: dict[str, zarr.Array] = {}  # opening costs ~15 ms: do it once

    # -- creation ---------------------------------------------------------------------------

    @classmethod
    def create(cls, location: str | Path, *, exist_ok: bool = True) -> Store:
        """Create an empty store, or open the store already there when ``exist_ok``.

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
                return store
        attributes = {
            STORE_ATTRIBUTE: {
                "layout_version": LAYOUT_VERSION,
                "created_by": f"medscale {__version__}",
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

    # -- writing ----------------------------------------------------------------------------

    def write_recording(self, arrays: RecordingArrays) -> RecordingInfo:
        """Write one recording and commit it; replaces any earlier version of it."""
        if self.read_only:
            raise StoreError(f"{self.location} is open read-only")
        if arrays.signals.dtype != np.int16 or arrays.signals.ndim != 2:
            raise StoreError(f"{arrays.recording_id}: signals must be int16 (channels, samples)")
        self.remove_recording(arrays.dataset, arrays.recording_id)
        epochs, offsets = stage_index(arrays.hypnogram)
        root = zarr.open_group(self._zarr_store_for(self.location), mode="a")
        group = root.require_group(self._group_path(arrays.dataset, arrays.recording_id))
        n_channels, n_samples = arrays.signals.shape
        chunk = min(SIGNAL_CHUNK_SAMPLES, max(n_samples, 1))
        signals = group.create_array(
            "signals",
            shape=arrays.signals.shape,
            dtype="int16",
            chunks=(1, chunk),
            shards=(n_channels, -(-max(n_samples, 1) // chunk) * chunk),  # one shard file
            compressors=_SIGNAL_CODECS,
            fill_value=0,
            overwrite=True,
        )
        signals[:] = arrays.signals
        group.create_array("hypnogram", data=arrays.hypnogram.astype(np.int8), overwrite=True)
        group.create_array("stage_epochs", data=epochs, overwrite=True)
        info = RecordingInfo(
            dataset=arrays.dataset,
            recording_id=arrays.recording_id,
            subject=arrays.subject,
            session=arrays.session,
            sfreq_hz=arrays.sfreq_hz,
            epoch_length_s=arrays.epoch_length_s,
            n_epochs=len(arrays.hypnogram),
            channels=tuple(arrays.channels),
            stage_counts={
                STAGE_NAMES[s]: offsets[i + 1] - offsets[i] for i, s in enumerate(SCORED_STAGES)
            }
            | {"UNKNOWN": int((arrays.hypnogram < 0).sum())},
            stage_offsets=offsets,
            content_hash=content_hash(arrays),
            source_hash=arrays.source_hash,
            config_hash=arrays.config_hash,
            synthetic=arrays.synthetic,
            metadata=arrays.metadata,
        )
        self._write_commit(info)
        return info

    def _write_commit(self, info: RecordingInfo) -> None:
        path = self._commit_path(info.dataset, info.recording_id)
        payload = json.dumps(info.to_json(), indent=1, sort_keys=True).encode()
        self._fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
        if _is_url(self.location):
            self._fs.pipe_file(path, payload)  # one object PUT is atomic on object stores
            return
        write_bytes_atomic(path, payload)

    def remove_recording(self, dataset: str, recording_id: str) -> None:
        """Uncommit first, then delete the arrays, so no reader sees a half-deleted recording."""
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
        """Committed recordings, sorted by dataset then recording id."""
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
        """The commit record of one recording, or None when it is not (fully) stored."""
        path = self._commit_path(dataset, recording_id)
        if not self._fs.isfile(path):
            return None
        return RecordingInfo.from_json(json.loads(self._fs.cat_file(path)))

    def _array(self, info: RecordingInfo, name: str) -> zarr.Array:
        store = self._zarr_store_for(self.location, read_only=True)
        return zarr.open_array(
            store, path=f"{self._group_path(info.dataset, info.recording_id)}/{name}"
        )

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
        array = self._array(info, "signals")
        if not rows:
            raw = np.empty((0, stop - start), dtype=np.int16)
        elif rows == list(range(rows[0], rows[0] + len(rows))):
            raw = array[rows[0] : rows[0] + len(rows), start:stop]
        else:  # zarr's orthogonal (list) indexing is ~5x slower than one basic slice per row
            raw = np.stack([array[r, start:stop] for r in rows])
        scale = np.array([info.channels[r].scale for r in rows], dtype=np.float32)
        return raw.astype(np.float32) * scale[:, None]

    def read_hypnogram(self, info: RecordingInfo) -> np.ndarray:
        return np.asarray(self._array(info, "hypnogram")[:], dtype=np.int8)

    def read_stage_epochs(self, info: RecordingInfo) -> np.ndarray:
        return np.asarray(self._array(info, "stage_epochs")[:], dtype=np.int32)

    # -- whole-store facts ------------------------------------------------------------------

    def content_hash(self) -> str:
        """sha256 over every committed recording's key and content hash: cite it in runs."""
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
