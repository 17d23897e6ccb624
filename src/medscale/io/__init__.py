"""Readers for signal and annotation files, and the types they return.

``read_signals`` reads any supported signal file into a `Recording`; ``read_hypnogram``
reads any supported hypnogram format into a `RawHypnogram`, and ``to_aasm`` maps it to AASM
stage codes as a `Hypnogram`.
"""

from medscale.io.hypnograms import HYPNOGRAM_FORMATS, read_hypnogram, to_aasm
from medscale.io.recording import Event, Hypnogram, RawHypnogram, Recording, Signal
from medscale.io.signals import SIGNAL_READERS, list_signal_labels, read_signals

__all__ = [
    "HYPNOGRAM_FORMATS",
    "SIGNAL_READERS",
    "Event",
    "Hypnogram",
    "RawHypnogram",
    "Recording",
    "Signal",
    "list_signal_labels",
    "read_hypnogram",
    "read_signals",
    "to_aasm",
]
