"""`ArrayReader`: one array of a process's open records, read by byte range, kept open between
samples (signals for windows; images, volumes and masks for the other samplers).

Handles are opened lazily, on the first sample that needs a recording, and kept in an LRU of
at most ``max_open`` recordings (each holds one file descriptor and its shard index). After a
fork the child starts with an empty set, so DataLoader workers never share a parent's handles.
Stores at a URL, or arrays in a layout the fast reader refuses, go through zarr-python.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Sequence

import numpy as np
import zarr

from medscale.data.index import RecordIndex, WindowIndex
from medscale.store.shard_reader import LocalArrayReader, UnsupportedLayoutError


def local_array_folder(location: str, dataset: str, recording_id: str, name: str) -> str | None:
    """The folder of a record's array in a store on a local disk, or None for a URL store."""
    if "://" in location and not location.startswith("file://"):
        return None
    return f"{location.removeprefix('file://')}/recordings/{dataset}/{recording_id}/{name}"


class ArrayReader:
    """Stored values of array ``array`` of the records of ``index``: rows of a 2-D array
    (`read`) or an N-D box (`read_box`).

    Not thread-safe; make one per process (the data sets here do so lazily).
    """

    def __init__(
        self,
        store_location: str,
        index: WindowIndex | RecordIndex,
        *,
        array: str = "signals",
        max_open: int = 256,
        cache_bytes: int = 0,
    ) -> None:
        self.store_location = store_location
        self.index = index
        self.array = array
        self.max_open = max_open
        self.cache_bytes = cache_bytes
        self._pid = os.getpid()
        self._open: OrderedDict[int, LocalArrayReader | zarr.Array] = OrderedDict()
        self.opened = 0  # how many times a recording was opened: tests check it stays low

    def _check_fork(self) -> None:
        if os.getpid() != self._pid:  # a forked child: drop the parent's handles and caches
            self._open = OrderedDict()
            self._pid = os.getpid()
            self.opened = 0

    def _reader(self, recording: int) -> LocalArrayReader | zarr.Array:
        if recording in self._open:
            self._open.move_to_end(recording)
            return self._open[recording]
        dataset, recording_id = self.index.key(recording).split("/", 1)
        folder = local_array_folder(self.store_location, dataset, recording_id, self.array)
        reader: LocalArrayReader | zarr.Array | None = None
        if folder is not None:
            try:
                reader = LocalArrayReader(folder, cache_bytes=self.cache_bytes)
            except UnsupportedLayoutError:
                reader = None
        if reader is None:  # a URL store or a layout the fast path refuses: zarr-python, slower
            location = self.store_location.rstrip("/")
            url = f"{location}/recordings/{dataset}/{recording_id}/{self.array}"
            reader = zarr.open_array(url, mode="r")
        self.opened += 1
        self._open[recording] = reader
        while len(self._open) > self.max_open:
            _, old = self._open.popitem(last=False)
            if isinstance(old, LocalArrayReader):
                old.close()
        return reader

    def read(self, recording: int, rows: Sequence[int], start: int, stop: int) -> np.ndarray:
        """``array[rows, start:stop]`` of a 2-D array (signals: int16 codes)."""
        self._check_fork()
        reader = self._reader(recording)
        if isinstance(reader, LocalArrayReader):
            return reader.read(list(rows), start, stop)
        if not rows:
            return np.empty((0, stop - start), dtype=np.int16)
        return np.stack([np.asarray(reader[r, start:stop]) for r in rows])

    def read_box(self, recording: int, start: tuple[int, ...], stop: tuple[int, ...]) -> np.ndarray:
        """``array[start[0]:stop[0], ...]``: only the chunks that overlap the box are read."""
        self._check_fork()
        reader = self._reader(recording)
        if isinstance(reader, LocalArrayReader):
            return reader.read_box(start, stop)
        return np.asarray(reader[tuple(slice(a, b) for a, b in zip(start, stop, strict=True))])

    def close(self) -> None:
        for reader in self._open.values():
            if isinstance(reader, LocalArrayReader):
                reader.close()
        self._open.clear()

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_open"] = OrderedDict()  # handles never travel
        return state
