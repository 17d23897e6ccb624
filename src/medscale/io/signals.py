"""One entry point for every signal reader.

`read_signals` picks a reader by name or by file extension. Readers are imported only when
used, so that importing this module stays cheap (mne alone takes about a second).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Collection
from pathlib import Path
from typing import Any

from medscale.errors import SpecError
from medscale.io.reader_rules import check_labels_present
from medscale.io.recording import Recording

SIGNAL_READERS: tuple[str, ...] = ("edf", "wfdb", "text", "mne")

_READER_BY_SUFFIX: dict[str, str] = {
    ".edf": "edf",
    ".bdf": "edf",
    ".rec": "edf",
    ".hea": "wfdb",
    ".txt": "text",
}

ACCEPTED_FORMATS = (
    "EDF/EDF+/BDF (.edf, .bdf, .rec), WFDB (.hea with its .dat), text (.txt, one value per "
    "line, with a sampling rate given), and anything MNE reads (.fif, .vhdr, .set, .cnt, ...)"
)


def read_signals(
    path: str | Path,
    labels: Collection[str] | None = None,
    *,
    reader: str = "auto",
    **options: Any,
) -> Recording:
    """Read a signal file with the reader named, or the one its extension implies.

    Parameters
    ----------
    path
        The signal file (for WFDB, the ``.hea`` header or the record name).
    labels
        Signals to load; None loads every ordinary signal. The text reader's files hold one
        channel: its label must then be among ``labels``.
    reader
        One of `SIGNAL_READERS`, or ``"auto"``: ``.edf``/``.bdf``/``.rec`` -> edf,
        ``.hea`` -> wfdb, ``.txt`` -> text, anything else -> mne.
    **options
        Passed on to the reader (the text reader needs ``sfreq_hz``).

    Raises
    ------
    SpecError
        The reader name is not one of `SIGNAL_READERS` or ``"auto"``, or the options do
        not fit the chosen reader.
    ChannelError
        A requested label is not in the file.
    RecordingReadError
        The file cannot be read.
    """
    path = Path(path)
    if reader == "auto":
        reader = _READER_BY_SUFFIX.get(path.suffix.lower(), "mne")
    if reader not in SIGNAL_READERS:
        raise SpecError(
            f"unknown signal reader {reader!r}; valid readers: {', '.join(SIGNAL_READERS)} "
            "or 'auto'"
        )
    if reader == "text" and "sfreq_hz" not in options:
        raise SpecError(
            f"{path}: a text signal (one value per line) does not record its sampling rate; "
            "give it: `reader_options={'sfreq_hz': HZ}` to `predict_recording`, `sfreq_hz=` "
            "to `read_signals`, or "
            "`signals: {options: {sfreq_hz: HZ}}` in a dataset spec (as the `dreams` spec "
            f"does). Formats that carry their rate: {ACCEPTED_FORMATS}"
        )
    func, args = _reader_call(reader, path, labels)
    try:
        inspect.signature(func).bind(*args, **options)
    except TypeError as exc:
        raise SpecError(
            f"{path}: bad options {sorted(options)} for reader {reader!r}: {exc}"
        ) from None
    recording: Recording = func(*args, **options)
    if reader == "text" and labels is not None:
        check_labels_present(path, labels, recording.labels)
    return recording


def list_signal_labels(path: str | Path, *, reader: str = "auto") -> list[str] | None:
    """The signal labels a file holds, read from its header alone; None where the format
    has no cheap header (the caller then reads every signal)."""
    path = Path(path)
    if reader == "auto":
        reader = _READER_BY_SUFFIX.get(path.suffix.lower(), "mne")
    if reader != "edf":
        return None
    from medscale.io.edf import read_edf_header

    header, _ = read_edf_header(path)
    return [s.label for s in header.signals if not s.is_annotation]


def _reader_call(
    reader: str, path: Path, labels: Collection[str] | None
) -> tuple[Callable[..., Recording], tuple[Any, ...]]:
    if reader == "edf":
        from medscale.io.edf import read_edf

        return read_edf, (path, labels)
    if reader == "wfdb":
        from medscale.io.wfdb_record import read_wfdb

        return read_wfdb, (path, labels)
    if reader == "text":
        from medscale.io.text_signal import read_text_signal

        return read_text_signal, (path,)
    from medscale.io.mne_raw import read_mne_raw

    return read_mne_raw, (path, labels)
