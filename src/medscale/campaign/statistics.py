"""The statistics of a campaign's results table: leave-one-out effects paired per fold,
the metric against the data fraction, per-fold values, each with a Student-t interval.

A row of the table is one trial key (see :func:`medscale.campaign.report.write_report` for
its fields). Only ``done`` rows with a finite metric count.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
from scipy import stats

__all__ = [
    "LEVEL",
    "REFERENCE",
    "check_direction",
    "finite_number",
    "fold_values",
    "fraction_curve",
    "is_done",
    "loo_effects",
    "mean_ci",
    "metric_value",
    "sort_key",
]

REFERENCE = "all"
"""``leave_out`` value of the all-included reference arm of a leave-one-out campaign."""

LEVEL = 0.95
"""Confidence level of every interval in the report."""

DIRECTIONS = ("maximize", "minimize")


def finite_number(value: object) -> float:
    """``value`` as a finite float, else NaN (None, NaN, inf, text and containers)."""
    if value is None or isinstance(value, (str, bytes, Mapping, list, tuple)):
        return math.nan
    try:
        out = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return math.nan
    return out if math.isfinite(out) else math.nan


def metric_value(row: Mapping[str, Any], metric_key: str) -> float:
    """``row["value"]`` for ``metric_key == "value"``, else ``row["metrics"][metric_key]``
    (a ``metrics.`` prefix is accepted); NaN when absent or not a finite number."""
    if metric_key == "value":
        return finite_number(row.get("value"))
    name = metric_key.removeprefix("metrics.")
    metrics = row.get("metrics")
    return finite_number(metrics.get(name)) if isinstance(metrics, Mapping) else math.nan


def is_done(row: Mapping[str, Any]) -> bool:
    return row.get("status") == "done"


def mean_ci(values: Iterable[float], level: float = LEVEL) -> tuple[float, float, float]:
    """Mean and two-sided Student-t confidence interval of the finite ``values``.

    Returns ``(mean, low, high)``: all NaN with no value, NaN bounds with one value (a t
    interval needs two), ``(mean, mean, mean)`` when the values are all equal."""
    x = np.array([v for v in (finite_number(v) for v in values) if not math.isnan(v)])
    if x.size == 0:
        return math.nan, math.nan, math.nan
    mean = float(x.mean())
    if x.size < 2:
        return mean, math.nan, math.nan
    sem = float(x.std(ddof=1)) / math.sqrt(x.size)
    if sem == 0.0:
        return mean, mean, mean
    half = float(stats.t.ppf(0.5 + level / 2.0, x.size - 1)) * sem
    return mean, mean - half, mean + half


def sort_key(value: object) -> tuple[int, float, str]:
    """Orders folds and items: numbers first (numerically), then the rest by text."""
    number = finite_number(value)
    if isinstance(value, bool) or math.isnan(number):
        return 1, 0.0, str(value)
    return 0, number, ""


def check_direction(direction: str) -> None:
    if direction not in DIRECTIONS:
        raise ValueError(f"direction must be one of {DIRECTIONS}, got {direction!r}")


def loo_effects(
    rows: Sequence[Mapping[str, Any]],
    metric_key: str = "value",
    *,
    direction: str = "maximize",
    level: float = LEVEL,
) -> list[dict[str, Any]]:
    """Effect of leaving each item out: ``arm - reference`` on ``metric_key``, paired per fold.

    Only ``done`` rows with a finite metric count. The reference is the ``leave_out == "all"``
    arm; it gets no effect of its own. For each item and each fold that has both the item's arm
    and the reference, the difference of the two is taken (rows sharing an item and a fold,
    e.g. repeated seeds, are averaged first; rows without a fold form a single pair). The
    effect is the mean difference, with a ``level`` Student-t interval across folds (NaN bounds
    with fewer than two folds).

    Returns one dictionary per item (every item seen in ``rows``, even one with no finished
    pair) with ``item``, ``effect``, ``ci_low``, ``ci_high``, ``n_folds``, ``folds``,
    ``differences`` (per fold, in fold order), ``arm_mean`` and ``reference_mean`` (means over
    the paired folds). They are sorted so that the item that matters most comes first: the
    largest drop of the metric when it is left out (ascending effect when ``direction`` is
    ``"maximize"``, descending when ``"minimize"``); items without a pair come last.
    """
    check_direction(direction)
    reference: dict[Any, list[float]] = defaultdict(list)
    arms: dict[str, dict[Any, list[float]]] = {}
    for row in rows:
        item = row.get("leave_out")
        if item is None:
            continue
        item = str(item)
        if item != REFERENCE:
            arms.setdefault(item, defaultdict(list))
        value = metric_value(row, metric_key)
        if not is_done(row) or math.isnan(value):
            continue
        fold = row.get("fold")
        (reference if item == REFERENCE else arms[item])[fold].append(value)

    effects = []
    for item, by_fold in arms.items():
        folds = sorted((f for f in by_fold if f in reference), key=sort_key)
        arm = [float(np.mean(by_fold[f])) for f in folds]
        ref = [float(np.mean(reference[f])) for f in folds]
        diffs = [a - r for a, r in zip(arm, ref, strict=True)]
        effect, low, high = mean_ci(diffs, level)
        effects.append(
            {
                "item": item,
                "effect": effect,
                "ci_low": low,
                "ci_high": high,
                "n_folds": len(folds),
                "folds": folds,
                "differences": diffs,
                "arm_mean": float(np.mean(arm)) if arm else math.nan,
                "reference_mean": float(np.mean(ref)) if ref else math.nan,
            }
        )
    sign = 1.0 if direction == "maximize" else -1.0
    effects.sort(
        key=lambda e: (
            math.isnan(e["effect"]),
            0.0 if math.isnan(e["effect"]) else sign * e["effect"],
            sort_key(e["item"]),
        )
    )
    return effects


def fraction_curve(
    rows: Sequence[Mapping[str, Any]], metric_key: str = "value", *, level: float = LEVEL
) -> list[dict[str, Any]]:
    """``metric_key`` against the training-data fraction, one dictionary per fraction.

    Only ``done`` rows with a fraction and a finite metric count. At each fraction the samples
    are the per-fold means when rows carry a fold (rows sharing a fraction and a fold are
    averaged), and each row on its own when they do not. Returns, sorted by fraction:
    ``fraction``, ``n`` (samples), ``mean``, ``ci_low``/``ci_high`` (``level`` Student-t
    interval across the samples; NaN with fewer than two), ``values`` (the samples) and
    ``folds`` (the fold of each sample, None for a row without one)."""
    groups: dict[float, dict[Any, list[float]]] = defaultdict(lambda: defaultdict(list))
    for i, row in enumerate(rows):
        fraction = finite_number(row.get("fraction"))
        value = metric_value(row, metric_key)
        if not is_done(row) or math.isnan(fraction) or math.isnan(value):
            continue
        fold = row.get("fold")
        groups[fraction][("fold", fold) if fold is not None else ("row", i)].append(value)

    curve = []
    for fraction in sorted(groups):
        by_sample = groups[fraction]
        order = sorted(by_sample, key=lambda s: (s[0], sort_key(s[1])))
        values = [float(np.mean(by_sample[s])) for s in order]
        mean, low, high = mean_ci(values, level)
        curve.append(
            {
                "fraction": fraction,
                "n": len(values),
                "mean": mean,
                "ci_low": low,
                "ci_high": high,
                "values": values,
                "folds": [s[1] if s[0] == "fold" else None for s in order],
            }
        )
    return curve


def fold_values(rows: Sequence[Mapping[str, Any]], metric_key: str) -> list[dict[str, Any]]:
    """Per fold: the mean of the ``done`` rows' metric and those rows, in fold order."""
    by_fold: dict[Any, list[Mapping[str, Any]]] = defaultdict(list)
    for row in rows:
        finished = is_done(row) and not math.isnan(metric_value(row, metric_key))
        if finished and row.get("fold") is not None:
            by_fold[row["fold"]].append(row)
    return [
        {
            "fold": fold,
            "value": float(np.mean([metric_value(r, metric_key) for r in by_fold[fold]])),
            "rows": by_fold[fold],
        }
        for fold in sorted(by_fold, key=sort_key)
    ]
