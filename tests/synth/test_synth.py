"""Surrogate PSG nights: determinism, labelling, stage-dependent signals, hypnogram model."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import edfio
import numpy as np
import pytest
import scipy.signal

from medscale import __version__
from medscale.errors import SpecError
from medscale.io.stages import N1, N2, N3, REM, W
from medscale.synth import (
    MANIFEST_NAME,
    channel_specs,
    load_transition_model,
    sample_hypnogram,
    synthesize_nights,
    synthesize_psg,
)

REPO = Path(__file__).resolve().parents[2]
SHORT_H = 0.5  # 60 epochs: fast, still every stage
STAGE_LABELS = {"Sleep stage W", "Sleep stage N1", "Sleep stage N2", "Sleep stage N3"}
STAGE_LABELS |= {"Sleep stage R"}


@pytest.fixture(scope="module")
def two_nights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("seed7")
    synthesize_nights(out, 2, seed=7, duration_h=SHORT_H, progress=False)
    return out


def _files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


# --- determinism -----------------------------------------------------------------------------


def test_same_seed_writes_byte_identical_files(two_nights: Path, tmp_path: Path) -> None:
    synthesize_nights(tmp_path, 2, seed=7, duration_h=SHORT_H, progress=False)
    assert _files(tmp_path) == _files(two_nights)


def test_other_seed_writes_different_signals_and_hypnograms(
    two_nights: Path, tmp_path: Path
) -> None:
    synthesize_nights(tmp_path, 1, seed=8, duration_h=SHORT_H, progress=False)
    for name in ("synth-000-PSG.edf", "synth-000-Hypnogram.edf"):
        assert (tmp_path / name).read_bytes() != (two_nights / name).read_bytes()


def test_night_does_not_depend_on_how_many_nights_are_generated(
    two_nights: Path, tmp_path: Path
) -> None:
    synthesize_nights(tmp_path, 1, seed=7, duration_h=SHORT_H, progress=False)
    for name in ("synth-000-PSG.edf", "synth-000-Hypnogram.edf"):
        assert (tmp_path / name).read_bytes() == (two_nights / name).read_bytes()
    # ... while the two nights of one run differ from each other.
    assert (two_nights / "synth-000-PSG.edf").read_bytes() != (
        two_nights / "synth-001-PSG.edf"
    ).read_bytes()


# --- files and labelling ---------------------------------------------------------------------


def test_psg_reads_back_with_the_psg_montage_and_length(two_nights: Path) -> None:
    edf = edfio.read_edf(two_nights / "synth-001-PSG.edf")
    specs = channel_specs(256)
    assert [s.label for s in edf.signals] == [s.label for s in specs]
    assert [s.sampling_frequency for s in edf.signals] == [s.sfreq_hz for s in specs]
    assert edf.duration == SHORT_H * 3600
    eeg = edf.get_signal("EEG C4-M1")
    step = (eeg.physical_max - eeg.physical_min) / (eeg.digital_max - eeg.digital_min)
    assert step <= 0.1 + 1e-9
    assert 2 < np.std(eeg.data) < 100  # µV, not V or mV
    spo2 = edf.get_signal("SpO2").data
    assert spo2.min() >= 70 and spo2.max() <= 100
    assert set(np.unique(edf.get_signal("Position").data)) <= {1.0, 2.0, 3.0, 4.0}


def test_hypnogram_has_one_aasm_annotation_per_epoch(two_nights: Path) -> None:
    edf = edfio.read_edf(two_nights / "synth-000-Hypnogram.edf")
    assert edf.num_signals == 0
    onsets = [a.onset for a in edf.annotations]
    assert onsets == [30.0 * k for k in range(120)][: len(onsets)] and len(onsets) == 60
    assert all(a.duration == 30.0 for a in edf.annotations)
    assert {a.text for a in edf.annotations} <= STAGE_LABELS


def test_every_file_is_edf_plus_c_and_its_header_says_synthetic(two_nights: Path) -> None:
    for path in sorted(two_nights.glob("*.edf")):
        raw = path.read_bytes()
        patient, recording = raw[8:88].decode(), raw[88:168].decode()
        subject = path.name[:9]
        assert patient.split()[0] == subject and "SYNTHETIC" in patient
        assert recording.startswith("Startdate ")
        assert recording.split()[2:5] == ["SYNTHETIC", "medscale-synth", "seed=7"]
        assert raw[192:197] == b"EDF+C"


def test_psg_and_hypnogram_share_subject_and_start_and_nights_differ(two_nights: Path) -> None:
    starts = []
    for subject in ("synth-000", "synth-001"):
        psg = edfio.read_edf(two_nights / f"{subject}-PSG.edf")
        hyp = edfio.read_edf(two_nights / f"{subject}-Hypnogram.edf")
        assert psg.patient.code == hyp.patient.code == subject
        assert (psg.startdate, psg.starttime) == (hyp.startdate, hyp.starttime)
        starts.append((psg.startdate, psg.starttime))
    assert starts[0] != starts[1]


def test_manifest_records_seed_model_version_and_stage_counts(two_nights: Path) -> None:
    manifest = json.loads((two_nights / MANIFEST_NAME).read_text())
    assert manifest["synthetic"] is True
    assert manifest["seed"] == 7 and manifest["medscale_version"] == __version__
    assert manifest["quirks"] == []
    assert manifest["model"]["file"].endswith("transition_model.json")
    assert len(manifest["model"]["sha256"]) == 64
    assert [n["subject"] for n in manifest["nights"]] == ["synth-000", "synth-001"]
    names = {"Sleep stage W": "W", "Sleep stage N1": "N1", "Sleep stage N2": "N2"}
    names |= {"Sleep stage N3": "N3", "Sleep stage R": "REM"}
    for night in manifest["nights"]:
        assert night["quirk"] is None
        hyp = edfio.read_edf(two_nights / night["hypnogram_file"])
        counts = dict.fromkeys(("W", "N1", "N2", "N3", "REM"), 0)
        for annotation in hyp.annotations:
            counts[names[annotation.text]] += 1
        assert night["stage_counts"] == counts
        assert sum(counts.values()) == night["n_epochs"] == 60


def test_progress_bar_can_be_switched_off(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    synthesize_nights(tmp_path, 1, duration_h=0.01, progress=False)
    assert capsys.readouterr().err == ""
    synthesize_nights(tmp_path, 1, duration_h=0.01, progress=True)
    assert "synth nights" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"nights": 0}, "nights must be an integer >= 1"),
        ({"seed": -1}, "seed must be an integer >= 0"),
        ({"duration_h": 0.001}, "shorter than one 30-s epoch"),
        ({"sfreq_hz": 32}, "sfreq_hz=32 is too low"),
    ],
)
def test_bad_arguments_raise_before_anything_is_written(
    tmp_path: Path, kwargs: dict, message: str
) -> None:
    args = {"nights": 1, **kwargs}
    with pytest.raises(SpecError, match=message):
        synthesize_nights(tmp_path / "out", progress=False, **args)
    assert not (tmp_path / "out").exists()


# --- signals follow the stages ---------------------------------------------------------------

FS = 256
SPE = 30 * FS
BLOCK_STAGES = np.repeat(np.array([W, N1, N2, N3, REM, N2, N3, W, REM, N1]), 5).astype(np.int8)


@pytest.fixture(scope="module")
def block_signals() -> dict[str, np.ndarray]:
    signals = synthesize_psg(BLOCK_STAGES, sfreq_hz=FS, rng=np.random.default_rng(11))
    return {s.label: np.asarray(s.data, dtype=np.float64) for s in signals}


def _in_stage(x: np.ndarray, stage: int) -> np.ndarray:
    return x[np.repeat(np.equal(BLOCK_STAGES, stage), SPE)]


def _band_fraction(x: np.ndarray, lo: float, hi: float) -> float:
    freqs, psd = scipy.signal.welch(x.reshape(-1, SPE), FS, nperseg=4 * FS, axis=-1)
    psd = psd.mean(axis=0)
    total = psd[(freqs >= 0.5) & (freqs < 30)].sum()
    return float(psd[(freqs >= lo) & (freqs < hi)].sum() / total)


def test_delta_dominates_n3_and_reaches_75_uv(block_signals: dict[str, np.ndarray]) -> None:
    f4 = block_signals["EEG F4-M1"]
    assert _band_fraction(_in_stage(f4, N3), 0.5, 2) > 0.7
    assert _band_fraction(_in_stage(f4, N3), 0.5, 2) > _band_fraction(_in_stage(f4, W), 0.5, 2)
    # AASM: slow waves > 75 µV peak to peak over >= 20 % of an N3 epoch (frontal).
    sos = scipy.signal.butter(2, [0.5, 2.0], "bandpass", fs=FS, output="sos")
    slow = _in_stage(scipy.signal.sosfiltfilt(sos, f4), N3).reshape(-1, FS)
    assert np.mean(np.ptp(slow, axis=1) > 75) > 0.2
    slow_n2 = _in_stage(scipy.signal.sosfiltfilt(sos, f4), N2).reshape(-1, FS)
    assert np.mean(np.ptp(slow_n2, axis=1) > 75) < 0.2


def test_alpha_fraction_is_highest_in_wake_and_occipital(
    block_signals: dict[str, np.ndarray],
) -> None:
    o2 = block_signals["EEG O2-M1"]
    wake = _band_fraction(_in_stage(o2, W), 8, 12)
    for stage in (N1, N2, N3, REM):
        assert wake > 2 * _band_fraction(_in_stage(o2, stage), 8, 12)
    assert wake > _band_fraction(_in_stage(block_signals["EEG F4-M1"], W), 8, 12)


def test_theta_rises_in_n1_over_wake(block_signals: dict[str, np.ndarray]) -> None:
    c4 = block_signals["EEG C4-M1"]
    assert _band_fraction(_in_stage(c4, N1), 4, 8) > 2 * _band_fraction(_in_stage(c4, W), 4, 8)


def test_sigma_bursts_appear_in_n2_only(block_signals: dict[str, np.ndarray]) -> None:
    sos = scipy.signal.butter(4, [12, 15], "bandpass", fs=FS, output="sos")
    envelope = np.abs(
        scipy.signal.hilbert(scipy.signal.sosfiltfilt(sos, block_signals["EEG C4-M1"]))
    )
    threshold = 5 * np.median(envelope)

    def burst_fraction(stage: int) -> float:
        half_s = _in_stage(envelope, stage).reshape(-1, FS // 2).mean(axis=1)
        return float(np.mean(half_s > threshold))

    assert burst_fraction(N2) > 0.02
    assert burst_fraction(W) < 0.005 and burst_fraction(REM) < 0.005


def test_chin_emg_is_highest_in_wake_lowest_in_rem(block_signals: dict[str, np.ndarray]) -> None:
    emg = block_signals["EMG chin"]

    def rms(stages: tuple[int, ...]) -> float:
        x = emg[np.repeat(np.isin(BLOCK_STAGES, stages), SPE)]
        return float(np.sqrt(np.mean(x**2)))

    assert rms((W,)) > rms((N1, N2, N3)) > rms((REM,))


def test_eye_movements_are_in_antiphase_in_rem_and_n1(block_signals: dict[str, np.ndarray]) -> None:
    e1, e2 = block_signals["EOG E1-M2"], block_signals["EOG E2-M2"]
    for stage in (REM, N1):
        assert np.corrcoef(_in_stage(e1, stage), _in_stage(e2, stage))[0, 1] < -0.5
    # In N3 both EOG leads pick up the same frontal delta.
    assert np.corrcoef(_in_stage(e1, N3), _in_stage(e2, N3))[0, 1] > 0.5


def test_synthesize_psg_rejects_unknown_stages() -> None:
    with pytest.raises(SpecError, match="codes in"):
        synthesize_psg(np.array([0, -1, 2]), sfreq_hz=FS, rng=np.random.default_rng(0))


# --- hypnogram model -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def many_nights() -> np.ndarray:
    rng = np.random.default_rng(5)
    return np.stack([sample_hypnogram(960, rng) for _ in range(200)])


def test_sampled_stage_shares_are_plausible(many_nights: np.ndarray) -> None:
    assert many_nights.dtype == np.int8
    assert set(np.unique(many_nights)) == {W, N1, N2, N3, REM}
    shares = np.bincount(many_nights.ravel(), minlength=5) / many_nights.size
    assert np.argmax(shares) == N2
    sleep = many_nights[many_nights != W]
    sleep_shares = np.bincount(sleep, minlength=5)[1:] / sleep.size
    n1, n2, n3, rem = sleep_shares
    assert 0.15 <= rem <= 0.30
    assert 0.40 <= n2 <= 0.65 and 0.03 <= n1 <= 0.20 and 0.08 <= n3 <= 0.30


def test_n3_is_front_loaded_and_rem_back_loaded(many_nights: np.ndarray) -> None:
    first, _, last = np.array_split(many_nights, 3, axis=1)
    assert np.mean(first == N3) > 2 * np.mean(last == N3)
    assert np.mean(last == REM) > 2 * np.mean(first == REM)


def test_nights_start_awake_and_first_rem_comes_late(many_nights: np.ndarray) -> None:
    assert np.mean(many_nights[:, 0] == W) > 0.8
    first_rem_min = [np.flatnonzero(n == REM)[0] / 2 for n in many_nights if (n == REM).any()]
    assert 50 < np.median(first_rem_min) < 150  # minutes after lights off


def test_sample_hypnogram_is_deterministic_per_generator_state() -> None:
    a = sample_hypnogram(300, np.random.default_rng(1))
    b = sample_hypnogram(300, np.random.default_rng(1))
    assert np.array_equal(a, b) and a.shape == (300,)
    assert not np.array_equal(a, sample_hypnogram(300, np.random.default_rng(2)))


@pytest.mark.parametrize("n_epochs", [0, -3, 2.5, True])
def test_sample_hypnogram_rejects_bad_lengths(n_epochs: object) -> None:
    with pytest.raises(SpecError, match="n_epochs"):
        sample_hypnogram(n_epochs, np.random.default_rng(0))  # type: ignore[arg-type]


def test_shipped_model_is_stochastic_and_names_its_sources() -> None:
    model = load_transition_model()
    assert model.transitions.shape == (3, 5, 5)
    assert np.allclose(model.transitions.sum(axis=-1), 1, atol=1e-4)
    assert model.sources["sleepedf_hypnograms_csv"]["nights"] == 61
    assert set(model.sources) == {
        "sleepedf_hypnograms_csv",
        "yasa_examples",
        "mitbih_slpdb_annotations",
    }


def test_fit_script_reproduces_the_shipped_model(
    shared_data: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = importlib.util.spec_from_file_location(
        "fit_transition_model", REPO / "scripts" / "fit_transition_model.py"
    )
    assert spec is not None and spec.loader is not None
    script = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, script)  # dataclasses look their module up
    spec.loader.exec_module(script)
    shipped = json.loads((REPO / "src/medscale/synth/transition_model.json").read_text())
    refit = json.loads(json.dumps(script.fit(shared_data)))
    assert refit == shipped, "rerun scripts/fit_transition_model.py and commit the JSON"


# --- quirks (last: another module provides them) ----------------------------------------------


def test_unknown_quirk_raises_and_names_the_known_ones(tmp_path: Path) -> None:
    quirks = pytest.importorskip("medscale.synth.quirks")
    with pytest.raises(SpecError, match="unknown quirk 'no_such_quirk'") as info:
        synthesize_nights(tmp_path / "out", 1, quirks=["no_such_quirk"], progress=False)
    assert all(name in str(info.value) for name in quirks.QUIRKS)
    assert not (tmp_path / "out").exists()


def test_quirks_cycle_over_nights_and_are_recorded(two_nights: Path, tmp_path: Path) -> None:
    quirks = pytest.importorskip("medscale.synth.quirks")
    chosen = list(quirks.QUIRKS[:2])
    nights = synthesize_nights(
        tmp_path, 3, seed=7, duration_h=SHORT_H, quirks=chosen, progress=False
    )
    assert [n.quirk for n in nights] == [chosen[0], chosen[1], chosen[0]]
    manifest = json.loads((tmp_path / MANIFEST_NAME).read_text())
    assert manifest["quirks"] == chosen
    assert [n["quirk"] for n in manifest["nights"]] == [chosen[0], chosen[1], chosen[0]]
    assert all(n["quirk_description"] for n in manifest["nights"])
    for name in ("synth-000-PSG.edf", "synth-001-PSG.edf"):
        assert (tmp_path / name).read_bytes() != (two_nights / name).read_bytes()
    # The hypnograms carry no quirk.
    assert (tmp_path / "synth-000-Hypnogram.edf").read_bytes() == (
        two_nights / "synth-000-Hypnogram.edf"
    ).read_bytes()
