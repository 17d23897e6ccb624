"""SYNTHETIC toy stores for the tasks beyond sleep: events on signals, multi-label images and
segmented volumes. Small enough for tests; every record is marked synthetic.

Each builder writes its records with `medscale.store.Store.write_record`, the same call any
new task's ingest uses: nothing here knows sleep. The tasks are `medscale.tasks.toy`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from medscale.store import ChannelInfo, Record, Store
from medscale.tasks import TOY_EVENTS, TOY_IMAGES, TOY_VOLUMES

_NOTE = {"note": "SYNTHETIC toy data (medscale.synth.toy)"}


def _channel(name: str, kind: str, values: np.ndarray, scale: float, rate: float) -> ChannelInfo:
    q1, median, q3 = np.percentile(values * scale, [25, 50, 75])
    return ChannelInfo(name, kind, name, rate, "a.u.", scale, float(median), float(q3 - q1))


def _record(key: int, arrays: dict, channels: list[ChannelInfo], **geometry) -> Record:
    rid = f"toy-{key:03d}"
    return Record(
        "toy", rid, f"s{key}", "", arrays, channels, "", "", True, dict(_NOTE), **geometry
    )


def write_toy_event_store(
    location: str | Path,
    n_records: int = 4,
    *,
    seed: int = 0,
    duration_s: float = 120.0,
    sfreq_hz: float = 64.0,
    n_channels: int = 2,
) -> Store:
    """``toy_events``: noise with 10-Hz bursts of 3 to 7 s on one channel (the events)."""
    store = Store.create(location, task=TOY_EVENTS)
    rng = np.random.default_rng(seed)
    n = round(duration_s * sfreq_hz)
    t = np.arange(n) / sfreq_hz
    for k in range(n_records):
        x = rng.normal(0, 1.0, size=(n_channels, n))
        events = []
        for onset in np.sort(rng.uniform(0, duration_s - 8, size=3)):
            offset, channel = onset + rng.uniform(3, 7), int(rng.integers(n_channels))
            span = (t >= onset) & (t < offset)
            x[channel, span] += 4 * np.sin(2 * np.pi * 10 * t[span])
            events.append((onset, offset, channel, 1))
        codes = np.round(x / 0.01).astype(np.int16)
        channels = [_channel(f"S{c}", "SIG", codes[c], 0.01, sfreq_hz) for c in range(n_channels)]
        arrays = {"signals": codes, "events": np.array(events, dtype=np.float64)}
        segment_s = TOY_EVENTS.segment_s
        store.write_record(_record(k, arrays, channels, sfreq_hz=sfreq_hz, segment_s=segment_s))
    return store


def _shapes(size: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A noisy image and which of square, disc and bar (`TOY_IMAGES` classes) it shows."""
    image = rng.normal(0.2, 0.05, size=(size, size))
    present = rng.random(3) < 0.5
    yy, xx = np.mgrid[:size, :size]
    if present[0]:
        y, x, h = *rng.integers(2, size // 2, size=2), size // 4
        image[y : y + h, x : x + h] = 0.9
    if present[1]:
        cy, cx, r = *rng.integers(size // 4, 3 * size // 4, size=2), size / 6
        image[(yy - cy) ** 2 + (xx - cx) ** 2 <= r * r] = 0.7
    if present[2]:
        row = int(rng.integers(1, size - 3))
        image[row : row + 2, 2 : size - 2] = 1.0
    return image, present.astype(np.uint8)


def write_toy_image_store(
    location: str | Path, n_images: int = 24, *, seed: int = 0, size: int = 32
) -> Store:
    """``toy_images``: one-channel uint8 images with any of three shapes (multi-label)."""
    store = Store.create(location, task=TOY_IMAGES)
    rng = np.random.default_rng(seed)
    for k in range(n_images):
        image, labels = _shapes(size, rng)
        codes = np.clip(np.round(image * 255), 0, 255).astype(np.uint8)[None]
        channels = [_channel("gray", "INTENSITY", codes[0], 1 / 255, 0.0)]
        arrays = {"image": codes, "image_labels": labels}
        store.write_record(_record(k, arrays, channels, spacing=(1.0, 1.0)))
    return store


def write_toy_volume_store(
    location: str | Path, n_volumes: int = 3, *, seed: int = 0, shape=(24, 40, 40)
) -> Store:
    """``toy_volumes``: int16 noise volumes with one or two bright balls, and their masks."""
    store = Store.create(location, task=TOY_VOLUMES)
    rng = np.random.default_rng(seed)
    zz, yy, xx = np.mgrid[: shape[0], : shape[1], : shape[2]]
    for k in range(n_volumes):
        mask = np.zeros(shape, dtype=np.uint8)
        for _ in range(int(rng.integers(1, 3))):
            centre = [rng.integers(4, s - 4) for s in shape]
            r2 = rng.uniform(2, 4) ** 2
            mask[(zz - centre[0]) ** 2 + (yy - centre[1]) ** 2 + (xx - centre[2]) ** 2 <= r2] = 1
        volume = (rng.normal(100, 20, size=shape) + 300.0 * mask).astype(np.int16)[None]
        channels = [_channel("T1", "MRI", volume[0], 1.0, 0.0)]
        arrays = {"volume": volume, "mask": mask}
        store.write_record(_record(k, arrays, channels, spacing=(1.0, 1.0, 1.0)))
    return store
