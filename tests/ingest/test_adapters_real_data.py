"""Every shipped dataset adapter, end to end, on the real files of the shared data folder.

Each test runs `medscale.ingest.ingest` with a shipped spec and checks two things: what reaches
the store (read back through `Store`), and that every file of the source folder is either in a
unit of the report or in ``unmatched_files``, each with a reason.

Where the shared data lacks the signal file a dataset needs (HMC PSG, NSRR EDFs, slpdb .dat,
a FIF with a hypnogram), the test writes one from `medscale.synth`, labelled SYNTHETIC in the
header field its reader copies into ``Recording.identifiers``, and ingests it with the shipped
spec turned synthetic (``synthetic: true``), so that the shipped pairing, channel and label
rules are the ones under test. Real files are only ever copied into ``tmp_path``.

Expected values come from the files themselves (read here with numpy, edfio, wfdb or mne) or
from /work/shared/data/SOURCES.md. Two exceptions use medscale code on purpose: the slpdb ``.st``
is written from the ``.an`` dump parsed by `read_rdann_text`, and one DREAMS check compares with
`medscale.ingest.convert.resample` (next to an independent float64 `resample_poly`). Tests
marked ``xfail(strict=True)`` document a bug found in a spec or in the ingest code; their reason
says what is wrong.
"""

from __future__ import annotations

import datetime as dt
import math
import shutil
import xml.etree.ElementTree as ET
from collections import Counter
from fractions import Fraction
from pathlib import Path

import edfio
import numpy as np
import pytest
from scipy.signal import resample_poly

from medscale.datasets import DatasetSpec, list_datasets, load_dataset_spec, parse_dataset_spec
from medscale.ingest import IngestReport, ingest
from medscale.ingest.convert import resample
from medscale.io.stages import N1, N2, N3, REM, UNKNOWN, W
from medscale.io.wfdb_annotations import read_rdann_text
from medscale.privacy import load_pseudonym_key
from medscale.store import Store
from medscale.synth import synthesize_psg

STORE_HZ = 128.0
EPOCH_S = 30.0
EPS32 = float(np.finfo(np.float32).eps)
SAMPLE_DIR = Path(__file__).resolve().parents[2] / "src/medscale/datasets/samples/sleep-edf-sc"
SYNTHETIC_NOTE = "SYNTHETIC signals written by the medscale test suite"
UV_RANGE = (-3276.8, 3276.7)  # 0.1 µV per int16 step
_REASON_ANNOTATION_ONLY = "looks like an annotation file, but no signal file matches it"
_REASON_OTHER = "not a signal file of this dataset, nor the annotation of one"

# Every spec this file runs end to end; a new spec must get a test here.
COVERED_SPECS = {
    "dreams",
    "dreams-edf",
    "hmc",
    "mitbih-slpdb",
    "mne-generic",
    "nsrr",
    "sleep-edf-sc",
    "sleep-edf-st",
    "synthetic",
}


# --- helpers ---------------------------------------------------------------------------------


def _run(spec: DatasetSpec | str, source: Path, store: Path) -> tuple[IngestReport, Store]:
    report = ingest(spec, source, store, workers=1, progress=False)
    return report, Store(store)


def _synthetic_spec(name: str) -> DatasetSpec:
    """The shipped spec, unchanged but for ``synthetic: true``."""
    spec = load_dataset_spec(name)
    return parse_dataset_spec(spec.model_dump() | {"synthetic": True}, f"{name} (synthetic)")


def _shown(report: IngestReport, rel: str) -> str:
    """How the report names a file: its path, or its keyed hash when ids are pseudonymised."""
    return load_pseudonym_key().file(report.dataset, rel) if report.ids == "pseudonymize" else rel


def _assert_every_file_accounted(report: IngestReport, folder: Path) -> None:
    """Each file under ``folder`` is in exactly one unit or unmatched entry, with a reason."""
    on_disk = sorted(
        _shown(report, p.relative_to(folder).as_posix()) for p in folder.rglob("*") if p.is_file()
    )
    in_units = [f for u in report.units for f in u.files]
    unmatched = [f["path"] for f in report.unmatched_files]
    assert sorted(in_units + unmatched) == on_disk
    assert all(f["reason"].strip() for f in report.unmatched_files)
    assert all(u.reason.strip() for u in report.units if u.status != "ingested")


def _unmatched(report: IngestReport) -> dict[str, str]:
    return {f["path"]: f["reason"] for f in report.unmatched_files}


def _edf_signal(label: str, sfreq_hz: float, data_uv: np.ndarray) -> edfio.EdfSignal:
    return edfio.EdfSignal(
        np.clip(data_uv, *UV_RANGE),
        sfreq_hz,
        label=label,
        physical_dimension="uV",
        physical_range=UV_RANGE,
        digital_range=(-32768, 32767),
    )


def _write_synthetic_edf(path: Path, signals: list[edfio.EdfSignal], code: str) -> None:
    """EDF with SYNTHETIC in the patient and recording fields (read_edf's identifiers)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    edfio.Edf(
        signals,
        patient=edfio.Patient(code=code, name="SYNTHETIC"),
        recording=edfio.Recording(
            startdate=dt.date(2001, 1, 1), hospital_administration_code="SYNTHETIC"
        ),
        starttime=dt.time(22, 0),
        data_record_duration=1,
    ).write(path)


def _psg(stages: np.ndarray, sfreq_hz: int, seed: int) -> dict[str, np.ndarray]:
    """Synthetic EEG, EOG and EMG at ``sfreq_hz`` following ``stages``: label -> µV samples."""
    signals = synthesize_psg(stages, sfreq_hz=sfreq_hz, rng=np.random.default_rng(seed))
    return {
        s.label: np.asarray(s.data, dtype=np.float64) for s in signals if s.sfreq_hz == sfreq_hz
    }


def _resample_tolerance(from_hz: float, peak: float, scale: float) -> float:
    """Bound on |stored - float64 resample_poly(source)|.

    Half a store step from rounding to int16, plus float32 arithmetic in the stored path:
    one rounding of relative size eps32 per filter tap that feeds an output sample
    (scipy's default filter has 20 * max(up, down) + 1 taps, spread over ``up`` phases).
    """
    ratio = Fraction(STORE_HZ / from_hz).limit_denominator(1000)
    taps_per_output = math.ceil(
        (20 * max(ratio.numerator, ratio.denominator) + 1) / ratio.numerator
    )
    return scale / 2 + taps_per_output * EPS32 * peak


def _resample64(data: np.ndarray, from_hz: float) -> np.ndarray:
    ratio = Fraction(STORE_HZ / from_hz).limit_denominator(1000)
    return resample_poly(np.asarray(data, np.float64), ratio.numerator, ratio.denominator)


def _read_dreams_text(path: Path) -> np.ndarray:
    """A DREAMS excerpt or hypnogram file: one number per line after a ``[name]`` line."""
    return np.loadtxt(path, skiprows=1)


_DREAMS_RK = {5: W, 4: REM, 3: N1, 2: N2, 1: N3, 0: N3}  # SOURCES.md: 5=W 4=REM 3=S1 ... 0=S4


def _dreams_30s_stages(path: Path) -> tuple[np.ndarray, int]:
    """30-s AASM stages from a 5-s DREAMS hypnogram by majority of the six 5-s scores, and
    how many 30-s epochs mix two scores."""
    scores = _read_dreams_text(path).astype(int).reshape(-1, 6)
    stages, mixed = [], 0
    for row in scores:
        (best, count), *rest = Counter(_DREAMS_RK[s] for s in row).most_common()
        assert count > 3, f"{path.name}: a 30-s epoch has no majority ({row})"
        stages.append(best)
        mixed += bool(rest)
    return np.array(stages, dtype=np.int8), mixed


# --- dreams (text excerpts) ------------------------------------------------------------------

_DREAMS_RATES_HZ = {"excerpt1": 100.0, "excerpt3": 50.0}  # the others: 200 Hz (SOURCES.md)


@pytest.fixture(scope="module")
def dreams_run(shared_data, tmp_path_factory) -> tuple[IngestReport, Store, Path]:
    source = shared_data / "dreams_spindles"
    report, store = _run("dreams", source, tmp_path_factory.mktemp("dreams") / "store")
    return report, store, source


def test_dreams_ingests_all_eight_excerpts_at_their_own_rates(dreams_run):
    report, store, _ = dreams_run
    assert report.ok
    assert [(u.recording_id, u.status) for u in report.units] == [
        (f"excerpt{n}", "ingested") for n in range(1, 9)
    ]
    infos = {i.recording_id: i for i in store.recordings("dreams")}
    assert sorted(infos) == [f"excerpt{n}" for n in range(1, 9)]
    for rid, info in infos.items():
        rate_hz = _DREAMS_RATES_HZ.get(rid, 200.0)
        assert info.n_segments == 60
        assert info.n_samples == 60 * 30 * STORE_HZ
        assert not info.synthetic
        (channel,) = info.channels
        assert channel.source_sfreq_hz == rate_hz
        # excerpt1 and 3 are C3-A1, the others CZ-A1 (SOURCES.md)
        assert channel.name == ("EEG C3-A1" if rid in _DREAMS_RATES_HZ else "EEG Cz-A1")
        assert channel.unit == "uV"
    units = {u.recording_id: u for u in report.units}
    # excerpt6 holds 360,140 samples at 200 Hz: the 0.7 s past the hypnogram is cut
    assert units["excerpt6"].source_duration_s == pytest.approx(360_140 / 200)
    assert units["excerpt6"].trim["signal_dropped_end_s"] == pytest.approx(0.7)
    assert units["excerpt6"].stored_duration_s == 1800.0
    for rid in ("excerpt1", "excerpt3"):
        assert units[rid].source_duration_s == pytest.approx(1800.0)
        assert units[rid].trim["signal_dropped_end_s"] == pytest.approx(0.0)


def test_dreams_hypnograms_are_the_5s_scores_by_majority_with_rem_only_in_excerpt7(dreams_run):
    report, store, source = dreams_run
    total: Counter[int] = Counter()
    n_mixed = 0
    for info in store.recordings("dreams"):
        expected, mixed = _dreams_30s_stages(source / f"Hypnogram_{info.recording_id}.txt")
        np.testing.assert_array_equal(store.read_segment_labels(info), expected)
        unit = next(u for u in report.units if u.recording_id == info.recording_id)
        assert unit.stage_counts == info.class_counts
        assert info.class_counts["REM"] == (5 if info.recording_id == "excerpt7" else 0)
        assert info.class_counts["UNKNOWN"] == 0  # no MT or unscored codes (SOURCES.md)
        total.update(expected.tolist())
        n_mixed += mixed
    assert total[REM] == 5
    assert sum(total.values()) == 480
    assert n_mixed == 140  # SOURCES.md: 140 of 480 epochs mix two 20-s scores


def test_dreams_reports_each_of_the_other_23_files_with_a_reason(dreams_run):
    report, _, source = dreams_run
    _assert_every_file_accounted(report, source)
    unmatched = _unmatched(report)
    assert len(unmatched) == 23
    assert unmatched["DREAMS_databases_License.txt"] == _REASON_OTHER
    for name in unmatched:
        assert name.startswith(("Automatic_detection_", "Visual_scoring", "DREAMS_databases"))


@pytest.mark.parametrize("recording_id", ["excerpt1", "excerpt3", "excerpt6"])
def test_dreams_stored_values_are_the_text_values_resampled(dreams_run, recording_id):
    _, store, source = dreams_run
    info = store.recording("dreams", recording_id)
    (channel,) = info.channels
    values = _read_dreams_text(source / f"{recording_id}.txt")
    stored = store.read_signals(info)[0].astype(np.float64)
    # Exactly medscale's resampling, rounded to the stored step.
    ours = resample(values, channel.source_sfreq_hz, STORE_HZ)[: info.n_samples]
    peak = float(np.max(np.abs(ours)))
    assert np.max(np.abs(stored - ours)) <= channel.scale / 2 + 4 * EPS32 * peak
    # And scipy's polyphase filter run here in float64, independently of medscale.
    independent = _resample64(values, channel.source_sfreq_hz)[: info.n_samples]
    tolerance = _resample_tolerance(channel.source_sfreq_hz, peak, channel.scale)
    assert np.max(np.abs(stored - independent)) <= tolerance
    # Text has no resolution of its own: the step is the smallest that fits int16.
    assert channel.scale == pytest.approx(peak / 32767, rel=1e-5)


# --- sleep-edf-sc / sleep-edf-st -------------------------------------------------------------


def _hypnogram_epochs(path: Path) -> int:
    """Epochs a Sleep-EDF hypnogram covers, from its annotations read with edfio."""
    annotations = edfio.read_edf(path).annotations
    return round(max(a.onset + (a.duration or 0) for a in annotations) / EPOCH_S)


def test_sleep_edf_sc_sample_stores_ten_wake_epochs_and_reports_the_trim(tmp_path):
    report, store = _run("sleep-edf-sc", SAMPLE_DIR, tmp_path / "s")
    assert report.ok
    _assert_every_file_accounted(report, SAMPLE_DIR)
    assert report.unmatched_files == []
    (unit,) = report.units
    assert unit.status == "ingested"
    (info,) = store.recordings()
    assert (info.recording_id, info.subject, info.session) == ("SC4001", "SC400", "1")
    assert info.n_segments == 10
    assert info.channel_names == ["EEG Fpz-Cz", "EEG Pz-Oz", "EOG horizontal"]
    assert info.class_counts == {"W": 10, "N1": 0, "N2": 0, "N3": 0, "REM": 0, "UNKNOWN": 0}
    # The hypnogram scores 24 h; the 5-min crop keeps 10 epochs, the rest is reported.
    n_scored = _hypnogram_epochs(SAMPLE_DIR / "SC4001EC-Hypnogram.edf")
    assert n_scored == 2880
    assert unit.trim["epochs_dropped_start"] == 0
    assert unit.trim["epochs_dropped_end"] == n_scored - 10
    assert "signal and hypnogram cover different spans" in unit.trim["reasons"]
    assert info.metadata["trim"]["epochs_dropped_end"] == n_scored - 10
    # Stored values: the EDF's physical values resampled, within half the EDF's own step.
    edf_signal = next(
        s
        for s in edfio.read_edf(SAMPLE_DIR / "SC4001E0-PSG.edf").signals
        if s.label == "EEG Fpz-Cz"
    )
    (pmin, pmax), (dmin, dmax) = edf_signal.physical_range, edf_signal.digital_range
    channel = info.channels[0]
    assert channel.scale == pytest.approx((pmax - pmin) / (dmax - dmin))
    expected = _resample64(edf_signal.data, 100.0)[: info.n_samples]
    stored = store.read_signals(info, ["EEG Fpz-Cz"])[0]
    peak = float(np.max(np.abs(expected)))
    assert np.max(np.abs(stored - expected)) <= _resample_tolerance(100.0, peak, channel.scale)


def test_sleep_edf_sc_ingests_nothing_from_files_not_named_the_sleep_edf_way(shared_data, tmp_path):
    source = shared_data / "sleepedf_edfio"
    report, store = _run("sleep-edf-sc", source, tmp_path / "s")
    assert report.units == []
    assert store.recordings() == []
    _assert_every_file_accounted(report, source)
    assert _unmatched(report) == {
        "SC4001EC-Hypnogram.edf": _REASON_ANNOTATION_ONLY,
        "short_psg.edf": _REASON_OTHER,
        "short_psg_header_reference.json": _REASON_OTHER,
    }


def test_sleep_edf_sc_reports_all_61_csv_hypnograms(shared_data, tmp_path):
    source = shared_data / "sleepedf_hypnograms_csv"
    report, store = _run("sleep-edf-sc", source, tmp_path / "s")
    assert report.units == []
    assert store.recordings() == []
    _assert_every_file_accounted(report, source)
    assert len(report.unmatched_files) == 61
    assert set(_unmatched(report).values()) == {_REASON_OTHER}


@pytest.fixture
def sleep_edf_st_folder(tmp_path) -> Path:
    """The real SC sample renamed to the Sleep Telemetry layout."""
    folder = tmp_path / "st"
    folder.mkdir()
    shutil.copy(SAMPLE_DIR / "SC4001E0-PSG.edf", folder / "ST7011J0-PSG.edf")
    shutil.copy(SAMPLE_DIR / "SC4001EC-Hypnogram.edf", folder / "ST7011JP-Hypnogram.edf")
    return folder


def test_sleep_edf_st_pairs_the_st_layout_and_keeps_the_1hz_emg(sleep_edf_st_folder, tmp_path):
    report, store = _run("sleep-edf-st", sleep_edf_st_folder, tmp_path / "s")
    assert report.ok
    _assert_every_file_accounted(report, sleep_edf_st_folder)
    (unit,) = report.units
    assert unit.files == ["ST7011J0-PSG.edf", "ST7011JP-Hypnogram.edf"]
    (info,) = store.recordings()
    assert (info.recording_id, info.subject, info.session) == ("ST7011", "ST701", "1")
    assert info.n_segments == 10
    assert info.channel_names == ["EEG Fpz-Cz", "EEG Pz-Oz", "EOG horizontal", "EMG submental"]
    emg = info.channels[3]
    assert (emg.type, emg.source_sfreq_hz) == ("EMG", 1.0)  # the store keeps the source rate
    # SC files hold the chin EMG at 1 Hz: stored upsampled 128x, within the usual bound.
    source = next(
        s
        for s in edfio.read_edf(sleep_edf_st_folder / "ST7011J0-PSG.edf").signals
        if s.label == "EMG submental"
    )
    stored = store.read_signals(info, ["EMG submental"])[0]
    expected = _resample64(source.data, 1.0)[: info.n_samples]
    peak = float(np.max(np.abs(expected)))
    assert np.max(np.abs(stored - expected)) <= _resample_tolerance(1.0, peak, emg.scale)
    # The upsampling filter interpolates: at whole seconds the stored trace is the source
    # sample, up to the filter's phase gain (within 0.1 % of 1) and half a step.
    on_source_grid = stored[:: int(STORE_HZ)].astype(np.float64)
    assert len(on_source_grid) == 300
    error = np.abs(on_source_grid - source.data[:300])
    assert np.all(error <= emg.scale / 2 + 1e-3 * np.abs(source.data[:300]))


def test_sleep_edf_st_report_warns_that_the_emg_was_upsampled_from_1hz(
    sleep_edf_st_folder, tmp_path
):
    report, _ = _run("sleep-edf-st", sleep_edf_st_folder, tmp_path / "s")
    (unit,) = report.units
    assert any("EMG submental" in w for w in unit.warnings), unit.warnings


# --- real and synthetic never mix ------------------------------------------------------------


def test_a_real_recording_is_refused_by_a_synthetic_spec(tmp_path):
    report, store = _run(_synthetic_spec("sleep-edf-sc"), SAMPLE_DIR, tmp_path / "s")
    (unit,) = report.units
    assert unit.status == "failed"
    assert not report.ok
    assert "SC4001E0-PSG.edf: a real recording cannot go into dataset 'sleep-edf-sc'" in unit.reason
    assert "synthetic and real data are never mixed" in unit.reason
    assert store.recordings() == []


# --- hmc -------------------------------------------------------------------------------------

HMC_SCORING = "hmc_sleepscoring/SN001_sleepscoring.edf"
HMC_SFREQ_HZ = 64  # the real PSG is 256 Hz; 64 Hz keeps a 7.2-h night fast to make and read
HMC_CODES = {"W": W, "N1": N1, "N2": N2, "N3": N3, "R": REM}


def _hmc_scoring(path: Path) -> tuple[np.ndarray, float, float]:
    """Stages (one per 30-s annotation), lights-off and lights-on onsets, read with edfio."""
    annotations = edfio.read_edf(path).annotations
    stages = [
        (a.onset, HMC_CODES[a.text.removeprefix("Sleep stage ")])
        for a in annotations
        if a.text.startswith("Sleep stage")
    ]
    assert all(o == pytest.approx(EPOCH_S * k) for k, (o, _) in enumerate(sorted(stages))), (
        "the SN001 scoring is one annotation per 30-s epoch from 0 s"
    )
    off = next(a.onset for a in annotations if a.text.startswith("Lights off"))
    on = next(a.onset for a in annotations if a.text.startswith("Lights on"))
    return np.array([s for _, s in sorted(stages)], dtype=np.int8), off, on


@pytest.fixture(scope="module")
def hmc_folder(shared_data, tmp_path_factory) -> Path:
    """The real SN001 scoring beside a SYNTHETIC 7.2-h SN001.edf with HMC channel labels."""
    folder = tmp_path_factory.mktemp("hmc") / "source"
    folder.mkdir()
    shutil.copy(shared_data / HMC_SCORING, folder)
    stages, _, _ = _hmc_scoring(folder / "SN001_sleepscoring.edf")
    n_epochs = round(7.2 * 3600 / EPOCH_S)
    night = np.full(n_epochs, W, dtype=np.int8)
    night[: len(stages)] = stages  # the signal follows the real scoring
    psg = _psg(night, HMC_SFREQ_HZ, seed=1)
    psg["EEG C3-M2"] = psg["EEG C4-M1"][::-1].copy()  # synth has no C3; any synthetic trace
    labels = [
        "EEG F4-M1", "EEG C4-M1", "EEG O2-M1", "EEG C3-M2", "EOG E1-M2", "EOG E2-M2", "EMG chin",
    ]  # fmt: skip
    signals = [_edf_signal(label, HMC_SFREQ_HZ, psg[label]) for label in labels]
    _write_synthetic_edf(folder / "SN001.edf", signals, code="SN001")
    return folder


def test_hmc_scoring_alone_is_reported_as_an_annotation_without_its_signal(shared_data, tmp_path):
    source = shared_data / "hmc_sleepscoring"
    report, store = _run("hmc", source, tmp_path / "s")
    assert report.units == []
    assert store.recordings() == []
    _assert_every_file_accounted(report, source)
    assert _unmatched(report) == {"SN001_sleepscoring.edf": _REASON_ANNOTATION_ONLY}


def test_hmc_synthetic_psg_with_the_real_scoring_is_cropped_to_lights_off_and_on(
    hmc_folder, tmp_path
):
    stages, off_s, on_s = _hmc_scoring(hmc_folder / "SN001_sleepscoring.edf")
    before = Counter(stages.tolist())
    assert [before[s] for s in (W, N1, N2, N3, REM)] == [151, 109, 430, 23, 141]  # SOURCES.md
    first, stop = math.ceil(off_s / EPOCH_S), math.floor(on_s / EPOCH_S)
    assert (first, stop) == (2, 853)  # lights off at 33.43 s, lights on at 25618.74 s

    report, store = _run(_synthetic_spec("hmc"), hmc_folder, tmp_path / "s")
    assert report.ok, [u.reason for u in report.units]
    _assert_every_file_accounted(report, hmc_folder)
    (unit,) = report.units
    assert unit.status == "ingested"
    assert unit.trim["epochs_dropped_start"] == first
    assert unit.trim["epochs_dropped_end"] == len(stages) - stop
    assert {"cropped at lights off", "cropped at lights on"} <= set(unit.trim["reasons"])
    (info,) = store.recordings()
    assert info.synthetic
    assert info.recording_id == info.subject == "SN001"
    np.testing.assert_array_equal(store.read_segment_labels(info), stages[first:stop])
    kept = Counter(stages[first:stop].tolist())
    assert unit.stage_counts == {
        "W": kept[W], "N1": 109, "N2": 430, "N3": 23, "REM": 141, "UNKNOWN": 0,
    }  # fmt: skip
    assert kept[W] == 151 - 3  # the two epochs before lights off and the one after lights on
    assert info.channel_names == [
        "EEG F4-M1", "EEG C4-M1", "EEG O2-M1", "EEG C3-M2", "EOG E1-M2", "EOG E2-M2", "EMG chin",
    ]  # fmt: skip
    assert [e["label"] for e in info.metadata["lights"]] == ["Lights off", "Lights on"]
    assert info.n_samples == (stop - first) * EPOCH_S * STORE_HZ


def test_a_synthetic_recording_is_refused_by_the_real_hmc_spec(hmc_folder, tmp_path):
    report, store = _run("hmc", hmc_folder, tmp_path / "s")
    (unit,) = report.units
    assert unit.status == "failed"
    assert not report.ok
    assert "SN001.edf: a synthetic recording cannot go into dataset 'hmc'" in unit.reason
    assert "synthetic and real data are never mixed" in unit.reason
    assert store.recordings() == []


# --- mitbih-slpdb ----------------------------------------------------------------------------

SLPDB = "mitbih_slpdb_annotations"
SLPDB_RK = {"W": W, "1": N1, "2": N2, "3": N3, "4": N3, "R": REM, "MT": UNKNOWN, "M": UNKNOWN}


def test_mitbih_headers_without_st_files_are_each_reported(shared_data, tmp_path):
    source = shared_data / SLPDB
    report, store = _run("mitbih-slpdb", source, tmp_path / "s")
    assert report.units == []
    assert store.recordings() == []
    _assert_every_file_accounted(report, source)
    unmatched = _unmatched(report)
    records = sorted(p.stem for p in source.glob("*.hea"))
    assert len(records) == 18
    assert len(unmatched) == 3 * 18
    for record in records:
        assert unmatched[f"{record}.hea"] == (
            f"no annotation file matches '{record}.st'; no companion file matches '{record}.dat'"
        )
        assert unmatched[f"{record}.an"] == _REASON_OTHER
        assert unmatched[f"{record}.rr"] == _REASON_OTHER


def _write_slpdb_record(folder: Path, header_dir: Path, record: str, n_epochs: int) -> np.ndarray:
    """A SYNTHETIC slpdb record (the real header's names, units and rate; ``n_epochs`` long)
    and its ``.st`` written from the real ``.an`` dump. Returns the expected AASM stages."""
    import wfdb  # imported here, as medscale does: its import is slow (pandas)

    header = wfdb.rdheader(str(header_dir / record))
    fs = int(header.fs)
    n = n_epochs * int(EPOCH_S) * fs
    rng = np.random.default_rng(7)
    time_s = np.arange(n) / fs
    columns = []
    for name, unit in zip(header.sig_name, header.units, strict=True):
        if name.startswith("EEG"):
            trace = 30e-3 * rng.standard_normal(n)  # mV
        elif name == "ECG":
            trace = 0.8 * np.sin(np.pi * 1.1 * time_s) ** 16 + 0.02 * rng.standard_normal(n)
        else:  # BP, respiration: slow oscillations in the header's unit
            trace = 50 + 10 * np.sin(2 * np.pi * 0.25 * time_s)
        columns.append(trace)
        assert unit in ("mV", "mmHg", "l")
    wfdb.wrsamp(
        record,
        fs=fs,
        units=list(header.units),
        sig_name=list(header.sig_name),
        p_signal=np.column_stack(columns),
        fmt=["16"] * len(columns),
        comments=[SYNTHETIC_NOTE],
        base_time=header.base_time,
        base_date=header.base_date,
        write_dir=str(folder),
    )
    dump = read_rdann_text(header_dir / f"{record}.an")
    tokens: dict[float, list[str]] = {}
    for event in dump.events:
        tokens.setdefault(event.onset_s, []).append(event.label)
    onsets = [dump.onset_s + k * EPOCH_S for k in range(len(dump.labels))]
    samples = [max(1, round(t * fs)) for t in onsets]  # slpdb's first note is at sample 1
    notes = [
        " ".join([label, *tokens.get(t, [])]) for label, t in zip(dump.labels, onsets, strict=True)
    ]
    wfdb.wrann(
        record, "st", np.array(samples), symbol=['"'] * len(samples), aux_note=notes, fs=fs,
        write_dir=str(folder),
    )  # fmt: skip
    return np.array([SLPDB_RK[label] for label in dump.labels], dtype=np.int8)


def test_mitbih_synthetic_record_with_an_st_from_the_real_dump_is_ingested(shared_data, tmp_path):
    folder = tmp_path / "slpdb"
    folder.mkdir()
    # slp02a's first 48 min hold W, S1-S4, REM and movement time.
    expected = _write_slpdb_record(folder, shared_data / SLPDB, "slp02a", n_epochs=96)
    assert len(expected) == 360
    report, store = _run(_synthetic_spec("mitbih-slpdb"), folder, tmp_path / "s")
    (unit,) = report.units
    assert unit.status == "ingested", unit.reason
    assert unit.files == ["slp02a.hea", "slp02a.st", "slp02a.dat"]
    (info,) = store.recordings()
    assert info.synthetic
    np.testing.assert_array_equal(store.read_segment_labels(info), expected[:96])
    assert info.class_counts == {"W": 2, "N1": 4, "N2": 74, "N3": 7, "REM": 3, "UNKNOWN": 6}
    assert unit.trim["epochs_dropped_end"] == 360 - 96
    assert info.channel_names == ["EEG O2-A1", "ECG"]
    assert [(c.source, c.source_sfreq_hz, c.unit) for c in info.channels] == [
        ("EEG (O2-A1)", 250.0, "uV"),
        ("ECG", 250.0, "uV"),
    ]


def test_mitbih_dat_file_is_accounted_to_its_record(shared_data, tmp_path):
    folder = tmp_path / "slpdb"
    folder.mkdir()
    _write_slpdb_record(folder, shared_data / SLPDB, "slp02a", n_epochs=4)
    report, _ = _run(_synthetic_spec("mitbih-slpdb"), folder, tmp_path / "s")
    assert report.units[0].status == "ingested"
    assert "slp02a.dat" not in _unmatched(report)


def test_mitbih_record_with_slp32s_two_digit_year_is_read(shared_data, tmp_path):
    folder = tmp_path / "slpdb"
    folder.mkdir()
    _write_slpdb_record(folder, shared_data / SLPDB, "slp02a", n_epochs=4)
    header = folder / "slp02a.hea"
    lines = header.read_text().splitlines()
    assert lines[0].endswith("01/02/1989")
    lines[0] = lines[0].removesuffix("01/02/1989") + "1/2/89"  # as slp32.hea writes its date
    header.write_text("\n".join(lines) + "\n")
    report, _ = _run(_synthetic_spec("mitbih-slpdb"), folder, tmp_path / "s")
    assert report.units[0].status == "ingested", report.units[0].reason


# --- nsrr ------------------------------------------------------------------------------------

# R&K stage runs as NSRR writes them (SHHS is R&K scored; stages 3 and 4 both give N3).
NSRR_STAGES = [
    ("Wake|0", W, 4), ("Stage 1 sleep|1", N1, 2), ("Stage 2 sleep|2", N2, 8),
    ("Stage 3 sleep|3", N3, 4), ("Stage 4 sleep|4", N3, 4), ("Stage 2 sleep|2", N2, 4),
    ("REM sleep|5", REM, 6), ("Wake|0", W, 2), ("Stage 2 sleep|2", N2, 6),
]  # fmt: skip


def _write_nsrr_xml(path: Path) -> np.ndarray:
    """An NSRR ``PSGAnnotation`` file for `NSRR_STAGES`, plus one apnea; returns the stages."""
    root = ET.Element("PSGAnnotation")
    root.append(ET.Comment(" SYNTHETIC annotations written by the medscale test suite "))
    ET.SubElement(root, "SoftwareVersion").text = "Compumedics"
    ET.SubElement(root, "EpochLength").text = "30"
    events = ET.SubElement(root, "ScoredEvents")

    def add(event_type: str, concept: str, start_s: float, duration_s: float) -> None:
        event = ET.SubElement(events, "ScoredEvent")
        ET.SubElement(event, "EventType").text = event_type
        ET.SubElement(event, "EventConcept").text = concept
        ET.SubElement(event, "Start").text = f"{start_s:.1f}"
        ET.SubElement(event, "Duration").text = f"{duration_s:.1f}"

    n_epochs = sum(n for _, _, n in NSRR_STAGES)
    add("", "Recording Start Time", 0.0, n_epochs * EPOCH_S)
    start = 0
    for concept, _, n in NSRR_STAGES:
        add("Stages|Stages", concept, start * EPOCH_S, n * EPOCH_S)
        start += n
    add("Respiratory|Respiratory", "Obstructive apnea|Obstructive Apnea", 412.5, 14.2)
    path.parent.mkdir(parents=True, exist_ok=True)
    ET.ElementTree(root).write(path, encoding="utf-8", xml_declaration=True)
    return np.repeat([code for _, code, _ in NSRR_STAGES], [n for _, _, n in NSRR_STAGES])


def _write_nsrr_night(
    edf_path: Path, xml_path: Path, channels: dict[str, tuple[str, int]], seed: int
):
    """A SYNTHETIC NSRR night; ``channels`` maps the EDF label to (synth source, rate in Hz)."""
    stages = _write_nsrr_xml(xml_path)
    base_hz = 256
    psg = _psg(stages, base_hz, seed)
    signals = []
    for label, (source, rate_hz) in channels.items():
        data = resample_poly(psg[source], rate_hz, base_hz) if rate_hz != base_hz else psg[source]
        signals.append(_edf_signal(label, rate_hz, data))
    _write_synthetic_edf(edf_path, signals, code=edf_path.stem)
    return stages


# SHHS-1 EDF labels and rates (EEG 125 Hz, EOG 50 Hz).
SHHS_CHANNELS = {
    "EEG": ("EEG C4-M1", 125), "EEG(sec)": ("EEG F4-M1", 125), "EOG(L)": ("EOG E1-M2", 50),
    "EOG(R)": ("EOG E2-M2", 50), "EMG": ("EMG chin", 125),
}  # fmt: skip
# A MESA-style night with spellings the nsrr alias table lists (real MESA labels: see the
# xfail test below).
CHAT_TABLE_CHANNELS = {
    "C4-M1": ("EEG C4-M1", 256), "E1-M2": ("EOG E1-M2", 256), "E2-M1": ("EOG E2-M2", 256),
    "Chin": ("EMG chin", 256),
}  # fmt: skip


def test_nsrr_shhs_and_mesa_layouts_map_channels_and_subjects(tmp_path):
    source = tmp_path / "nsrr"
    psg_dir = source / "polysomnography"
    shhs_stages = _write_nsrr_night(
        psg_dir / "edfs/shhs1/shhs1-200001.edf",
        psg_dir / "annotations-events-nsrr/shhs1/shhs1-200001-nsrr.xml",
        SHHS_CHANNELS,
        seed=2,
    )
    mesa_stages = _write_nsrr_night(
        psg_dir / "edfs/chat-baseline-300001.edf",
        psg_dir / "annotations-events-nsrr/chat-baseline-300001-nsrr.xml",
        CHAT_TABLE_CHANNELS,
        seed=3,
    )
    report, store = _run(_synthetic_spec("nsrr"), source, tmp_path / "s")
    assert report.ok, [u.reason for u in report.units]
    _assert_every_file_accounted(report, source)
    assert report.unmatched_files == []
    infos = {i.recording_id: i for i in store.recordings()}
    assert sorted(infos) == ["chat-baseline-300001", "shhs1-200001"]
    shhs, mesa = infos["shhs1-200001"], infos["chat-baseline-300001"]
    assert (shhs.subject, mesa.subject) == ("shhs-200001", "chat-300001")
    assert [(c.name, c.source, c.source_sfreq_hz) for c in shhs.channels] == [
        ("EEG C4-M1", "EEG", 125.0),
        ("EEG C3-M2", "EEG(sec)", 125.0),
        ("EOG E1-M2", "EOG(L)", 50.0),
        ("EOG E2-M1", "EOG(R)", 50.0),
        ("EMG chin", "EMG", 125.0),
    ]
    assert [(c.name, c.source) for c in mesa.channels] == [
        ("EEG C4-M1", "C4-M1"),
        ("EOG E1-M2", "E1-M2"),
        ("EOG E2-M1", "E2-M1"),
        ("EMG chin", "Chin"),
    ]
    for info, stages in ((shhs, shhs_stages), (mesa, mesa_stages)):
        assert info.synthetic
        np.testing.assert_array_equal(store.read_segment_labels(info), stages)
        assert info.class_counts == {
            "W": 6, "N1": 2, "N2": 18, "N3": 8, "REM": 6, "UNKNOWN": 0,
        }  # fmt: skip
    units = {u.recording_id: u for u in report.units}
    assert units["shhs1-200001"].files == [
        "polysomnography/edfs/shhs1/shhs1-200001.edf",
        "polysomnography/annotations-events-nsrr/shhs1/shhs1-200001-nsrr.xml",
    ]
    assert set(units["shhs1-200001"].channels_missing) == {
        "EEG O1-M2", "EEG F4-M1", "EEG Fz-Cz", "EEG Cz-Oz", "EOG E1-Fpz", "EOG E2-Fpz",
    }  # fmt: skip
    # The 50-Hz EOG is stored resampled, within half its EDF step (0.1 µV).
    edf_eog = next(
        s
        for s in edfio.read_edf(psg_dir / "edfs/shhs1/shhs1-200001.edf").signals
        if s.label == "EOG(L)"
    )
    stored = store.read_signals(shhs, ["EOG E1-M2"])[0]
    expected = _resample64(edf_eog.data, 50.0)[: shhs.n_samples]
    peak = float(np.max(np.abs(expected)))
    assert np.max(np.abs(stored - expected)) <= _resample_tolerance(50.0, peak, 0.1)


def test_nsrr_real_mesa_labels_map_to_the_mesa_montage(tmp_path):
    source = tmp_path / "nsrr"
    psg_dir = source / "polysomnography"
    mesa_labels = {
        "EEG1": ("EEG F4-M1", 256), "EEG2": ("EEG O2-M1", 256), "EEG3": ("EEG C4-M1", 256),
        "EOG-L": ("EOG E1-M2", 256), "EOG-R": ("EOG E2-M2", 256), "EMG": ("EMG chin", 256),
    }  # fmt: skip
    _write_nsrr_night(
        psg_dir / "edfs/mesa-sleep-0002.edf",
        psg_dir / "annotations-events-nsrr/mesa-sleep-0002-nsrr.xml",
        mesa_labels,
        seed=4,
    )
    _, store = _run(_synthetic_spec("nsrr"), source, tmp_path / "s")
    (info,) = store.recordings()
    sources = {c.name: c.source for c in info.channels}
    assert sources == {
        "EEG C4-M1": "EEG3", "EEG Fz-Cz": "EEG1", "EEG Cz-Oz": "EEG2",
        "EOG E1-Fpz": "EOG-L", "EOG E2-Fpz": "EOG-R", "EMG chin": "EMG",
    }  # fmt: skip


# --- mne-generic -----------------------------------------------------------------------------


def test_mne_generic_reports_every_yasa_example_file(shared_data, tmp_path):
    source = shared_data / "yasa_examples"
    report, store = _run("mne-generic", source, tmp_path / "s")
    assert report.units == []
    assert store.recordings() == []
    _assert_every_file_accounted(report, source)
    unmatched = _unmatched(report)
    assert len(unmatched) == 7
    # mne-generic pseudonymises: reasons name the spec's template, never the file's name.
    assert unmatched[_shown(report, "data_resting_EO_200Hz_raw.fif")] == (
        "no annotation file matches '{dir}/{stem}_hypno_30s.txt'"
    )
    for hypnogram in ("data_full_6hrs_100Hz_hypno_30s.txt", "sub-02_hypno_30s.txt"):
        assert unmatched[_shown(report, hypnogram)] == _REASON_ANNOTATION_ONLY
    for other in ("data_EOGs_REM_256Hz.npz", "data_full_6hrs_100Hz_hypno.npz"):
        assert unmatched[_shown(report, other)] == _REASON_OTHER
    assert not any("data_" in f["path"] or "sub-02" in f["path"] for f in report.unmatched_files)


YASA_CODES = {"W": W, "N1": N1, "N2": N2, "N3": N3, "R": REM}


def test_mne_generic_ingests_a_synthetic_fif_scored_by_a_real_yasa_hypnogram(shared_data, tmp_path):
    import mne

    source = tmp_path / "fif"
    source.mkdir()
    hypnogram = source / "sub-01_hypno_30s.txt"
    shutil.copy(shared_data / "yasa_examples/sub-02_hypno_30s.txt", hypnogram)
    stages = np.array([YASA_CODES[s] for s in hypnogram.read_text().split()], dtype=np.int8)
    assert len(stages) == 98  # SOURCES.md: 98 epochs
    psg = _psg(stages, 100, seed=5)
    names = {"C4-A1": "EEG C4-M1", "C3-A2": "EEG F4-M1", "LOC-A2": "EOG E1-M2",
             "ROC-A1": "EOG E2-M2", "EMG1-EMG2": "EMG chin"}  # fmt: skip
    info = mne.create_info(list(names), 100.0, ["eeg", "eeg", "eog", "eog", "emg"])
    info["experimenter"] = "SYNTHETIC"
    raw = mne.io.RawArray(np.array([psg[s] for s in names.values()]) * 1e-6, info, verbose="error")
    raw.set_meas_date(dt.datetime(2001, 1, 1, 22, 0, tzinfo=dt.timezone.utc))
    raw.save(source / "sub-01_raw.fif", verbose="error")

    report, store = _run(_synthetic_spec("mne-generic"), source, tmp_path / "s")
    assert report.ok, [u.reason for u in report.units]
    _assert_every_file_accounted(report, source)
    (stored_info,) = store.recordings()
    key = load_pseudonym_key()  # mne-generic pseudonymises ids with the project key
    assert (stored_info.recording_id, stored_info.subject) == (
        key.recording("mne-generic", "sub-01"),
        key.subject("mne-generic", "sub-01"),
    )
    assert stored_info.metadata["privacy"] == {"ids": "pseudonymize", "key_id": key.key_id}
    assert "name" not in stored_info.metadata["source_files"][0]
    assert stored_info.synthetic
    np.testing.assert_array_equal(store.read_segment_labels(stored_info), stages)
    assert stored_info.class_counts == {
        "W": 36,
        "N1": 9,
        "N2": 31,
        "N3": 22,
        "REM": 0,
        "UNKNOWN": 0,
    }
    assert [(c.name, c.source) for c in stored_info.channels] == [
        ("EEG C4-M1", "C4-A1"),
        ("EEG C3-M2", "C3-A2"),
        ("EOG left", "LOC-A2"),
        ("EOG right", "ROC-A1"),
        ("EMG chin", "EMG1-EMG2"),
    ]
    # FIF keeps volts as float32; the store holds µV resampled, to within its own step.
    fif = mne.io.read_raw_fif(source / "sub-01_raw.fif", verbose="error")
    c4_uv = fif.get_data(["C4-A1"])[0] * 1e6
    expected = _resample64(c4_uv, 100.0)[: stored_info.n_samples]
    channel = stored_info.channels[0]
    peak = float(np.max(np.abs(expected)))
    stored = store.read_signals(stored_info, ["EEG C4-M1"])[0]
    assert np.max(np.abs(stored - expected)) <= _resample_tolerance(100.0, peak, channel.scale)


def test_mne_generic_pairs_an_edf_as_its_header_comment_says(tmp_path):
    source = tmp_path / "edf"
    stages = np.array([W, W, N1, N2], dtype=np.int8)
    psg = _psg(stages, 100, seed=6)
    _write_synthetic_edf(
        source / "sub-01.edf", [_edf_signal("C4-M1", 100, psg["EEG C4-M1"])], code="sub-01"
    )
    (source / "sub-01_hypno_30s.txt").write_text("W\nW\nN1\nN2\n")
    report, _ = _run(_synthetic_spec("mne-generic"), source, tmp_path / "s")
    assert [u.status for u in report.units] == ["ingested"], _unmatched(report)


# --- dreams-edf ------------------------------------------------------------------------------


def test_dreams_edf_gives_the_text_adapters_hypnogram(shared_data, dreams_run, tmp_path):
    """excerpt1 as an EDF (written in tmp_path only: DREAMS is NoDerivatives)."""
    dreams_dir = shared_data / "dreams_spindles"
    source = tmp_path / "dreams-edf"
    source.mkdir()
    values = _read_dreams_text(dreams_dir / "excerpt1.txt")
    low, high = math.floor(values.min()), math.ceil(values.max())
    signal = edfio.EdfSignal(
        values, 100, label="C3-A1", physical_dimension="uV", physical_range=(low, high)
    )
    edfio.Edf([signal], data_record_duration=1).write(source / "excerpt1.edf")
    shutil.copy(dreams_dir / "Hypnogram_excerpt1.txt", source)

    report, store = _run("dreams-edf", source, tmp_path / "s")
    assert report.ok, [u.reason for u in report.units]
    _assert_every_file_accounted(report, source)
    (info,) = store.recordings()
    assert not info.synthetic
    assert (info.recording_id, info.n_segments, info.channel_names) == (
        "excerpt1",
        60,
        ["EEG C3-A1"],
    )
    assert info.channels[0].source_sfreq_hz == 100.0
    _, text_store, _ = dreams_run
    text_info = text_store.recording("dreams", "excerpt1")
    np.testing.assert_array_equal(
        store.read_segment_labels(info), text_store.read_segment_labels(text_info)
    )
    # The step is the EDF's own, unless the resampled trace would overflow int16 at that
    # step: excerpt1 is clipped at +-328 µV and the filter overshoots, which is reported.
    edf_step = (high - low) / 65535
    (unit,) = report.units
    resampled_peak_uv = float(np.max(np.abs(_resample64(values, 100.0))))
    assert resampled_peak_uv > 32767 * edf_step
    assert info.channels[0].scale == pytest.approx(resampled_peak_uv / 32767, rel=1e-4)
    assert any("coarser than the source resolution" in w for w in unit.warnings), unit.warnings
    # The same samples as the text adapter stored, up to the EDF's rounding (half its step,
    # through a filter whose taps sum to about one) and the two stores' own half steps.
    diff = store.read_signals(info)[0] - text_store.read_signals(text_info)[0]
    assert (
        np.max(np.abs(diff))
        <= edf_step + (info.channels[0].scale + text_info.channels[0].scale) / 2
    )


# --- bad files -------------------------------------------------------------------------------


def test_a_corrupt_edf_fails_alone_and_its_reason_names_the_file(synth_nights, tmp_path):
    broken = synth_nights / "synth-001-PSG.edf"
    broken.write_bytes(broken.read_bytes()[:1000])  # a download cut inside the header
    report, store = _run("synthetic", synth_nights, tmp_path / "s")
    assert not report.ok
    assert [(u.recording_id, u.status) for u in report.units] == [
        ("synth-000", "ingested"),
        ("synth-001", "failed"),
        ("synth-002", "ingested"),
    ]
    reason = report.units[1].reason
    assert reason.startswith("RecordingReadError: ")
    assert str(broken) in reason
    assert "the file has 1000 bytes" in reason
    assert [i.recording_id for i in store.recordings()] == ["synth-000", "synth-002"]
    assert all(i.synthetic for i in store.recordings())
    _assert_every_file_accounted(report, synth_nights)
    markdown = Path(report.report_paths[1]).read_text()
    assert "| synth-001 | failed |" in markdown


# --- the spec catalogue ----------------------------------------------------------------------


def test_every_shipped_spec_is_run_end_to_end_in_this_file():
    assert set(list_datasets()) == COVERED_SPECS


def test_a_shipped_spec_name_is_not_shadowed_by_a_data_folder_of_that_name(tmp_path, monkeypatch):
    (tmp_path / "hmc").mkdir()
    monkeypatch.chdir(tmp_path)
    assert load_dataset_spec("hmc").name == "hmc"
