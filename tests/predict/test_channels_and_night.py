"""Prediction input: channels picked through the alias tables, the night converted by the
funnel's own code and processed in memory exactly as the store would serve it."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import numpy as np
import pytest

from medscale.data import DataConfig, EvalNights
from medscale.data.config import ChannelGroup, SamplingConfig
from medscale.errors import ChannelError
from medscale.predict.channels import canonical_name, parse_channel_overrides, select_channels
from medscale.predict.night import night_inputs, read_night

from .conftest import store_night

GROUPS = SamplingConfig().channel_groups  # eeg (EEG types), eog (EOG types)
SAMPLE = Path(str(resources.files("medscale.datasets") / "samples" / "sleep-edf-sc"))


def test_labels_of_shipped_datasets_map_to_their_canonical_names():
    assert canonical_name("EEG Fpz-Cz") == "EEG Fpz-Cz"
    assert canonical_name("EOG E1-M2") == "EOG E1-M2"  # an unlisted label of a known type
    assert canonical_name("EEG C3-A2") == "EEG C3-M2"  # an alias from the NSRR tables
    assert canonical_name("Marker") is None


def test_every_candidate_of_each_group_is_kept_for_the_soft_vote():
    chosen = select_channels(["EEG Fpz-Cz", "EEG Pz-Oz", "EOG horizontal", "Resp"], GROUPS)
    assert [name for name, _ in chosen["eeg"]] == ["EEG Fpz-Cz", "EEG Pz-Oz"]
    assert [name for name, _ in chosen["eog"]] == ["EOG horizontal"]


def test_a_missing_group_names_what_was_found_and_the_override():
    with pytest.raises(ChannelError) as err:
        select_channels(["EEG Fpz-Cz", "Resp"], GROUPS, source="night.edf")
    message = str(err.value)
    assert "night.edf" in message and "'eog'" in message and "Resp" in message
    assert "--channels eog=LABEL" in message


def test_overrides_pick_unlabelled_channels_by_group():
    overrides = parse_channel_overrides(["eeg=Fz", "eog=LOC"])
    chosen = select_channels(["Fz", "LOC", "chin"], GROUPS, overrides)
    # Fz is in no alias table: typed by its group; LOC is a known alias of EOG left.
    assert chosen == {"eeg": [("EEG Fz", "Fz")], "eog": [("EOG left", "LOC")]}
    with pytest.raises(ChannelError, match="no such signal"):
        select_channels(["C3"], GROUPS, {"eeg": ["C4"], "eog": ["C3"]})
    with pytest.raises(ChannelError, match="GROUP=LABEL"):
        parse_channel_overrides(["C3"])
    with pytest.raises(ChannelError, match="groups are"):
        select_channels(["C3"], (ChannelGroup(name="eeg", types=("EEG",)),), {"emg": ["C3"]})


@pytest.mark.parametrize(
    "processing",
    [{}, {"bandpass_hz": [0.3, 35.0]}, {"spectrogram": {"window_s": 2.0, "hop_s": 1.0}}],
    ids=["robust", "bandpass", "spectrogram"],
)
def test_the_night_in_memory_equals_what_the_store_serves(tmp_path, processing):
    psg = sorted(SAMPLE.glob("*-PSG.edf"))[0]
    config = DataConfig.from_dict({"processing": processing, "eval_chunk_epochs": 4})
    night = read_night(psg, GROUPS)
    store, key = store_night(night, tmp_path / "store")
    served = list(EvalNights(store, config, recordings=[key]))
    ours = list(night_inputs(night, config))
    assert len(ours) == len(served) == 2 * 3  # 2 EEG x 1 EOG combinations, 10 epochs in 4s
    for mine, theirs in zip(ours, served, strict=True):
        assert (mine.combination, mine.start_epoch) == (
            theirs["combination"],
            theirs["start_epoch"],
        )
        np.testing.assert_array_equal(mine.x, theirs["x"].numpy())  # bit for bit
    assert np.isfinite(ours[0].x).all() and np.abs(ours[0].x).max() > 0


def test_prediction_files_are_written_and_read_back(tmp_path):
    from medscale.io.hypnograms import read_hypnogram, to_aasm
    from medscale.io.stages import load_label_map
    from medscale.predict.outputs import write_prediction

    rng = np.random.default_rng(0)
    probabilities = rng.dirichlet(np.ones(5), size=40).astype(np.float32)
    files = write_prediction(tmp_path, probabilities, start_time_of_day="23:59:30")
    stages = probabilities.argmax(axis=1)
    rows = files.csv.read_text().splitlines()
    assert rows[0].startswith("epoch,onset_s,clock_time,stage,p_W")
    assert rows[1].split(",")[2] == "23:59:30" and rows[2].split(",")[2] == "00:00:00"
    assert len(rows) == 41
    np.testing.assert_array_equal(np.load(files.hypnodensity), probabilities)
    raw = read_hypnogram(files.edf, "edf_annotations")
    hypnogram = to_aasm(raw, load_label_map("aasm_sleep_stage"), 30.0)
    np.testing.assert_array_equal(hypnogram.stages, stages)
    assert files.png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_model_that_does_not_fit_the_night_fails_that_night_in_the_summary(tmp_path):
    from medscale.predict import predict_many
    from medscale.predict.model import StagingModelFacts

    class Unfit(StagingModelFacts):
        def probabilities(self, x):
            raise AssertionError("a night that does not fit never reaches the model")

    model = Unfit("toy (run)", DataConfig(), "0" * 64, in_channels=2, epoch_samples=3000)
    psg = sorted(SAMPLE.glob("*-PSG.edf"))[0]
    report = predict_many([psg], model, tmp_path, progress=False)
    (outcome,) = report.outcomes
    assert outcome.status == "failed" and not report.ok
    assert "expects 3000 samples per epoch, prediction serves 3840" in outcome.error
    assert "3000 samples per epoch" in report.summary.read_text()
