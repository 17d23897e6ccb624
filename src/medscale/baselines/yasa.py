"""YASA's pretrained sleep-staging classifier (Vallat & Walker 2021) as a baseline.

The classifier files ship inside the ``yasa`` wheel (``pip install -e '.[yasa]'``); nothing is
downloaded. YASA takes raw, unfiltered signals in volts and does its own resampling and
filtering, so it gets the stored physical signals, never medscale's scaled model input.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable

import numpy as np

from medscale.errors import ChannelError, MedscaleError
from medscale.io.stages import N1, N2, N3, REM, W
from medscale.store.layout import RecordingInfo
from medscale.store.store import Store

# YASA's classes by name, in medscale's stage order (YASA >= 0.7 says WAKE/REM, older W/R).
_COLUMNS = {"W": W, "WAKE": W, "N1": N1, "N2": N2, "N3": N3, "R": REM, "REM": REM}
MIN_EPOCHS = 10  # YASA's features use rolling windows over epochs; shorter nights fail inside


def yasa_probabilities(
    eeg_uv: np.ndarray,
    sfreq_hz: float,
    *,
    eog_uv: np.ndarray | None = None,
    emg_uv: np.ndarray | None = None,
) -> np.ndarray:
    """Per-30-s-epoch stage probabilities (n_epochs, 5) in medscale's order W, N1, N2, N3, REM.

    Signals are 1-D, in µV, starting at an epoch boundary.
    """
    try:
        import mne
        import yasa
    except ImportError as exc:
        raise MedscaleError(
            f"the YASA baseline needs the yasa package ({exc}); pip install -e '.[yasa]'"
        ) from None
    n_epochs = int(len(eeg_uv) // (30 * sfreq_hz))
    if n_epochs < MIN_EPOCHS:
        raise MedscaleError(
            f"YASA needs at least {MIN_EPOCHS} epochs of 30 s; the night has {n_epochs}"
        )
    names, rows = ["eeg"], [eeg_uv]
    for name, data in (("eog", eog_uv), ("emg", emg_uv)):
        if data is not None:
            names.append(name)
            rows.append(data)
    data = np.vstack([np.asarray(r, dtype=np.float64) for r in rows]) * 1e-6  # µV -> V
    info = mne.create_info(names, sfreq_hz, ch_types=["eeg"] * len(names), verbose="error")
    raw = mne.io.RawArray(data, info, verbose="error")
    with warnings.catch_warnings():  # YASA's and pandas' own deprecation chatter
        warnings.simplefilter("ignore")
        staging = yasa.SleepStaging(
            raw,
            eeg_name="eeg",
            eog_name="eog" if eog_uv is not None else None,
            emg_name="emg" if emg_uv is not None else None,
        )
        proba = staging.predict().proba
    out = np.zeros((len(proba), 5), dtype=np.float32)
    for column in proba.columns:
        key = str(column).upper()
        if key not in _COLUMNS:
            raise MedscaleError(f"YASA returned an unknown stage column {column!r}")
        out[:, _COLUMNS[key]] = proba[column].to_numpy(dtype=np.float32)
    return out[:n_epochs]


def yasa_on_store(
    store: Store, infos: Iterable[RecordingInfo], *, progress: bool = False
) -> dict[str, np.ndarray]:
    """YASA's probabilities for each stored recording, from its first EEG channel and, when
    present, its first EOG and EMG channels. Keys are ``dataset/recording_id``. ``progress``
    shows a bar per night (YASA takes seconds a night)."""
    from tqdm.auto import tqdm

    infos = list(infos)
    out = {}
    for info in tqdm(infos, desc="YASA baseline", unit="night", disable=not progress):
        by_type: dict[str, str] = {}
        for channel in info.channels:
            by_type.setdefault(channel.type, channel.name)
        if "EEG" not in by_type:
            raise ChannelError(
                f"{info.key}: YASA needs an EEG channel; stored {info.channel_names}"
            )
        picked = [by_type[t] for t in ("EEG", "EOG", "EMG") if t in by_type]
        signals = dict(zip(picked, store.read_signals(info, picked), strict=True))
        out[info.key] = yasa_probabilities(
            signals[by_type["EEG"]],
            info.sfreq_hz,
            eog_uv=signals.get(by_type.get("EOG", "")),
            emg_uv=signals.get(by_type.get("EMG", "")),
        )
    return out
