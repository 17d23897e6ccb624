"""The SYNTHETIC toy stores: written through the generic record writer, labelled synthetic,
their labels consistent with what the signals and pictures hold."""

from __future__ import annotations

import numpy as np

from medscale.store import Store
from medscale.synth import write_toy_event_store, write_toy_image_store, write_toy_volume_store
from medscale.tasks import TOY_EVENTS, TOY_IMAGES, TOY_VOLUMES, event_segments


def test_event_store_marks_bursts_where_the_signal_has_them(tmp_path):
    store = write_toy_event_store(tmp_path / "e", 2, duration_s=60.0)
    assert Store(store.location).task == TOY_EVENTS
    for info in store.recordings():
        assert info.synthetic and "SYNTHETIC" in info.metadata["note"]
        assert info.n_segments == 30 and info.class_counts["burst"] > 0
        events = store.read_array(info, "events")
        x = store.read_signals(info)
        sfreq = info.sfreq_hz
        for onset, offset, channel, code in events:
            inside = x[int(channel), int(onset * sfreq) : int(offset * sfreq)]
            assert code == 1 and inside.std() > 2.0  # the noise alone has a std of 1
        segments = event_segments(events, info.n_segments, info.segment_s)
        np.testing.assert_array_equal(store.read_segment_labels(info), segments)


def test_image_store_labels_match_the_shapes_drawn(tmp_path):
    store = write_toy_image_store(tmp_path / "i", 8)
    assert store.task == TOY_IMAGES
    for info in store.recordings():
        image = store.read_array(info, "image")
        labels = store.read_array(info, "image_labels")
        assert image.shape == (1, 32, 32) and image.dtype == np.uint8
        assert bool(labels[2]) == bool(((image[0] > 245).sum(axis=1) >= 28).any())  # the bar


def test_volume_store_masks_the_bright_balls(tmp_path):
    store = write_toy_volume_store(tmp_path / "v", 2)
    assert store.task == TOY_VOLUMES
    for info in store.recordings():
        volume = store.read_array(info, "volume")[0]
        mask = store.read_array(info, "mask")
        assert mask.any() and volume[mask == 1].mean() > volume[mask == 0].mean() + 200
        assert info.class_counts["ball"] == int(mask.sum())
