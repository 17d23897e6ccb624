"""Rewrite a valid EDF file to carry one deviation that real-world files show.

Readers must tolerate these (with a warning); `inject_quirk` makes test files for that.
Every quirk keeps the physical values of the samples the same, so a test can check that a
reader still gets the data right.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from pathlib import Path

from medscale.io.edf import (
    FIXED_HEADER_BYTES,
    SIGNAL_HEADER_BYTES,
    header_field_slice,
    signal_field_slice,
)

QUIRKS: tuple[str, ...] = (
    "unit_case",
    "non_ascii_label",
    "digital_range",
    "partial_record",
    "n_records_unknown",
)

_INT16_MIN, _INT16_MAX = -32768, 32767


def inject_quirk(path: Path, quirk: str) -> str:
    """Rewrite the EDF file at ``path`` in place so that it carries ``quirk``.

    Parameters
    ----------
    path
        A valid EDF file (not BDF).
    quirk
        One of `QUIRKS`:

        - ``"unit_case"``: voltage units in odd spellings: the first ``uV`` signal becomes
          ``UV``, and another one ``mV`` with its physical range divided by 1000 (the first
          whose range stays exact in 8 characters; if none, the second becomes ``uv``).
        - ``"non_ascii_label"``: a latin-1 ``é`` (byte 0xE9) in the first ordinary signal's
          label.
        - ``"digital_range"``: one signal's digital limits widened beyond int16, with the
          physical limits widened alike so that gain and offset stay exactly the same.
        - ``"partial_record"``: half a data record appended at the end of the file.
        - ``"n_records_unknown"``: the header's number of data records set to -1.

    Returns
    -------
    str
        A one-line description of the change.

    Raises
    ------
    ValueError
        Unknown quirk, or the file has nothing the quirk can change (e.g. no µV signal).
    """
    if quirk not in QUIRKS:
        raise ValueError(f"unknown quirk {quirk!r}; valid quirks: {', '.join(QUIRKS)}")
    path = Path(path)
    raw = bytearray(path.read_bytes())
    n_signals = int(raw[header_field_slice("n_signals")].decode("ascii"))
    if len(raw) < FIXED_HEADER_BYTES + n_signals * SIGNAL_HEADER_BYTES:
        raise ValueError(f"{path}: header is truncated; expected a valid EDF file")
    if quirk == "partial_record":
        return _partial_record(path, raw, n_signals)
    description = _INJECTORS[quirk](raw, n_signals)
    path.write_bytes(bytes(raw))
    return description


def _unit_case(raw: bytearray, n_signals: int) -> str:
    in_uv = [i for i in range(n_signals) if _get(raw, n_signals, "physical_dimension", i) == "uV"]
    if not in_uv:
        raise ValueError("unit_case: no signal in uV to rewrite")
    first, others = in_uv[0], in_uv[1:]
    _put(raw, n_signals, "physical_dimension", first, "UV")
    changes = [f"signal {first} uV -> UV"]
    for i in others:
        lo, hi = (_decimal(raw, n_signals, f, i) for f in ("physical_min", "physical_max"))
        lo_mv, hi_mv = _field_text(lo.scaleb(-3)), _field_text(hi.scaleb(-3))
        if lo_mv is not None and hi_mv is not None:
            _put(raw, n_signals, "physical_dimension", i, "mV")
            _put(raw, n_signals, "physical_min", i, lo_mv)
            _put(raw, n_signals, "physical_max", i, hi_mv)
            changes.append(f"signal {i} uV -> mV (physical range / 1000)")
            break
    else:
        if others:  # no range fits in 8 characters as mV: change the case only
            _put(raw, n_signals, "physical_dimension", others[0], "uv")
            changes.append(f"signal {others[0]} uV -> uv")
    return "unit_case: " + "; ".join(changes)


def _non_ascii_label(raw: bytearray, n_signals: int) -> str:
    index = next(
        (i for i in range(n_signals) if _get(raw, n_signals, "label", i) != "EDF Annotations"),
        None,
    )
    if index is None:
        raise ValueError("non_ascii_label: the file has no ordinary signal")
    where = signal_field_slice(n_signals, "label", index)
    label = bytes(raw[where]).rstrip(b" ")
    # Append é where the 16-byte field has room, else replace the last character.
    new = (label if len(label) < 16 else label[:15]) + b"\xe9"
    raw[where] = new.ljust(16, b" ")
    return f"non_ascii_label: signal {index} label {label!r} -> {new!r} (latin-1)"


def _digital_range(raw: bytearray, n_signals: int) -> str:
    for i in range(n_signals):
        if _get(raw, n_signals, "label", i) == "EDF Annotations":
            continue
        fields = ("digital_min", "digital_max", "physical_min", "physical_max")
        d_min, d_max, p_min, p_max = (_decimal(raw, n_signals, f, i) for f in fields)
        d_span, p_span = d_max - d_min, p_max - p_min
        if d_span <= 0 or p_span == 0:
            continue
        # Widen both ranges by k spans on each side: gain (span ratio) and offset stay equal.
        k = 1
        while d_min - k * d_span >= _INT16_MIN and d_max + k * d_span <= _INT16_MAX:
            k += 1
        new = {
            "digital_min": _field_text(d_min - k * d_span),
            "digital_max": _field_text(d_max + k * d_span),
            "physical_min": _field_text(p_min - k * p_span),
            "physical_max": _field_text(p_max + k * p_span),
        }
        if any(v is None for v in new.values()):
            continue
        for field, value in new.items():
            _put(raw, n_signals, field, i, value)  # type: ignore[arg-type]
        return (
            f"digital_range: signal {i} digital [{d_min:g}, {d_max:g}] -> "
            f"[{new['digital_min']}, {new['digital_max']}], physical widened alike"
        )
    raise ValueError("digital_range: no signal whose widened limits fit in 8 characters")


def _n_records_unknown(raw: bytearray, n_signals: int) -> str:
    where = header_field_slice("n_records")
    before = bytes(raw[where]).decode("ascii").strip()
    raw[where] = b"-1".ljust(8, b" ")
    return f"n_records_unknown: header number of data records {before} -> -1"


def _partial_record(path: Path, raw: bytearray, n_signals: int) -> str:
    record_bytes = 2 * sum(
        int(_get(raw, n_signals, "samples_per_record", i)) for i in range(n_signals)
    )
    header_bytes = FIXED_HEADER_BYTES + n_signals * SIGNAL_HEADER_BYTES
    # Repeat the start of the first record, as a writer cut off mid-record would leave.
    extra = bytes(raw[header_bytes : header_bytes + record_bytes // 2])
    with path.open("ab") as f:
        f.write(extra)
    return f"partial_record: appended {len(extra)} of {record_bytes} bytes of a data record"


_INJECTORS = {
    "unit_case": _unit_case,
    "non_ascii_label": _non_ascii_label,
    "digital_range": _digital_range,
    "n_records_unknown": _n_records_unknown,
}


def _get(raw: bytearray, n_signals: int, field: str, index: int) -> str:
    return bytes(raw[signal_field_slice(n_signals, field, index)]).decode("latin-1").strip()


def _put(raw: bytearray, n_signals: int, field: str, index: int, value: str) -> None:
    where = signal_field_slice(n_signals, field, index)
    raw[where] = value.encode("ascii").ljust(where.stop - where.start, b" ")


def _decimal(raw: bytearray, n_signals: int, field: str, index: int) -> Decimal:
    # Decimal arithmetic keeps header numbers exact (-3276.8 / 1000 is -3.2768, no float noise).
    text = _get(raw, n_signals, field, index)
    try:
        return Decimal(text)
    except InvalidOperation:
        raise ValueError(f"signal {index} {field} is {text!r}, not a number") from None


def _field_text(value: Decimal) -> str | None:
    """``value`` written exactly in at most 8 characters, else None."""
    text = format(value.normalize(), "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text if len(text) <= 8 else None
