"""Evaluate whole-night predictions: per-recording, pooled and per-dataset scores with
bootstrap intervals, sleep-statistics agreement, and the written outputs (JSON, CSV, HTML)."""

from __future__ import annotations

import csv
import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from medscale import __version__
from medscale.errors import SpecError
from medscale.evaluate import metrics as M
from medscale.evaluate.plots import (
    plot_confusion,
    plot_hypnogram,
    plot_per_stage_f1,
    plot_reliability,
)
from medscale.evaluate.report import Section, Table, write_html_report
from medscale.io.stages import SCORED_STAGES, STAGE_NAMES, UNKNOWN

__all__ = ["EvaluationResult", "RecordingPrediction", "evaluate_predictions"]

_STAGE_F1 = [f"f1_{STAGE_NAMES[s]}" for s in SCORED_STAGES]
_SCORE_COLUMNS = ["kappa", "accuracy", "macro_f1", "mcc", *_STAGE_F1]
_DATASET_CI_METRICS = ("kappa", "macro_f1")
ALL_DATASETS = "(all)"


@dataclass
class RecordingPrediction:
    """One night: true stages and predicted per-epoch stage probabilities.

    ``key`` names the recording as ``"dataset/recording_id"`` and must be unique within one
    set of predictions; ``y_true`` is int (n_epochs,) with UNKNOWN = -1; ``probabilities``
    is float (n_epochs, 5) in stage order W, N1, N2, N3, REM (e.g. soft-voted over channel
    combinations with :func:`~medscale.evaluate.metrics.soft_vote`).
    """

    key: str
    dataset: str
    y_true: np.ndarray
    probabilities: np.ndarray

    def __post_init__(self) -> None:
        self.y_true = np.asarray(self.y_true)
        if self.y_true.ndim != 1 or not (
            np.issubdtype(self.y_true.dtype, np.integer) or self.y_true.size == 0
        ):
            raise SpecError(
                f"{self.key}: y_true must be a 1-D integer array, got {self.y_true.dtype} "
                f"{self.y_true.shape}"
            )
        self.y_true = self.y_true.astype(np.int64, copy=False)
        self.probabilities = np.asarray(self.probabilities, dtype=np.float64)
        expected = (self.y_true.size, len(SCORED_STAGES))
        if self.probabilities.shape != expected:
            raise SpecError(
                f"{self.key}: probabilities must have shape {expected}, got "
                f"{self.probabilities.shape}"
            )
        if not np.all(np.isfinite(self.probabilities)):
            raise SpecError(f"{self.key}: probabilities hold NaN or infinite values")
        bad = ~np.isin(self.y_true, (*SCORED_STAGES, UNKNOWN))
        if bad.any():
            raise SpecError(
                f"{self.key}: y_true holds non-stage codes {np.unique(self.y_true[bad])}"
            )

    @property
    def y_pred(self) -> np.ndarray:
        """Predicted stage per epoch: the most probable one."""
        return np.argmax(self.probabilities, axis=1).astype(np.int64)


@dataclass
class EvaluationResult:
    """Everything :func:`evaluate_predictions` computed; ``write`` puts it on disk.

    ``models`` lists the model names, the evaluated one first then the baselines. ``pooled``
    maps each model to its pooled :func:`~medscale.evaluate.metrics.score` dictionary plus
    ``"ci"`` ({metric: [low, high]}) and ``"n_recordings"``. ``per_recording`` and
    ``per_dataset`` are lists of flat rows (one per model and recording / dataset; the
    ``"(all)"`` dataset row pools everything). ``sleep_statistics`` maps each model to the
    :func:`~medscale.evaluate.metrics.sleep_statistics_agreement` table, ``calibration``
    to its pooled :func:`~medscale.evaluate.metrics.calibration` (expected calibration error
    and reliability bins per stage).
    """

    models: list[str]
    wake_margin_min: float | None
    epoch_s: float
    n_boot: int
    seed: int
    level: float
    pooled: dict[str, dict]
    confusion: dict[str, np.ndarray]
    per_recording: list[dict]
    per_dataset: list[dict]
    sleep_statistics: dict[str, list[dict]]
    examples: list[dict] = field(default_factory=list, repr=False)
    # Recordings of the evaluated subset that could not be scored, with the reason.
    not_evaluated: dict[str, str] = field(default_factory=dict)
    calibration: dict[str, dict] = field(default_factory=dict)

    @property
    def wake_trimmed(self) -> bool:
        return self.wake_margin_min is not None

    def trimming_statement(self) -> str:
        """One sentence saying whether wake trimming was applied, and with what margin."""
        if self.wake_margin_min is None:
            return (
                "Wake trimming: not applied; every epoch with a known true stage was scored, "
                "including all leading and trailing wake."
            )
        return (
            f"Wake trimming: applied with a margin of {self.wake_margin_min:g} min; only epochs "
            f"from {self.wake_margin_min:g} min before the first to {self.wake_margin_min:g} min "
            "after the last true sleep epoch of each recording were scored. Sleep statistics "
            "always use the whole record."
        )

    # ------------------------------------------------------------------ serialisation
    def to_dict(self) -> dict:
        """Plain-Python summary (NaN becomes None): settings, pooled scores with intervals,
        confusion matrices, per-dataset rows and sleep-statistics agreement."""
        models = {}
        for name in self.models:
            models[name] = {
                **self.pooled[name],
                "confusion_matrix": self.confusion[name].tolist(),
                "sleep_statistics_agreement": self.sleep_statistics[name],
                "calibration": self.calibration.get(name),
            }
        return _clean(
            {
                "medscale_version": __version__,
                "wake_trimming": {
                    "applied": self.wake_trimmed,
                    "margin_min": self.wake_margin_min,
                    "statement": self.trimming_statement(),
                },
                "epoch_s": self.epoch_s,
                "not_evaluated": self.not_evaluated,
                "unknown_epochs": "excluded (true stage UNKNOWN)",
                "macro_f1_convention": "mean over stages present in truth or prediction",
                "bootstrap": {
                    "unit": "recording",
                    "method": "percentile",
                    "n_boot": self.n_boot,
                    "seed": self.seed,
                    "level": self.level,
                },
                "stages": [STAGE_NAMES[s] for s in SCORED_STAGES],
                "models": models,
                "per_dataset": self.per_dataset,
            }
        )

    def to_json(self, indent: int | None = 2) -> str:
        """:meth:`to_dict` as strict JSON (no NaN tokens)."""
        return json.dumps(self.to_dict(), indent=indent, allow_nan=False)

    def write(
        self,
        out_dir: str | os.PathLike,
        title: str = "medscale evaluation",
        extra_sections: Sequence[Section] = (),
    ) -> dict:
        """Write ``metrics.json``, ``per_recording.csv``, ``per_dataset.csv`` and
        ``report.html`` (the evaluation, then ``extra_sections``) into ``out_dir`` (created);
        returns {name: path}."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        paths = {
            "metrics.json": out / "metrics.json",
            "per_recording.csv": out / "per_recording.csv",
            "per_dataset.csv": out / "per_dataset.csv",
            "report.html": out / "report.html",
        }
        paths["metrics.json"].write_text(self.to_json() + "\n", encoding="utf-8")
        _write_csv(paths["per_recording.csv"], self.per_recording)
        _write_csv(paths["per_dataset.csv"], self.per_dataset)
        sections = [*self.report_sections(), *extra_sections]
        write_html_report(paths["report.html"], title, sections)
        return paths

    # ------------------------------------------------------------------ report
    def report_sections(self) -> list[Section]:
        """The sections of the HTML evaluation report."""
        n_rec = self.pooled[self.models[0]]["n_recordings"]
        summary = Section(
            "Summary",
            [
                self.trimming_statement(),
                f"{n_rec} recordings; epochs whose true stage is UNKNOWN are excluded. Pooled "
                "scores count every scored epoch of every recording together. Intervals are "
                f"{self.level:.0%} percentile bootstrap intervals over recordings "
                f"({self.n_boot} resamples, seed {self.seed}).",
                Table(self._pooled_rows(), caption="pooled scores"),
                *(
                    [
                        Table(
                            [{"recording": k, "reason": v} for k, v in self.not_evaluated.items()],
                            caption="recordings of the subset that were not evaluated",
                        )
                    ]
                    if self.not_evaluated
                    else []
                ),
            ],
        )
        calibration = Section(
            "Calibration",
            [
                "Whether the probabilities mean what they say (the hypnodensity shows them): "
                "per stage, the fraction of epochs truly in that stage against the mean "
                f"predicted probability in {M.CALIBRATION_BINS} probability bins; on the "
                "diagonal they are calibrated. ECE (expected calibration error) is the "
                "epoch-weighted mean gap; the top-stage ECE uses each epoch's most probable "
                "stage. Kappa can be high while probabilities are over- or under-confident.",
                Table(self._calibration_rows(), caption="expected calibration error"),
                *(
                    plot_reliability(self.calibration[m], title=m)
                    for m in self.models
                    if m in self.calibration
                ),
            ],
        )
        confusion = Section(
            "Confusion matrices",
            [
                "Rows are true stages, columns predicted stages; each row is divided by its "
                "number of epochs (shown in brackets), so the diagonal is the recall per stage.",
                *(plot_confusion(self.confusion[m], title=m) for m in self.models),
            ],
        )
        f1_rows = [
            {
                "model": m,
                "n_epochs": self.pooled[m]["n_epochs"],
                **self.pooled[m]["f1_per_stage"],
                "macro_f1": self.pooled[m]["macro_f1"],
            }
            for m in self.models
        ]
        per_stage = Section(
            "F1 per stage",
            [
                plot_per_stage_f1({m: self.pooled[m] for m in self.models}),
                Table(f1_rows, caption="pooled F1 per stage (n/a: stage absent)"),
            ],
        )
        ds_cols = [
            "model",
            "dataset",
            "n_recordings",
            "n_epochs",
            "kappa",
            "kappa_low",
            "kappa_high",
            "kappa_mean_recording",
            "accuracy",
            "macro_f1",
            "macro_f1_low",
            "macro_f1_high",
            "mcc",
            *_STAGE_F1,
        ]
        per_dataset = Section(
            "Per dataset",
            [
                "Pooled scores within each dataset; kappa_mean_recording is the mean of the "
                "per-recording kappas.",
                Table(self.per_dataset, columns=ds_cols),
            ],
        )
        stats_items: list = [
            "Sleep statistics of the predicted hypnogram against the true one, on the whole "
            "record (lights-off = start of record); epochs UNKNOWN in the truth are left out "
            "of both. Differences are predicted minus true; n is the number of recordings. "
            f"Pearson's r and its 95 % interval need at least {M.MIN_NIGHTS_FOR_CORRELATION} "
            "recordings."
        ]
        for m in self.models:
            rows = [_with_correlation_text(r) for r in self.sleep_statistics[m]]
            stats_items.append(Table(rows, caption=m, float_format=".2f"))
        stats = Section("Sleep statistics", stats_items)
        examples = Section(
            "Example hypnograms",
            [
                f"True and predicted ({self.models[0]}) hypnograms with the hypnodensity, over "
                "the whole record, for the recordings with the lowest, median and highest kappa."
            ]
            + [
                plot_hypnogram(
                    ex["y_true"],
                    ex["y_pred"],
                    ex["probabilities"],
                    epoch_s=self.epoch_s,
                    title=f"{ex['key']} ({ex['which']}, kappa {_fmt(ex['kappa'])})",
                )
                for ex in self.examples
            ],
        )
        rec_cols = ["model", "key", "dataset", "n_epochs_total", "n_epochs", *_SCORE_COLUMNS]
        per_rec = Section("Per recording", [Table(self.per_recording, columns=rec_cols)])
        return [summary, calibration, confusion, per_stage, per_dataset, stats, examples, per_rec]

    def _pooled_rows(self) -> list[dict]:
        rows = []
        for m in self.models:
            p = self.pooled[m]
            row = {"model": m, "n_recordings": p["n_recordings"], "n_epochs": p["n_epochs"]}
            for metric in M.METRICS:
                low, high = p["ci"][metric]
                row[metric] = p[metric]
                row[f"{metric} CI"] = f"[{_fmt(low)}, {_fmt(high)}]"
            if m in self.calibration:
                row["ECE"] = self.calibration[m]["ece"]
            rows.append(row)
        return rows

    def _calibration_rows(self) -> list[dict]:
        rows = []
        for m in self.models:
            cal = self.calibration.get(m)
            if cal is None:
                continue
            row = {"model": m, "n_epochs": cal["n_epochs"], "top stage": cal["ece"]}
            row.update({stage: v["ece"] for stage, v in cal["per_stage"].items()})
            rows.append(row)
        return rows


def _with_correlation_text(row: dict) -> dict:
    """A sleep-statistics row for the report: r with its interval, or why there is none."""
    out = {k: v for k, v in row.items() if k not in ("pearson_r_low", "pearson_r_high")}
    if row["n"] < M.MIN_NIGHTS_FOR_CORRELATION:
        out["pearson_r"] = f"too few nights (n = {row['n']})"
    elif not math.isnan(row["pearson_r"]):
        out["pearson_r"] = (
            f"{row['pearson_r']:.2f} [{row['pearson_r_low']:.2f}, {row['pearson_r_high']:.2f}]"
        )
    return out


def _fmt(x: float) -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.3f}"


def _clean(obj):
    """JSON-safe copy: numpy scalars/arrays to Python, NaN and inf to None."""
    if isinstance(obj, Mapping):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _clean(obj.tolist())
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def _write_csv(path: Path, rows: list[dict]) -> None:
    columns: list[str] = []
    for row in rows:
        for key in row:
            if key not in columns:
                columns.append(key)
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns)
        writer.writeheader()
        for row in rows:
            writer.writerow({k: _csv_value(row.get(k)) for k in columns})


def _csv_value(v):
    if v is None:
        return ""
    if isinstance(v, float):
        return "" if math.isnan(v) else repr(v)
    return v


def _flat_scores(scores: dict | None) -> dict:
    if scores is None:
        out = dict.fromkeys(_SCORE_COLUMNS, float("nan"))
        return out
    out = {k: scores[k] for k in ("kappa", "accuracy", "macro_f1", "mcc")}
    out.update({f"f1_{k}": v for k, v in scores["f1_per_stage"].items()})
    return out


def _check_set(name: str, preds: Sequence[RecordingPrediction]) -> dict[str, RecordingPrediction]:
    if len(preds) == 0:
        raise SpecError(f"{name}: no predictions to evaluate")
    by_key: dict[str, RecordingPrediction] = {}
    for p in preds:
        if not isinstance(p, RecordingPrediction):
            raise SpecError(f"{name}: expected RecordingPrediction, got {type(p).__name__}")
        if p.key in by_key:
            raise SpecError(f"{name}: recording {p.key!r} appears twice")
        by_key[p.key] = p
    return by_key


def evaluate_predictions(
    predictions: Sequence[RecordingPrediction],
    *,
    wake_margin_min: float | None = None,
    n_boot: int = 1000,
    seed: int = 0,
    level: float = 0.95,
    baselines: Mapping[str, Sequence[RecordingPrediction]] | None = None,
    name: str = "model",
    epoch_s: float = 30.0,
    n_examples: int = 3,
) -> EvaluationResult:
    """Score whole-night predictions.

    * ``wake_margin_min``: None scores every epoch; a number trims each recording to that many
      minutes before its first and after its last true sleep epoch
      (:func:`~medscale.evaluate.metrics.trim_wake`) before the epoch-by-epoch scores. Sleep
      statistics always use the whole record.
    * Pooled scores count all scored epochs together; their intervals are percentile bootstrap
      intervals over recordings (``n_boot`` resamples, ``seed``, ``level``).
    * ``baselines`` maps a name (e.g. ``"yasa"``) to predictions for exactly the same
      recordings with the same true stages; they are scored the same way and shown side by
      side under their names, the evaluated predictions under ``name``.
    """
    if wake_margin_min is not None and (
        not isinstance(wake_margin_min, (int, float)) or wake_margin_min < 0
    ):
        raise SpecError(f"wake_margin_min must be None or a number >= 0, got {wake_margin_min!r}")
    if n_boot < 1:
        raise SpecError(f"n_boot must be at least 1, got {n_boot}")
    if not 0.0 < level < 1.0:
        raise SpecError(f"level must lie strictly between 0 and 1, got {level}")
    sets: dict[str, dict[str, RecordingPrediction]] = {name: _check_set(name, predictions)}
    main = sets[name]
    for base_name, base_preds in (baselines or {}).items():
        if base_name in sets:
            raise SpecError(f"baseline name {base_name!r} is already used")
        base = _check_set(base_name, base_preds)
        missing, extra = sorted(set(main) - set(base)), sorted(set(base) - set(main))
        if missing or extra:
            raise SpecError(
                f"baseline {base_name!r} must cover the same recordings as {name!r}; "
                f"missing {missing[:5]}{'...' if len(missing) > 5 else ''}, "
                f"extra {extra[:5]}{'...' if len(extra) > 5 else ''}"
            )
        for key, p in base.items():
            if not np.array_equal(p.y_true, main[key].y_true):
                raise SpecError(f"baseline {base_name!r}: true stages of {key!r} differ")
        sets[base_name] = base

    keys = list(main)  # input order: per-recording rows and bootstrap draws follow it
    slices = {
        k: (
            M.wake_trim_slice(main[k].y_true, wake_margin_min, epoch_s)
            if wake_margin_min is not None
            else slice(None)
        )
        for k in keys
    }
    trim_info = {
        "wake_trimmed": wake_margin_min is not None,
        "wake_margin_min": wake_margin_min,
    }

    pooled: dict[str, dict] = {}
    confusion: dict[str, np.ndarray] = {}
    per_recording: list[dict] = []
    per_dataset: list[dict] = []
    stats: dict[str, list[dict]] = {}
    calibration: dict[str, dict] = {}
    rec_kappa: dict[str, dict[str, float]] = {}
    for model, preds in sets.items():
        cms = {}
        rec_kappa[model] = {}
        for k in keys:
            p = preds[k]
            sl = slices[k]
            cm = M.confusion_matrix(p.y_true[sl], p.y_pred[sl])
            cms[k] = cm
            scores = M.score_confusion(cm) if cm.sum() else None
            rec_kappa[model][k] = scores["kappa"] if scores else float("nan")
            per_recording.append(
                {
                    "model": model,
                    "key": k,
                    "dataset": p.dataset,
                    "n_epochs_total": int(p.y_true.size),
                    "n_epochs": int(cm.sum()),
                    **_flat_scores(scores),
                    **trim_info,
                }
            )
        stack = np.stack([cms[k] for k in keys]).astype(np.float64)
        pooled[model] = _pooled_with_ci(stack, M.METRICS, n_boot, seed, level, f"{model!r}")
        pooled[model]["n_recordings"] = len(keys)
        confusion[model] = stack.sum(axis=0).astype(np.int64)
        datasets = sorted({preds[k].dataset for k in keys})
        for ds in [*datasets, ALL_DATASETS]:
            ds_keys = [k for k in keys if ds == ALL_DATASETS or preds[k].dataset == ds]
            ds_stack = np.stack([cms[k] for k in ds_keys]).astype(np.float64)
            row: dict = {
                "model": model,
                "dataset": ds,
                "n_recordings": len(ds_keys),
                "n_epochs": int(ds_stack.sum()),
            }
            if ds_stack.sum():
                ds_scores = _pooled_with_ci(ds_stack, _DATASET_CI_METRICS, n_boot, seed, level, ds)
                row.update(_flat_scores(ds_scores))
                for metric in _DATASET_CI_METRICS:
                    row[f"{metric}_low"], row[f"{metric}_high"] = ds_scores["ci"][metric]
            else:
                row.update(_flat_scores(None))
            kappas = np.array([rec_kappa[model][k] for k in ds_keys])
            row["kappa_mean_recording"] = (
                float(np.nanmean(kappas)) if np.any(~np.isnan(kappas)) else float("nan")
            )
            row.update(trim_info)
            per_dataset.append(row)
        stats[model] = M.sleep_statistics_agreement(
            [(preds[k].y_true, preds[k].y_pred) for k in keys], epoch_s
        )
        calibration[model] = M.calibration(
            np.concatenate([preds[k].y_true[slices[k]] for k in keys]),
            np.concatenate([preds[k].probabilities[slices[k]] for k in keys]),
        )

    result = EvaluationResult(
        models=list(sets),
        wake_margin_min=None if wake_margin_min is None else float(wake_margin_min),
        epoch_s=float(epoch_s),
        n_boot=n_boot,
        seed=seed,
        level=level,
        pooled=pooled,
        confusion=confusion,
        per_recording=per_recording,
        per_dataset=per_dataset,
        sleep_statistics=stats,
        calibration=calibration,
    )
    result.examples = _pick_examples(main, rec_kappa[name], n_examples)
    return result


def _pooled_with_ci(
    stack: np.ndarray, ci_metrics: Sequence[str], n_boot: int, seed: int, level: float, what: str
) -> dict:
    if stack.sum() == 0:
        raise SpecError(f"{what}: nothing to score; every true stage is UNKNOWN")
    scores = M.score_confusion(stack.sum(axis=0).astype(np.int64))
    resampled = M._resampled_confusions(stack, n_boot, seed)
    scores["ci"] = {m: list(M._percentile_interval(resampled, m, level)) for m in ci_metrics}
    return scores


def _pick_examples(
    preds: dict[str, RecordingPrediction], kappas: dict[str, float], n: int
) -> list[dict]:
    ranked = sorted((kap, k) for k, kap in kappas.items() if not math.isnan(kap))
    if not ranked or n <= 0:
        return []
    picks: list[tuple[str, int]] = []
    if n == 1:
        positions = [("median", len(ranked) // 2)]
    else:
        positions = [("lowest", 0), ("median", len(ranked) // 2), ("highest", len(ranked) - 1)]
        positions = positions[:n] if n < 3 else positions
    seen = set()
    for which, i in positions:
        if i not in seen:
            seen.add(i)
            picks.append((which, i))
    out = []
    for which, i in picks:
        kap, k = ranked[i]
        p = preds[k]
        out.append(
            {
                "key": k,
                "which": which,
                "kappa": kap,
                "y_true": p.y_true,
                "y_pred": p.y_pred,
                "probabilities": p.probabilities,
            }
        )
    return out
