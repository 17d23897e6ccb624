"""Sleep-staging metrics in plain numpy: agreement scores, bootstrap intervals, sleep statistics.

Conventions (see ``docs/evaluation.md``):

* Epochs whose *true* stage is UNKNOWN (-1) are dropped before anything is counted.
  Predictions must be scored stages (0..4) on every epoch that is kept.
* Per-stage F1 of a stage absent from both truth and prediction is undefined and reported
  as NaN; macro-F1 averages over the stages present in truth *or* prediction. This equals
  scikit-learn's ``f1_score(average="macro", labels=<stages present in either>)``, which is
  also what scikit-learn does by default when ``labels`` is not given.
* Cohen's kappa is NaN when undefined (both sides put every epoch in the same single stage),
  as scikit-learn's default ``replace_undefined_by=np.nan``. Matthews' correlation is 0.0 when
  undefined, as scikit-learn.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from medscale.errors import SpecError
from medscale.io.stages import N1, N2, N3, REM, SCORED_STAGES, STAGE_NAMES, UNKNOWN, W

N_STAGES = len(SCORED_STAGES)
SLEEP_STAGES: tuple[int, ...] = (N1, N2, N3, REM)
METRICS: tuple[str, ...] = ("kappa", "accuracy", "macro_f1", "mcc")
"""Scalar metrics :func:`score` returns and :func:`bootstrap_ci` accepts (as well as
``"f1_<stage>"``, e.g. ``"f1_N1"``)."""
MIN_NIGHTS_FOR_CORRELATION = 10
"""Fewer recordings than this get no Pearson r (nor interval): with n = 2 any r is +-1, and
below 10 the 95 % interval spans most of [-1, 1]."""
CALIBRATION_BINS = 10

__all__ = [
    "METRICS",
    "MIN_NIGHTS_FOR_CORRELATION",
    "N_STAGES",
    "SLEEP_STAGES",
    "SLEEP_STATISTICS",
    "bootstrap_ci",
    "calibration",
    "confusion_matrix",
    "score",
    "score_confusion",
    "sleep_statistics",
    "sleep_statistics_agreement",
    "soft_vote",
    "trim_wake",
    "wake_trim_slice",
]


def _as_labels(y: np.ndarray | Sequence[int], what: str) -> np.ndarray:
    arr = np.asarray(y)
    if arr.ndim != 1:
        raise ValueError(f"{what} must be one-dimensional, got shape {arr.shape}")
    if (
        arr.size
        and not np.issubdtype(arr.dtype, np.integer)
        and not np.all(np.equal(np.mod(arr, 1), 0))
    ):
        raise ValueError(f"{what} must hold integer stage codes, got dtype {arr.dtype}")
    return arr.astype(np.int64, copy=False)


def confusion_matrix(
    y_true: np.ndarray | Sequence[int],
    y_pred: np.ndarray | Sequence[int],
    n_classes: int = N_STAGES,
) -> np.ndarray:
    """Counts (n_classes, n_classes) int64: rows are true stages, columns predicted stages.

    Epochs whose true stage is UNKNOWN (-1) are excluded. Any other true code, and any
    prediction on a kept epoch, must lie in ``0 .. n_classes - 1``.
    """
    t = _as_labels(y_true, "y_true")
    p = _as_labels(y_pred, "y_pred")
    if t.shape != p.shape:
        raise ValueError(f"y_true has {t.size} epochs but y_pred has {p.size}")
    keep = t != UNKNOWN
    t, p = t[keep], p[keep]
    if t.size and (t.min() < 0 or t.max() >= n_classes):
        raise ValueError(f"y_true holds codes outside -1 .. {n_classes - 1}: {np.unique(t)}")
    if p.size and (p.min() < 0 or p.max() >= n_classes):
        raise ValueError(
            f"y_pred holds codes outside 0 .. {n_classes - 1} on epochs with a known true "
            f"stage: {np.unique(p)}"
        )
    flat = np.bincount(t * n_classes + p, minlength=n_classes * n_classes)
    return flat.reshape(n_classes, n_classes).astype(np.int64)


def _f1_per_class(cm: np.ndarray) -> np.ndarray:
    tp = np.diag(cm).astype(np.float64)
    denom = cm.sum(axis=0) + cm.sum(axis=1)  # = 2TP + FP + FN
    with np.errstate(invalid="ignore", divide="ignore"):
        f1 = np.where(denom > 0, 2.0 * tp / np.maximum(denom, 1), np.nan)
    return f1


def _kappa(cm: np.ndarray) -> float:
    n = int(cm.sum())
    rows = cm.sum(axis=1).astype(np.int64)
    cols = cm.sum(axis=0).astype(np.int64)
    # Exact integer test for "undefined" (expected agreement == 1), then float arithmetic.
    chance = int(np.dot(rows, cols))
    if n * n - chance == 0:
        return float("nan")
    po = np.trace(cm) / n
    pe = chance / (n * n)
    return float((po - pe) / (1.0 - pe))


def _mcc(cm: np.ndarray) -> float:
    n = float(cm.sum())
    t_sum = cm.sum(axis=1).astype(np.float64)
    p_sum = cm.sum(axis=0).astype(np.float64)
    correct = float(np.trace(cm))
    cov_tp = correct * n - np.dot(t_sum, p_sum)
    cov_pp = n * n - np.dot(p_sum, p_sum)
    cov_tt = n * n - np.dot(t_sum, t_sum)
    if cov_pp * cov_tt == 0:
        return 0.0
    return float(cov_tp / np.sqrt(cov_tt * cov_pp))


def score_confusion(cm: np.ndarray) -> dict:
    """:func:`score`'s dictionary, computed from a (5, 5) confusion matrix."""
    cm = np.asarray(cm)
    if cm.shape != (N_STAGES, N_STAGES):
        raise ValueError(f"confusion matrix must be {N_STAGES}x{N_STAGES}, got {cm.shape}")
    n = int(cm.sum())
    if n == 0:
        raise SpecError(
            "nothing to score: no epochs with a known true stage (all are UNKNOWN or the "
            "input is empty)"
        )
    f1 = _f1_per_class(cm)
    present = ~np.isnan(f1)
    return {
        "kappa": _kappa(cm),
        "accuracy": float(np.trace(cm) / n),
        "macro_f1": float(f1[present].mean()),
        "mcc": _mcc(cm),
        "f1_per_stage": {STAGE_NAMES[s]: float(f1[i]) for i, s in enumerate(SCORED_STAGES)},
        "n_epochs": n,
    }


def score(y_true: np.ndarray | Sequence[int], y_pred: np.ndarray | Sequence[int]) -> dict:
    """Agreement of predicted with true stages, UNKNOWN true epochs excluded.

    Returns ``{"kappa", "accuracy", "macro_f1", "mcc", "f1_per_stage", "n_epochs"}`` where
    ``f1_per_stage`` maps each stage name (W, N1, N2, N3, REM) to its F1, NaN for a stage
    absent from both truth and prediction. Raises :class:`~medscale.errors.SpecError` (a
    ``ValueError``) when no epoch is left to score.
    """
    return score_confusion(confusion_matrix(y_true, y_pred))


def _metric_from_confusion(cm: np.ndarray, metric: str) -> float:
    if cm.sum() == 0:
        return float("nan")
    if metric == "kappa":
        return _kappa(cm)
    if metric == "mcc":
        return _mcc(cm)
    if metric == "accuracy":
        return float(np.trace(cm) / cm.sum())
    f1 = _f1_per_class(cm)
    if metric == "macro_f1":
        return float(np.nanmean(f1))
    stage = metric.removeprefix("f1_")
    return float(f1[SCORED_STAGES.index(_stage_code(stage))])


def _stage_code(name: str) -> int:
    for code, stage_name in STAGE_NAMES.items():
        if stage_name == name and code != UNKNOWN:
            return code
    raise KeyError(name)


def _check_metric(metric: str) -> None:
    if metric in METRICS:
        return
    if metric.startswith("f1_"):
        try:
            _stage_code(metric.removeprefix("f1_"))
            return
        except KeyError:
            pass
    stages = ", ".join(f"f1_{STAGE_NAMES[s]}" for s in SCORED_STAGES)
    raise SpecError(f"unknown metric {metric!r}; expected one of {', '.join(METRICS)}, {stages}")


def bootstrap_ci(
    per_recording: Sequence[tuple[np.ndarray, np.ndarray]],
    metric: str,
    n_boot: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> tuple[float, float]:
    """Percentile bootstrap interval of a pooled metric, resampling *recordings*.

    Each resample draws as many recordings as given, with replacement; their epochs are
    pooled (UNKNOWN true epochs excluded) and ``metric`` is recomputed. Resamples where the
    metric is undefined (NaN) are ignored; ``(nan, nan)`` if all are. Deterministic for a
    given ``seed``. ``metric`` is one of :data:`METRICS` or ``"f1_<stage>"``.
    """
    _check_metric(metric)
    if not 0.0 < level < 1.0:
        raise SpecError(f"level must lie strictly between 0 and 1, got {level}")
    if n_boot < 1:
        raise SpecError(f"n_boot must be at least 1, got {n_boot}")
    if len(per_recording) == 0:
        raise SpecError("bootstrap_ci needs at least one recording")
    cms = np.stack([confusion_matrix(t, p) for t, p in per_recording]).astype(np.float64)
    if cms.sum() == 0:
        raise SpecError("nothing to score: every recording's true stages are all UNKNOWN")
    return _bootstrap_from_confusions(cms, metric, n_boot, seed, level)


def _resampled_confusions(cms: np.ndarray, n_boot: int, seed: int) -> np.ndarray:
    """(n_boot, 5, 5) pooled confusion matrices of ``n_boot`` resamples, drawn with
    replacement, of the recordings whose confusion matrices ``cms`` (n_recordings, 5, 5) are."""
    n_rec = cms.shape[0]
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, n_rec, size=(n_boot, n_rec))
    counts = np.zeros((n_boot, n_rec))
    np.add.at(counts, (np.repeat(np.arange(n_boot), n_rec), draws.ravel()), 1.0)
    return (counts @ cms.reshape(n_rec, -1)).reshape(n_boot, N_STAGES, N_STAGES)


def _percentile_interval(resampled: np.ndarray, metric: str, level: float) -> tuple[float, float]:
    values = np.array([_metric_from_confusion(cm, metric) for cm in resampled])
    values = values[~np.isnan(values)]
    if values.size == 0:
        return float("nan"), float("nan")
    alpha = (1.0 - level) / 2.0
    low, high = np.quantile(values, [alpha, 1.0 - alpha])
    return float(low), float(high)


def _bootstrap_from_confusions(
    cms: np.ndarray, metric: str, n_boot: int, seed: int, level: float
) -> tuple[float, float]:
    """``cms`` is (n_recordings, 5, 5); see :func:`bootstrap_ci`."""
    return _percentile_interval(_resampled_confusions(cms, n_boot, seed), metric, level)


# --------------------------------------------------------------------------- sleep statistics

SLEEP_STATISTICS: tuple[str, ...] = (
    "TIB_min",
    "TST_min",
    "SPT_min",
    "SOL_min",
    "WASO_min",
    "SE_pct",
    "W_min",
    "N1_min",
    "N2_min",
    "N3_min",
    "REM_min",
    "N1_pct",
    "N2_pct",
    "N3_pct",
    "REM_pct",
)
"""Keys of :func:`sleep_statistics`, in order."""


def sleep_statistics(hypnogram: np.ndarray | Sequence[int], epoch_s: float = 30.0) -> dict:
    """Summary statistics of one hypnogram (stage codes, one per epoch).

    Lights-off is the start of the record and lights-on its end. Keys (minutes unless
    ``_pct``):

    * ``TIB_min`` time in bed: the whole record, UNKNOWN epochs included;
    * ``TST_min`` total sleep time: N1 + N2 + N3 + REM epochs;
    * ``SPT_min`` sleep period time: first sleep epoch to last sleep epoch, inclusive;
    * ``SOL_min`` sleep-onset latency: record start to the first sleep epoch;
    * ``WASO_min`` wake after sleep onset: W epochs inside the sleep period (UNKNOWN epochs
      there are not counted as wake);
    * ``SE_pct`` sleep efficiency: 100 * TST / TIB;
    * ``<stage>_min`` time in each stage; ``<stage>_pct`` percentage of TST in each sleep stage.

    With no sleep at all, TST, SPT and SE are 0 and SOL, WASO and the percentages are NaN.
    """
    hyp = _as_labels(hypnogram, "hypnogram")
    if epoch_s <= 0:
        raise SpecError(f"epoch_s must be positive, got {epoch_s}")
    bad = ~np.isin(hyp, (*SCORED_STAGES, UNKNOWN))
    if bad.any():
        raise ValueError(f"hypnogram holds codes that are not stages: {np.unique(hyp[bad])}")
    ep_min = epoch_s / 60.0
    n = hyp.size
    sleep = np.isin(hyp, SLEEP_STAGES)
    counts = {s: int(np.count_nonzero(hyp == s)) for s in SCORED_STAGES}
    tst_epochs = int(sleep.sum())
    stats: dict[str, float] = {"TIB_min": n * ep_min, "TST_min": tst_epochs * ep_min}
    if tst_epochs:
        first = int(np.argmax(sleep))
        last = n - 1 - int(np.argmax(sleep[::-1]))
        stats["SPT_min"] = (last - first + 1) * ep_min
        stats["SOL_min"] = first * ep_min
        stats["WASO_min"] = int(np.count_nonzero(hyp[first : last + 1] == W)) * ep_min
    else:
        stats["SPT_min"] = 0.0
        stats["SOL_min"] = float("nan")
        stats["WASO_min"] = float("nan")
    stats["SE_pct"] = 100.0 * tst_epochs / n if n else float("nan")
    for s in SCORED_STAGES:
        stats[f"{STAGE_NAMES[s]}_min"] = counts[s] * ep_min
    for s in SLEEP_STAGES:
        stats[f"{STAGE_NAMES[s]}_pct"] = (
            100.0 * counts[s] / tst_epochs if tst_epochs else float("nan")
        )
    return {key: float(stats[key]) for key in SLEEP_STATISTICS}


def sleep_statistics_agreement(
    pairs: Sequence[tuple[np.ndarray, np.ndarray]], epoch_s: float = 30.0
) -> list[dict]:
    """How well predicted hypnograms reproduce the true sleep statistics, one row per statistic.

    ``pairs`` holds ``(true_hypnogram, predicted_hypnogram)`` per recording. Epochs whose true
    stage is UNKNOWN are set to UNKNOWN in the prediction too, so both sides cover the same
    epochs. Each row: ``statistic``, ``n`` (recordings where both values are defined),
    ``mean_true``, ``mean_pred``, ``mean_diff`` (pred - true), ``mean_abs_diff``, ``sd_diff``
    and ``pearson_r`` with its 95 % Fisher-z interval ``pearson_r_low``/``pearson_r_high``
    (NaN with fewer than `MIN_NIGHTS_FOR_CORRELATION` recordings or no spread). ``TIB_min`` is
    left out: it is identical on both sides by construction.
    """
    if len(pairs) == 0:
        raise SpecError("sleep_statistics_agreement needs at least one (true, predicted) pair")
    true_rows, pred_rows = [], []
    for t, p in pairs:
        t = _as_labels(t, "true hypnogram")
        p = _as_labels(p, "predicted hypnogram").copy()
        if t.shape != p.shape:
            raise ValueError(f"true hypnogram has {t.size} epochs, predicted has {p.size}")
        p[t == UNKNOWN] = UNKNOWN
        true_rows.append(sleep_statistics(t, epoch_s))
        pred_rows.append(sleep_statistics(p, epoch_s))
    table = []
    for key in SLEEP_STATISTICS:
        if key == "TIB_min":
            continue
        a = np.array([r[key] for r in true_rows])
        b = np.array([r[key] for r in pred_rows])
        ok = ~(np.isnan(a) | np.isnan(b))
        a, b = a[ok], b[ok]
        row: dict = {"statistic": key, "n": int(ok.sum())}
        if a.size:
            diff = b - a
            row.update(
                mean_true=float(a.mean()),
                mean_pred=float(b.mean()),
                mean_diff=float(diff.mean()),
                mean_abs_diff=float(np.abs(diff).mean()),
                sd_diff=float(diff.std(ddof=1)) if a.size > 1 else float("nan"),
            )
            row.update(_pearson_with_interval(a, b))
        else:
            row.update(
                {
                    k: float("nan")
                    for k in (
                        "mean_true",
                        "mean_pred",
                        "mean_diff",
                        "mean_abs_diff",
                        "sd_diff",
                        "pearson_r",
                        "pearson_r_low",
                        "pearson_r_high",
                    )
                }
            )
        table.append(row)
    return table


def _pearson_with_interval(a: np.ndarray, b: np.ndarray) -> dict[str, float]:
    """Pearson r and its 95 % interval (Fisher z); all NaN below MIN_NIGHTS_FOR_CORRELATION
    recordings or without spread."""
    nan = {"pearson_r": float("nan"), "pearson_r_low": float("nan"), "pearson_r_high": float("nan")}
    if a.size < MIN_NIGHTS_FOR_CORRELATION:
        return nan
    da, db = a - a.mean(), b - b.mean()
    denom = np.sqrt(np.dot(da, da) * np.dot(db, db))
    if denom == 0:
        return nan
    r = float(np.clip(np.dot(da, db) / denom, -1.0, 1.0))
    with np.errstate(divide="ignore"):  # r = +-1 gives z = +-inf and the interval [r, r]
        z, half = np.arctanh(r), 1.959964 / np.sqrt(a.size - 3)
    return {
        "pearson_r": r,
        "pearson_r_low": float(np.tanh(z - half)),
        "pearson_r_high": float(np.tanh(z + half)),
    }


def calibration(
    y_true: np.ndarray | Sequence[int], probabilities: np.ndarray, n_bins: int = CALIBRATION_BINS
) -> dict:
    """Whether predicted probabilities mean what they say, on epochs with a known true stage.

    Returns ``n_epochs``; ``ece``, the expected calibration error of the top stage (the
    epoch-weighted mean gap between confidence and accuracy over ``n_bins`` equal-width
    confidence bins); and ``per_stage``: for each stage its one-vs-rest ``ece`` and the
    reliability ``bins`` (``low``, ``high``, ``n``, ``mean_predicted``, ``observed``: the
    fraction of the bin's epochs truly in that stage; bins without epochs are left out).
    """
    y = _as_labels(y_true, "y_true")
    proba = np.asarray(probabilities, dtype=np.float64)
    if proba.shape != (y.size, N_STAGES):
        raise ValueError(f"probabilities must have shape {(y.size, N_STAGES)}, got {proba.shape}")
    keep = y != UNKNOWN
    y, proba = y[keep], proba[keep]
    edges = np.linspace(0.0, 1.0, n_bins + 1)

    def binned(p: np.ndarray, hit: np.ndarray) -> tuple[float, list[dict]]:
        which = np.clip(np.digitize(p, edges[1:-1]), 0, n_bins - 1)
        bins, gap = [], 0.0
        for i in range(n_bins):
            sel = which == i
            if not sel.any():
                continue
            mean_p, observed = float(p[sel].mean()), float(hit[sel].mean())
            gap += sel.sum() * abs(mean_p - observed)
            bins.append(
                {
                    "low": float(edges[i]),
                    "high": float(edges[i + 1]),
                    "n": int(sel.sum()),
                    "mean_predicted": mean_p,
                    "observed": observed,
                }
            )
        return (gap / p.size if p.size else float("nan")), bins

    top = proba.argmax(axis=1)
    ece, _ = binned(proba.max(axis=1), (top == y).astype(np.float64))
    per_stage = {}
    for s in SCORED_STAGES:
        stage_ece, bins = binned(proba[:, s], (y == s).astype(np.float64))
        per_stage[STAGE_NAMES[s]] = {"ece": stage_ece, "bins": bins}
    return {"n_epochs": int(y.size), "n_bins": n_bins, "ece": ece, "per_stage": per_stage}


# --------------------------------------------------------------------------- trimming, voting


def wake_trim_slice(
    y_true: np.ndarray | Sequence[int], margin_min: float = 30.0, epoch_s: float = 30.0
) -> slice:
    """The epochs kept by wake trimming: ``margin_min`` before the first sleep epoch to
    ``margin_min`` after the last, clipped to the record. The whole record when it holds no
    sleep epoch (nothing to anchor on)."""
    y = _as_labels(y_true, "y_true")
    if margin_min < 0:
        raise SpecError(f"margin_min must be >= 0, got {margin_min}")
    if epoch_s <= 0:
        raise SpecError(f"epoch_s must be positive, got {epoch_s}")
    sleep = np.flatnonzero(np.isin(y, SLEEP_STAGES))
    if sleep.size == 0:
        return slice(0, y.size)
    margin = round(margin_min * 60.0 / epoch_s)
    return slice(max(0, int(sleep[0]) - margin), min(y.size, int(sleep[-1]) + 1 + margin))


def trim_wake(
    y_true: np.ndarray | Sequence[int],
    *others: np.ndarray,
    margin_min: float = 30.0,
    epoch_s: float = 30.0,
) -> tuple[np.ndarray, ...]:
    """Trim leading and trailing wake as U-Sleep and CSDP do (see :func:`wake_trim_slice`).

    The slice found on ``y_true`` is applied along the first axis of ``y_true`` and of every
    array in ``others`` (predictions, probabilities, ...), which must have as many epochs.
    Returns ``(y_true_trimmed, *others_trimmed)``.
    """
    y = np.asarray(y_true)
    sl = wake_trim_slice(y, margin_min, epoch_s)
    out = [y[sl]]
    for i, other in enumerate(others):
        arr = np.asarray(other)
        if arr.ndim == 0 or arr.shape[0] != y.shape[0]:
            raise ValueError(
                f"array {i + 1} after y_true has {arr.shape[0] if arr.ndim else 0} epochs, "
                f"y_true has {y.shape[0]}"
            )
        out.append(arr[sl])
    return tuple(out)


def soft_vote(probabilities: Sequence[np.ndarray]) -> np.ndarray:
    """Average per-epoch class probabilities over channel combinations.

    Each array is (n_epochs, n_classes) and all must share that shape. Returns float64
    (n_epochs, n_classes); take ``argmax(axis=1)`` for the voted stage.
    """
    if len(probabilities) == 0:
        raise SpecError("soft_vote needs at least one probability array")
    arrays = [np.asarray(p, dtype=np.float64) for p in probabilities]
    shape = arrays[0].shape
    if len(shape) != 2:
        raise ValueError(f"probabilities must be (n_epochs, n_classes), got shape {shape}")
    for i, a in enumerate(arrays):
        if a.shape != shape:
            raise ValueError(f"probability array {i} has shape {a.shape}, array 0 has {shape}")
    return np.mean(np.stack(arrays), axis=0)
