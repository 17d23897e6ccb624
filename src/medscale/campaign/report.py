"""A campaign's results table as ``results.csv`` and one self-contained ``report.html``.

Each row of the results table is one trial key (see :func:`write_report` for the fields). The
page opens with a summary (trials per status, device-hours, cost, wall time), then shows what
suits the campaign's forms:

* ``leave_one_out`` - each left-out item's effect on the metric, ``arm - reference`` where the
  reference is the all-included arm (``leave_out == "all"``), paired per fold, with a 95 % t
  interval across folds (:func:`medscale.campaign.statistics.loo_effects`);
* ``data_fraction`` - the metric against the fraction of training data, mean and t interval
  across folds (:func:`medscale.campaign.statistics.fraction_curve`);
* ``kfold`` alone - the per-fold values, their mean and t interval;
* ``bayesian`` - the optimisation history and Optuna's parameter importances;
* always - a leaderboard of every trial (sortable by clicking a column heading) and the failed
  trials with their error.

This module assembles the page; the numbers come from :mod:`medscale.campaign.statistics`,
the CSV from :mod:`medscale.campaign.results_table`, the figures from
:mod:`medscale.campaign.figures`, and the page is rendered by medscale's one report renderer,
:func:`medscale.evaluate.report.render_html` (autoescaped: keys, items, errors and parameter
names cannot inject markup). Figures are embedded in the page as base64 PNG and also saved
beside it. Every file is written atomically.
"""

from __future__ import annotations

import math
import os
import urllib.parse
import warnings
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from medscale.atomic import write_bytes_atomic
from medscale.campaign import figures
from medscale.campaign.results_table import flatten_row, results_csv, unique_rows
from medscale.campaign.statistics import (
    REFERENCE,
    check_direction,
    finite_number,
    fold_values,
    fraction_curve,
    is_done,
    loo_effects,
    mean_ci,
    metric_value,
    sort_key,
)
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

__all__ = ["STATUSES", "write_report"]

STATUSES = ("done", "failed", "pruned", "pending", "running")
"""The trial states, in the order the summary lists them."""


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
        values = [finite_number(r.get(field)) for r in rows]
        values = [v for v in values if not math.isnan(v)]
        return float(sum(values)) if values else math.nan

    wall = total("wall_s")
    walls = [w for w in (finite_number(r.get("wall_s")) for r in rows) if not math.isnan(w)]
    rss = [m for m in (finite_number(r.get("peak_rss_mb")) for r in rows) if not math.isnan(m)]
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
    done = [
        (v, r) for r in rows if is_done(r) and not math.isnan(v := finite_number(r.get("value")))
    ]
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
    if not any(is_done(r) and not math.isnan(metric_value(r, metric_key)) for r in reference):
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
        fig = figures.loo_figure(paired, metric, direction)
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
            "runs": links.runs(sorted(by_item[e["item"]], key=lambda r: sort_key(r.get("fold")))),
        }
        for e in effects
    ]
    ref_rows = sorted(by_item.get(REFERENCE, []), key=lambda r: sort_key(r.get("fold")))
    ref_mean = mean_ci(
        [f["value"] for f in fold_values(ref_rows, metric_key)]
        or [metric_value(r, metric_key) for r in ref_rows if is_done(r)]
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
    fig = figures.fraction_figure(curve, metric)
    section.items.append(page.picture("data_fraction", fig, f"{metric} vs data fraction"))
    by_fraction: dict[float, list[Mapping[str, Any]]] = defaultdict(list)
    for row in rows:
        fraction = finite_number(row.get("fraction"))
        if not math.isnan(fraction):
            by_fraction[fraction].append(row)
    table = [
        {
            **c,
            "runs": links.runs(
                sorted(by_fraction[c["fraction"]], key=lambda r: sort_key(r.get("fold")))
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
    folds = fold_values(rows, metric_key)
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
    fig = figures.folds_figure(folds, ci, metric)
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
        if is_done(r)
        and r.get("number") is not None
        and not math.isnan(v := finite_number(r.get("value")))
    ]
    if not pairs and study is not None:
        pairs = [
            (t.number, v)
            for t in study.trials
            if t.state.name == "COMPLETE" and not math.isnan(v := finite_number(t.value))
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
        fig = figures.history_figure(numbers, values, metric, direction)
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
    fig = figures.importances_figure(importances)
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
        value = finite_number(row.get("value"))
        finished = is_done(row) and not math.isnan(value)
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
        entry = flatten_row(row)
        if is_done(row) and not math.isnan(finite_number(row.get("value"))):
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
            if is_done(row) and isinstance(metrics, Mapping) and metric in metrics:
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
    check_direction(direction)
    forms = [str(f) for f in forms]
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    links = _Links(Path(campaign_dir) if campaign_dir is not None else out, out)
    rows = unique_rows(rows)
    metric_key = _resolve_metric(rows, metric)

    page = _Page()
    page.sections.append(_summary(rows, forms, metric, direction, cost_unit))
    if not any(is_done(r) for r in rows):
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

    written: dict[str, Path] = {"csv": write_bytes_atomic(out / "results.csv", results_csv(rows))}
    for name, png in page.pictures.items():
        written[name] = write_bytes_atomic(out / f"{name}.png", png)
    html = render_html(title, page.sections)
    written["html"] = write_bytes_atomic(out / "report.html", html.encode("utf-8"))
    return written
