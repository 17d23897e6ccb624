"""Each hypnogram reader on the real files it was written for, and on broken ones."""

from __future__ import annotations

import shutil
import tracemalloc
from collections import Counter
from pathlib import Path

import edfio
import numpy as np
import pytest
import wfdb

from medscale.errors import AnnotationReadError, SpecError
from medscale.io.edf_annotations import read_edf_annotations
from medscale.io.epoch_tables import (
    GAP_LABEL,
    StageRun,
    expand_stage_runs,
    read_epoch_text,
    read_stage_table,
)
from medscale.io.nsrr_xml import parse_untrusted_xml, read_nsrr_xml
from medscale.io.recording import Event
from medscale.io.wfdb_annotations import read_rdann_text, read_wfdb_stage_annotations

# --------------------------------------------------------------------------- EDF+ annotations


def test_sleepedf_hypnogram_expands_variable_runs_into_30s_epochs(shared_data: Path) -> None:
    raw = read_edf_annotations(shared_data / "sleepedf_edfio" / "SC4001EC-Hypnogram.edf")
    # 154 runs covering 0..86400 s without gaps -> 2880 epochs.
    assert len(raw.labels) == 2880
    assert raw.onset_s == 0.0
    assert raw.epoch_length_s == 30.0
    # The first run is W from 0 to 30630 s: 1021 epochs, then "Sleep stage 1" at 30630 s.
    assert raw.labels[:1021] == ["Sleep stage W"] * 1021
    assert raw.labels[1021] == "Sleep stage 1"
    # The last run is "?" from 79500 s for 6900 s = 230 epochs.
    assert raw.labels[-230:] == ["Sleep stage ?"] * 230
    assert Counter(raw.labels) == {
        "Sleep stage W": 1997,
        "Sleep stage 1": 58,
        "Sleep stage 2": 250,
        "Sleep stage 3": 101,
        "Sleep stage 4": 119,
        "Sleep stage R": 125,
        "Sleep stage ?": 230,
    }
    assert raw.events == []
    assert raw.warnings == []


def test_sleepedf_hypnogram_agrees_with_its_csv_export(shared_data: Path) -> None:
    # Two independent derivations of SC4001's scoring: EDF+ runs and the one-char CSV (which
    # drops the trailing "?" run; SC4001 has no movement time, so nothing else shifts).
    edf = read_edf_annotations(shared_data / "sleepedf_edfio" / "SC4001EC-Hypnogram.edf")
    csv = read_epoch_text(
        shared_data / "sleepedf_hypnograms_csv" / "SC4001E0-PSG.edf.csv", epoch_length_s=30.0
    )
    from_edf = [label.removeprefix("Sleep stage ") for label in edf.labels]
    assert from_edf[: len(csv.labels)] == csv.labels
    assert set(from_edf[len(csv.labels) :]) == {"?"}


def test_hmc_scoring_counts_epochs_and_cleans_lights_events(shared_data: Path) -> None:
    raw = read_edf_annotations(shared_data / "hmc_sleepscoring" / "SN001_sleepscoring.edf")
    assert Counter(raw.labels) == {
        "Sleep stage W": 151,
        "Sleep stage N1": 109,
        "Sleep stage N2": 430,
        "Sleep stage N3": 23,
        "Sleep stage R": 141,
    }
    assert len(raw.labels) == 854
    assert raw.onset_s == 0.0
    assert raw.events == [Event(33.43, 0.0, "Lights off"), Event(25618.74, 0.0, "Lights on")]
    assert raw.warnings == []


def test_wrong_stage_prefix_error_lists_the_annotation_texts(shared_data: Path) -> None:
    path = shared_data / "hmc_sleepscoring" / "SN001_sleepscoring.edf"
    with pytest.raises(AnnotationReadError, match=r"SN001_sleepscoring.edf.*'Sleep stage N1'"):
        read_edf_annotations(path, stage_prefix="Stage")


def _write_edf_plus(path: Path, annotations: list[tuple[float, float, str]]) -> Path:
    edf = edfio.Edf(signals=[], annotations=[edfio.EdfAnnotation(*a) for a in annotations])
    edf.write(path)
    return path


def test_gaps_and_off_grid_runs_are_filled_and_snapped_with_warnings(tmp_path: Path) -> None:
    path = _write_edf_plus(
        tmp_path / "runs.edf",
        [
            (0.0, 60.0, "Sleep stage W"),
            (60.0, 45.0, "Sleep stage 1"),  # ends at 105 s = 3.5 epochs: snaps up to 120 s
            (70.0, 5.0, "Arousal@@EEG C3-M2"),
            (180.0, 60.0, "Sleep stage 2"),  # 120..180 s is not scored
        ],
    )
    raw = read_edf_annotations(path)
    assert (
        raw.labels
        == ["Sleep stage W"] * 2
        + ["Sleep stage 1"] * 2
        + ["Sleep stage ?"] * 2
        + ["Sleep stage 2"] * 2
    )
    assert raw.events == [Event(70.0, 5.0, "Arousal")]
    assert len(raw.warnings) == 2
    assert "snapped" in raw.warnings[0] and "'Sleep stage 1' at 60 s" in raw.warnings[0]
    assert "2 epoch(s) in 1 gap(s)" in raw.warnings[1] and "at 120 s" in raw.warnings[1]


def test_edf_plus_with_signals_reads_only_its_annotations(tmp_path: Path) -> None:
    path = tmp_path / "psg.edf"
    edfio.Edf(
        [edfio.EdfSignal(np.zeros(100 * 120), sampling_frequency=100, label="EEG Fpz-Cz")],
        annotations=[
            edfio.EdfAnnotation(0.0, 90.0, "Sleep stage W"),
            edfio.EdfAnnotation(90.0, 30.0, "Sleep stage 1"),
            edfio.EdfAnnotation(95.0, None, "Lights off"),
        ],
    ).write(path)
    raw = read_edf_annotations(path)
    assert raw.labels == ["Sleep stage W"] * 3 + ["Sleep stage 1"]
    assert raw.events == [Event(95.0, 0.0, "Lights off")]


def test_truncated_edf_is_recovered_through_mne_with_a_warning(
    shared_data: Path, tmp_path: Path
) -> None:
    source = shared_data / "hmc_sleepscoring" / "SN001_sleepscoring.edf"
    intact = read_edf_annotations(source)
    damaged = tmp_path / "SN001_truncated.edf"
    damaged.write_bytes(source.read_bytes()[:-1000])  # cuts into the only data record
    raw = read_edf_annotations(damaged)
    assert raw.labels == intact.labels
    assert raw.events == intact.events
    assert any("edfio could not parse" in w and "mne" in w for w in raw.warnings)


@pytest.mark.parametrize(
    "content", [b"hello world" * 30, b"0       " + b"x" * 300], ids=["not_edf", "broken_header"]
)
def test_malformed_edf_raises_annotation_error_naming_the_file(
    tmp_path: Path, content: bytes
) -> None:
    path = tmp_path / "broken.edf"
    path.write_bytes(content)
    with pytest.raises(AnnotationReadError, match=r"broken.edf"):
        read_edf_annotations(path)


def test_plain_edf_without_annotation_signal_is_refused(shared_data: Path) -> None:
    with pytest.raises(AnnotationReadError, match=r"short_psg.edf.*no annotations"):
        read_edf_annotations(shared_data / "sleepedf_edfio" / "short_psg.edf")


# --------------------------------------------------------------------------- NSRR / Profusion XML

NSRR_XML = """<?xml version="1.0" encoding="UTF-8" standalone="no"?>
<PSGAnnotation>
  <SoftwareVersion>Compumedics</SoftwareVersion>
  <EpochLength>30</EpochLength>
  <ScoredEvents>
    <ScoredEvent>
      <EventType/>
      <EventConcept>Recording Start Time</EventConcept>
      <Start>0</Start>
      <Duration>28800.0</Duration>
      <ClockTime>00.00.00 22.41.05</ClockTime>
    </ScoredEvent>
    <ScoredEvent>
      <EventType>Stages|Stages</EventType>
      <EventConcept>Wake|0</EventConcept>
      <Start>0.0</Start>
      <Duration>90.0</Duration>
    </ScoredEvent>
    <ScoredEvent>
      <EventType>Stages|Stages</EventType>
      <EventConcept>Stage 1 sleep|1</EventConcept>
      <Start>90.0</Start>
      <Duration>30.0</Duration>
    </ScoredEvent>
    <ScoredEvent>
      <EventType>Arousals|Arousals</EventType>
      <EventConcept>Arousal|Arousal ()</EventConcept>
      <Start>101.5</Start>
      <Duration>6.0</Duration>
      <SignalLocation>C3</SignalLocation>
    </ScoredEvent>
    <ScoredEvent>
      <EventType>Stages|Stages</EventType>
      <EventConcept>Stage 2 sleep|2</EventConcept>
      <Start>120.0</Start>
      <Duration>120.0</Duration>
    </ScoredEvent>
    <ScoredEvent>
      <EventType>Respiratory|Respiratory</EventType>
      <EventConcept>Obstructive apnea|Obstructive Apnea</EventConcept>
      <Start>150.2</Start>
      <Duration>14.8</Duration>
      <SignalLocation>ABDO RES</SignalLocation>
      <SpO2Nadir>88</SpO2Nadir>
      <SpO2Baseline>95</SpO2Baseline>
    </ScoredEvent>
    <ScoredEvent>
      <EventType>Stages|Stages</EventType>
      <EventConcept>REM sleep|5</EventConcept>
      <Start>240.0</Start>
      <Duration>30.0</Duration>
    </ScoredEvent>
  </ScoredEvents>
</PSGAnnotation>
"""

PROFUSION_XML = """<?xml version="1.0" encoding="utf-8"?>
<CMPStudyConfig>
  <EpochLength>30</EpochLength>
  <ScoredEvents>
    <ScoredEvent>
      <Name>SpO2 desaturation</Name>
      <Start>75.5</Start>
      <Duration>12</Duration>
      <Input>SaO2</Input>
    </ScoredEvent>
    <ScoredEvent>
      <Name>Arousal (ASDA)</Name>
      <Start>130</Start>
      <Duration>4.5</Duration>
      <Input>EEG</Input>
    </ScoredEvent>
  </ScoredEvents>
  <SleepStages>
    <SleepStage>0</SleepStage>
    <SleepStage>0</SleepStage>
    <SleepStage>1</SleepStage>
    <SleepStage>2</SleepStage>
    <SleepStage>2</SleepStage>
    <SleepStage>3</SleepStage>
    <SleepStage>5</SleepStage>
  </SleepStages>
</CMPStudyConfig>
"""


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_nsrr_xml_expands_multi_epoch_stage_runs(tmp_path: Path) -> None:
    raw = read_nsrr_xml(_write(tmp_path / "nsrr.xml", NSRR_XML))
    assert raw.labels == ["Wake|0"] * 3 + ["Stage 1 sleep|1"] + ["Stage 2 sleep|2"] * 4 + [
        "REM sleep|5"
    ]
    assert raw.epoch_length_s == 30.0 and raw.onset_s == 0.0
    assert raw.events == [
        Event(101.5, 6.0, "Arousal|Arousal ()"),
        Event(150.2, 14.8, "Obstructive apnea|Obstructive Apnea"),
    ]
    assert raw.warnings == []


def test_nsrr_xml_gap_becomes_unscored_with_a_warning(tmp_path: Path) -> None:
    text = NSRR_XML.replace("<Start>240.0</Start>", "<Start>300.0</Start>")
    raw = read_nsrr_xml(_write(tmp_path / "gap.xml", text))
    assert raw.labels[-3:] == ["Unscored|9", "Unscored|9", "REM sleep|5"]
    assert len(raw.warnings) == 1 and "'Unscored|9'" in raw.warnings[0]


def test_nsrr_xml_can_cut_runs_into_shorter_epochs(tmp_path: Path) -> None:
    raw = read_nsrr_xml(_write(tmp_path / "nsrr.xml", NSRR_XML), epoch_length_s=10.0)
    assert len(raw.labels) == 27 and raw.labels[:9] == ["Wake|0"] * 9
    assert len(raw.warnings) == 1 and "<EpochLength> is 30 s" in raw.warnings[0]


def test_profusion_xml_reads_one_stage_per_epoch_and_named_events(tmp_path: Path) -> None:
    raw = read_nsrr_xml(_write(tmp_path / "profusion.xml", PROFUSION_XML))
    assert raw.labels == ["0", "0", "1", "2", "2", "3", "5"]
    assert raw.epoch_length_s == 30.0
    assert raw.events == [
        Event(75.5, 12.0, "SpO2 desaturation"),
        Event(130.0, 4.5, "Arousal (ASDA)"),
    ]


def test_profusion_xml_refuses_a_conflicting_epoch_length(tmp_path: Path) -> None:
    path = _write(tmp_path / "profusion.xml", PROFUSION_XML)
    with pytest.raises(AnnotationReadError, match=r"profusion.xml.*<EpochLength> is 30 s"):
        read_nsrr_xml(path, epoch_length_s=20.0)


BILLION_LAUGHS = (
    '<?xml version="1.0"?>\n<!DOCTYPE PSGAnnotation [\n<!ENTITY lol "lol">\n'
    + "".join(
        f'<!ENTITY lol{i} "{("&lol" + (str(i - 1) if i > 1 else "") + ";") * 10}">\n'
        for i in range(1, 10)
    )
    + "]>\n<PSGAnnotation><EpochLength>&lol9;</EpochLength></PSGAnnotation>\n"
)
EXTERNAL_ENTITY = (
    '<?xml version="1.0"?>\n<!DOCTYPE PSGAnnotation [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>\n'
    "<PSGAnnotation><EpochLength>&xxe;</EpochLength></PSGAnnotation>\n"
)


def _xml_backends() -> list[object]:
    defused = pytest.param(
        True,
        id="defusedxml",
        marks=pytest.mark.skipif(
            not _has_defusedxml(), reason="defusedxml is not installed; expat backend tested"
        ),
    )
    return [pytest.param(False, id="expat"), defused]


def _has_defusedxml() -> bool:
    try:
        import defusedxml  # noqa: F401
    except ImportError:
        return False
    return True


@pytest.mark.parametrize("use_defusedxml", _xml_backends())
@pytest.mark.parametrize(
    "text", [BILLION_LAUGHS, EXTERNAL_ENTITY], ids=["billion_laughs", "external_entity"]
)
def test_hostile_xml_is_refused_quickly(tmp_path: Path, text: str, use_defusedxml: bool) -> None:
    path = _write(tmp_path / "hostile.xml", text)
    # Refused before expanding: bounded by memory, not by seconds (a loaded machine is slow).
    tracemalloc.start()
    with pytest.raises(AnnotationReadError, match=r"hostile.xml.*refused"):
        parse_untrusted_xml(path, use_defusedxml=use_defusedxml)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 4 * 2**20, f"peak allocation {peak / 2**20:.1f} MiB"


def test_hostile_xml_is_refused_by_the_reader(tmp_path: Path) -> None:
    with pytest.raises(AnnotationReadError, match=r"hostile.xml.*refused"):
        read_nsrr_xml(_write(tmp_path / "hostile.xml", BILLION_LAUGHS))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (NSRR_XML[:-40], "not well-formed"),
        ("<Annotations><Stage>W</Stage></Annotations>", "root element is <Annotations>"),
        (NSRR_XML.replace("<Start>120.0</Start>", "<Start>two</Start>"), "<Start>two</Start>"),
        (PROFUSION_XML.replace("<SleepStage>3</SleepStage>", "<SleepStage/>"), "#6 is empty"),
    ],
    ids=["truncated", "foreign_root", "bad_start", "empty_stage"],
)
def test_malformed_xml_raises_annotation_error_naming_the_file(
    tmp_path: Path, text: str, message: str
) -> None:
    path = _write(tmp_path / "bad.xml", text)
    with pytest.raises(AnnotationReadError, match=rf"bad.xml.*{message}"):
        read_nsrr_xml(path)


# --------------------------------------------------------------------------- WFDB (slpdb)


def _slpdb(shared_data: Path) -> Path:
    return shared_data / "mitbih_slpdb_annotations"


def test_slpdb_text_dumps_hold_10197_scored_epochs(shared_data: Path) -> None:
    files = sorted(_slpdb(shared_data).glob("*.an"))
    assert len(files) == 18
    raws = {path.stem: read_rdann_text(path) for path in files}
    assert sum(len(raw.labels) for raw in raws.values()) == 10197
    # Records whose scoring starts late keep that offset; the rest start at 0 even though
    # their first annotation sits at sample 1.
    assert raws["slp14"].onset_s == 180.0 and len(raws["slp14"].labels) == 714
    assert raws["slp01a"].onset_s == 0.0 and len(raws["slp01a"].labels) == 240
    assert set(Counter(label for raw in raws.values() for label in raw.labels)) <= {
        "W", "1", "2", "3", "4", "R", "MT", "M"
    }  # fmt: skip
    # slp32.hea has a two-digit year that wfdb.rdheader refuses: the rate comes from line 1.
    assert any("slp32.hea" in w and "250 Hz" in w for w in raws["slp32"].warnings)
    assert all(not raw.warnings for name, raw in raws.items() if name != "slp32")


def test_slpdb_aux_tokens_after_the_stage_become_epoch_events(shared_data: Path) -> None:
    raw = read_rdann_text(_slpdb(shared_data) / "slp01a.an")
    # First rows: "4 LA LA", "4 LA", "4 LA", "4 L L L".
    assert raw.labels[:4] == ["4", "4", "4", "4"]
    assert raw.events[:7] == [
        Event(0.0, 30.0, "LA"),
        Event(0.0, 30.0, "LA"),
        Event(30.0, 30.0, "LA"),
        Event(60.0, 30.0, "LA"),
        Event(90.0, 30.0, "L"),
        Event(90.0, 30.0, "L"),
        Event(90.0, 30.0, "L"),
    ]


def test_rdann_text_needs_a_rate_when_no_header_is_beside_it(
    shared_data: Path, tmp_path: Path
) -> None:
    lone = shutil.copy(_slpdb(shared_data) / "slp14.an", tmp_path / "slp14.an")
    with pytest.raises(AnnotationReadError, match=r"slp14.*pass sfreq_hz"):
        read_rdann_text(lone)
    raw = read_rdann_text(lone, sfreq_hz=250.0)
    assert raw.onset_s == 180.0 and len(raw.labels) == 714


def test_malformed_rdann_line_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.an"
    path.write_text(
        "Elapsed time  Sample #  Type  Sub Chan  Num\tAux\n"
        '    0:00.004        1     "    0    0    0\tW\n'
        "    0:30.000     garbage\n"
    )
    with pytest.raises(AnnotationReadError, match=r"bad.an: line 3"):
        read_rdann_text(path, sfreq_hz=250.0)


@pytest.mark.parametrize("store_fs", [True, False], ids=["fs_in_file", "fs_from_header"])
def test_binary_st_written_by_wrann_reads_like_its_text_dump(
    shared_data: Path, tmp_path: Path, store_fs: bool
) -> None:
    text_path = _slpdb(shared_data) / "slp37.an"
    rows = [line.split(None, 6) for line in text_path.read_text().splitlines()[1:]]
    wfdb.wrann(
        "slp37",
        "st",
        sample=np.array([int(r[1]) for r in rows]),
        symbol=[r[2] for r in rows],
        aux_note=[r[6] for r in rows],
        fs=250 if store_fs else None,
        write_dir=str(tmp_path),
    )
    if not store_fs:
        shutil.copy(_slpdb(shared_data) / "slp37.hea", tmp_path / "slp37.hea")
    from_text = read_rdann_text(text_path)
    from_binary = read_wfdb_stage_annotations(tmp_path / "slp37.st")
    assert from_binary.labels == from_text.labels
    assert from_binary.onset_s == from_text.onset_s == 60.0
    assert from_binary.events == from_text.events
    assert from_binary.warnings == []


def test_binary_st_without_any_rate_is_refused(shared_data: Path, tmp_path: Path) -> None:
    wfdb.wrann(
        "rec", "st", sample=np.array([1, 7500]), symbol=['"', '"'],
        aux_note=["W", "1"], write_dir=str(tmp_path),
    )  # fmt: skip
    with pytest.raises(AnnotationReadError, match=r"rec.*pass sfreq_hz"):
        read_wfdb_stage_annotations(tmp_path / "rec")
    assert read_wfdb_stage_annotations(tmp_path / "rec", sfreq_hz=250.0).labels == ["W", "1"]


def test_corrupt_st_file_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "rec.st"
    path.write_bytes(b"\x01")
    with pytest.raises(AnnotationReadError, match=r"rec.st"):
        read_wfdb_stage_annotations(path, sfreq_hz=250.0)


# --------------------------------------------------------------------------- epoch text


def test_dreams_hypnograms_have_360_five_second_epochs(shared_data: Path) -> None:
    for n in range(1, 9):
        raw = read_epoch_text(
            shared_data / "dreams_spindles" / f"Hypnogram_excerpt{n}.txt", epoch_length_s=5.0
        )
        assert len(raw.labels) == 360, n
        assert set(raw.labels) <= {"0", "1", "2", "3", "4", "5"}, n


def test_yasa_hypnograms_skip_comments_and_keep_string_labels(shared_data: Path) -> None:
    folder = shared_data / "yasa_examples"
    ints = read_epoch_text(folder / "data_full_6hrs_100Hz_hypno_30s.txt", epoch_length_s=30)
    assert Counter(ints.labels) == {"0": 43, "1": 22, "2": 318, "3": 182, "4": 155}
    strings = read_epoch_text(folder / "sub-02_hypno_30s.txt", epoch_length_s=30)
    assert Counter(strings.labels) == {"W": 36, "N1": 9, "N2": 31, "N3": 22}


def test_sleepedf_csv_exports_split_on_bare_carriage_returns(shared_data: Path) -> None:
    files = sorted((shared_data / "sleepedf_hypnograms_csv").glob("*.csv"))
    assert len(files) == 61
    assert b"\n" not in files[0].read_bytes()  # the bare-CR case really is exercised
    lengths = [len(read_epoch_text(path, epoch_length_s=30.0).labels) for path in files]
    assert (min(lengths), max(lengths), sum(lengths)) == (821, 2880, 130158)


def test_blank_line_between_labels_is_an_error_with_its_line_number(tmp_path: Path) -> None:
    path = tmp_path / "hyp.txt"
    path.write_text("[Hypnogram]\n5\n5\n\n4\n\n\n")
    with pytest.raises(AnnotationReadError, match=r"hyp.txt: line 4 is blank"):
        read_epoch_text(path, epoch_length_s=5.0)
    path.write_text("[Hypnogram]\n5\n5\n4\n\n\n")
    assert read_epoch_text(path, epoch_length_s=5.0).labels == ["5", "5", "4"]


def test_explicit_header_line_count_and_onset(tmp_path: Path) -> None:
    path = tmp_path / "hyp.txt"
    path.write_text("stage\nW\nN1\n")
    raw = read_epoch_text(path, epoch_length_s=30.0, header_lines=1, onset_s=90.0)
    assert raw.labels == ["W", "N1"] and raw.onset_s == 90.0
    with pytest.raises(SpecError, match=r"header_lines"):
        read_epoch_text(path, epoch_length_s=30.0, header_lines=-1)


# --------------------------------------------------------------------------- stage tables


def test_stage_table_one_row_per_epoch_with_sniffed_delimiter(tmp_path: Path) -> None:
    path = tmp_path / "stages.csv"
    path.write_text("epoch;stage;confidence\n1;W;0.9\n2;N1;0.7\n3;N2;0.8\n")
    raw = read_stage_table(path, stage_column="stage")
    assert raw.labels == ["W", "N1", "N2"] and raw.onset_s == 0.0 and raw.warnings == []


def test_stage_table_runs_in_milliseconds_expand_like_edf(tmp_path: Path) -> None:
    path = tmp_path / "runs.tsv"
    path.write_text("onset\tduration\tstage\n30000\t60000\tW\n90000\t30000\tN2\n180000\t30000\tR\n")
    raw = read_stage_table(
        path, stage_column="stage", onset_column="onset", duration_column="duration",
        time_unit="ms",
    )  # fmt: skip
    assert raw.onset_s == 30.0
    assert raw.labels == ["W", "W", "N2", GAP_LABEL, GAP_LABEL, "R"]
    assert len(raw.warnings) == 1 and "gap" in raw.warnings[0]


def test_stage_table_missing_column_lists_the_columns_found(tmp_path: Path) -> None:
    path = tmp_path / "stages.csv"
    path.write_text("time,Stage\n0,W\n")
    with pytest.raises(
        AnnotationReadError, match=r"stages.csv: no column 'stage'.*\['time', 'Stage'\]"
    ):
        read_stage_table(path, stage_column="stage")


def test_stage_table_bad_onset_names_line_and_column(tmp_path: Path) -> None:
    path = tmp_path / "stages.csv"
    path.write_text("onset,stage\n0,W\nhalf past,N1\n")
    with pytest.raises(AnnotationReadError, match=r"line 3, column 'onset'"):
        read_stage_table(path, stage_column="stage", onset_column="onset")


def test_expand_stage_runs_keeps_the_first_run_where_runs_overlap() -> None:
    runs = [StageRun(0.0, 90.0, "W"), StageRun(60.0, 60.0, "N1")]
    labels, onset_s, warnings = expand_stage_runs(
        runs, epoch_length_s=30.0, unscored_label="?", source="x"
    )
    assert labels == ["W", "W", "W", "N1"] and onset_s == 0.0
    assert warnings == [
        "1 epoch(s) are covered by more than one stage annotation; each kept the label of "
        "the annotation that starts first"
    ]


def test_expand_stage_runs_refuses_an_absurd_span() -> None:
    runs = [StageRun(0.0, 30.0, "W"), StageRun(1e9, 30.0, "W")]
    with pytest.raises(AnnotationReadError, match=r"corrupt"):
        expand_stage_runs(runs, epoch_length_s=30.0, unscored_label="?", source="x")
