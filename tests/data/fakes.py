"""Commit records of recordings that exist only in memory, for index and sampler tests."""

from __future__ import annotations

from collections.abc import Sequence

from medscale.store.layout import ChannelInfo, RecordingInfo


def fake_info(
    k: int,
    n_epochs: int,
    dataset: str = "d",
    channels: Sequence[tuple[str, str]] = (("EEG 0", "EEG"), ("EOG 1", "EOG")),
) -> RecordingInfo:
    """Recording ``r{k:05d}`` of subject ``s{k}``: 128 Hz, ``channels`` as (name, type)."""
    return RecordingInfo(
        dataset=dataset,
        recording_id=f"r{k:05d}",
        subject=f"s{k}",
        session="1",
        sfreq_hz=128.0,
        epoch_length_s=30.0,
        n_epochs=n_epochs,
        channels=tuple(
            ChannelInfo(name, kind, name, 128.0, "uV", 0.1, 0.0, 10.0) for name, kind in channels
        ),
        stage_counts={},
        stage_offsets=(0,) * 6,
        content_hash="",
        source_hash="",
        config_hash="",
        synthetic=True,
    )
