"""Errors a user can cause name what was found, what is needed and the option or file that
changes it, as one `error:` line from the command line (no traceback)."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import numpy as np
import pytest

from medscale.cli.main import main
from medscale.data.splits import make_kfold_splits
from medscale.errors import ChannelError, SpecError
from medscale.ingest import ingest
from medscale.predict import predict_recording

SAMPLE = Path(str(resources.files("medscale.datasets") / "samples" / "sleep-edf-sc"))


def run_cli(capsys, *argv: str) -> str:
    """Run the CLI; it must fail with one clear line on stderr. Returns that stderr."""
    assert main([*argv, "-q"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "Traceback" not in err
    return err


@pytest.fixture(scope="module")
def one_subject_store(tmp_path_factory) -> Path:
    store = tmp_path_factory.mktemp("one-subject") / "store"
    ingest("sleep-edf-sc", SAMPLE, store, progress=False)
    return store


@pytest.fixture
def text_signal(tmp_path) -> Path:
    """A DREAMS-style excerpt: a [label] line, then one value per line, no sampling rate."""
    path = tmp_path / "excerpt1.txt"
    values = np.random.default_rng(0).normal(0, 20, 2 * 30 * 100)
    path.write_text("[C3-A1]\n" + "\n".join(f"{v:.3f}" for v in values) + "\n")
    return path


def test_too_few_subjects_for_a_split_gives_counts_and_the_config_keys(
    one_subject_store, tmp_path, capsys
):
    err = run_cli(
        capsys,
        *("train", "usleep-small", "--store", str(one_subject_store), "--out", str(tmp_path / "r")),
    )
    assert "1 subject(s) (1 recording(s))" in err
    assert "val_fraction=0.2 and test_fraction=0.2" in err  # the bundled config's
    assert "needs at least 3 subjects" in err
    assert "val_subset: null" in err and "split: {file: SPLIT.json}" in err


def test_too_many_folds_gives_the_subject_count_and_the_range(one_subject_store):
    with pytest.raises(SpecError) as err:
        make_kfold_splits(one_subject_store, 2)
    message = str(err.value)
    assert "holds 1 subject(s) (1 recording(s))" in message
    assert "kfold: {k:" in message and "ingest more subjects" in message


def test_a_text_signal_without_a_rate_names_the_option_and_the_formats(
    tiny_run, text_signal, tmp_path
):
    with pytest.raises(SpecError) as err:
        predict_recording(text_signal, tiny_run, tmp_path)
    message = str(err.value)
    assert str(text_signal) in message and "does not record its sampling rate" in message
    assert "reader_options={'sfreq_hz': HZ}" in message and "sfreq_hz" in message
    assert "EDF/EDF+/BDF (.edf" in message and "WFDB (.hea" in message


def test_a_missing_channel_names_what_the_model_needs_and_the_file_has(
    tiny_run, text_signal, tmp_path
):
    with pytest.raises(ChannelError) as err:
        predict_recording(text_signal, tiny_run, tmp_path, reader_options={"sfreq_hz": 100})
    message = str(err.value)
    assert "no channel for the model's 'eog' group" in message and "types ['EOG']" in message
    assert "the file has ['C3-A1']" in message and "--channels eog=LABEL" in message


def test_an_unwritable_output_folder_is_one_line_naming_it(tmp_path, capsys):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the output folder should go")
    err = run_cli(capsys, "synth", str(blocker / "nights"), "--nights", "1", "--hours", "0.1")
    assert str(blocker) in err
