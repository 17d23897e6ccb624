"""Read any file `mne.io.read_raw` opens (FIF, BrainVision, EEGLAB, EDF...) into a `Recording`."""

from __future__ import annotations

import warnings
from collections.abc import Collection
from pathlib import Path

import numpy as np

from medscale.errors import RecordingReadError
from medscale.io.reader_rules import check_labels_present, unit_scale_to_uv
from medscale.io.recording import Recording, Signal


def read_mne_raw(path: str | Path, labels: Collection[str] | None = None) -> Recording:
    """Read a raw recording with MNE; only the requested channels' data is loaded.

    Parameters
    ----------
    path
        Any file `mne.io.read_raw` supports.
    labels
        Channel names to load; None loads all.

    Returns
    -------
    Recording
        MNE keeps data in SI units: channels in volts come back in µV, others in their SI
        unit. ``resolution`` is ``nan`` (MNE does not expose the source quantisation in a
        reader-independent way). Subject and experimenter information, when the file has
        any, is in ``identifiers``.

    Raises
    ------
    RecordingReadError
        MNE cannot open the file.
    ChannelError
        A requested label is not in the file.
    """
    import mne  # slow to import; only readers that need it pay for it

    path = Path(path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        try:
            raw = mne.io.read_raw(path, preload=False, verbose="error")
        except (ValueError, OSError, RuntimeError) as exc:
            raise RecordingReadError(f"{path}: MNE cannot open it: {exc}") from exc
        picks = list(range(len(raw.ch_names)))
        if labels is not None:
            check_labels_present(path, labels, raw.ch_names)
            wanted = set(labels)
            picks = [i for i, name in enumerate(raw.ch_names) if name in wanted]
        try:
            data = raw.get_data(picks, verbose="error") if picks else np.empty((0, 0))
        except (ValueError, OSError, RuntimeError) as exc:
            raise RecordingReadError(f"{path}: MNE cannot read the data: {exc}") from exc
    signals = []
    for k, ch in enumerate(raw.info["chs"][i] for i in picks):
        unit, factor, _ = unit_scale_to_uv(_fiff_unit_name(ch["unit"]))
        signals.append(
            Signal(
                label=ch["ch_name"],
                sfreq_hz=float(raw.info["sfreq"]),
                data=data[k] * factor,
                unit=unit,
            )
        )
    meas_date = raw.info["meas_date"]
    return Recording(
        source=path,
        signals=signals,
        start=meas_date.replace(tzinfo=None) if meas_date is not None else None,
        identifiers=_identifiers(raw.info),
        warnings=[f"mne: {w.message}" for w in caught],
    )


def _fiff_unit_name(code: int) -> str:
    from mne.io.constants import FIFF

    names = {
        FIFF.FIFF_UNIT_V: "V",
        FIFF.FIFF_UNIT_T: "T",
        FIFF.FIFF_UNIT_T_M: "T/m",
        FIFF.FIFF_UNIT_CEL: "degC",
        FIFF.FIFF_UNIT_PA: "Pa",
        FIFF.FIFF_UNIT_HZ: "Hz",
        FIFF.FIFF_UNIT_OHM: "Ohm",
        FIFF.FIFF_UNIT_A: "A",
        FIFF.FIFF_UNIT_AM: "Am",
        FIFF.FIFF_UNIT_M: "m",
        FIFF.FIFF_UNIT_MOL: "mol",
        FIFF.FIFF_UNIT_SEC: "s",
        FIFF.FIFF_UNIT_NONE: "",
        FIFF.FIFF_UNIT_UNITLESS: "",
    }
    return names.get(code, f"FIFF unit {int(code)}")


def _identifiers(info: object) -> dict[str, str]:
    found = {}
    for key in ("subject_info", "experimenter", "meas_date"):
        value = info.get(key)  # type: ignore[attr-defined]
        if value:
            found[key] = str(value)
    return found
