"""`evaluate_run`: a training run's model on one subset of its split, beside baselines."""

from __future__ import annotations

from pathlib import Path

from medscale.data.splits import load_split
from medscale.errors import SpecError
from medscale.evaluate.results import EvaluationResult, RecordingPrediction, evaluate_predictions
from medscale.store.store import Store

BASELINES = ("yasa",)


def evaluate_run(
    run_dir: str | Path,
    store: str | Path | Store,
    *,
    subset: str = "test",
    out_dir: str | Path | None = None,
    baselines: tuple[str, ...] = (),
    wake_margin_min: float | None = None,
    n_boot: int = 1000,
    progress: bool = False,
) -> tuple[EvaluationResult, dict[str, Path]]:
    """Predict every night of ``subset`` of the run's own split with its best checkpoint
    (soft vote over channel combinations), score it, and write the results and the HTML
    report to ``out_dir`` (default ``RUN_DIR/eval-<subset>``). ``progress`` shows bars for
    the model's chunks and the baselines' nights."""
    from tqdm.auto import tqdm

    from medscale.data.torch_data import EvalNights
    from medscale.evaluate.inference import predict_nights
    from medscale.train.report import training_section
    from medscale.train.trained import load_trained_model

    unknown = sorted(set(baselines) - set(BASELINES))
    if unknown:
        raise SpecError(f"unknown baseline(s) {unknown}; known: {list(BASELINES)}")
    run_dir = Path(run_dir)
    store = store if isinstance(store, Store) else Store(store, read_only=True)
    split = load_split(run_dir / "split.json", store)
    if subset not in split.subsets or not split.subsets[subset]:
        raise SpecError(
            f"{run_dir / 'split.json'}: no recordings in subset {subset!r}; it has "
            f"{ {k: len(v) for k, v in split.subsets.items()} }"
        )
    trained = load_trained_model(run_dir)
    nights = EvalNights(store, trained.config.data, recordings=split.subsets[subset])
    chunks = tqdm(
        nights, desc=f"{trained.config.model} on {subset}", unit="chunk", disable=not progress
    )
    predicted = predict_nights(trained.model, chunks)
    predictions = [
        RecordingPrediction(key, key.split("/", 1)[0], night.y_true, night.probabilities)
        for key, night in predicted.items()
    ]
    result = evaluate_predictions(
        predictions,
        wake_margin_min=wake_margin_min,
        n_boot=n_boot,
        baselines=baseline_predictions(store, predictions, baselines, progress=progress),
        name=trained.config.model,
    )
    groups = [g.name for g in trained.config.data.sampling.channel_groups]
    result.not_evaluated = {
        key: f"has no channel for one of the model's channel groups {groups}"
        for key in split.subsets[subset]
        if key not in predicted
    }
    out = Path(out_dir) if out_dir is not None else run_dir / f"eval-{subset}"
    title = f"medscale evaluation: {run_dir.name} ({trained.config.model}, {subset} subset)"
    training = training_section(run_dir)
    return result, result.write(out, title=title, extra_sections=[training] if training else [])


def baseline_predictions(
    store: Store,
    predictions: list[RecordingPrediction],
    baselines: tuple[str, ...],
    *,
    progress: bool = False,
) -> dict[str, list[RecordingPrediction]]:
    """Each named baseline's predictions for the same recordings and true stages."""
    out = {}
    if "yasa" in baselines:
        from medscale.baselines.yasa import yasa_on_store

        infos = {info.key: info for info in store.recordings()}
        yasa = yasa_on_store(store, [infos[p.key] for p in predictions], progress=progress)
        out["yasa"] = [
            RecordingPrediction(p.key, p.dataset, p.y_true, yasa[p.key]) for p in predictions
        ]
    return out
