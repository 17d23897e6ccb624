"""Many nights with one loaded model: `predict_many`.

The next night is read and converted in a background thread while the model runs on the
current one (reading is mostly I/O and numpy, which release the GIL; so does the forward
pass). Each night is one unit: its outputs are written, then a small ``.prediction.json``
marker naming the model's weights (sha256) and the source's size and mtime; a rerun skips a
night whose marker matches, so an interrupted batch resumes. A night that fails (unreadable
file, no usable channel, a model/run mismatch) gets its error in the summary table and the
others go on.
"""

from __future__ import annotations

import csv
import glob
import json
import os
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from medscale.errors import MedscaleError, SpecError
from medscale.io.stages import SCORED_STAGES, STAGE_NAMES
from medscale.predict.model import StagingModel, load_staging_model

SUMMARY_NAME = "summary.csv"
SUMMARY_COLUMNS = (
    "source",
    "status",
    "n_epochs",
    "seconds",
    "channels",
    "hypnogram",
    "error",
    "warnings",
)
STAGE_COLUMNS = tuple(STAGE_NAMES[s] for s in SCORED_STAGES)  # epochs per predicted stage
# Files a folder holds that are not recordings to stage.
_SKIPPED_SUFFIXES = {".json", ".csv", ".txt", ".md", ".npy", ".png", ".tsv", ".xml", ".dat", ".atr"}


@dataclass
class NightOutcome:
    source: Path
    status: str  # "predicted", "skipped" (already predicted with this model) or "failed"
    n_epochs: int = 0
    seconds: float = 0.0
    channels: str = ""
    hypnogram: Path | None = None
    error: str = ""
    stage_counts: dict[str, int] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


@dataclass
class BatchReport:
    outcomes: list[NightOutcome] = field(default_factory=list)
    summary: Path | None = None

    def count(self, status: str) -> int:
        return sum(o.status == status for o in self.outcomes)

    @property
    def ok(self) -> bool:
        return self.count("failed") == 0


def expand_sources(items: Iterable[str | Path]) -> list[Path]:
    """Files and glob matches as given, and folders' recordings (sorted, not recursive;
    hypnogram, text and sidecar files left out), in order, without repeats. A pattern or a path that
    matches nothing is an error naming it."""
    out: list[Path] = []
    for item in items:
        text = str(item)
        path = Path(text)
        if path.is_dir():
            found = [p for p in sorted(path.iterdir()) if _is_recording(p)]
        elif path.exists():
            found = [path]
        elif glob.has_magic(text):
            found = [Path(p) for p in sorted(glob.glob(text)) if Path(p).is_file()]
        else:
            raise SpecError(f"{text}: no such file or folder")
        if not found:
            raise SpecError(f"{text}: no recording found (expected signal files such as .edf)")
        out.extend(found)
    return list(dict.fromkeys(out))


def _is_recording(path: Path) -> bool:
    name = path.name.lower()
    return (
        path.is_file()
        and path.suffix.lower() not in _SKIPPED_SUFFIXES
        and "hypnogram" not in name
        and not name.startswith(".")
    )


def _source_stamp(path: Path) -> dict[str, int]:
    stat = path.stat()
    return {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def _marker_path(out_dir: Path, source: Path) -> Path:
    return out_dir / f"{source.stem}.prediction.json"


def _already_predicted(out_dir: Path, source: Path, identity: str) -> dict | None:
    marker = _marker_path(out_dir, source)
    try:
        done = json.loads(marker.read_text())
        stamp = _source_stamp(source)
    except (OSError, ValueError):
        return None
    if done.get("model") == identity and done.get("source") == stamp:
        return done
    return None


def predict_many(
    sources: Sequence[str | Path],
    model: str | Path | StagingModel,
    out_dir: str | Path,
    *,
    channels: dict[str, list[str]] | None = None,
    threads: int | None = None,
    resume: bool = True,
    progress: bool = True,
    on_night: Callable[[NightOutcome], None] | None = None,
) -> BatchReport:
    """Stage every recording of ``sources`` (files, folders, glob patterns) into ``out_dir``
    with one loaded ``model``; write ``out_dir/summary.csv`` (a row per night) and return the
    report. ``resume`` skips nights already predicted with the same weights."""
    from tqdm.auto import tqdm

    from medscale.predict.night import read_night
    from medscale.predict.staging import stage_and_write

    paths = expand_sources(sources)
    by_stem: dict[str, list[Path]] = {}
    for p in paths:
        by_stem.setdefault(p.stem, []).append(p)
    clashes = {stem: ps for stem, ps in by_stem.items() if len(ps) > 1}
    if clashes:
        stem, ps = next(iter(clashes.items()))
        raise SpecError(
            f"{len(clashes)} output name(s) would clash, e.g. {stem!r} from "
            f"{', '.join(map(str, ps))}: predict them into separate --out folders"
        )
    staging = (
        model if not isinstance(model, str | Path) else load_staging_model(model, threads=threads)
    )
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    groups = staging.data.sampling.channel_groups
    report = BatchReport()

    todo: list[Path] = []
    for p in paths:
        done = _already_predicted(out, p, staging.identity) if resume else None
        if done is None:
            todo.append(p)
        else:
            report.outcomes.append(
                NightOutcome(
                    p,
                    "skipped",
                    n_epochs=int(done.get("n_epochs", 0)),
                    channels=str(done.get("channels", "")),
                    stage_counts=dict(done.get("stage_counts", {})),
                    hypnogram=out / f"{p.stem}.hypnogram.csv",
                )
            )

    def read(path: Path):
        return read_night(path, groups, overrides=channels)

    bar = tqdm(total=len(todo), unit="night", disable=not progress, desc="predict")
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="medscale-read") as pool:
        upcoming: Future | None = pool.submit(read, todo[0]) if todo else None
        for k, path in enumerate(todo):
            started = time.perf_counter()
            current = upcoming
            upcoming = pool.submit(read, todo[k + 1]) if k + 1 < len(todo) else None
            outcome = NightOutcome(path, "failed")
            try:
                night = current.result()  # type: ignore[union-attr]
                probabilities, files = stage_and_write(path, night, staging, out)
                outcome.status, outcome.n_epochs = "predicted", len(probabilities)
                outcome.hypnogram = files.csv
                outcome.warnings = night.warnings
                counts = np.bincount(probabilities.argmax(axis=1), minlength=len(SCORED_STAGES))
                outcome.stage_counts = dict(zip(STAGE_COLUMNS, map(int, counts), strict=True))
                outcome.channels = "; ".join(
                    f"{group}: {', '.join(label for _, label in pairs)}"
                    for group, pairs in night.channels.items()
                )
                _write_marker(out, path, staging, outcome)
            except (MedscaleError, OSError, ValueError) as exc:
                # Unreadable or unusable input: recorded for this night, the batch goes on.
                outcome.error = f"{type(exc).__name__}: {exc}"
            outcome.seconds = time.perf_counter() - started
            report.outcomes.append(outcome)
            if on_night is not None:
                on_night(outcome)
            bar.update(1)
    bar.close()
    order = {p: k for k, p in enumerate(paths)}
    report.outcomes.sort(key=lambda o: order[o.source])
    report.summary = write_summary(out / SUMMARY_NAME, report.outcomes)
    return report


def _write_marker(out: Path, source: Path, model: StagingModel, outcome: NightOutcome) -> None:
    marker = _marker_path(out, source)
    partial = marker.with_name(marker.name + ".partial")
    record = {
        "model": model.identity,
        "model_name": model.name,
        "source": _source_stamp(source),
        "n_epochs": outcome.n_epochs,
        "channels": outcome.channels,
        "stage_counts": outcome.stage_counts,
    }
    partial.write_text(json.dumps(record, indent=1))
    os.replace(partial, marker)


def write_summary(path: Path, outcomes: Sequence[NightOutcome]) -> Path:
    """One row per night (columns `SUMMARY_COLUMNS`), written atomically."""
    partial = path.with_name(path.name + ".partial")
    with partial.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(SUMMARY_COLUMNS + STAGE_COLUMNS)
        for o in outcomes:
            writer.writerow(
                [
                    o.source,
                    o.status,
                    o.n_epochs,
                    f"{o.seconds:.2f}",
                    o.channels,
                    o.hypnogram or "",
                    o.error,
                    " | ".join(o.warnings),
                    *(o.stage_counts.get(name, "") for name in STAGE_COLUMNS),
                ]
            )
    os.replace(partial, path)
    return path
