"""The byte-range reader returns exactly what zarr-python returns, and refuses what it
does not understand."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import zarr
from hypothesis import given, settings
from hypothesis import strategies as st
from zarr.codecs import BloscCodec

from medscale.errors import StoreError
from medscale.ingest import ingest
from medscale.store.shard_reader import LocalArrayReader, UnsupportedLayoutError
from medscale.synth import synthesize_nights

N_CHANNELS, N_SAMPLES, CHUNK = 5, 10_000, 1_536


@pytest.fixture(scope="module")
def sharded(tmp_path_factory):
    """A store-like sharded int16 array with a partial last chunk and one empty chunk."""
    path = tmp_path_factory.mktemp("shard") / "signals"
    rng = np.random.default_rng(0)
    data = rng.integers(-3000, 3000, size=(N_CHANNELS, N_SAMPLES), dtype=np.int16)
    data[2, CHUNK : 2 * CHUNK] = 0  # all fill value: zarr leaves this chunk out of the shard
    array = zarr.create_array(
        str(path),
        shape=data.shape,
        dtype="int16",
        chunks=(1, CHUNK),
        shards=(N_CHANNELS, -(-N_SAMPLES // CHUNK) * CHUNK),
        compressors=(BloscCodec(cname="lz4", clevel=5, shuffle="bitshuffle"),),
        fill_value=0,
    )
    array[:] = data
    return path, data


def test_empty_chunk_is_absent_from_the_shard_index(sharded):
    path, _ = sharded
    with LocalArrayReader(path) as reader:
        reader.read([0], 0, 1)
        fd = reader._fd((0, 0))
        index = reader._shard_index((0, 0), fd)
        assert (index[2, 1] == np.uint64(2**64 - 1)).all()


@settings(max_examples=60, deadline=None)
@given(
    rows=st.lists(st.integers(0, N_CHANNELS - 1), min_size=1, max_size=4),
    start=st.integers(0, N_SAMPLES),
    length=st.integers(0, 4 * CHUNK),
    cache=st.sampled_from([0, 200_000]),
)
def test_random_windows_equal_zarr(sharded, rows, start, length, cache):
    path, data = sharded
    stop = min(N_SAMPLES, start + length)
    reference = zarr.open_array(str(path), mode="r")
    expected = np.stack([reference[r, start:stop] for r in rows])
    with LocalArrayReader(path, cache_bytes=cache) as reader:
        got = reader.read(rows, start, stop)
        again = reader.read(rows, start, stop)  # second read may come from the cache
    assert got.dtype == np.int16
    np.testing.assert_array_equal(got, expected)
    np.testing.assert_array_equal(again, expected)
    np.testing.assert_array_equal(got, data[rows, start:stop])


@pytest.fixture(scope="module")
def one_night_store(tmp_path_factory):
    root = tmp_path_factory.mktemp("one-night")
    synthesize_nights(root / "nights", 1, seed=3, duration_h=0.25, progress=False)
    ingest("synthetic", root / "nights", root / "store", progress=False)
    return root / "store"


def test_store_arrays_read_like_zarr(one_night_store):
    folder = one_night_store / "recordings" / "synthetic" / "synth-000"
    for name in ("signals", "segment_labels", "class_segments"):
        with LocalArrayReader(folder / name) as reader:
            expected = zarr.open_array(str(folder / name), mode="r")[:]
            np.testing.assert_array_equal(reader.read(), expected)


VOLUME_SHAPE, VOLUME_CHUNK = (2, 20, 18, 17), (1, 8, 8, 8)


@pytest.fixture(scope="module")
def volume(tmp_path_factory):
    """A sharded 4-D (channel, z, y, x) float32 array with partial edge chunks and an empty one."""
    path = tmp_path_factory.mktemp("volume") / "volume"
    data = np.random.default_rng(1).normal(size=VOLUME_SHAPE).astype(np.float32)
    data[1, :8, :8, :8] = 0  # all fill value: left out of the shard
    shards = tuple(-(-s // c) * c for s, c in zip(VOLUME_SHAPE, VOLUME_CHUNK, strict=True))
    array = zarr.create_array(
        str(path),
        shape=data.shape,
        dtype="float32",
        chunks=VOLUME_CHUNK,
        shards=shards,
        compressors=(BloscCodec(cname="lz4", clevel=5, shuffle="bitshuffle"),),
        fill_value=0,
    )
    array[:] = data
    return path, data


@settings(max_examples=40, deadline=None)
@given(data=st.data(), cache=st.sampled_from([0, 100_000]))
def test_random_nd_boxes_equal_zarr(volume, data, cache):
    path, values = volume
    start = [data.draw(st.integers(0, n)) for n in VOLUME_SHAPE]
    stop = [data.draw(st.integers(a, n)) for a, n in zip(start, VOLUME_SHAPE, strict=True)]
    box = tuple(slice(a, b) for a, b in zip(start, stop, strict=True))
    with LocalArrayReader(path, cache_bytes=cache) as reader:
        got = reader.read_box(start, stop)
        again = reader.read_box(start, stop)
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, zarr.open_array(str(path), mode="r")[box])
    np.testing.assert_array_equal(again, values[box])


def test_a_box_reads_only_the_chunks_it_overlaps(volume):
    path, values = volume
    with LocalArrayReader(path, cache_bytes=10**7) as reader:
        got = reader.read_box((0, 8, 8, 8), (1, 16, 16, 16))  # exactly one inner chunk
        assert list(reader._cache) == [(0, 1, 1, 1)]
        np.testing.assert_array_equal(got, values[:1, 8:16, 8:16, 8:16])
        with pytest.raises(StoreError, match="outside shape"):
            reader.read_box((0, 0, 0, 0), (1, 21, 1, 1))
        with pytest.raises(StoreError, match="use read_box"):
            reader.read([0], 0, 1)


def test_cache_stays_within_its_bound(sharded):
    path, _ = sharded
    with LocalArrayReader(path, cache_bytes=3 * CHUNK * 2) as reader:
        reader.read([0, 1, 3, 4], 0, N_SAMPLES)
        assert reader._cache_used <= 3 * CHUNK * 2
        assert len(reader._cache) == 3


def test_unknown_codec_is_refused_by_name(sharded, tmp_path):
    path, _ = sharded
    copy = tmp_path / "signals"
    shutil.copytree(path, copy)
    meta = json.loads((copy / "zarr.json").read_text())
    meta["codecs"][0]["configuration"]["codecs"].insert(
        0, {"name": "transpose", "configuration": {"order": [1, 0]}}
    )
    (copy / "zarr.json").write_text(json.dumps(meta))
    with pytest.raises(UnsupportedLayoutError, match="transpose"):
        LocalArrayReader(copy)


def test_corrupt_shard_index_is_reported(sharded, tmp_path):
    path, _ = sharded
    copy = tmp_path / "signals"
    shutil.copytree(path, copy)
    shard = copy / "c" / "0" / "0"
    raw = bytearray(shard.read_bytes())
    raw[-10] ^= 0xFF  # inside the index, before its checksum
    shard.write_bytes(bytes(raw))
    with LocalArrayReader(copy) as reader, pytest.raises(StoreError, match="checksum"):
        reader.read([0], 0, 10)


def test_window_outside_the_array_is_refused(sharded):
    path, _ = sharded
    with LocalArrayReader(path) as reader, pytest.raises(StoreError, match="outside"):
        reader.read([0], 0, N_SAMPLES + 1)
