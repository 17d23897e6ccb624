"""Sleep stages and events from NSRR XML and Compumedics Profusion XML.

Two layouts are recognised by their root element:

- ``PSGAnnotation`` (NSRR harmonised XML): ``ScoredEvents/ScoredEvent`` elements with
  ``EventType``, ``EventConcept``, ``Start`` and ``Duration`` (seconds). Events whose
  ``EventType`` starts with ``"Stages"`` are stage runs, labelled with their
  ``EventConcept`` (``"Stage 2 sleep|2"``) and expanded into epochs by
  `medscale.io.epoch_tables.expand_stage_runs`; gaps become ``"Unscored|9"`` epochs. The
  ``"Recording Start Time"`` entry spans the recording rather than marking an event and is
  skipped; every other scored event (arousal, apnea, desaturation, lights) is an `Event`
  labelled with its ``EventConcept``.
- ``CMPStudyConfig`` (Profusion): ``EpochLength`` and one ``SleepStages/SleepStage``
  integer per epoch, used as the label (``"2"``); ``ScoredEvents/ScoredEvent`` with
  ``Name``, ``Start`` and ``Duration`` become events.

These files come from outside and are untrusted. A document type declaration (which is
where entity definitions live) is refused outright with AnnotationReadError, so entity
expansion ("billion laughs") and external entities cannot happen. defusedxml does the
parsing when it is installed; otherwise the standard library's expat parser runs with a
handler that stops at the first ``<!DOCTYPE``.
"""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from pathlib import Path
from xml.parsers import expat

from medscale.errors import AnnotationReadError
from medscale.io.epoch_tables import StageRun, check_epoch_length, expand_stage_runs
from medscale.io.recording import Event, RawHypnogram

NSRR_ROOT = "PSGAnnotation"
PROFUSION_ROOT = "CMPStudyConfig"
NSRR_UNSCORED_LABEL = "Unscored|9"
DEFAULT_EPOCH_LENGTH_S = 30.0


class _DeclarationRefused(Exception):
    """Raised inside the expat handlers to stop at a DOCTYPE or ENTITY declaration."""


def _refuse_declaration(*args: object) -> None:
    raise _DeclarationRefused(f"declaration of {args[0]!r}")


def _parse_with_expat(data: bytes) -> ET.Element:
    parser = expat.ParserCreate()
    builder = ET.TreeBuilder()
    # Entities can only be declared inside a DOCTYPE, so refusing the DOCTYPE at its start
    # refuses them all before any is expanded; the other two handlers are belt and braces.
    parser.StartDoctypeDeclHandler = _refuse_declaration
    parser.EntityDeclHandler = _refuse_declaration
    parser.ExternalEntityRefHandler = _refuse_declaration
    parser.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)
    parser.buffer_text = True
    parser.StartElementHandler = builder.start
    parser.EndElementHandler = builder.end
    parser.CharacterDataHandler = builder.data
    parser.Parse(data, True)
    return builder.close()


def parse_untrusted_xml(path: Path, *, use_defusedxml: bool | None = None) -> ET.Element:
    """Parse an XML file, refusing any DTD; errors become AnnotationReadError naming ``path``.

    ``use_defusedxml=None`` uses defusedxml when it is installed, else expat.
    """
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such annotation file")
    data = path.read_bytes()
    if use_defusedxml is None:
        try:
            import defusedxml
        except ImportError:
            use_defusedxml = False
        else:
            use_defusedxml = True
    try:
        if use_defusedxml:
            import defusedxml
            import defusedxml.ElementTree as defused_et

            try:
                return defused_et.fromstring(data, forbid_dtd=True)
            except defusedxml.DefusedXmlException as exc:
                raise _DeclarationRefused(str(exc)) from exc
        return _parse_with_expat(data)
    except _DeclarationRefused as exc:
        raise AnnotationReadError(
            f"{path}: refused an XML document type or entity declaration ({exc}); annotation "
            "XML must not carry a DTD, whose entities could expand without bound"
        ) from None
    except (expat.ExpatError, ET.ParseError) as exc:
        raise AnnotationReadError(f"{path}: not well-formed XML ({exc})") from None


def _text(element: ET.Element, tag: str) -> str | None:
    child = element.find(tag)
    if child is None or child.text is None:
        return None
    return child.text.strip()


def _seconds(element: ET.Element, tag: str, path: Path, where: str) -> float | None:
    text = _text(element, tag)
    if text is None or text == "":
        return None
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise AnnotationReadError(f"{path}: {where} has <{tag}>{text}</{tag}>; expected seconds")
    return value


def _file_epoch_length_s(root: ET.Element, path: Path) -> float | None:
    value = _seconds(root, "EpochLength", path, f"<{root.tag}>")
    if value is not None and value <= 0:
        raise AnnotationReadError(f"{path}: <EpochLength> is {value:g}; expected a positive number")
    return value


def _read_nsrr(root: ET.Element, path: Path, epoch_length_s: float | None) -> RawHypnogram:
    notes: list[str] = []
    file_epoch_s = _file_epoch_length_s(root, path)
    if epoch_length_s is None:
        if file_epoch_s is None:
            notes.append(f"no <EpochLength>; assumed {DEFAULT_EPOCH_LENGTH_S:g} s")
        epoch_length_s = file_epoch_s or DEFAULT_EPOCH_LENGTH_S
    elif file_epoch_s is not None and file_epoch_s != epoch_length_s:
        notes.append(
            f"<EpochLength> is {file_epoch_s:g} s; stage runs were cut into the requested "
            f"{epoch_length_s:g}-s epochs"
        )
    runs: list[StageRun] = []
    events: list[Event] = []
    for number, scored in enumerate(root.iterfind("ScoredEvents/ScoredEvent"), start=1):
        where = f"ScoredEvent #{number}"
        concept = _text(scored, "EventConcept")
        if not concept:
            raise AnnotationReadError(f"{path}: {where} has no <EventConcept>")
        if concept == "Recording Start Time":
            continue
        start_s = _seconds(scored, "Start", path, where)
        if start_s is None:
            raise AnnotationReadError(f"{path}: {where} ({concept!r}) has no <Start>")
        duration_s = _seconds(scored, "Duration", path, where) or 0.0
        if (_text(scored, "EventType") or "").startswith("Stages"):
            runs.append(StageRun(start_s, duration_s, concept))
        else:
            events.append(Event(start_s, duration_s, concept))
    if not runs:
        raise AnnotationReadError(
            f"{path}: no stage events (ScoredEvent with an EventType starting with 'Stages')"
        )
    labels, onset_s, run_notes = expand_stage_runs(
        runs, epoch_length_s=epoch_length_s, unscored_label=NSRR_UNSCORED_LABEL, source=path
    )
    return RawHypnogram(path, labels, epoch_length_s, onset_s, events, notes + run_notes)


def _read_profusion(root: ET.Element, path: Path, epoch_length_s: float | None) -> RawHypnogram:
    file_epoch_s = _file_epoch_length_s(root, path)
    if file_epoch_s is not None and epoch_length_s is not None and epoch_length_s != file_epoch_s:
        # The stage list is positional: each entry is one epoch of the file's length.
        raise AnnotationReadError(
            f"{path}: <EpochLength> is {file_epoch_s:g} s but epoch_length_s={epoch_length_s:g} "
            "was asked; Profusion stages are one per file epoch, re-grid after mapping instead"
        )
    length_s = file_epoch_s if file_epoch_s is not None else epoch_length_s
    if length_s is None:
        raise AnnotationReadError(
            f"{path}: no <EpochLength>; pass epoch_length_s to say how long each <SleepStage> is"
        )
    labels: list[str] = []
    for number, stage in enumerate(root.iterfind("SleepStages/SleepStage"), start=1):
        label = (stage.text or "").strip()
        if not label:
            raise AnnotationReadError(f"{path}: <SleepStage> #{number} is empty")
        labels.append(label)
    if not labels:
        raise AnnotationReadError(f"{path}: no <SleepStages>/<SleepStage> entries")
    events: list[Event] = []
    for number, scored in enumerate(root.iterfind("ScoredEvents/ScoredEvent"), start=1):
        where = f"ScoredEvent #{number}"
        name = _text(scored, "Name")
        start_s = _seconds(scored, "Start", path, where)
        if not name or start_s is None:
            raise AnnotationReadError(f"{path}: {where} needs a <Name> and a <Start>")
        events.append(Event(start_s, _seconds(scored, "Duration", path, where) or 0.0, name))
    return RawHypnogram(path, labels, length_s, 0.0, events)


def read_nsrr_xml(path: Path | str, *, epoch_length_s: float | None = None) -> RawHypnogram:
    """Read an NSRR XML (``PSGAnnotation``) or Profusion XML (``CMPStudyConfig``) file.

    Parameters
    ----------
    path
        The XML file.
    epoch_length_s
        Output epoch length; ``None`` takes the file's ``<EpochLength>`` (NSRR falls back
        to 30 s with a warning). For Profusion it must match the file's when given.
    """
    path = Path(path)
    if epoch_length_s is not None:
        epoch_length_s = check_epoch_length(epoch_length_s)
    root = parse_untrusted_xml(path)
    if root.tag == NSRR_ROOT:
        return _read_nsrr(root, path, epoch_length_s)
    if root.tag == PROFUSION_ROOT:
        return _read_profusion(root, path, epoch_length_s)
    raise AnnotationReadError(
        f"{path}: root element is <{root.tag}>; expected <{NSRR_ROOT}> (NSRR) or "
        f"<{PROFUSION_ROOT}> (Profusion)"
    )
