"""A recording to predict on, read straight into model input: the funnel's own per-channel
conversion (`encode_channel`: same resampling, quantisation and statistics as ingest) and the
run's load-time processing (`WindowProcessor.scale_codes`), with no store in between, so the
model sees the night exactly as the store would have served it."""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from medscale.data.config import ChannelGroup, DataConfig
from medscale.data.processing import WindowProcessor
from medscale.errors import ChannelError
from medscale.ingest.convert import encode_channel
from medscale.io.signals import list_signal_labels, read_signals
from medscale.predict.channels import select_channels
from medscale.store.layout import ChannelInfo


@dataclass
class Night:
    """The chosen channels of one recording as int16 codes at the model's rate, whole epochs
    from the start, with the statistics ingest would have stored for them."""

    codes: np.ndarray  # (n_channels, n_epochs * samples_per_epoch) int16
    infos: list[ChannelInfo]  # per row of codes: what ingest would store (name, statistics)
    n_epochs: int
    sfreq_hz: float
    epoch_length_s: float
    channels: dict[str, list[tuple[str, str]]]  # group -> (canonical name, source label)
    start_time_of_day: str | None
    warnings: list[str] = field(default_factory=list)

    def combinations(self) -> list[tuple[int, ...]]:
        """Every choice of one row per group, in the order evaluation soft-votes them."""
        rows = {info.name: k for k, info in enumerate(self.infos)}
        per_group = [[rows[name] for name, _ in pairs] for pairs in self.channels.values()]
        return list(itertools.product(*per_group))


def read_night(
    path: str | Path,
    groups: Sequence[ChannelGroup],
    *,
    overrides: dict[str, list[str]] | None = None,
    sfreq_hz: float = 128.0,
    epoch_length_s: float = 30.0,
    reader: str = "auto",
    reader_options: dict[str, Any] | None = None,
) -> Night:
    """Read ``path`` (any format the funnel reads), pick the channels for ``groups`` and
    convert them as ingest does. ``reader_options`` go to the reader (a text signal needs
    ``{"sfreq_hz": ...}``)."""
    path = Path(path)
    options = dict(reader_options or {})
    labels = list_signal_labels(path, reader=reader)
    # A reader that cannot list labels cheaply reads the whole file once, here.
    whole = read_signals(path, reader=reader, **options) if labels is None else None
    chosen = select_channels(whole.labels if whole else labels, groups, overrides, source=str(path))
    wanted = sorted({label for pairs in chosen.values() for _, label in pairs})
    recording = whole or read_signals(path, wanted, reader=reader, **options)
    duration_s = min(recording.signal(label).duration_s for label in wanted)
    n_epochs = math.floor(duration_s / epoch_length_s + 1e-9)
    if n_epochs < 1:
        raise ChannelError(f"{path}: {duration_s:.1f} s of signal is shorter than one epoch")
    n_samples = round(n_epochs * epoch_length_s * sfreq_hz)
    names = list(dict.fromkeys(name for pairs in chosen.values() for name, _ in pairs))
    source_of = {name: label for pairs in chosen.values() for name, label in pairs}
    codes = np.empty((len(names), n_samples), dtype=np.int16)
    infos: list[ChannelInfo] = []
    warnings = list(recording.warnings)
    for row, name in enumerate(names):
        signal = recording.signal(source_of[name])
        info, warning = encode_channel(name, signal, source_of[name], sfreq_hz, 0, out=codes[row])
        infos.append(info)
        if warning:
            warnings.append(f"{name}: {warning}")
    start = recording.start.time().isoformat() if recording.start else None
    return Night(codes, infos, n_epochs, sfreq_hz, epoch_length_s, chosen, start, warnings)


@dataclass(frozen=True)
class NightInput:
    """One chunk of model input: ``x`` float32 (channels, samples) or, with a spectrogram,
    (channels, epochs, freqs, frames), for combination ``combination`` from ``start_epoch``."""

    combination: int
    start_epoch: int
    x: np.ndarray


def night_inputs(night: Night, data: DataConfig) -> Iterator[NightInput]:
    """The night as the evaluation iterator would serve it: every channel combination, in
    chunks of ``data.eval_chunk_epochs`` epochs (the last one shorter), processed per the
    run's `ProcessingConfig`. Rows are scaled once and shared by the combinations (scaling is
    per row, so this equals scaling each combination)."""
    spe = round(night.sfreq_hz * night.epoch_length_s)
    processor = WindowProcessor(
        None, data.processing, sfreq_hz=night.sfreq_hz, samples_per_segment=spe
    )
    # float32 statistics, IQR 0 -> 1: what the window index makes of the stored ones
    step = np.array([c.scale for c in night.infos], dtype=np.float32)
    median = np.array([c.median for c in night.infos], dtype=np.float32)
    iqr = np.array([c.iqr for c in night.infos], dtype=np.float32)
    iqr = np.where(iqr > 0, iqr, np.float32(1.0))
    valid = np.ones(len(night.infos), dtype=bool)
    scaled = processor.scale_codes(night.codes, step, median, iqr, valid)
    chunk_epochs = data.eval_chunk_epochs
    for c, combo in enumerate(night.combinations()):
        x = scaled[list(combo)]
        for start in range(0, night.n_epochs, chunk_epochs):
            stop = min(night.n_epochs, start + chunk_epochs)
            chunk = x[:, start * spe : stop * spe]
            if data.processing.spectrogram is not None:
                chunk = processor.spectrogram(chunk, stop - start)
            yield NightInput(c, start, np.ascontiguousarray(chunk))
