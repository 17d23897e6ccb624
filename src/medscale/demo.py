"""`run_demo`: the README's first command, the whole path on an embedded default.

Synthesises nights, ingests them with the real Sleep-EDF sample bundled in the package (and
the DREAMS excerpts when a shared data folder is found), trains the small U-Sleep, evaluates
it on held-out nights beside YASA, predicts one held-out night and writes the reports.
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from medscale.ingest.report import IngestReport
from medscale.ingest.run import ingest
from medscale.store.store import Store
from medscale.store.summary import summarize_store

DEMO_CONFIG = "usleep-small"
# The bundled config, changed so that every ingested night can be trained on and scored: a
# night without an EOG (the DREAMS excerpts hold one EEG channel) gets a zero EOG input, and
# training drops a channel group now and then so that the model learns to stage from EEG
# alone (U-Sleep's channel dropout).
DEMO_OVERRIDES: dict[str, Any] = {
    "sampling": {"missing_group": "zeros"},
    "augment": {"channel_dropout_p": 0.3},
}


@dataclass
class DemoResult:
    store: Path
    reports: list[str] = field(default_factory=list)
    ingest_reports: list[IngestReport] = field(default_factory=list)
    summary_text: str = ""
    run_dir: Path | None = None
    evaluation: Any = None  # EvaluationResult
    evaluation_files: dict[str, Path] = field(default_factory=dict)
    prediction_files: Any = None  # PredictionFiles
    notes: list[str] = field(default_factory=list)
    # Every stored recording -> its role: "train", "val", "test (evaluated)", or why not.
    night_roles: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return all(r.ok for r in self.ingest_reports)


def find_shared_data() -> Path | None:
    """$MEDSCALE_SHARED_DATA, else ``../shared/data`` from the current folder, if present."""
    env = os.environ.get("MEDSCALE_SHARED_DATA")
    candidate = Path(env) if env else Path.cwd().parent / "shared" / "data"
    return candidate if candidate.is_dir() else None


def run_demo(
    out: Path,
    *,
    nights: int = 10,
    hours: float = 3.0,
    seed: int = 0,
    max_steps: int | None = None,
    baselines: tuple[str, ...] = ("yasa",),
    progress: bool = True,
) -> DemoResult:
    """Run the whole path under ``out``; return where everything is.

    ``max_steps`` overrides the bundled config's training length (tests use a few steps).
    """
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
    if not result.ok:
        return result
    _train_evaluate_predict(result, out, synth_dir, max_steps, baselines, progress)
    return result


def _train_evaluate_predict(
    result: DemoResult,
    out: Path,
    synth_dir: Path,
    max_steps: int | None,
    baselines: tuple[str, ...],
    progress: bool,
) -> None:
    from medscale.data.splits import load_split
    from medscale.evaluate.run import evaluate_run
    from medscale.predict import predict_recording
    from medscale.train import train

    if "yasa" in baselines and importlib.util.find_spec("yasa") is None:
        baselines = tuple(b for b in baselines if b != "yasa")
        result.notes.append("yasa is not installed: evaluated without the YASA baseline")
    config = demo_config(max_steps)
    run_dir = out / "run"
    train(
        config,
        result.store,
        run_dir,
        resume=(run_dir / "manifest.json").exists(),
        progress=progress,
    )
    result.run_dir = run_dir
    result.evaluation, result.evaluation_files = evaluate_run(
        run_dir, result.store, subset="test", baselines=baselines, progress=progress
    )
    split = load_split(run_dir / "split.json", result.store)
    result.night_roles = night_roles(split.subsets, result.evaluation.not_evaluated)
    # One held-out synthetic night, read from its EDF as a user's file would be.
    test = split.subsets["test"]
    held_out = sorted(k.split("/", 1)[1] for k in test if k.startswith("synthetic/"))
    if held_out:
        night = synth_dir / f"{held_out[0]}-PSG.edf"
    else:  # the split's seed put no synthetic night in test: predict a training night
        night = sorted(synth_dir.glob("*-PSG.edf"))[0]
        result.notes.append(f"{night.name} was seen in training (no synthetic test night)")
    result.prediction_files = predict_recording(night, run_dir, out / "prediction").files


def demo_config(max_steps: int | None = None) -> Any:
    """The demo's training config: `DEMO_CONFIG` with `DEMO_OVERRIDES` (and ``max_steps``)."""
    from medscale.train import TrainConfig

    data = TrainConfig.load(DEMO_CONFIG).to_dict()
    sampling = data["data"]["sampling"] | DEMO_OVERRIDES["sampling"]
    processing = data["data"]["processing"]
    augment = processing["augment"] | DEMO_OVERRIDES["augment"]
    data["data"] = data["data"] | {
        "sampling": sampling,
        "processing": processing | {"augment": augment},
    }
    if max_steps is not None:
        data["max_steps"] = max_steps
    return TrainConfig.from_dict(data, f"the demo config ({DEMO_CONFIG} + DEMO_OVERRIDES)")


def night_roles(subsets: dict[str, list[str]], not_evaluated: dict[str, str]) -> dict[str, str]:
    """Each recording of the split -> "train", "val", "test (evaluated)" or the reason a test
    night was not evaluated."""
    roles = {}
    for subset, keys in subsets.items():
        for key in keys:
            if subset != "test":
                roles[key] = subset
            elif key in not_evaluated:
                roles[key] = f"test, not evaluated: {not_evaluated[key]}"
            else:
                roles[key] = "test (evaluated)"
    return dict(sorted(roles.items()))
