"""read_hypnogram dispatch and the raw-label -> AASM step (to_aasm), on the real files."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from medscale.errors import AnnotationReadError, SpecError
from medscale.io.edf_annotations import read_edf_annotations
from medscale.io.epoch_tables import read_epoch_text
from medscale.io.hypnograms import HYPNOGRAM_FORMATS, read_hypnogram, to_aasm
from medscale.io.stages import N1, N2, N3, REM, UNKNOWN, W, load_label_map
from medscale.io.wfdb_annotations import read_rdann_text

REAL_FILES: list[tuple[str, str, dict[str, Any], int]] = [
    ("sleepedf_edfio/SC4001EC-Hypnogram.edf", "edf_annotations", {}, 2880),
    ("hmc_sleepscoring/SN001_sleepscoring.edf", "edf_annotations", {}, 854),
    ("mitbih_slpdb_annotations/slp01a.an", "rdann_text", {}, 240),
    ("dreams_spindles/Hypnogram_excerpt1.txt", "epoch_text", {"epoch_length_s": 5.0}, 360),
    ("yasa_examples/sub-02_hypno_30s.txt", "epoch_text", {"epoch_length_s": 30.0}, 98),
]


@pytest.mark.parametrize(("relative", "format", "options", "n_epochs"), REAL_FILES)
def test_read_hypnogram_dispatches_to_the_format_reader(
    shared_data: Path, relative: str, format: str, options: dict[str, Any], n_epochs: int
) -> None:
    raw = read_hypnogram(shared_data / relative, format, **options)
    assert raw.source == shared_data / relative
    assert len(raw.labels) == n_epochs


def test_hypnogram_formats_lists_every_reader() -> None:
    assert HYPNOGRAM_FORMATS == (
        "edf_annotations",
        "nsrr_xml",
        "wfdb_st",
        "rdann_text",
        "epoch_text",
        "stage_table",
    )


def test_unknown_format_lists_the_valid_ones(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match=r"'edf\+'.*'edf_annotations'.*'stage_table'"):
        read_hypnogram(tmp_path / "x.edf", "edf+")


def test_unexpected_option_is_named_with_the_accepted_ones(tmp_path: Path) -> None:
    with pytest.raises(SpecError) as info:
        read_hypnogram(tmp_path / "x.txt", "epoch_text", epoch_length_s=30.0, stage_prefix="S")
    message = str(info.value)
    assert "'epoch_text'" in message and "['stage_prefix']" in message
    assert "['epoch_length_s', 'header_lines', 'onset_s']" in message


def test_missing_required_option_is_a_spec_error(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match=r"'stage_table' needs option\(s\) \['stage_column'\]"):
        read_hypnogram(tmp_path / "x.csv", "stage_table")


def test_dreams_5s_hypnograms_regrid_to_60_epochs_of_30s_by_majority(shared_data: Path) -> None:
    # SOURCES.md: scored on a 20-s grid, so after mapping to AASM 140 of the 480 30-s epochs
    # mix two scores, always 4:2, and only 5 REM epochs exist (all in excerpt 7).
    label_map = load_label_map("dreams_rk")
    n_mixed, rem_by_excerpt, rem_5s_values = 0, {}, 0
    for n in range(1, 9):
        raw = read_epoch_text(
            shared_data / "dreams_spindles" / f"Hypnogram_excerpt{n}.txt", epoch_length_s=5.0
        )
        hypnogram = to_aasm(raw, label_map, epoch_length_s=30.0)
        assert hypnogram.epoch_length_s == 30.0
        assert len(hypnogram.stages) == 60
        fine = to_aasm(raw, label_map, epoch_length_s=5.0).stages.reshape(60, 6)
        for coarse, row in zip(hypnogram.stages, fine, strict=True):
            counts = Counter(row.tolist())
            if len(counts) > 1:
                n_mixed += 1
                assert sorted(counts.values()) == [2, 4]
            assert coarse == counts.most_common(1)[0][0]
        rem_by_excerpt[n] = int(np.sum(hypnogram.stages == REM))
        rem_5s_values += raw.labels.count("4")
    assert n_mixed == 140
    assert rem_by_excerpt == {1: 0, 2: 0, 3: 0, 4: 0, 5: 0, 6: 0, 7: 5, 8: 0}
    # In the 5-s files REM ("4") occurs 28 times: 7 blocks of 20 s.
    assert rem_5s_values == 28


def test_sleepedf_runs_map_to_aasm_with_s3_and_s4_merged(shared_data: Path) -> None:
    raw = read_edf_annotations(shared_data / "sleepedf_edfio" / "SC4001EC-Hypnogram.edf")
    hypnogram = to_aasm(raw, "rk_sleep_edf")
    assert Counter(hypnogram.stages.tolist()) == {
        W: 1997,
        N1: 58,
        N2: 250,
        N3: 220,
        REM: 125,
        UNKNOWN: 230,
    }
    assert hypnogram.stages.dtype == np.int8


def test_label_map_by_name_equals_the_loaded_mapping(shared_data: Path) -> None:
    raw = read_rdann_text(shared_data / "mitbih_slpdb_annotations" / "slp01a.an")
    by_name = to_aasm(raw, "rk_letters")
    by_mapping = to_aasm(raw, load_label_map("rk_letters"))
    np.testing.assert_array_equal(by_name.stages, by_mapping.stages)
    assert by_name.events == raw.events


def test_unknown_label_names_the_label_and_the_file(tmp_path: Path) -> None:
    path = tmp_path / "scored.txt"
    path.write_text("W\nN1\nS2\n")
    raw = read_epoch_text(path, epoch_length_s=30.0)
    with pytest.raises(AnnotationReadError, match=r"scored\.txt.*'S2' \(epoch 2\)"):
        to_aasm(raw, "aasm_names")
