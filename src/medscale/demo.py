"""`run_demo`: the README's first command, end to end on an embedded default.

Synthesises a few nights, ingests them together with the real Sleep-EDF sample bundled in the
package (and the DREAMS excerpts when a shared data folder is found), and summarises the store.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from medscale.ingest.report import IngestReport
from medscale.ingest.run import ingest
from medscale.store.store import Store
from medscale.store.summary import summarize_store


@dataclass
class DemoResult:
    store: Path
    reports: list[str] = field(default_factory=list)
    ingest_reports: list[IngestReport] = field(default_factory=list)
    summary_text: str = ""

    @property
    def ok(self) -> bool:
        return all(r.ok for r in self.ingest_reports)


def find_shared_data() -> Path | None:
    """$MEDSCALE_SHARED_DATA, else ``../shared/data`` from the current folder, if present."""
    env = os.environ.get("MEDSCALE_SHARED_DATA")
    candidate = Path(env) if env else Path.cwd().parent / "shared" / "data"
    return candidate if candidate.is_dir() else None


def run_demo(
    out: Path, *, nights: int = 3, hours: float = 8.0, seed: int = 0, progress: bool = True
) -> DemoResult:
    """Write synthetic nights and a store under ``out``; return where everything is."""
    from medscale.synth import synthesize_nights

    synth_dir, store = out / "synthetic-nights", out / "store"
    synthesize_nights(synth_dir, nights, seed=seed, duration_h=hours, progress=progress)
    samples = resources.files("medscale.datasets") / "samples" / "sleep-edf-sc"
    sources: list[tuple[str, Path]] = [
        ("synthetic", synth_dir),
        ("sleep-edf-sc", Path(str(samples))),
    ]
    shared = find_shared_data()
    if shared is not None and (shared / "dreams_spindles").is_dir():
        sources.append(("dreams", shared / "dreams_spindles"))
    result = DemoResult(store=store)
    for spec, source in sources:
        report = ingest(spec, source, store, workers=min(2, os.cpu_count() or 1), progress=progress)
        result.ingest_reports.append(report)
        result.reports.extend(p for p in report.report_paths if p.endswith(".md"))
    result.summary_text = summarize_store(Store(store, read_only=True)).to_text()
    return result
