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

    @property
    def files(self) -> tuple[Path, ...]:
        return (self.signal_path, self.annotation_path, *self.companions)

    def relative(self, source_root: Path) -> list[str]:
        return [p.relative_to(source_root).as_posix() for p in self.files]


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


def _resolve(root: Path, pattern: str, role: str, exclude: Path) -> tuple[Path | None, str]:
    """The one file ``pattern`` names under ``root``, or None and the reason."""
    pattern = posixpath.normpath(pattern)
    if Path(pattern).is_absolute() or ".." in Path(pattern).parts:
        return None, f"{role} pattern {pattern!r} leaves the source folder"
    hits = [p for p in _glob(root, pattern) if p.is_file() and p != exclude and _inside(root, p)]
    if not hits:
        return None, f"no {role} file matches {pattern!r}"
    if len(hits) > 1:
        names = [h.relative_to(root).as_posix() for h in hits]
        return None, f"several {role} files match {pattern!r}: {names}"
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


def plan_ingest(spec: DatasetSpec, source_root: Path | str) -> IngestPlan:
    """Pair signal and annotation files under ``source_root`` as ``spec`` declares.

    The annotation pattern is a glob relative to ``source_root``, formatted with the signal
    pattern's named groups and ``{dir}`` (the signal file's folder). Raises `SpecError` when the
    folder is missing. Annotation paths that would reach outside the source root (``..``,
    absolute paths, symlinks) are refused per file.
    """
    root = Path(source_root)
    if not root.is_dir():
        raise SpecError(f"source folder {root} does not exist or is not a folder")
    signal_re = re.compile(spec.signals.pattern)
    files = sorted(p for p in root.rglob("*") if p.is_file())
    plan = IngestPlan(source_root=root)
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
        problems: list[str] = []
        found: list[Path] = []
        for role, template in [("annotation", spec.annotations.pattern)] + [
            ("companion", c) for c in spec.signals.companions
        ]:
            hit, problem = _resolve(root, template.format(**groups), role, exclude=path)
            if hit is not None:
                found.append(hit)
            elif problem:
                problems.append(problem)
            if role == "annotation" and problem and "several" in problem:
                claimed.update(_glob(root, template.format(**groups)))
        claimed.update(found)
        if problems:
            plan.unmatched.append(UnmatchedFile(rel, "; ".join(problems)))
            continue
        annotation, companions = found[0], tuple(found[1:])
        unit = IngestUnit(
            dataset=spec.name,
            recording_id=spec.recording_id.format(**groups),
            subject=spec.subject.format(**groups),
            session=spec.session.format(**groups),
            signal_path=path,
            annotation_path=annotation,
            companions=companions,
            groups=tuple(sorted(groups.items())),
        )
        by_id[unit.recording_id].append(unit)

    for recording_id, units in by_id.items():
        if len(units) == 1:
            plan.units.append(units[0])
            continue
        names = [u.signal_path.relative_to(root).as_posix() for u in units]
        for unit in units:
            plan.unmatched.append(
                UnmatchedFile(
                    unit.signal_path.relative_to(root).as_posix(),
                    f"recording id {recording_id!r} is shared by {names}; fix recording_id",
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
        plan.unmatched.append(UnmatchedFile(rel, reason))
    plan.unmatched.sort(key=lambda f: f.path)
    return plan
