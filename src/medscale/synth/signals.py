"""Stage-dependent surrogate PSG signals, vectorised with numpy.

Every rhythm is coloured Gaussian noise made in one inverse FFT over the whole night, scaled by
a per-epoch gain that follows the hypnogram (with a 1-s ramp at epoch borders and a little
epoch-to-epoch jitter). Transient graphoelements (spindles, K-complexes, sawtooth waves, eye
movements, blinks, EMG bursts) are placed as events. EEG channels share their sources with
scalp weights (alpha occipital, delta and K-complexes frontal, spindles central), so the
channels are correlated the way referential EEG is.

What each stage looks like (AASM manual, textbook amplitudes):

- W: alpha (8-12 Hz) waxing and waning, blinks and saccades, high chin EMG with movement bursts.
- N1: theta (4-7 Hz), slow rolling eye movements (E1 and E2 in antiphase), lower EMG.
- N2: spindles (11-16 Hz, 0.5-2 s, waxing-waning) and K-complexes on a mixed background.
- N3: high-amplitude delta (0.5-2 Hz, > 75 µV peak to peak frontally), lowest NREM EMG.
- REM: low-amplitude mixed frequency, sawtooth theta bursts, rapid eye movements, atonia with
  brief twitches.

Low-rate channels: thoracic respiratory effort (32 Hz), SpO2 (1 Hz, %, with desaturations after
occasional hypopneas) and body position (1 Hz, 1=supine 2=left 3=right 4=prone).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import scipy.fft
import scipy.signal

from medscale.errors import SpecError
from medscale.io.recording import Signal
from medscale.io.stages import N1, N2, N3, REM, SCORED_STAGES, W

MIN_SFREQ_HZ = 64  # spindles reach 16 Hz and chin EMG needs a band above 10 Hz
RESP_SFREQ_HZ = 32
SPO2_SFREQ_HZ = 1
POSITION_SFREQ_HZ = 1
UV_RANGE = (-3276.8, 3276.7)  # with int16 this is exactly 0.1 µV per digital step

EEG_LABELS = ("EEG F4-M1", "EEG C4-M1", "EEG O2-M1")
EOG_LABELS = ("EOG E1-M2", "EOG E2-M2")
EMG_LABEL = "EMG chin"
RESP_LABEL = "Resp thorax"
SPO2_LABEL = "SpO2"
POSITION_LABEL = "Position"
POSITION_CODES = "1=supine 2=left 3=right 4=prone"


@dataclass(frozen=True)
class ChannelSpec:
    """How one synthetic channel is described in an EDF header."""

    label: str
    sfreq_hz: int
    unit: str
    physical_range: tuple[float, float]
    transducer: str = ""
    prefiltering: str = ""
    digital_range: tuple[int, int] = (-32768, 32767)

    @property
    def resolution(self) -> float:
        """Physical step of one digital unit."""
        (pmin, pmax), (dmin, dmax) = self.physical_range, self.digital_range
        return (pmax - pmin) / (dmax - dmin)


def emg_band_hz(sfreq_hz: int) -> tuple[float, float]:
    """Chin EMG pass band: 10-100 Hz, narrowed below Nyquist for low rates."""
    return 10.0, min(100.0, 0.45 * sfreq_hz)


def channel_specs(sfreq_hz: int) -> tuple[ChannelSpec, ...]:
    """The synthetic PSG montage, in file order, for a main rate of ``sfreq_hz``."""
    _check_sfreq(sfreq_hz)
    lo, hi = emg_band_hz(sfreq_hz)
    electrode = "AgAgCl electrode"
    exg_filter = "HP:0.3Hz LP:35Hz"
    exg = [
        ChannelSpec(label, sfreq_hz, "uV", UV_RANGE, transducer=electrode, prefiltering=exg_filter)
        for label in EEG_LABELS + EOG_LABELS
    ]
    emg_filter = f"HP:{lo:g}Hz LP:{hi:g}Hz"
    return (
        *exg,
        ChannelSpec(EMG_LABEL, sfreq_hz, "uV", UV_RANGE, electrode, emg_filter),
        ChannelSpec(RESP_LABEL, RESP_SFREQ_HZ, "uV", UV_RANGE, "effort belt", "HP:0.05Hz LP:5Hz"),
        ChannelSpec(SPO2_LABEL, SPO2_SFREQ_HZ, "%", (0.0, 100.0), "pulse oximeter", "", (0, 1000)),
        ChannelSpec(
            POSITION_LABEL, POSITION_SFREQ_HZ, "", (0.0, 10.0), POSITION_CODES, "", (0, 10)
        ),
    )


def _check_sfreq(sfreq_hz: int) -> None:
    if isinstance(sfreq_hz, bool) or not isinstance(sfreq_hz, int | np.integer):
        raise SpecError(f"sfreq_hz must be an integer number of Hz, got {sfreq_hz!r}")
    if sfreq_hz < MIN_SFREQ_HZ:
        raise SpecError(f"sfreq_hz={sfreq_hz} is too low; expected at least {MIN_SFREQ_HZ} Hz")


# --- building blocks -------------------------------------------------------------------------


def _stage_table(values: dict[int, float]) -> np.ndarray:
    table = np.zeros(max(SCORED_STAGES) + 1)
    for stage, value in values.items():
        table[stage] = value
    return table


def _coloured_noise(weights: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """Gaussian noise of expected unit RMS whose amplitude spectrum is ``weights``.

    ``weights`` is given on the ``rfftfreq(n)`` grid. The scale comes from the weights, not
    from the draw, so two nights with the same stages have the same expected power.
    """
    nonzero = np.flatnonzero(weights > 0)
    w = weights[nonzero].astype(np.float64)
    # E|X_k|^2 = 2 w_k^2; irfft counts interior bins twice and ignores imag of DC/Nyquist.
    edge = (nonzero == 0) | ((n % 2 == 0) & (nonzero == n // 2))
    variance = float(np.sum(np.where(edge, 1.0, 4.0) * w**2)) / n**2
    scale = np.float32(1.0 / np.sqrt(max(variance, 1e-30)))
    spectrum = np.zeros(n // 2 + 1, dtype=np.complex64)
    # Draw only the bins that matter: narrow bands then cost little.
    draws = rng.standard_normal(2 * nonzero.size, dtype=np.float32).view(np.complex64)
    draws *= scale * w.astype(np.float32)
    spectrum[nonzero] = draws
    return scipy.fft.irfft(spectrum, n)


def _bump(centre_hz: float, width_hz: float) -> Callable[[np.ndarray], np.ndarray]:
    """Gaussian spectral peak, cut where it is negligible (``f`` must be sorted)."""

    def amplitude(f: np.ndarray) -> np.ndarray:
        out = np.zeros(f.size)
        lo, hi = np.searchsorted(f, [centre_hz - 4 * width_hz, centre_hz + 4 * width_hz])
        out[lo:hi] = np.exp(-0.5 * ((f[lo:hi] - centre_hz) / width_hz) ** 2)
        return out

    return amplitude


def _band(lo_hz: float, hi_hz: float, taper_hz: float) -> Callable[[np.ndarray], np.ndarray]:
    """Flat pass band with raised-cosine edges ``taper_hz`` wide (``f`` must be sorted)."""

    def amplitude(f: np.ndarray) -> np.ndarray:
        out = np.zeros(f.size)
        lo, hi = np.searchsorted(f, [lo_hz - taper_hz / 2, hi_hz + taper_hz / 2])
        band = f[lo:hi]
        rise = np.clip((band - (lo_hz - taper_hz / 2)) / taper_hz, 0, 1)
        fall = np.clip(((hi_hz + taper_hz / 2) - band) / taper_hz, 0, 1)
        out[lo:hi] = np.sin(0.5 * np.pi * rise) ** 2 * np.sin(0.5 * np.pi * fall) ** 2
        return out

    return amplitude


def _one_over_f(exponent: float, hp_hz: float, lp_hz: float) -> Callable[[np.ndarray], np.ndarray]:
    """1/f^exponent power, through a 1st-order high-pass and a 4th-order low-pass."""

    def amplitude(f: np.ndarray) -> np.ndarray:
        safe = np.maximum(f, 1e-3)
        out = safe ** (-exponent / 2)
        out /= np.sqrt(1 + (hp_hz / safe) ** 2) * np.sqrt(1 + (safe / lp_hz) ** 8)
        out[f < 0.1] = 0
        out[f > 3 * lp_hz] = 0
        return out

    return amplitude


class _Night:
    """Per-night context: the hypnogram, the sampling grid and the random stream."""

    def __init__(
        self, stages: np.ndarray, sfreq_hz: int, epoch_length_s: float, rng: np.random.Generator
    ):
        self.stages = stages
        self.sfreq_hz = sfreq_hz
        self.epoch_length_s = epoch_length_s
        self.rng = rng
        self.n_epochs = stages.size
        self.spe = round(epoch_length_s * sfreq_hz)  # samples per epoch
        self.n = self.n_epochs * self.spe
        self._freqs: np.ndarray | None = None
        self._times: dict[float, np.ndarray] = {}

    @property
    def freqs(self) -> np.ndarray:
        """The ``rfftfreq`` grid of the night at the main rate (cached)."""
        if self._freqs is None:
            self._freqs = scipy.fft.rfftfreq(self.n, 1.0 / self.sfreq_hz)
        return self._freqs

    def noise(self, amplitude: Callable[[np.ndarray], np.ndarray] | np.ndarray) -> np.ndarray:
        """Unit-RMS coloured noise over the night at the main rate.

        ``amplitude`` is a spectrum shape, or its values on `freqs` when reused.
        """
        weights = amplitude if isinstance(amplitude, np.ndarray) else amplitude(self.freqs)
        return _coloured_noise(weights, self.n, self.rng)

    def times(self, sfreq_hz: float | None = None) -> np.ndarray:
        """Sample times in seconds (cached per rate)."""
        fs = float(sfreq_hz or self.sfreq_hz)
        if fs not in self._times:
            n = round(self.n_epochs * self.epoch_length_s * fs)
            self._times[fs] = np.arange(n, dtype=np.float64) / fs
        return self._times[fs]

    def gain(
        self, per_stage: np.ndarray, jitter: float = 0.15, sfreq_hz: float | None = None
    ) -> np.ndarray:
        """Per-sample gain from a per-stage table, jittered per epoch, ramped over 1 s."""
        fs = float(sfreq_hz or self.sfreq_hz)
        values = per_stage[self.stages] * np.exp(jitter * self.rng.standard_normal(self.n_epochs))
        spe = round(self.epoch_length_s * fs)
        out = np.repeat(values.astype(np.float32), spe)
        half = round(0.5 * fs)  # linear ramp from 0.5 s before to 0.5 s after each border
        if self.n_epochs > 1 and half > 0:
            borders = np.arange(1, self.n_epochs) * spe
            frac = ((np.arange(2 * half) + 0.5) / (2 * half)).astype(np.float32)
            before, after = values[:-1, None], values[1:, None]
            out[borders[:, None] + np.arange(-half, half)] = before + (after - before) * frac
        return out

    def slow_modulation(self, depth: float, period_s: float = 8.0) -> np.ndarray:
        """Positive multiplier around 1 that wanders over ~``period_s`` (waxing and waning)."""
        coarse_fs = 4.0 / period_s
        n_coarse = int(self.n_epochs * self.epoch_length_s * coarse_fs) + 2
        coarse = 1 + depth * self.rng.standard_normal(n_coarse)
        coarse = np.convolve(coarse, np.ones(4) / 4, mode="same")
        t_coarse = np.arange(n_coarse) / coarse_fs
        out = np.interp(self.times(), t_coarse, np.maximum(coarse, 0.1))
        return out.astype(np.float32)

    def event_onsets(self, per_epoch_rate: np.ndarray, margin_s: float = 0.0) -> np.ndarray:
        """Sample indices of Poisson events, ``per_epoch_rate[stage]`` expected per epoch."""
        counts = self.rng.poisson(per_epoch_rate[self.stages])
        epochs = np.repeat(np.arange(self.n_epochs), counts)
        offsets = self.rng.uniform(0, self.epoch_length_s - margin_s, epochs.size)
        return np.round((epochs * self.epoch_length_s + offsets) * self.sfreq_hz).astype(np.int64)

    def add(
        self, target: np.ndarray, onset: int, waveform: np.ndarray, weight: float = 1.0
    ) -> None:
        stop = min(target.size, onset + waveform.size)
        if stop > onset:
            target[onset:stop] += weight * waveform[: stop - onset]


# --- EEG -------------------------------------------------------------------------------------

# Weights of each shared source on F4, C4, O2.
_ALPHA_W = np.array([0.35, 0.55, 1.0])
_THETA_W = np.array([0.8, 1.0, 0.7])
_DELTA_W = np.array([1.0, 0.85, 0.65])
_SPINDLE_W = np.array([0.8, 1.0, 0.45])
_KCOMPLEX_W = np.array([1.0, 0.8, 0.45])
_SAWTOOTH_W = np.array([0.8, 1.0, 0.6])

# RMS in µV at the channel of weight 1, per stage.
_BACKGROUND_UV = _stage_table({W: 8.0, N1: 8.0, N2: 9.0, N3: 10.0, REM: 7.0})
_ALPHA_UV = _stage_table({W: 11.0, N1: 3.0, N2: 0.7, N3: 0.4, REM: 2.5})
_THETA_UV = _stage_table({W: 2.0, N1: 7.0, N2: 4.5, N3: 3.5, REM: 5.0})
_DELTA_UV = _stage_table({W: 3.0, N1: 5.0, N2: 13.0, N3: 42.0, REM: 4.0})
# Expected events per 30-s epoch.
_SPINDLES_PER_EPOCH = _stage_table({N1: 0.1, N2: 2.5, N3: 0.8})
_KCOMPLEXES_PER_EPOCH = _stage_table({N2: 0.8, N3: 0.3})
_SAWTOOTH_PER_EPOCH = _stage_table({REM: 1.0})


def _eeg(night: _Night) -> tuple[np.ndarray, np.ndarray]:
    """EEG (3, n) in µV and the frontal slow activity the EOG picks up (n,)."""
    fs, n, rng = night.sfreq_hz, night.n, night.rng
    background = _one_over_f(1.6, 0.3, 35.0)(night.freqs)  # shared by four sources
    common = night.noise(background) * night.gain(_BACKGROUND_UV, 0.1)
    eeg = np.empty((3, n), dtype=np.float32)
    for ch in range(3):
        own = night.noise(background) * night.gain(_BACKGROUND_UV, 0.1)
        eeg[ch] = 0.6 * common + 0.8 * own
    frontal_slow = 0.6 * common

    alpha = night.noise(_bump(10.0, 0.8))
    alpha *= night.gain(_ALPHA_UV, 0.3) * night.slow_modulation(0.5)
    eeg += _ALPHA_W[:, None] * alpha
    del alpha
    theta = night.noise(_bump(5.5, 0.9)) * night.gain(_THETA_UV)
    eeg += _THETA_W[:, None] * theta
    del theta
    delta = night.noise(_band(0.5, 2.0, 0.3))
    delta *= night.gain(_DELTA_UV, 0.15) * night.slow_modulation(0.25, period_s=20.0)
    eeg += _DELTA_W[:, None] * delta
    frontal_slow += delta
    del delta

    for onset in night.event_onsets(_SPINDLES_PER_EPOCH):
        duration_s = rng.uniform(0.5, 2.0)
        t = np.arange(round(duration_s * fs)) / fs
        envelope = np.sin(np.pi * t / duration_s) ** 2  # waxing then waning
        phase = 2 * np.pi * rng.uniform(11.5, 15) * t + rng.uniform(0, 2 * np.pi)
        wave = rng.uniform(10, 25) * envelope * np.sin(phase)
        for ch in range(3):
            night.add(eeg[ch], onset, wave, _SPINDLE_W[ch])

    t_kc = np.arange(round(1.2 * fs)) / fs
    for onset in night.event_onsets(_KCOMPLEXES_PER_EPOCH, margin_s=1.2):
        # Sharp negative wave, then a slower positive one: >= 0.5 s, 100-250 µV peak to peak.
        neg, pos = rng.uniform(70, 150), rng.uniform(40, 90)
        wave = -neg * np.exp(-0.5 * ((t_kc - 0.3) / 0.08) ** 2)
        wave += pos * np.exp(-0.5 * ((t_kc - 0.65) / 0.15) ** 2)
        for ch in range(3):
            night.add(eeg[ch], onset, wave, _KCOMPLEX_W[ch])
        night.add(frontal_slow, int(onset), wave)

    for onset in night.event_onsets(_SAWTOOTH_PER_EPOCH, margin_s=4.0):
        duration_s = rng.uniform(1.0, 4.0)
        t = np.arange(round(duration_s * fs)) / fs
        phase = 2 * np.pi * rng.uniform(2.5, 4.5) * t
        wave = rng.uniform(15, 35) * np.sin(np.pi * t / duration_s) ** 0.5
        wave = wave * scipy.signal.sawtooth(phase, width=0.25)
        for ch in range(3):
            night.add(eeg[ch], onset, wave, _SAWTOOTH_W[ch])
    return eeg, frontal_slow


# --- EOG -------------------------------------------------------------------------------------

_REMS_PER_EPOCH_PHASIC = 14.0
_REMS_PER_EPOCH_TONIC = 1.5
_SACCADES_PER_EPOCH = _stage_table({W: 4.0, N1: 0.5})
_BLINKS_PER_EPOCH = _stage_table({W: 5.0, N1: 0.5})
_SEM_UV = 35.0
_SEM_LEAD_EPOCHS = 4  # W epochs this close before N1 count as drowsy


def _eye_movement_template(fs: int) -> np.ndarray:
    """A saccade seen through the 0.3-Hz EOG high-pass: fast rise, ~0.5 s decay, peak 1."""
    t = np.arange(round(2.5 * fs)) / fs
    wave = (1 - np.exp(-t / 0.02)) * np.exp(-t / 0.5)
    return wave / wave.max()


def _eog(night: _Night, frontal_slow: np.ndarray, blinks: np.ndarray) -> np.ndarray:
    """E1 and E2 (2, n) in µV: horizontal movements in antiphase, EEG and blinks in phase."""
    fs, n, rng, stages = night.sfreq_hz, night.n, night.rng, night.stages
    horizontal = np.zeros(n, dtype=np.float32)

    # Slow rolling eye movements: N1, and W just before sleep (drowsiness).
    drowsy = stages == N1
    for lead in range(1, _SEM_LEAD_EPOCHS + 1):
        drowsy[:-lead] |= (stages[:-lead] == W) & (stages[lead:] == N1)
    sem_gain = np.where(drowsy, _SEM_UV * np.where(stages == N1, 1.0, 0.6), 0.0)
    sem = night.noise(_band(0.15, 0.6, 0.1))
    horizontal += sem * np.interp(
        night.times(),
        (np.arange(night.n_epochs) + 0.5) * night.epoch_length_s,
        sem_gain,
    ).astype(np.float32)
    del sem

    # Rapid eye movements: bursts in phasic REM epochs, a few in tonic ones; saccades in W.
    template = _eye_movement_template(fs)
    phasic = rng.random(night.n_epochs) < 0.5
    rate = np.where(phasic, _REMS_PER_EPOCH_PHASIC, _REMS_PER_EPOCH_TONIC)
    rem_counts = rng.poisson(np.where(stages == REM, rate, 0.0))
    rem_epochs = np.repeat(np.arange(night.n_epochs), rem_counts)
    rem_onsets = np.round(
        (rem_epochs + rng.uniform(0, 1, rem_epochs.size)) * night.epoch_length_s * fs
    ).astype(np.int64)
    amplitudes = rng.uniform(60, 250, rem_onsets.size) * rng.choice([-1, 1], rem_onsets.size)
    for onset, amp in zip(rem_onsets, amplitudes, strict=True):
        night.add(horizontal, int(onset), template, float(amp))
    for onset in night.event_onsets(_SACCADES_PER_EPOCH):
        night.add(horizontal, int(onset), template, rng.uniform(30, 120) * rng.choice([-1, 1]))

    common = 0.4 * frontal_slow + blinks
    eog = np.empty((2, n), dtype=np.float32)
    # Amplifier and electrode noise: white is close enough at 2 µV.
    eog[0] = horizontal + common + 2.0 * rng.standard_normal(n, dtype=np.float32)
    eog[1] = -horizontal + common + 2.0 * rng.standard_normal(n, dtype=np.float32)
    return eog


def _blinks(night: _Night) -> np.ndarray:
    """Blink artefact (n,) in µV, vertical: in phase on both EOG and on frontal EEG."""
    fs, rng = night.sfreq_hz, night.rng
    out = np.zeros(night.n, dtype=np.float32)
    t = np.arange(round(0.6 * fs)) / fs
    shape = np.exp(-0.5 * ((t - 0.2) / 0.07) ** 2)
    for onset in night.event_onsets(_BLINKS_PER_EPOCH, margin_s=0.6):
        night.add(out, int(onset), shape, rng.uniform(80, 200))
    return out


# --- EMG -------------------------------------------------------------------------------------

_EMG_UV = _stage_table({W: 14.0, N1: 8.0, N2: 5.5, N3: 5.0, REM: 2.0})
_MOVEMENTS_PER_EPOCH = _stage_table({W: 0.5, N1: 0.1})
_TWITCHES_PER_EPOCH = _stage_table({REM: 2.0})


def _emg(night: _Night) -> np.ndarray:
    """Chin EMG (n,) in µV: tone by stage, movement bursts in W, twitches in REM."""
    fs, rng = night.sfreq_hz, night.rng
    envelope = night.gain(_EMG_UV, 0.2)
    for onset in night.event_onsets(_MOVEMENTS_PER_EPOCH):
        length = round(rng.uniform(1.0, 4.0) * fs)
        night.add(envelope, int(onset), np.full(length, rng.uniform(20, 60), np.float32))
    for onset in night.event_onsets(_TWITCHES_PER_EPOCH):
        length = round(rng.uniform(0.1, 0.3) * fs)
        night.add(envelope, int(onset), np.full(length, rng.uniform(6, 15), np.float32))
    lo, hi = emg_band_hz(fs)
    return night.noise(_band(lo + 2, hi - 5, 4.0)) * envelope


# --- respiration, SpO2, position ---------------------------------------------------------------

_BREATHS_PER_MIN = _stage_table({W: 16.0, N1: 15.5, N2: 14.5, N3: 14.0, REM: 15.5})
_BREATH_RATE_SD = _stage_table({W: 1.5, N1: 1.0, N2: 0.5, N3: 0.3, REM: 1.8})
_RESP_UV = _stage_table({W: 220.0, N1: 200.0, N2: 210.0, N3: 230.0, REM: 180.0})
_HYPOPNEAS_PER_EPOCH = _stage_table({N1: 0.02, N2: 0.025, N3: 0.01, REM: 0.04})


def _respiration(night: _Night) -> tuple[np.ndarray, list[tuple[float, float]]]:
    """Thoracic effort at 32 Hz in µV, and the hypopneas (onset_s, duration_s) it holds."""
    rng, fs = night.rng, RESP_SFREQ_HZ
    n = night.n_epochs * round(night.epoch_length_s * fs)
    epoch_rate = _BREATHS_PER_MIN[night.stages] + rng.normal(0, 1.0, night.n_epochs)
    rate_sd = _BREATH_RATE_SD[night.stages]
    t = np.arange(n) / fs
    centres = (np.arange(night.n_epochs) + 0.5) * night.epoch_length_s
    # Breath-to-breath variability: a random walk kept near the epoch's rate.
    wander = np.convolve(rng.standard_normal(n // fs + 2), np.ones(5) / np.sqrt(5), "same")
    wander = np.interp(t, np.arange(wander.size), wander)
    rate_per_min = np.interp(t, centres, epoch_rate) + np.interp(t, centres, rate_sd) * wander
    phase = 2 * np.pi * np.cumsum(np.clip(rate_per_min, 6, 30) / 60.0) / fs
    wave = np.sin(phase) + 0.25 * np.sin(2 * phase + 0.8)  # inspiration shorter than expiration
    amplitude = night.gain(_RESP_UV, 0.1, sfreq_hz=fs).astype(np.float64)

    events: list[tuple[float, float]] = []
    counts = rng.poisson(_HYPOPNEAS_PER_EPOCH[night.stages])
    for epoch in np.repeat(np.arange(night.n_epochs), counts):
        duration_s = rng.uniform(12, 30)
        onset_s = (epoch + rng.uniform(0, 1)) * night.epoch_length_s
        start, stop = round(onset_s * fs), min(n, round((onset_s + duration_s) * fs))
        if stop - start < 2 * fs:
            continue
        events.append((onset_s, duration_s))
        dip = np.ones(stop - start)
        ramp = min(2 * fs, (stop - start) // 2)
        dip[:ramp] = np.linspace(1, 0.25, ramp)
        dip[ramp:-ramp] = 0.25
        dip[-ramp:] = np.linspace(0.25, 1, ramp)
        amplitude[start:stop] *= dip
    resp = amplitude * wave + 5.0 * rng.standard_normal(n)
    return resp, events


def _spo2(night: _Night, hypopneas: list[tuple[float, float]]) -> np.ndarray:
    """SpO2 at 1 Hz in whole %: baseline with drift, dips lagging each hypopnea."""
    rng = night.rng
    n = round(night.n_epochs * night.epoch_length_s)
    t = np.arange(n, dtype=np.float64)
    coarse = np.convolve(rng.standard_normal(n // 60 + 3), np.ones(3) / 3, "same")
    level = rng.uniform(95.5, 97.5) + 0.5 * np.interp(t, np.arange(coarse.size) * 60.0, coarse)
    level -= 0.4 * (np.repeat(night.stages, round(night.epoch_length_s))[:n] == REM)
    for onset_s, duration_s in hypopneas:
        depth, lag_s = rng.uniform(3, 6), 8.0
        start, nadir = onset_s + lag_s, onset_s + duration_s + lag_s
        falling = (t >= start) & (t < nadir)
        level[falling] -= depth * (t[falling] - start) / (nadir - start)
        rising = (t >= nadir) & (t < nadir + 12)
        level[rising] -= depth * (1 - (t[rising] - nadir) / 12)
    return np.clip(np.round(level), 70, 100)


def _position(night: _Night) -> np.ndarray:
    """Body position at 1 Hz; turns happen mostly while awake or in N1."""
    rng = night.rng
    change_p = _stage_table({W: 0.08, N1: 0.04, N2: 0.005, N3: 0.002, REM: 0.005})
    turns = rng.random(night.n_epochs) < change_p[night.stages]
    choices = rng.choice([1, 2, 3, 4], size=night.n_epochs, p=[0.45, 0.25, 0.25, 0.05])
    position = np.empty(night.n_epochs)
    current = float(rng.choice([1, 2, 3], p=[0.6, 0.2, 0.2]))
    for k in range(night.n_epochs):
        if turns[k]:
            current = float(choices[k])
        position[k] = current
    return np.repeat(position, round(night.epoch_length_s))


# --- public ----------------------------------------------------------------------------------


def synthesize_psg(
    stages: np.ndarray,
    *,
    sfreq_hz: int,
    rng: np.random.Generator,
    epoch_length_s: float = 30.0,
) -> list[Signal]:
    """Synthesise one night of PSG signals that follow a hypnogram.

    Parameters
    ----------
    stages : numpy.ndarray
        AASM stage codes (W=0 .. REM=4), one per epoch; UNKNOWN is not allowed.
    sfreq_hz : int
        Rate of the EEG, EOG and EMG channels (at least 64 Hz).
    rng : numpy.random.Generator
        Source of randomness; the result depends only on its state and the arguments.
    epoch_length_s : float
        Epoch length; ``epoch_length_s * sfreq_hz`` must be a whole number of samples.

    Returns
    -------
    list[Signal]
        One `Signal` per entry of ``channel_specs(sfreq_hz)``, in that order, clipped to the
        channel's physical range; ``resolution`` is the EDF step each will be written with.
    """
    specs = channel_specs(sfreq_hz)
    stages = np.asarray(stages)
    if stages.ndim != 1 or stages.size == 0 or not np.isin(stages, SCORED_STAGES).all():
        raise SpecError(f"stages must be a non-empty 1-D array of codes in {SCORED_STAGES}")
    samples_per_epoch = epoch_length_s * sfreq_hz
    if abs(samples_per_epoch - round(samples_per_epoch)) > 1e-9 or epoch_length_s < 1:
        raise SpecError(
            f"epoch_length_s={epoch_length_s} must be >= 1 s and hold a whole number of "
            f"samples at {sfreq_hz} Hz"
        )
    night = _Night(stages.astype(np.int64), int(sfreq_hz), float(epoch_length_s), rng)
    blinks = _blinks(night)
    eeg, frontal_slow = _eeg(night)
    eeg[0] += 0.2 * blinks  # F4 sits close enough to the eye to see blinks
    eog = _eog(night, frontal_slow, blinks)
    del frontal_slow, blinks
    emg = _emg(night)
    resp, hypopneas = _respiration(night)
    data = [*eeg, *eog, emg, resp, _spo2(night, hypopneas), _position(night)]
    out = []
    for spec, values in zip(specs, data, strict=True):
        lo, hi = spec.physical_range
        np.clip(values, lo, hi, out=values)
        out.append(Signal(spec.label, float(spec.sfreq_hz), values, spec.unit, spec.resolution))
    return out
