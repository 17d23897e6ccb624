"""Load-time processing: band-pass, robust scaling from the stored statistics, clipping,
augmentation and an optional STFT front end. Everything comes out float32."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import signal as sps

from medscale.data.config import ProcessingConfig
from medscale.data.index import RecordIndex, WindowIndex
from medscale.errors import SpecError


class WindowProcessor:
    """Turns int16 codes of stored rows into model input, per the `ProcessingConfig`.

    Order: physical units (codes × step), band-pass, robust scaling ``(x - median) / IQR``
    with the channel's stored statistics, clipping to ``±clip``, then (training only)
    augmentation, then the spectrogram. A band-pass removes the DC offset, so after one only
    the IQR divides: subtracting the stored median would add an offset back. Rows of -1 (a
    missing group under ``missing_group="zeros"``) come out as zeros.
    """

    def __init__(
        self,
        index: WindowIndex | RecordIndex | None,
        config: ProcessingConfig,
        *,
        sfreq_hz: float | None = None,
        samples_per_segment: int | None = None,
    ) -> None:
        """``index`` gives the rate and the stored statistics (`scale`). Prediction from a
        file has no index: it passes ``sfreq_hz`` and ``samples_per_segment`` and calls
        `scale_codes` with the statistics it computed itself."""
        self.index = index
        self.config = config
        self.sfreq_hz = sfreq_hz if index is None else getattr(index, "sfreq_hz", None)
        self.samples_per_segment = (
            samples_per_segment if index is None else getattr(index, "samples_per_segment", None)
        )
        self._sos = None
        if config.bandpass_hz is not None:
            if index is not None and not isinstance(index, WindowIndex):
                raise SpecError(
                    f"processing.bandpass_hz filters signals; task {index.task.name!r} stores "
                    f"{index.task.input_kind}s: leave it unset"
                )
            low, high = config.bandpass_hz
            nyquist = self.sfreq_hz / 2
            if high >= nyquist:
                raise SpecError(
                    f"bandpass_hz upper edge {high} Hz must be below the Nyquist frequency "
                    f"{nyquist} Hz of the stored {self.sfreq_hz} Hz signals"
                )
            self._sos = sps.butter(
                config.bandpass_order,
                [low, high],
                btype="bandpass",
                fs=self.sfreq_hz,
                output="sos",
            )

    def scale(self, codes: np.ndarray, recording: int, rows: Sequence[int]) -> np.ndarray:
        """float32 (channels, samples) after band-pass, scaling and clipping."""
        assert self.index is not None, "scale() reads the index's statistics"
        rows_arr = np.asarray(rows, dtype=np.int64)
        valid = rows_arr >= 0
        flat = self.index.channel_offsets[recording] + np.where(valid, rows_arr, 0)
        step = np.where(valid, self.index.channel_scale[flat], 0).astype(np.float32)
        iqr = self.index.channel_iqr[flat]
        median = self.index.channel_median[flat]
        return self.scale_codes(codes, step, median, iqr, valid)

    def scale_codes(
        self,
        codes: np.ndarray,
        step: np.ndarray,
        median: np.ndarray,
        iqr: np.ndarray,
        valid: np.ndarray,
    ) -> np.ndarray:
        """`scale` with the per-row statistics given: float32 ``step``, ``median`` and
        ``iqr`` (0 already replaced by 1), and ``valid`` False for rows to zero."""
        x = codes.astype(np.float32)
        if self._sos is not None:
            x *= step[:, None]
            x = sps.sosfiltfilt(self._sos, x, axis=-1).astype(np.float32)
            gain, offset = (1.0 / iqr, np.zeros_like(iqr))  # DC is gone: no median
            if self.config.scaling != "robust":
                gain = np.ones_like(iqr)
        else:
            gain, offset = self._gain_offset(step, median, iqr)
        # In place, one pass each: fresh megabyte temporaries cost more than the arithmetic.
        x *= gain.astype(np.float32)[:, None]
        x -= offset.astype(np.float32)[:, None]
        x[~valid] = 0.0
        if self.config.clip is not None:
            np.clip(x, -self.config.clip, self.config.clip, out=x)
        return x

    def gain_offset(self, recording: int, rows: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
        """float32 per-row ``gain`` and ``offset`` with ``scale``'s output (no band-pass)
        ``clip(codes * gain - offset)`` (a missing row is zeroed by the caller)."""
        assert self.index is not None and self._sos is None
        rows_arr = np.asarray(rows, dtype=np.int64)
        valid = rows_arr >= 0
        flat = self.index.channel_offsets[recording] + np.where(valid, rows_arr, 0)
        step = np.where(valid, self.index.channel_scale[flat], 0).astype(np.float32)
        iqr, median = self.index.channel_iqr[flat], self.index.channel_median[flat]
        gain, offset = self._gain_offset(step, median, iqr)
        return gain.astype(np.float32), offset.astype(np.float32)

    def _gain_offset(
        self, step: np.ndarray, median: np.ndarray, iqr: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        if self.config.scaling == "robust":
            return step / iqr, median / iqr
        return step, np.zeros_like(step)

    def augment(self, x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Channel dropout and regional erase, in place, drawn from the sample's stream."""
        aug = self.config.augment
        n_channels, n_samples = x.shape
        if aug.channel_dropout_p > 0 and n_channels > 1:
            drop = rng.random(n_channels) < aug.channel_dropout_p
            if drop.all():  # keep one channel: a window of zeros teaches nothing
                drop[rng.integers(n_channels)] = False
            x[drop] = 0.0
        if aug.erase_p > 0 and rng.random() < aug.erase_p:
            length = int(rng.integers(1, max(2, int(aug.erase_max_fraction * n_samples) + 1)))
            start = int(rng.integers(0, n_samples - length + 1))
            x[:, start : start + length] = 0.0
        return x

    def spectrogram(self, x: np.ndarray, n_segments: int) -> np.ndarray:
        """Log power (channels, segments, freqs, frames) of Hann-windowed frames per segment
        (sleep: per 30-s epoch)."""
        spec = self.config.spectrogram
        if spec is None:
            return x
        fs = self.sfreq_hz
        win, hop = round(spec.window_s * fs), round(spec.hop_s * fs)
        per_segment = self.samples_per_segment
        if win > per_segment:
            raise SpecError(f"spectrogram window {spec.window_s} s is longer than a segment")
        segments = x.reshape(x.shape[0], n_segments, per_segment)
        frames = np.lib.stride_tricks.sliding_window_view(segments, win, axis=-1)[..., ::hop, :]
        power = np.abs(np.fft.rfft(frames * np.hanning(win).astype(np.float32), axis=-1)) ** 2
        out = np.log(power + spec.log_eps).astype(np.float32)
        return np.ascontiguousarray(np.swapaxes(out, -1, -2))  # (C, segments, freqs, frames)
