"""Commit records of recordings that exist only in memory, for index and sampler tests."""

from __future__ import annotations

from collections.abc import Sequence

from medscale.store.layout import ArrayInfo, ChannelInfo, RecordingInfo


def fake_info(
    k: int,
    n_segments: int,
    dataset: str = "d",
    channels: Sequence[tuple[str, str]] = (("EEG 0", "EEG"), ("EOG 1", "EOG")),
) -> RecordingInfo:
    """Recording ``r{k:05d}`` of subject ``s{k}``: 128 Hz, 30-s segments, ``channels`` as
    (name, type)."""
    n_samples = n_segments * 30 * 128
    return RecordingInfo(
        dataset=dataset,
        recording_id=f"r{k:05d}",
        subject=f"s{k}",
        session="1",
        arrays={
            "signals": ArrayInfo(("channel", "time"), (len(channels), n_samples), "<i2"),
            "segment_labels": ArrayInfo(("segment",), (n_segments,), "|i1"),
        },
        channels=tuple(
            ChannelInfo(name, kind, name, 128.0, "uV", 0.1, 0.0, 10.0) for name, kind in channels
        ),
        sfreq_hz=128.0,
        segment_s=30.0,
        n_segments=n_segments,
        spacing=None,
        class_counts={},
        class_offsets=(0,) * 6,
        content_hash="",
        source_hash="",
        config_hash="",
        synthetic=True,
    )
