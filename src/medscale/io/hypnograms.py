"""One entry point for every hypnogram format, and the step from raw labels to AASM codes.

``read_hypnogram(path, format, **options)`` picks the reader by format name; the options
are that reader's keyword arguments. ``to_aasm`` maps the raw labels through a label map
and re-grids the result to the wanted epoch length.

==================  ==========================================  ============================
format              reader                                      files
==================  ==========================================  ============================
edf_annotations     `read_edf_annotations`                      EDF+/BDF+ TAL annotations
nsrr_xml            `read_nsrr_xml`                             NSRR and Profusion XML
wfdb_st             `read_wfdb_stage_annotations`               binary WFDB ``.st``
rdann_text          `read_rdann_text`                           rdann text dumps (``.an``)
epoch_text          `read_epoch_text`                           one label per line
stage_table         `read_stage_table`                          CSV/TSV stage tables
==================  ==========================================  ============================
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from medscale.errors import SpecError
from medscale.io.edf import read_edf_header
from medscale.io.edf_annotations import read_edf_annotations
from medscale.io.epoch_tables import (
    GAP_LABEL,
    check_epoch_length,
    read_epoch_text,
    read_stage_table,
)
from medscale.io.nsrr_xml import read_nsrr_xml
from medscale.io.recording import Hypnogram, RawHypnogram
from medscale.io.stages import UNKNOWN, load_label_map, map_labels
from medscale.io.wfdb_annotations import read_rdann_text, read_wfdb_stage_annotations

_READERS: dict[str, Callable[..., RawHypnogram]] = {
    "edf_annotations": read_edf_annotations,
    "nsrr_xml": read_nsrr_xml,
    "wfdb_st": read_wfdb_stage_annotations,
    "rdann_text": read_rdann_text,
    "epoch_text": read_epoch_text,
    "stage_table": read_stage_table,
}

#: Format names `read_hypnogram` accepts.
HYPNOGRAM_FORMATS: tuple[str, ...] = tuple(_READERS)


def _reader_options(reader: Callable[..., RawHypnogram]) -> tuple[list[str], list[str]]:
    """The reader's option names (all but ``path``), and those that have no default."""
    params = list(inspect.signature(reader).parameters.values())[1:]
    names = [p.name for p in params]
    required = [p.name for p in params if p.default is inspect.Parameter.empty]
    return names, required


def read_hypnogram(path: Path | str, format: str, **options: Any) -> RawHypnogram:
    """Read a hypnogram file of the named format.

    Parameters
    ----------
    path
        The hypnogram file.
    format
        One of `HYPNOGRAM_FORMATS`.
    **options
        Keyword arguments of that format's reader (see the module docstring).

    Raises
    ------
    SpecError
        Unknown format, unknown option, or a required option missing.
    """
    reader = _READERS.get(format)
    if reader is None:
        raise SpecError(
            f"unknown hypnogram format {format!r}; valid formats: {list(HYPNOGRAM_FORMATS)}"
        )
    accepted, required = _reader_options(reader)
    unexpected = sorted(set(options) - set(accepted))
    if unexpected:
        raise SpecError(
            f"hypnogram format {format!r} does not take option(s) {unexpected}; "
            f"accepted options: {accepted}"
        )
    missing = [name for name in required if name not in options]
    if missing:
        raise SpecError(f"hypnogram format {format!r} needs option(s) {missing}")
    raw = reader(path, **options)
    if format == "edf_annotations" and raw.clock_s is None:
        raw.clock_s = _edf_clock_s(Path(path))
    return raw


def _edf_clock_s(path: Path) -> float | None:
    """An EDF+ annotation file's start time of day, which its onsets count from."""
    header, _ = read_edf_header(path)
    match = re.fullmatch(r"\s*(\d{1,2})\.(\d{2})\.(\d{2})\s*", header.starttime)
    if match is None:
        return None  # a malformed start time: place the hypnogram by its onsets alone
    clock_s = float(sum(int(g) * f for g, f in zip(match.groups(), (3600, 60, 1), strict=True)))
    # Writers that know no start time (edfio's default, many converters) put 00.00.00.
    return clock_s if clock_s else None


def to_aasm(
    raw: RawHypnogram,
    label_map: str | Mapping[str, int],
    epoch_length_s: float = 30.0,
) -> Hypnogram:
    """Map raw labels to AASM stage codes and re-grid to ``epoch_length_s``.

    Parameters
    ----------
    raw
        A reader's output.
    label_map
        ``{source label: stage code}`` as `medscale.io.stages.load_label_map` returns it,
        or the name of a shipped label map.
    epoch_length_s
        Output epoch length; a different source length is re-gridded by majority vote
        (`Hypnogram.to_epoch_length`).

    Raises
    ------
    AnnotationReadError
        A label is not in the map (the message names it and the file). `GAP_LABEL`, which
        the table reader gives epochs between rows, is UNKNOWN without being in the map.
    """
    epoch_length_s = check_epoch_length(epoch_length_s)
    codes = load_label_map(label_map) if isinstance(label_map, str) else label_map
    codes = {GAP_LABEL: UNKNOWN, **codes}  # gaps between table rows need no map entry
    stages = map_labels(raw.labels, codes, raw.source)
    hypnogram = Hypnogram(stages, raw.epoch_length_s, raw.onset_s, list(raw.events))
    return hypnogram.to_epoch_length(epoch_length_s)
