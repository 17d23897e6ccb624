"""The text, WFDB and MNE readers, the unit rule they share, and read_signals dispatch."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import wfdb

from medscale.errors import ChannelError, RecordingReadError, SpecError
from medscale.io.mne_raw import read_mne_raw
from medscale.io.reader_rules import unit_scale_to_uv
from medscale.io.signals import SIGNAL_READERS, read_signals
from medscale.io.text_signal import read_text_signal
from medscale.io.wfdb_record import read_wfdb

# --- units ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("unit", "factor", "standard"),
    [
        ("uV", 1.0, True),
        ("UV", 1.0, False),
        ("µV", 1.0, False),
        ("μV", 1.0, False),
        (" uv ", 1.0, False),
        ("mV", 1e3, True),
        ("MV", 1e3, False),
        ("V", 1e6, True),
        ("nV", 1e-3, True),
        ("microvolts", 1.0, False),
    ],
)
def test_voltage_units_convert_to_microvolts(unit: str, factor: float, standard: bool) -> None:
    assert unit_scale_to_uv(unit) == ("uV", factor, standard)


@pytest.mark.parametrize(("unit", "out"), [("DegC", "degC"), ("%", "%"), ("", ""), ("l ", "l")])
def test_other_units_keep_a_normalised_spelling(unit: str, out: str) -> None:
    assert unit_scale_to_uv(unit) == (out, 1.0, True)


# --- text (DREAMS) --------------------------------------------------------------------------


def test_dreams_excerpt1_crlf_at_100_hz(shared_data: Path) -> None:
    recording = read_text_signal(shared_data / "dreams_spindles" / "excerpt1.txt", 100)
    (signal,) = recording.signals
    assert (signal.label, signal.unit, signal.sfreq_hz) == ("C3-A1", "uV", 100.0)
    assert len(signal.data) == 180_000
    np.testing.assert_array_equal(signal.data[:2], [-0.9562, -0.8962])
    assert np.isnan(signal.resolution)


def test_dreams_excerpt6_lf_has_360140_samples(shared_data: Path) -> None:
    recording = read_text_signal(shared_data / "dreams_spindles" / "excerpt6.txt", 200)
    assert recording.labels == ["CZ-A1"]
    assert len(recording.signals[0].data) == 360_140


def test_crlf_and_lf_give_the_same_values_and_label_can_be_given(tmp_path: Path) -> None:
    crlf, lf = tmp_path / "crlf.txt", tmp_path / "lf.txt"
    crlf.write_bytes(b"[C3-A1]\r\n 1.5\r\n-2\r\n3e1\r\n")
    lf.write_bytes(b"[C3-A1]\n 1.5\n-2\n3e1\n\n")
    a = read_text_signal(crlf, 10)
    b = read_text_signal(lf, 10, label="EEG C3")
    np.testing.assert_array_equal(a.signals[0].data, [1.5, -2.0, 30.0])
    np.testing.assert_array_equal(a.signals[0].data, b.signals[0].data)
    assert b.labels == ["EEG C3"]


def test_text_without_header_takes_label_from_file_name_with_warning(tmp_path: Path) -> None:
    path = tmp_path / "fz.txt"
    path.write_text("1\n2\n")
    recording = read_text_signal(path, 1)
    assert recording.labels == ["fz"]
    assert any("no [label] header" in w for w in recording.warnings)


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"[C3-A1]\n1.0\n2.0\nabc\n4\n", "line 4 is 'abc'"),
        (b"[C3-A1]\n1.0\n\n2.0\n", "line 3 is ''"),
        (b"[C3-A1]\n1.0\nnan\n", "line 3 is 'nan'"),
        (b"[C3-A1]\n", "no sample values"),
        (b"", "no sample values"),
    ],
)
def test_bad_text_raises_with_file_and_line(tmp_path: Path, content: bytes, reason: str) -> None:
    path = tmp_path / "bad.txt"
    path.write_bytes(content)
    with pytest.raises(RecordingReadError, match=reason) as info:
        read_text_signal(path, 100)
    assert str(path) in str(info.value)


@pytest.mark.parametrize("rate", [0, -1, float("nan"), "fast"])
def test_text_needs_a_positive_rate(tmp_path: Path, rate: object) -> None:
    path = tmp_path / "x.txt"
    path.write_text("[X]\n1\n")
    with pytest.raises(SpecError, match="sfreq_hz"):
        read_text_signal(path, rate)  # type: ignore[arg-type]


# --- WFDB -----------------------------------------------------------------------------------


def test_wfdb_header_without_signal_file_names_the_missing_file(shared_data: Path) -> None:
    header = shared_data / "mitbih_slpdb_annotations" / "slp01a.hea"
    with pytest.raises(RecordingReadError) as info:
        read_wfdb(header)
    assert str(info.value) == (
        f"{header}: signal file 'slp01a.dat' named by the header is missing "
        f"(looked for {header.with_suffix('.dat')})"
    )


def test_wfdb_missing_header_raises(tmp_path: Path) -> None:
    with pytest.raises(RecordingReadError, match="header file not found"):
        read_wfdb(tmp_path / "nothing.hea")


@pytest.fixture
def wfdb_record(tmp_path: Path) -> tuple[Path, np.ndarray]:
    t = np.arange(2500) / 250
    values = np.stack([0.1 * np.sin(t), 50 * np.cos(t), 80 + t], axis=1)
    wfdb.wrsamp(
        "night",
        fs=250,
        units=["mV", "uV", "mmHg"],
        sig_name=["EEG C3", "EOG", "BP"],
        p_signal=values,
        fmt=["16", "16", "16"],
        adc_gain=[10000.0, 200.0, 100.0],
        baseline=[0, 0, 0],
        comments=["age 44 sex M"],
        write_dir=str(tmp_path),
    )
    return tmp_path / "night", values


@pytest.mark.parametrize("suffix", ["", ".hea"])
def test_wfdb_round_trip_in_microvolts(wfdb_record, suffix: str) -> None:
    record, values = wfdb_record
    recording = read_wfdb(f"{record}{suffix}")
    assert recording.labels == ["EEG C3", "EOG", "BP"]
    eeg, eog, bp = recording.signals
    assert (eeg.unit, eog.unit, bp.unit) == ("uV", "uV", "mmHg")
    assert eeg.sfreq_hz == 250.0
    assert eeg.resolution == pytest.approx(1000 / 10000)  # 0.1 µV per count
    np.testing.assert_allclose(eeg.data, values[:, 0] * 1000, atol=eeg.resolution)
    np.testing.assert_allclose(eog.data, values[:, 1], atol=eog.resolution)
    np.testing.assert_allclose(bp.data, values[:, 2], atol=bp.resolution)
    assert recording.identifiers["comments"] == "age 44 sex M"
    assert not any("44" in w for w in recording.warnings)


def test_wfdb_loads_only_requested_labels(wfdb_record) -> None:
    record, _ = wfdb_record
    assert read_wfdb(record, ["BP", "EEG C3"]).labels == ["EEG C3", "BP"]
    with pytest.raises(ChannelError, match="EMG"):
        read_wfdb(record, ["EMG"])


def test_wfdb_signals_keep_their_own_rates(tmp_path: Path) -> None:
    eeg, resp = np.sin(np.arange(1000) / 10), np.cos(np.arange(250) / 10)
    wfdb.wrsamp(
        "multi",
        fs=25,
        units=["mV", "l"],
        sig_name=["EEG", "Resp"],
        e_p_signal=[eeg, resp],
        samps_per_frame=[4, 1],
        fmt=["16", "16"],
        adc_gain=[1000.0, 1000.0],
        baseline=[0, 0],
        write_dir=str(tmp_path),
    )
    recording = read_wfdb(tmp_path / "multi.hea")
    assert [s.sfreq_hz for s in recording.signals] == [100.0, 25.0]
    assert [len(s.data) for s in recording.signals] == [1000, 250]


# --- MNE ------------------------------------------------------------------------------------


def test_fif_volts_become_microvolts(shared_data: Path) -> None:
    import mne

    path = shared_data / "yasa_examples" / "data_resting_EO_200Hz_raw.fif"
    recording = read_mne_raw(path)
    assert recording.labels == ["F4-A1", "CZ-A2"]
    reference = mne.io.read_raw(path, verbose="error").get_data()
    for signal, volts in zip(recording.signals, reference, strict=True):
        assert (signal.unit, signal.sfreq_hz, len(signal.data)) == ("uV", 200.0, 72_000)
        np.testing.assert_allclose(signal.data, volts * 1e6)
    assert 10 < np.abs(recording.signals[0].data).max() < 1000  # EEG-sized in µV
    assert recording.start is not None
    assert recording.warnings == []


def test_fif_subset_and_missing_label(shared_data: Path) -> None:
    path = shared_data / "yasa_examples" / "data_resting_EO_200Hz_raw.fif"
    assert read_mne_raw(path, ["CZ-A2"]).labels == ["CZ-A2"]
    with pytest.raises(ChannelError, match="F4-A1"):
        read_mne_raw(path, ["C3-A2"])


def test_mne_unreadable_file_raises(tmp_path: Path) -> None:
    path = tmp_path / "junk.vhdr"
    path.write_text("not a BrainVision header")
    with pytest.raises(RecordingReadError, match=r"junk\.vhdr"):
        read_mne_raw(path)


# --- read_signals ---------------------------------------------------------------------------


def test_read_signals_dispatches_by_extension(shared_data: Path, wfdb_record) -> None:
    record, _ = wfdb_record
    edf = read_signals(shared_data / "sleepedf_edfio" / "short_psg.edf", ["EEG Pz-Oz"])
    assert edf.labels == ["EEG Pz-Oz"]
    text = read_signals(shared_data / "dreams_spindles" / "excerpt3.txt", sfreq_hz=50)
    assert text.labels == ["C3-A1"]
    assert read_signals(f"{record}.hea", ["EOG"]).labels == ["EOG"]
    fif = read_signals(shared_data / "yasa_examples" / "data_resting_EO_200Hz_raw.fif")
    assert fif.labels == ["F4-A1", "CZ-A2"]


def test_read_signals_reader_can_be_named(shared_data: Path) -> None:
    path = shared_data / "sleepedf_edfio" / "short_psg.edf"
    via_mne = read_signals(path, ["EEG Fpz-Cz"], reader="mne")
    via_edf = read_signals(path, ["EEG Fpz-Cz"], reader="edf")
    np.testing.assert_allclose(
        via_mne.signals[0].data, via_edf.signals[0].data, rtol=1e-6, atol=1e-3
    )


def test_read_signals_rejects_unknown_reader_and_bad_options(tmp_path: Path) -> None:
    assert SIGNAL_READERS == ("edf", "wfdb", "text", "mne")
    with pytest.raises(SpecError, match="edf, wfdb, text, mne"):
        read_signals(tmp_path / "x.edf", reader="csv")
    with pytest.raises(SpecError, match="does not record its sampling rate"):
        read_signals(tmp_path / "x.txt")  # sfreq_hz missing
    with pytest.raises(SpecError, match="'edf'"):
        read_signals(tmp_path / "x.edf", sfreq_hz=100)


def test_read_signals_text_checks_the_requested_label(tmp_path: Path) -> None:
    path = tmp_path / "one.txt"
    path.write_text("[C3-A1]\n1\n2\n")
    assert read_signals(path, ["C3-A1"], sfreq_hz=1).labels == ["C3-A1"]
    with pytest.raises(ChannelError, match="C3-A1"):
        read_signals(path, ["Fz"], sfreq_hz=1)
