"""read_edf on the real Sleep-EDF crop, on every injected quirk, and on unreadable files."""

from __future__ import annotations

import datetime as dt
import json
import shutil
import tracemalloc
from pathlib import Path

import edfio
import numpy as np
import pytest

from medscale.errors import ChannelError, RecordingReadError
from medscale.io.edf import header_field_slice, read_edf, signal_field_slice
from medscale.io.reader_rules import unit_scale_to_uv
from medscale.synth.quirks import QUIRKS, inject_quirk

PATIENT_NAME = "Jane_Doe"
RATES_HZ = {"EEG C3-A2": 256, "EOG E1": 256, "EMG chin": 128, "SaO2": 1}
DURATION_S = 30


def assert_same_values(signal, values) -> None:
    """EDF samples come back as float32: equal to the written values up to float32 rounding,
    far below the file's own step (``signal.resolution``)."""
    np.testing.assert_allclose(signal.data, values, rtol=1e-6, atol=signal.resolution / 100)


def write_small_edf(path: Path) -> list[np.ndarray]:
    """Four signals at three rates; returns each signal's physical values as written."""
    rng = np.random.default_rng(7)
    units = {"EEG C3-A2": "uV", "EOG E1": "uV", "EMG chin": "uV", "SaO2": "%"}
    ranges = {"EEG C3-A2": (-500, 500), "EOG E1": (-1000, 1000), "EMG chin": (-100, 100)}
    signals = []
    for label, rate in RATES_HZ.items():
        low, high = ranges.get(label, (0, 100))
        data = rng.uniform(low, high, DURATION_S * rate)
        signals.append(
            edfio.EdfSignal(
                data,
                rate,
                label=label,
                physical_dimension=units[label],
                physical_range=(low, high),
                # 12-bit digital range for one signal, as Sleep-EDF has.
                digital_range=(-2048, 2047) if label == "EMG chin" else (-32768, 32767),
            )
        )
    edf = edfio.Edf(signals, patient=edfio.Patient(name=PATIENT_NAME))
    edf.write(path)
    return [s.data.copy() for s in edfio.read_edf(path).signals]


@pytest.fixture
def small_edf(tmp_path: Path) -> tuple[Path, list[np.ndarray]]:
    path = tmp_path / "small.edf"
    return path, write_small_edf(path)


def patch_field(path: Path, where: slice, value: bytes) -> None:
    raw = bytearray(path.read_bytes())
    raw[where] = value.ljust(where.stop - where.start, b" ")
    path.write_bytes(bytes(raw))


# --- the real Sleep-EDF crop ----------------------------------------------------------------


def test_short_psg_header_matches_edfio_reference(shared_data: Path) -> None:
    folder = shared_data / "sleepedf_edfio"
    reference = json.loads((folder / "short_psg_header_reference.json").read_text())
    recording = read_edf(folder / "short_psg.edf")
    assert recording.labels == [r["label"] for r in reference]
    assert len(recording.signals) == 7
    for signal, ref in zip(recording.signals, reference, strict=True):
        assert signal.sfreq_hz == ref["sampling_frequency"]
        assert signal.unit == unit_scale_to_uv(ref["physical_dimension"])[0]
        assert signal.duration_s == 300
        step = (ref["physical_max"] - ref["physical_min"]) / (
            ref["digital_max"] - ref["digital_min"]
        )
        assert signal.resolution == pytest.approx(step)
    assert recording.start == dt.datetime(1989, 4, 24, 16, 13)
    assert recording.warnings == []


def test_short_psg_values_match_edfio_and_units_are_normalised(shared_data: Path) -> None:
    path = shared_data / "sleepedf_edfio" / "short_psg.edf"
    recording = read_edf(path, ["EEG Fpz-Cz", "Temp rectal"])
    assert recording.labels == ["EEG Fpz-Cz", "Temp rectal"]
    reference = edfio.read_edf(path)
    eeg = recording.signal("EEG Fpz-Cz")
    assert eeg.data.dtype == np.float32  # EDF is 16-bit: float32 holds it, at half the memory
    # float32 rounding stays far below the file's own step (about 0.1 µV here).
    np.testing.assert_allclose(
        eeg.data, reference.get_signal("EEG Fpz-Cz").data, rtol=1e-6, atol=eeg.resolution / 100
    )
    assert recording.signal("Temp rectal").unit == "degC"  # the file writes "DegC"
    assert "Startdate 24-APR-1989" in recording.identifiers["recording"]
    assert recording.identifiers["startdate"] == "24.04.89"


def test_unknown_label_raises_channel_error_listing_the_labels(shared_data: Path) -> None:
    with pytest.raises(ChannelError, match="EEG Fpz-Cz"):
        read_edf(shared_data / "sleepedf_edfio" / "short_psg.edf", ["EEG C3"])


# --- clean and quirky synthetic files -------------------------------------------------------


def test_clean_file_reads_every_rate_without_warnings(small_edf) -> None:
    path, expected = small_edf
    recording = read_edf(path)
    assert recording.warnings == []
    assert [s.sfreq_hz for s in recording.signals] == list(RATES_HZ.values())
    for signal, values in zip(recording.signals, expected, strict=True):
        assert_same_values(signal, values)
    assert recording.signal("EMG chin").resolution == pytest.approx(200 / 4095)
    assert recording.signal("SaO2").unit == "%"
    assert PATIENT_NAME in recording.identifiers["patient"]


WARNING_FOR_QUIRK = {
    "unit_case": "not a standard spelling",
    "non_ascii_label": "non-ASCII",
    "digital_range": "exceeds the EDF limits",
    "partial_record": "partial data record",
    "n_records_unknown": "-1",
}


@pytest.mark.parametrize("quirk", QUIRKS)
def test_each_quirk_gives_a_warning_and_the_right_values(small_edf, quirk: str) -> None:
    path, expected = small_edf
    description = inject_quirk(path, quirk)
    assert quirk in description and "\n" not in description
    recording = read_edf(path)
    assert any(WARNING_FOR_QUIRK[quirk] in w for w in recording.warnings), recording.warnings
    assert not any(PATIENT_NAME in w for w in recording.warnings)
    assert len(recording.signals) == len(expected)
    for signal, values in zip(recording.signals, expected, strict=True):
        assert_same_values(signal, values)
        assert signal.unit == ("%" if signal.label == "SaO2" else "uV")


def test_unit_case_quirk_rewrites_one_signal_to_millivolts(small_edf) -> None:
    path, _ = small_edf
    assert "mV" in inject_quirk(path, "unit_case")
    recording = read_edf(path)
    # The mV signal's step is converted to µV too: 2000 µV over 65535 counts.
    assert recording.signal("EOG E1").resolution == pytest.approx(2000 / 65535)


def test_non_ascii_label_is_decoded_as_latin1(small_edf) -> None:
    path, _ = small_edf
    inject_quirk(path, "non_ascii_label")
    assert read_edf(path).labels[0] == "EEG C3-A2é"


def test_partial_record_warning_counts_the_dropped_bytes(small_edf) -> None:
    path, expected = small_edf
    inject_quirk(path, "partial_record")
    record_bytes = 2 * sum(RATES_HZ.values())  # 1-s data records
    recording = read_edf(path)
    assert any(f"dropped the last {record_bytes // 2} bytes" in w for w in recording.warnings)
    assert len(recording.signals[0].data) == len(expected[0])


def test_header_claiming_more_records_than_the_file_holds_reads_whole_ones(small_edf) -> None:
    path, expected = small_edf
    patch_field(path, header_field_slice("n_records"), b"99999999")
    recording = read_edf(path)
    assert any("declares 99999999 data records" in w for w in recording.warnings)
    assert_same_values(recording.signals[0], expected[0])


def test_unknown_quirk_lists_the_valid_names(small_edf) -> None:
    with pytest.raises(ValueError, match="partial_record"):
        inject_quirk(small_edf[0], "upside_down")


def test_unparseable_start_gives_none_and_a_warning_without_the_value(small_edf) -> None:
    path, _ = small_edf
    patch_field(path, header_field_slice("startdate"), b"31.02.99")
    recording = read_edf(path)
    assert recording.start is None
    assert any("start" in w for w in recording.warnings)
    assert not any("31.02.99" in w for w in recording.warnings)
    assert recording.identifiers["startdate"] == "31.02.99"


def test_bdf_round_trip_keeps_24_bit_values(tmp_path: Path) -> None:
    values = 300 * np.sin(np.arange(2560) / 7)
    signal = edfio.BdfSignal(
        values, 256, label="EEG Fz", physical_dimension="uV", physical_range=(-1000, 1000)
    )
    path = tmp_path / "round.bdf"
    edfio.Bdf([signal]).write(path)
    recording = read_edf(path)
    (read,) = recording.signals
    assert (read.label, read.unit, read.sfreq_hz) == ("EEG Fz", "uV", 256)
    assert read.resolution == pytest.approx(2000 / (2**24 - 1))
    assert np.abs(read.data - values).max() <= read.resolution
    assert recording.warnings == []


def write_edf_plus_d(path: Path, onsets_s: list[float]) -> None:
    """An EDF+D file with one 1-s data record per onset (record onsets in its TALs)."""
    n = len(onsets_s)
    signal = edfio.EdfSignal(
        np.linspace(-50, 50, 100 * n),
        100,
        label="EEG",
        physical_dimension="uV",
        physical_range=(-100, 100),
    )
    edfio.Edf([signal], annotations=[edfio.EdfAnnotation(0, None, "start")]).write(path)
    raw = bytearray(path.read_bytes())
    raw[header_field_slice("reserved")] = b"EDF+D".ljust(44)
    header_bytes = 3 * 256
    width = 2 * int(raw[signal_field_slice(2, "samples_per_record", 1)])
    record_bytes = 2 * 100 + width
    for r, onset in enumerate(onsets_s[1:], start=1):  # record 0 also holds "start"
        tal = f"+{onset:g}\x14\x14\x00".encode().ljust(width, b"\x00")
        at = header_bytes + r * record_bytes + 200
        raw[at : at + width] = tal
    path.write_bytes(bytes(raw))


def test_edf_plus_d_is_read_with_a_warning_giving_total_gap_seconds(tmp_path: Path) -> None:
    path = tmp_path / "gaps.edf"
    write_edf_plus_d(path, [0, 1, 2, 5, 6, 7, 8.5, 9.5])
    recording = read_edf(path)
    assert recording.labels == ["EEG"]  # the annotation signal is never a Signal
    assert len(recording.signals[0].data) == 800
    (warning,) = recording.warnings
    assert "2 gaps totalling 2.5 s" in warning
    assert "concatenated" in warning


def test_edf_plus_c_annotation_signal_is_not_returned(tmp_path: Path) -> None:
    path = tmp_path / "contig.edf"
    write_edf_plus_d(path, [0, 1, 2])
    patch_field(path, header_field_slice("reserved"), b"EDF+C")
    recording = read_edf(path)
    assert recording.labels == ["EEG"]
    assert recording.warnings == []


# --- files that cannot be read --------------------------------------------------------------


def _random(raw: bytes) -> bytes:
    return np.random.default_rng(3).bytes(len(raw))


def _truncated_header(raw: bytes) -> bytes:
    return raw[:700]  # 4 signals need a 1280-byte header


def _zero_records(raw: bytes) -> bytes:
    header = bytearray(raw[:1280])
    header[header_field_slice("n_records")] = b"0".ljust(8)
    return bytes(header)


def _huge_samples_per_record(raw: bytes) -> bytes:
    out = bytearray(raw)
    for i in range(4):
        out[signal_field_slice(4, "samples_per_record", i)] = b"99999999"
    return bytes(out)


def _huge_signal_count(raw: bytes) -> bytes:
    out = bytearray(raw)
    out[header_field_slice("n_signals")] = b"9999"
    return bytes(out)


def _not_a_number(raw: bytes) -> bytes:
    out = bytearray(raw)
    out[signal_field_slice(4, "physical_min", 2)] = b"abc".ljust(8)
    return bytes(out)


UNREADABLE = {
    "random bytes": (_random, "not an EDF or BDF"),
    "truncated header": (_truncated_header, "header declares 4 signals"),
    "zero records": (_zero_records, "no whole data record"),
    "huge samples per record": (_huge_samples_per_record, "no whole data record"),
    "huge signal count": (_huge_signal_count, "9999 signals"),
    "field not a number": (_not_a_number, "physical minimum of signal 2 .* 'abc'"),
}


@pytest.mark.parametrize("case", UNREADABLE)
def test_unreadable_file_raises_naming_file_and_reason(small_edf, case: str) -> None:
    path, _ = small_edf
    corrupt, reason = UNREADABLE[case]
    path.write_bytes(corrupt(path.read_bytes()))
    tracemalloc.start()
    try:
        with pytest.raises(RecordingReadError, match=reason) as info:
            read_edf(path)
        _, peak_bytes = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert str(path) in str(info.value)
    assert peak_bytes < 5_000_000  # fails fast: sizes are checked before any allocation


def test_missing_file_raises_recording_read_error(tmp_path: Path) -> None:
    with pytest.raises(RecordingReadError, match="cannot be opened"):
        read_edf(tmp_path / "absent.edf")


def test_quirks_compose_on_one_file(small_edf, tmp_path: Path) -> None:
    path, expected = small_edf
    for quirk in QUIRKS:
        inject_quirk(path, quirk)
    copy = tmp_path / "copy.edf"
    shutil.copy(path, copy)
    recording = read_edf(copy)
    assert len(recording.warnings) >= len(QUIRKS)
    for signal, values in zip(recording.signals, expected, strict=True):
        assert_same_values(signal, values)


def test_unit_case_divides_decimal_ranges_exactly(tmp_path: Path) -> None:
    # -3276.8 / 1000 is not exact in binary floating point; the header text must still be.
    path = tmp_path / "decimal.edf"
    values = np.linspace(-3000, 3000, 2560)
    signals = [
        edfio.EdfSignal(
            values, 256, label=label, physical_dimension="uV", physical_range=(-3276.8, 3276.7)
        )
        for label in ("EEG 1", "EEG 2")
    ]
    edfio.Edf(signals).write(path)
    inject_quirk(path, "unit_case")
    assert edfio.read_edf(path).signals[1].physical_dimension == "mV"
    recording = read_edf(path)
    assert recording.signals[1].resolution == pytest.approx(0.1)
    np.testing.assert_allclose(recording.signals[1].data, values, atol=0.05 + 1e-9)


def test_annotation_only_edf_plus_gives_no_signals(shared_data: Path) -> None:
    recording = read_edf(shared_data / "sleepedf_edfio" / "SC4001EC-Hypnogram.edf")
    assert recording.signals == []
    assert recording.start == dt.datetime(1989, 4, 24, 16, 13)
