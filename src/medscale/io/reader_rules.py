"""The rules every signal reader shares: physical units normalised to microvolts, and the
check that the requested signals are in the file.

Its own module (not `medscale.io.signals`, which imports the readers) so that the readers
and their dispatcher do not import each other.
"""

from __future__ import annotations

from collections.abc import Collection
from pathlib import Path

from medscale.errors import ChannelError

__all__ = ["check_labels_present", "unit_scale_to_uv"]

# Voltage units in lower case -> factor to microvolts. "mv" also covers "MV": megavolts never
# occur in biosignal files, millivolts written in capitals do.
_VOLTS_TO_UV: dict[str, float] = {
    "nv": 1e-3,
    "nanovolt": 1e-3,
    "nanovolts": 1e-3,
    "uv": 1.0,
    "µv": 1.0,  # micro sign U+00B5 (what latin-1 byte 0xB5 decodes to)
    "μv": 1.0,  # greek mu U+03BC
    "microvolt": 1.0,
    "microvolts": 1.0,
    "mv": 1e3,
    "millivolt": 1e3,
    "millivolts": 1e3,
    "v": 1e6,
    "volt": 1e6,
    "volts": 1e6,
}
# The spellings the EDF spec and WFDB use; anything else is read but worth a warning.
_STANDARD_VOLT_SPELLINGS = frozenset({"nV", "uV", "mV", "V"})

# A few non-voltage units whose spelling varies between vendors.
_OTHER_UNIT_SPELLINGS: dict[str, str] = {
    "degc": "degC",
    "deg c": "degC",
    "°c": "degC",
    "celsius": "degC",
    "bpm": "bpm",
    "mmhg": "mmHg",
    "ohm": "Ohm",
    "kohm": "kOhm",
}


def unit_scale_to_uv(unit: str) -> tuple[str, float, bool]:
    """Normalise a unit string and give the factor that converts its values.

    Parameters
    ----------
    unit
        The unit as the file spells it (any case, surrounding spaces allowed).

    Returns
    -------
    tuple
        ``(unit_out, factor, standard)``: voltages give ``("uV", factor_to_uv, ...)``, other
        units their normalised spelling with factor 1.0. ``standard`` is False when the input
        spelling is not one a spec would write (``UV``, ``µV``, ``microvolts``...), so that
        a reader can warn about it.
    """
    stripped = unit.strip()
    factor = _VOLTS_TO_UV.get(stripped.lower())
    if factor is not None:
        return "uV", factor, stripped in _STANDARD_VOLT_SPELLINGS
    return _OTHER_UNIT_SPELLINGS.get(stripped.lower(), stripped), 1.0, True


def check_labels_present(path: Path, wanted: Collection[str], found: Collection[str]) -> None:
    """Raise `ChannelError` naming the requested labels the file does not hold."""
    missing = [label for label in wanted if label not in found]
    if missing:
        raise ChannelError(f"{path}: no signal {missing} in the file; found {list(found)}")
