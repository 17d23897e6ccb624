"""Plan an ingest: find every recording in a source folder and account for every other file.

Each `IngestUnit` is independent: a local pool, a SLURM array task or a Ray task can convert
it alone. Files that do not form a unit are listed in `IngestPlan.unmatched` with the reason,
so that nothing is skipped silently.
"""

from __future__ import annotations

import posixpath
import re
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from medscale.datasets.spec import DatasetSpec
from medscale.errors import SpecError
from medscale.privacy.pseudonyms import PseudonymKey, load_pseudonym_key


@dataclass(frozen=True)
class IngestUnit:
    """One recording to convert: its ids and its source files (absolute paths)."""

    dataset: str
    recording_id: str
    subject: str
    session: str
    signal_path: Path
    annotation_path: Path
    companions: tuple[Path, ...] = ()
    groups: tuple[tuple[str, str], ...] = ()
    display_files: tuple[str, ...] = ()  # how reports name the files (pseudonymised or not)
    redact: bool = False  # source ids and file names must not leave this unit
    refused: str = ""  # why this unit must not be written (a bad id); reported as failed

    @property
    def files(self) -> tuple[Path, ...]:
        return (self.signal_path, self.annotation_path, *self.companions)


@dataclass(frozen=True)
class UnmatchedFile:
    """A file under the source root that is not part of any unit, and why."""

    path: str
    reason: str


@dataclass
class IngestPlan:
    source_root: Path
    units: list[IngestUnit] = field(default_factory=list)
    unmatched: list[UnmatchedFile] = field(default_factory=list)
    key: PseudonymKey | None = None  # set when the spec pseudonymises ids


_DRIVE = re.compile(r"^[A-Za-z]:")


def id_problem(field: str, value: str) -> str | None:
    """Why ``value`` cannot be a ``field`` id, or None. Ids name folders and files in the
    store: one plain path component only, so no id can write outside its place."""
    if not value.strip():
        return f"{field} is empty"
    if "/" in value or "\\" in value:
        return f"{field} {value!r} contains a path separator"
    if value in (".", "..") or ".." in value:
        return f"{field} {value!r} contains '..'"
    if _DRIVE.match(value):
        return f"{field} {value!r} starts with a drive letter"
    if any(ord(ch) < 32 for ch in value):
        return f"{field} {value!r} contains a control character"
    return None


def _inside(root: Path, path: Path) -> bool:
    try:
        path.resolve().relative_to(root.resolve())
    except ValueError:
        return False
    return True


def _glob(root: Path, pattern: str) -> list[Path]:
    if any(ch in pattern for ch in "*?["):
        return sorted(root.glob(pattern))
    return [root / pattern] if (root / pattern).exists() else []  # no folder walk


def _resolve(
    root: Path, pattern: str, role: str, exclude: Path, shown: str | None = None
) -> tuple[Path | None, str]:
    """The one file ``pattern`` names under ``root``, or None and the reason. ``shown`` is
    what the reason calls the pattern (the unformatted template, when ids are redacted)."""
    pattern = posixpath.normpath(pattern)
    shown = pattern if shown is None else shown
    if Path(pattern).is_absolute() or ".." in Path(pattern).parts:
        return None, f"{role} pattern {shown!r} leaves the source folder"
    hits = [p for p in _glob(root, pattern) if p.is_file() and p != exclude and _inside(root, p)]
    if not hits:
        return None, f"no {role} file matches {shown!r}"
    if len(hits) > 1:
        return None, f"several {role} files match {shown!r} ({len(hits)} files)"
    return hits[0], ""


def _annotation_regex(spec: DatasetSpec) -> re.Pattern[str]:
    """The annotation glob as a regex over root-relative paths, its ``{group}``s as wildcards.

    Used only to explain leftovers: a file it matches is an annotation whose signal is missing.
    """
    pattern = spec.annotations.pattern
    out, pos = "", 0
    for match in re.finditer(r"{dir}/|{\w+}|\*\*/|\*|\?|\[[^\]]*\]", pattern):
        out += re.escape(pattern[pos : match.start()])
        token = match.group()
        if token == "{dir}/" or token == "**/":
            out += "(?:.*/)?"
        elif token.startswith("{"):
            out += ".+?"
        elif token == "*":
            out += "[^/]*"
        elif token == "?":
            out += "[^/]"
        else:
            out += token
        pos = match.end()
    return re.compile("^" + out + re.escape(pattern[pos:]) + "$")


def plan_ingest(
    spec: DatasetSpec, source_root: Path | str, key: PseudonymKey | None = None
) -> IngestPlan:
    """Pair signal and annotation files under ``source_root`` as ``spec`` declares.

    The annotation pattern is a glob relative to ``source_root``, formatted with the signal
    pattern's named groups and ``{dir}`` (the signal file's folder). Raises `SpecError` when the
    folder is missing. Annotation paths that would reach outside the source root (``..``,
    absolute paths, symlinks) are refused per file.

    With ``privacy.ids: pseudonymize`` the units carry keyed-hash ids (the key is ``key``, or
    `load_pseudonym_key`), and file names are shown as keyed hashes in every reason.
    """
    root = Path(source_root)
    if not root.is_dir():
        raise SpecError(f"source folder {root} does not exist or is not a folder")
    redact = spec.privacy.ids == "pseudonymize"
    if redact and key is None:
        key = load_pseudonym_key()
    if not redact:
        key = None

    def display(rel: str) -> str:
        return key.file(spec.name, rel) if key is not None else rel

    signal_re = re.compile(spec.signals.pattern)
    files = sorted(p for p in root.rglob("*") if p.is_file())
    plan = IngestPlan(source_root=root, key=key)
    claimed: set[Path] = set()
    by_id: dict[str, list[IngestUnit]] = defaultdict(list)

    for path in files:
        rel = path.relative_to(root).as_posix()
        match = signal_re.search(rel)
        if match is None:
            continue
        groups = {k: v or "" for k, v in match.groupdict().items()}
        groups.setdefault("dir", path.parent.relative_to(root).as_posix())
        claimed.add(path)
        if not _inside(root, path):
            reason = "a link that leaves the source folder"
            plan.unmatched.append(UnmatchedFile(display(rel), reason))
            continue
        problems: list[str] = []
        found: list[Path] = []
        for role, template in [("annotation", spec.annotations.pattern)] + [
            ("companion", c) for c in spec.signals.companions
        ]:
            shown = template if redact else None
            hit, problem = _resolve(root, template.format(**groups), role, path, shown)
            if hit is not None:
                found.append(hit)
            elif problem:
                problems.append(problem)
            if role == "annotation" and problem and "several" in problem:
                claimed.update(_glob(root, template.format(**groups)))
        claimed.update(found)
        if problems:
            plan.unmatched.append(UnmatchedFile(display(rel), "; ".join(problems)))
            continue
        annotation, companions = found[0], tuple(found[1:])
        recording_id = spec.recording_id.format(**groups)
        subject, session = spec.subject.format(**groups), spec.session.format(**groups)
        if key is not None:
            recording_id = key.recording(spec.name, recording_id)
            subject, session = key.subject(spec.name, subject), key.session(spec.name, session)
        ids = {"recording_id": recording_id, "subject": subject}
        if session:
            ids["session"] = session
        problems = [p for f, v in ids.items() if (p := id_problem(f, v))]
        refused = (
            f"{'; '.join(problems)}; ids must be one plain name (spec template "
            f"recording_id: {spec.recording_id!r}, subject: {spec.subject!r})"
            if problems
            else ""
        )
        unit = IngestUnit(
            dataset=spec.name,
            recording_id=recording_id,
            subject=subject,
            session=session,
            signal_path=path,
            annotation_path=annotation,
            companions=companions,
            groups=tuple(sorted(groups.items())),
            display_files=tuple(
                display(p.relative_to(root).as_posix()) for p in (path, annotation, *companions)
            ),
            redact=redact,
            refused=refused,
        )
        by_id[unit.recording_id].append(unit)

    for units in by_id.values():
        if len(units) == 1:
            plan.units.append(units[0])
            continue
        names = [u.display_files[0] for u in units]
        for unit in units:
            plan.unmatched.append(
                UnmatchedFile(
                    unit.display_files[0],
                    f"its recording id is shared by {names}; fix recording_id in the spec",
                )
            )
    plan.units.sort(key=lambda u: u.recording_id)
    orphan = _annotation_regex(spec)
    for path in files:
        if path in claimed:
            continue
        rel = path.relative_to(root).as_posix()
        if orphan.match(rel):
            reason = "looks like an annotation file, but no signal file matches it"
        else:
            reason = "not a signal file of this dataset, nor the annotation of one"
        plan.unmatched.append(UnmatchedFile(display(rel), reason))
    plan.unmatched.sort(key=lambda f: f.path)
    return plan
