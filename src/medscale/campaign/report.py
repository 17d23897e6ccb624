"""A campaign's results table as ``results.csv`` and one self-contained ``report.html``.

Each row of the results table is one trial key (see :func:`write_report` for the fields). The
page opens with a summary (trials per status, device-hours, cost, wall time), then shows what
suits the campaign's forms:

* ``leave_one_out`` - each left-out item's effect on the metric, ``arm - reference`` where the
  reference is the all-included arm (``leave_out == "all"``), paired per fold, with a 95 % t
  interval across folds (:func:`loo_effects`);
* ``data_fraction`` - the metric against the fraction of training data, mean and t interval
  across folds (:func:`fraction_curve`);
* ``kfold`` alone - the per-fold values, their mean and t interval;
* ``bayesian`` - the optimisation history and Optuna's parameter importances;
* always - a leaderboard of every trial (sortable by clicking a column heading) and the failed
  trials with their error.

Figures are drawn with :func:`medscale.evaluate.plots.new_figure` (Agg, no pyplot), embedded
in the page as base64 PNG and also saved beside it. Every file is written atomically. All text
from the table (keys, items, errors, parameter names) is HTML-escaped.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import tempfile
import urllib.parse
import warnings
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from matplotlib.ticker import MaxNLocator
from scipy import stats

from medscale.evaluate.plots import _plain, new_figure
from medscale.evaluate.report import (
    Image,
    Link,
    Links,
    Section,
    Table,
    figure_to_png,
    render_html,
)

if TYPE_CHECKING:
    import optuna
    from matplotlib.figure import Figure

__all__ = [
    "BASE_COLUMNS",
    "LEVEL",
    "REFERENCE",
    "STATUSES",
    "fraction_curve",
    "loo_effects",
    "mean_ci",
    "write_report",
]

REFERENCE = "all"
"""``leave_out`` value of the all-included reference arm of a leave-one-out campaign."""

STATUSES = ("done", "failed", "pruned", "pending", "running")
"""The trial states, in the order the summary lists them."""

LEVEL = 0.95
"""Confidence level of every interval in the report."""

BASE_COLUMNS = (
    "key",
    "status",
    "number",
    "attempts",
    "value",
    "leave_out",
    "fold",
    "fraction",
    "seed",
    "wall_s",
    "device_s",
    "peak_rss_mb",
    "cost",
    "run_dir",
    "error",
)
"""The leading columns of ``results.csv``; ``metrics.*``, ``params.*`` and any other field
follow, each group sorted by name."""

_DIRECTIONS = ("maximize", "minimize")


# --------------------------------------------------------------------------- numbers


def _number(value: object) -> float:
    """``value`` as a finite float, else NaN (None, NaN, inf, text and containers)."""
    if value is None or isinstance(value, (str, bytes, Mapping, list, tuple)):
        return math.nan
    try:
        out = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return math.nan
    return out if math.isfinite(out) else math.nan


def _metric_value(row: Mapping[str, Any], metric_key: str) -> float:
    """``row["value"]`` for ``metric_key == "value"``, else ``row["metrics"][metric_key]``
    (a ``metrics.`` prefix is accepted); NaN when absent or not a finite number."""
    if metric_key == "value":
        return _number(row.get("value"))
    name = metric_key.removeprefix("metrics.")
    metrics = row.get("metrics")
    return _number(metrics.get(name)) if isinstance(metrics, Mapping) else math.nan


def _is_done(row: Mapping[str, Any]) -> bool:
    return row.get("status") == "done"


def mean_ci(values: Iterable[float], level: float = LEVEL) -> tuple[float, float, float]:
    """Mean and two-sided Student-t confidence interval of the finite ``values``.

    Returns ``(mean, low, high)``: all NaN with no value, NaN bounds with one value (a t
    interval needs two), ``(mean, mean, mean)`` when the values are all equal."""
    x = np.array([v for v in (_number(v) for v in values) if not math.isnan(v)])
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


def _sort_key(value: object) -> tuple[int, float, str]:
    """Orders folds and items: numbers first (numerically), then the rest by text."""
    number = _number(value)
    if isinstance(value, bool) or math.isnan(number):
        return 1, 0.0, str(value)
    return 0, number, ""


def _check_direction(direction: str) -> None:
    if direction not in _DIRECTIONS:
        raise ValueError(f"direction must be one of {_DIRECTIONS}, got {direction!r}")


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
    _check_direction(direction)
    reference: dict[Any, list[float]] = defaultdict(list)
    arms: dict[str, dict[Any, list[float]]] = {}
    for row in rows:
        item = row.get("leave_out")
        if item is None:
            continue
        item = str(item)
        if item != REFERENCE:
            arms.setdefault(item, defaultdict(list))
        value = _metric_value(row, metric_key)
        if not _is_done(row) or math.isnan(value):
            continue
        fold = row.get("fold")
        (reference if item == REFERENCE else arms[item])[fold].append(value)

    effects = []
    for item, by_fold in arms.items():
        folds = sorted((f for f in by_fold if f in reference), key=_sort_key)
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
            _sort_key(e["item"]),
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
        fraction = _number(row.get("fraction"))
        value = _metric_value(row, metric_key)
        if not _is_done(row) or math.isnan(fraction) or math.isnan(value):
            continue
        fold = row.get("fold")
        groups[fraction][("fold", fold) if fold is not None else ("row", i)].append(value)

    curve = []
    for fraction in sorted(groups):
        by_sample = groups[fraction]
        order = sorted(by_sample, key=lambda s: (s[0], _sort_key(s[1])))
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


def _fold_values(rows: Sequence[Mapping[str, Any]], metric_key: str) -> list[dict[str, Any]]:
    """Per fold: the mean of the ``done`` rows' metric and those rows, in fold order."""
    by_fold: dict[Any, list[Mapping[str, Any]]] = defaultdict(list)
    for row in rows:
        finished = _is_done(row) and not math.isnan(_metric_value(row, metric_key))
        if finished and row.get("fold") is not None:
            by_fold[row["fold"]].append(row)
    return [
        {
            "fold": fold,
            "value": float(np.mean([_metric_value(r, metric_key) for r in by_fold[fold]])),
            "rows": by_fold[fold],
        }
        for fold in sorted(by_fold, key=_sort_key)
    ]


# --------------------------------------------------------------------------- files


def _write_atomic(path: Path, data: bytes) -> Path:
    """Write ``data`` to a temporary file in ``path``'s folder, then rename it over ``path``."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".partial")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def _csv_cell(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, (Mapping, list, tuple)):
        return json.dumps(value, sort_keys=True, default=str)
    return str(value)


def _flatten(row: Mapping[str, Any]) -> dict[str, Any]:
    """``metrics`` and ``params`` spread into ``metrics.<name>`` / ``params.<name>``."""
    out: dict[str, Any] = {}
    for name, value in row.items():
        if name in ("metrics", "params") and isinstance(value, Mapping):
            out.update({f"{name}.{k}": v for k, v in value.items()})
        elif name in ("metrics", "params") and value is None:
            continue
        else:
            out[name] = value
    return out


def _columns(flat: Sequence[Mapping[str, Any]]) -> list[str]:
    seen = {name for row in flat for name in row}
    metrics = sorted(n for n in seen if n.startswith("metrics."))
    params = sorted(n for n in seen if n.startswith("params."))
    other = sorted(seen - set(BASE_COLUMNS) - set(metrics) - set(params))
    return [*BASE_COLUMNS, *metrics, *params, *other]


def _results_csv(rows: Sequence[Mapping[str, Any]]) -> bytes:
    flat = [_flatten(r) for r in rows]
    columns = _columns(flat)
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(columns)
    for row in flat:
        writer.writerow([_csv_cell(row.get(c)) for c in columns])
    return buf.getvalue().encode("utf-8")


def _unique(rows: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """One row per key: a later row replaces an earlier one, at the earlier one's place."""
    by_key: dict[str, Mapping[str, Any]] = {}
    for i, row in enumerate(rows):
        key = row.get("key")
        if key is None:
            raise ValueError(f"results row {i} has no 'key'")
        by_key[str(key)] = row
    return list(by_key.values())


# --------------------------------------------------------------------------- HTML pieces


def _fmt(value: float) -> str:
    return format(value, ".4g")


def _table(
    rows: Sequence[Mapping[str, Any]],
    columns: Sequence[tuple[str, str]],
    caption: str | None = None,
) -> Table:
    """A sortable table; ``columns`` are (field, heading) pairs."""
    return Table(
        rows,
        columns=[f for f, _ in columns],
        headings=dict(columns),
        caption=caption,
        float_format=".4g",
        sortable=True,
    )


def _href(target: Path, base: Path, folder: bool = False) -> str:
    """A relative URL from the folder ``base`` to ``target``, percent-encoded."""
    try:
        rel = Path(os.path.relpath(target, base)).as_posix()
    except ValueError:  # another drive
        rel = target.resolve().as_posix()
    if folder and not rel.endswith("/"):
        rel += "/"
    return urllib.parse.quote(rel, safe="/._-~")


class _Links:
    """Links from the page (in ``out_dir``) to the trials' folders under ``campaign_dir``."""

    def __init__(self, campaign_dir: Path, out_dir: Path) -> None:
        self.campaign_dir = campaign_dir
        self.out_dir = out_dir

    def _line(self, row: Mapping[str, Any], label: str | None = None) -> list[Link]:
        """The run folder, then its report.html and manifest.json where those exist."""
        run_dir = row.get("run_dir")
        if not run_dir:
            return []
        target = self.campaign_dir / str(run_dir)
        line = [Link(_href(target, self.out_dir, folder=True), label or str(run_dir))]
        for name, text in (("report.html", "report"), ("manifest.json", "manifest")):
            if (target / name).is_file():
                line.append(Link(_href(target / name, self.out_dir), text))
        return line

    def run(self, row: Mapping[str, Any]) -> Links | None:
        """The links of one trial (see :meth:`_line`)."""
        line = self._line(row)
        return Links([line]) if line else None

    def runs(self, rows: Iterable[Mapping[str, Any]], label: str = "fold") -> Links | None:
        """One line of links per row, labelled by ``label`` (a field of the row)."""
        lines = []
        for row in rows:
            line = self._line(
                row, f"{label} {row.get(label)}" if row.get(label) is not None else None
            )
            if line:
                lines.append(line)
        return Links(lines) if lines else None


class _Page:
    """Sections for :func:`medscale.evaluate.report.render_html`, and the pictures in them
    (also written beside the page)."""

    def __init__(self) -> None:
        self.sections: list[Section] = []
        self.pictures: dict[str, bytes] = {}

    def picture(self, name: str, fig: Figure, alt: str, caption: str | None = None) -> Image:
        png = figure_to_png(fig)
        self.pictures[name] = png
        return Image(png, alt=alt, caption=caption)


# --------------------------------------------------------------------------- figures


def _loo_figure(effects: Sequence[Mapping[str, Any]], metric: str, direction: str) -> Figure:
    n = len(effects)
    fig = new_figure(7.5, 1.4 + 0.35 * n)
    ax = fig.subplots()
    y = np.arange(n)
    effect = np.array([e["effect"] for e in effects])
    low = np.array([e["ci_low"] for e in effects])
    high = np.array([e["ci_high"] for e in effects])
    hurts = effect < 0 if direction == "maximize" else effect > 0
    ax.barh(y, effect, color=np.where(hurts, "#d7301f", "#4292c6"), height=0.6)
    has_ci = ~np.isnan(low) & ~np.isnan(high)
    if has_ci.any():
        xerr = np.vstack([effect - low, high - effect])[:, has_ci]
        ax.errorbar(effect[has_ci], y[has_ci], xerr=xerr, fmt="none", ecolor="black", capsize=3)
    ax.axvline(0.0, color="black", lw=0.8)
    ax.set_yticks(y, [_plain(e["item"]) for e in effects])
    ax.set_ylim(n - 0.5, -0.5)  # most important on top
    ax.set_xlabel(_plain(f"effect on {metric} of leaving the item out (arm − all)"))
    ax.set_title("Which left-out item matters most")
    ax.grid(axis="x", alpha=0.3)
    return fig


def _fraction_figure(curve: Sequence[Mapping[str, Any]], metric: str) -> Figure:
    fig = new_figure(6.5, 3.8)
    ax = fig.subplots()
    x = np.array([c["fraction"] for c in curve])
    mean = np.array([c["mean"] for c in curve])
    for c in curve:
        if c["n"] > 1:
            ax.plot([c["fraction"]] * c["n"], c["values"], "o", color="0.6", ms=3, alpha=0.6)
    low = np.array([c["ci_low"] for c in curve])
    high = np.array([c["ci_high"] for c in curve])
    if np.isfinite(low).any():
        yerr = np.nan_to_num(np.vstack([mean - low, high - mean]), nan=0.0)
        ax.errorbar(x, mean, yerr=yerr, fmt="o-", color="#08306b", capsize=3, label="mean, 95% CI")
        ax.legend(fontsize="small")
    else:
        ax.plot(x, mean, "o-", color="#08306b")
    if x.min() > 0 and x.max() / x.min() > 10:
        ax.set_xscale("log")
    ax.set_xlabel("fraction of training data")
    ax.set_ylabel(_plain(metric))
    ax.set_title(_plain(f"{metric} vs data fraction"))
    ax.grid(alpha=0.3)
    return fig


def _folds_figure(folds: Sequence[Mapping[str, Any]], ci: tuple[float, ...], metric: str) -> Figure:
    fig = new_figure(6.0, 3.4)
    ax = fig.subplots()
    x = np.arange(len(folds))
    ax.plot(x, [f["value"] for f in folds], "o", color="#08306b", label="fold")
    mean, low, high = ci
    ax.axhline(mean, color="#d7301f", lw=1.0, label="mean")
    if not math.isnan(low):
        ax.axhspan(low, high, color="#d7301f", alpha=0.15, lw=0, label="95% CI")
    ax.set_xticks(x, [_plain(f["fold"]) for f in folds])
    ax.set_xlabel("fold")
    ax.set_ylabel(_plain(metric))
    ax.set_title("Per-fold values")
    ax.legend(fontsize="small")
    ax.grid(axis="y", alpha=0.3)
    return fig


def _history_figure(numbers: np.ndarray, values: np.ndarray, metric: str, direction: str) -> Figure:
    fig = new_figure(6.5, 3.6)
    ax = fig.subplots()
    best = (np.maximum if direction == "maximize" else np.minimum).accumulate(values)
    ax.plot(numbers, values, "o", color="0.5", ms=4, label="trial")
    ax.step(numbers, best, where="post", color="#d7301f", label="best so far")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("trial number")
    ax.set_ylabel(_plain(metric))
    ax.set_title("Optimisation history")
    ax.legend(fontsize="small")
    ax.grid(alpha=0.3)
    return fig


def _importances_figure(importances: Mapping[str, float]) -> Figure:
    names = list(importances)
    fig = new_figure(6.5, 1.4 + 0.35 * len(names))
    ax = fig.subplots()
    y = np.arange(len(names))
    ax.barh(y, [importances[n] for n in names], color="#4292c6", height=0.6)
    ax.set_yticks(y, [_plain(n) for n in names])
    ax.set_ylim(len(names) - 0.5, -0.5)
    ax.set_xlabel("importance")
    ax.set_title("Parameter importances")
    ax.grid(axis="x", alpha=0.3)
    return fig


# --------------------------------------------------------------------------- sections


def _summary(
    rows: Sequence[Mapping[str, Any]],
    forms: Sequence[str],
    metric: str,
    direction: str,
    cost_unit: str,
) -> Section:
    counts: dict[str, int] = dict.fromkeys(STATUSES, 0)
    for row in rows:
        status = str(row.get("status"))
        counts[status] = counts.get(status, 0) + 1

    def total(field: str) -> float:
        values = [_number(r.get(field)) for r in rows]
        values = [v for v in values if not math.isnan(v)]
        return float(sum(values)) if values else math.nan

    wall = total("wall_s")
    walls = [w for w in (_number(r.get("wall_s")) for r in rows) if not math.isnan(w)]
    rss = [m for m in (_number(r.get("peak_rss_mb")) for r in rows) if not math.isnan(m)]
    attempts = total("attempts")
    quantities = [
        {"quantity": "trials", "value": len(rows)},
        {"quantity": "attempts", "value": None if math.isnan(attempts) else int(attempts)},
        {"quantity": "device-hours, total", "value": total("device_s") / 3600.0},
        {"quantity": "trial wall time, total (h)", "value": wall / 3600.0},
        {"quantity": "longest trial (min)", "value": max(walls) / 60.0 if walls else None},
        {"quantity": f"cost, total ({cost_unit})", "value": total("cost")},
        {"quantity": "peak RSS, largest (MB)", "value": max(rss) if rss else None},
    ]
    done = [(v, r) for r in rows if _is_done(r) and not math.isnan(v := _number(r.get("value")))]
    if done:
        pick = max if direction == "maximize" else min
        value, row = pick(done, key=lambda vr: vr[0])
        quantities.append({"quantity": f"best {metric}", "value": value})
        quantities.append({"quantity": "best trial", "value": str(row.get("key"))})
    return Section(
        "Summary",
        [
            f"Forms: {' × '.join(forms) or 'none'}; metric: {metric} ({direction}).",
            Table([{"status": s, "trials": n} for s, n in counts.items()], caption="per status"),
            Table(quantities, float_format=".4g", caption="totals"),
        ],
    )


def _loo_section(
    page: _Page,
    rows: Sequence[Mapping[str, Any]],
    metric_key: str,
    metric: str,
    direction: str,
    links: _Links,
) -> Section:
    section = Section("Leave-one-out: which left-out item matters most")
    items = section.items
    effects = loo_effects(rows, metric_key, direction=direction)
    if not effects:
        items.append("No leave-one-out arm in the table.")
        return section
    reference = [r for r in rows if r.get("leave_out") == REFERENCE]
    if not any(_is_done(r) and not math.isnan(_metric_value(r, metric_key)) for r in reference):
        items.append(
            f"No finished reference trial (leave_out = {REFERENCE!r}): the effects cannot be "
            "computed yet."
        )
    paired = [e for e in effects if e["n_folds"] > 0]
    items.append(
        f"Effect = {metric} of the arm that leaves the item out − {metric} of the all-included "
        "reference, paired per fold; mean and 95% t confidence interval across folds. A "
        f"{'negative' if direction == 'maximize' else 'positive'} effect means the metric gets "
        "worse without the item, so the item matters; items are sorted most important first."
    )
    if paired and max(e["n_folds"] for e in paired) < 2:
        items.append(
            "Only one fold: no confidence interval is shown (a t interval needs at least two "
            "folds)."
        )
    if paired:
        fig = _loo_figure(paired, metric, direction)
        items.append(
            page.picture(
                "loo_effects",
                fig,
                "Which left-out item matters most",
                f"effect on {metric} of leaving each item out",
            )
        )
    by_item: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
    for row in rows:
        if row.get("leave_out") is not None:
            by_item[str(row["leave_out"])].append(row)
    table = [
        {
            **e,
            "runs": links.runs(sorted(by_item[e["item"]], key=lambda r: _sort_key(r.get("fold")))),
        }
        for e in effects
    ]
    ref_rows = sorted(by_item.get(REFERENCE, []), key=lambda r: _sort_key(r.get("fold")))
    ref_mean = mean_ci(
        [f["value"] for f in _fold_values(ref_rows, metric_key)]
        or [_metric_value(r, metric_key) for r in ref_rows if _is_done(r)]
    )[0]
    table.append(
        {
            "item": f"{REFERENCE} (reference)",
            "effect": None,
            "reference_mean": ref_mean,
            "runs": links.runs(ref_rows),
        }
    )
    columns = [
        ("item", "left out"),
        ("effect", f"mean effect on {metric}"),
        ("ci_low", "95% CI low"),
        ("ci_high", "95% CI high"),
        ("n_folds", "n folds"),
        ("arm_mean", f"arm {metric}"),
        ("reference_mean", f"reference {metric}"),
        ("runs", "runs"),
    ]
    items.append(_table(table, columns, caption="effects of leaving each item out"))
    return section


def _fraction_section(
    page: _Page, rows: Sequence[Mapping[str, Any]], metric_key: str, metric: str, links: _Links
) -> Section:
    section = Section(f"Data fraction: {metric} vs fraction of training data")
    curve = fraction_curve(rows, metric_key)
    if not curve:
        section.items.append("No finished data-fraction trial in the table.")
        return section
    if any(c["n"] > 1 for c in curve):
        section.items.append("Mean and 95% t confidence interval across folds at each fraction.")
    else:
        section.items.append("One trial per fraction: points only, no confidence interval.")
    fig = _fraction_figure(curve, metric)
    section.items.append(page.picture("data_fraction", fig, f"{metric} vs data fraction"))
    by_fraction: dict[float, list[Mapping[str, Any]]] = defaultdict(list)
    for row in rows:
        fraction = _number(row.get("fraction"))
        if not math.isnan(fraction):
            by_fraction[fraction].append(row)
    table = [
        {
            **c,
            "runs": links.runs(
                sorted(by_fraction[c["fraction"]], key=lambda r: _sort_key(r.get("fold")))
            ),
        }
        for c in curve
    ]
    columns = [
        ("fraction", "fraction"),
        ("n", "n"),
        ("mean", f"mean {metric}"),
        ("ci_low", "95% CI low"),
        ("ci_high", "95% CI high"),
        ("runs", "runs"),
    ]
    section.items.append(_table(table, columns, caption=f"{metric} per fraction"))
    return section


def _kfold_section(
    page: _Page, rows: Sequence[Mapping[str, Any]], metric_key: str, metric: str, links: _Links
) -> Section:
    section = Section("K-fold: per-fold values")
    folds = _fold_values(rows, metric_key)
    if not folds:
        section.items.append("No finished fold in the table.")
        return section
    ci = mean_ci(f["value"] for f in folds)
    mean, low, high = ci
    if math.isnan(low):
        section.items.append(
            f"Mean {metric}: {_fmt(mean)} over {len(folds)} fold(s); no confidence interval "
            "(a t interval needs at least two folds)."
        )
    else:
        section.items.append(
            f"Mean {metric}: {_fmt(mean)}, 95% t confidence interval [{_fmt(low)}, "
            f"{_fmt(high)}] across {len(folds)} folds."
        )
    fig = _folds_figure(folds, ci, metric)
    section.items.append(page.picture("folds", fig, "Per-fold values"))
    table = [
        {
            "fold": f["fold"],
            "value": f["value"],
            "key": ", ".join(str(r["key"]) for r in f["rows"]),
            "runs": links.runs(f["rows"]),
        }
        for f in folds
    ]
    table.append({"fold": "mean", "value": mean, "key": f"95% CI [{_fmt(low)}, {_fmt(high)}]"})
    columns = [("fold", "fold"), ("value", metric), ("key", "trial"), ("runs", "runs")]
    section.items.append(_table(table, columns, caption=f"{metric} per fold"))
    return section


def _history(
    rows: Sequence[Mapping[str, Any]], study: optuna.Study | None
) -> tuple[np.ndarray, np.ndarray]:
    """(trial numbers, objective values) of the finished trials, by number: from the rows, else
    from the study's complete trials."""
    pairs = [
        (int(r["number"]), v)
        for r in rows
        if _is_done(r)
        and r.get("number") is not None
        and not math.isnan(v := _number(r.get("value")))
    ]
    if not pairs and study is not None:
        pairs = [
            (t.number, v)
            for t in study.trials
            if t.state.name == "COMPLETE" and not math.isnan(v := _number(t.value))
        ]
    pairs.sort()
    return np.array([p[0] for p in pairs]), np.array([p[1] for p in pairs], dtype=np.float64)


def _bayesian_section(
    page: _Page,
    rows: Sequence[Mapping[str, Any]],
    metric: str,
    direction: str,
    study: optuna.Study | None,
) -> Section:
    section = Section("Bayesian optimisation: history and parameter importances")
    items = section.items
    numbers, values = _history(rows, study)
    if numbers.size:
        fig = _history_figure(numbers, values, metric, direction)
        items.append(
            page.picture(
                "history",
                fig,
                "Optimisation history",
                f"{metric} per trial number, with the best so far ({direction})",
            )
        )
    else:
        items.append("No finished trial with a trial number: no optimisation history.")
    if study is None:
        items.append("No Optuna study was given: parameter importances are not computed.")
        return section
    complete = [t for t in study.trials if t.state.name == "COMPLETE"]
    if len(complete) < 2:
        items.append(
            f"The study has {len(complete)} complete trial(s): parameter importances need at "
            "least two."
        )
        return section
    import optuna.importance

    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            importances = optuna.importance.get_param_importances(study)
    except Exception as exc:  # any evaluator failure only loses this picture
        items.append(f"Parameter importances could not be computed: {type(exc).__name__}: {exc}")
        return section
    for w in caught:
        items.append(f"Optuna warned while computing the importances: {w.message}")
    if not importances:
        items.append("The study has no parameter to rank.")
        return section
    importances = dict(sorted(importances.items(), key=lambda kv: -kv[1]))
    fig = _importances_figure(importances)
    items.append(
        page.picture(
            "importances",
            fig,
            "Parameter importances",
            "Optuna's parameter importances (default evaluator)",
        )
    )
    items.append(
        Table(
            [{"parameter": k, "importance": v} for k, v in importances.items()],
            caption="parameter importances",
            float_format=".4f",
        )
    )
    return section


def _leaderboard(
    rows: Sequence[Mapping[str, Any]], metric: str, direction: str, links: _Links
) -> Section:
    sign = -1.0 if direction == "maximize" else 1.0
    status_order = {s: i for i, s in enumerate(STATUSES)}

    def order(row: Mapping[str, Any]) -> tuple:
        value = _number(row.get("value"))
        finished = _is_done(row) and not math.isnan(value)
        return (
            not finished,
            sign * value if finished else 0.0,
            status_order.get(str(row.get("status")), len(STATUSES)),
            str(row.get("key")),
        )

    ranked = sorted(rows, key=order)
    flat = []
    rank = 0
    for row in ranked:
        entry = _flatten(row)
        if _is_done(row) and not math.isnan(_number(row.get("value"))):
            rank += 1
            entry["rank"] = rank
        entry["run"] = links.run(row)
        flat.append(entry)
    names = {n for r in flat for n in r}
    metric_cols = sorted(n for n in names if n.startswith("metrics."))
    param_cols = sorted(n for n in names if n.startswith("params."))
    dims = [d for d in ("leave_out", "fold", "fraction") if any(r.get(d) is not None for r in rows)]
    columns = [
        ("rank", "rank"),
        ("key", "key"),
        ("status", "status"),
        ("value", f"value ({metric})"),
        *[(c, c.removeprefix("metrics.")) for c in metric_cols],
        *[(c, c) for c in param_cols],
        *[(d, d) for d in dims],
        ("seed", "seed"),
        ("number", "number"),
        ("attempts", "attempts"),
        ("wall_s", "wall (s)"),
        ("device_s", "device (s)"),
        ("cost", "cost"),
        ("run", "run"),
    ]
    caption = f"every trial, best {metric} first ({direction}); click a heading to sort"
    return Section("Leaderboard", [_table(flat, columns, caption=caption)])


def _failed(rows: Sequence[Mapping[str, Any]], links: _Links) -> Section | None:
    failed = [dict(r, run=links.run(r)) for r in rows if r.get("status") == "failed"]
    if not failed:
        return None
    columns = [
        ("key", "key"),
        ("number", "number"),
        ("attempts", "attempts"),
        ("error", "error"),
        ("run", "run"),
    ]
    return Section("Failed trials", [_table(failed, columns)])


# --------------------------------------------------------------------------- entry point


def _resolve_metric(rows: Sequence[Mapping[str, Any]], metric: str) -> str:
    """``metric`` when finished rows carry it in ``metrics``, else ``"value"`` (the objective)."""
    if metric != "value":
        for row in rows:
            metrics = row.get("metrics")
            if _is_done(row) and isinstance(metrics, Mapping) and metric in metrics:
                return metric
    return "value"


def write_report(
    rows: Sequence[Mapping[str, Any]],
    out_dir: str | os.PathLike[str],
    *,
    title: str,
    forms: Sequence[str],
    metric: str = "kappa",
    direction: str = "maximize",
    study: optuna.Study | None = None,
    cost_unit: str = "USD",
    campaign_dir: str | os.PathLike[str] | None = None,
) -> dict[str, Path]:
    """Write ``results.csv``, ``report.html`` and the report's pictures into ``out_dir``.

    ``rows`` are the results table, one dictionary per trial key with the fields ``key``,
    ``status`` (``done``/``failed``/``pruned``/``pending``/``running``), ``number``,
    ``attempts``, ``value`` (the objective), ``metrics`` and ``params`` (dictionaries),
    ``leave_out``, ``fold``, ``fraction``, ``seed``, ``wall_s``, ``device_s``,
    ``peak_rss_mb``, ``cost``, ``run_dir`` and ``error``; a missing field reads as None. A key
    seen twice keeps its last row.

    ``forms`` are the campaign's forms (``grid``, ``leave_one_out``, ``kfold``,
    ``data_fraction``, ``bayesian``; others get the leaderboard only). The leave-one-out,
    data-fraction and k-fold analyses use ``metrics[metric]`` when the finished rows carry it,
    else ``value``; the leaderboard and the optimisation history rank by ``value``.
    ``direction`` (``maximize``/``minimize``) says which values are better. ``study`` (an
    Optuna study) gives the parameter importances of a Bayesian campaign. ``run_dir`` is
    relative to ``campaign_dir`` (default ``out_dir``); the page links to each run folder and
    to its ``report.html`` and ``manifest.json`` where they exist.

    Returns what was written, by name: ``csv``, ``html`` and the pictures among
    ``loo_effects``, ``data_fraction``, ``folds``, ``history`` and ``importances`` (PNG files
    named after them). Each file is written to a temporary file in ``out_dir`` and renamed.
    """
    _check_direction(direction)
    forms = [str(f) for f in forms]
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    links = _Links(Path(campaign_dir) if campaign_dir is not None else out, out)
    rows = _unique(rows)
    metric_key = _resolve_metric(rows, metric)

    page = _Page()
    page.sections.append(_summary(rows, forms, metric, direction, cost_unit))
    if not any(_is_done(r) for r in rows):
        page.sections.append(
            Section(
                "Results",
                [
                    "There are no finished trials yet: nothing to plot."
                    if rows
                    else "There are no trials in the results table: nothing to plot."
                ],
            )
        )
    else:
        if "leave_one_out" in forms:
            page.sections.append(_loo_section(page, rows, metric_key, metric, direction, links))
        if "data_fraction" in forms:
            page.sections.append(_fraction_section(page, rows, metric_key, metric, links))
        if "kfold" in forms and not set(forms) - {"kfold"}:
            page.sections.append(_kfold_section(page, rows, metric_key, metric, links))
        if "bayesian" in forms:
            page.sections.append(_bayesian_section(page, rows, metric, direction, study))
    if rows:
        page.sections.append(_leaderboard(rows, metric, direction, links))
    failed = _failed(rows, links)
    if failed is not None:
        page.sections.append(failed)

    written: dict[str, Path] = {"csv": _write_atomic(out / "results.csv", _results_csv(rows))}
    for name, png in page.pictures.items():
        written[name] = _write_atomic(out / f"{name}.png", png)
    html = render_html(title, page.sections)
    written["html"] = _write_atomic(out / "report.html", html.encode("utf-8"))
    return written
