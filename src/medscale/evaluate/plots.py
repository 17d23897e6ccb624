"""Figures for evaluation and training reports.

Every function builds a :class:`matplotlib.figure.Figure` on its own Agg canvas, without
pyplot, so no global figure state is created or leaked; the caller owns the figure and it is
freed when dropped. Save with ``fig.savefig(...)`` or embed with
:func:`medscale.evaluate.report.figure_to_png`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from medscale.io.stages import N1, N2, N3, REM, SCORED_STAGES, STAGE_NAMES, UNKNOWN, W

__all__ = [
    "STAGE_COLORS",
    "new_figure",
    "plot_confusion",
    "plot_hypnogram",
    "plot_learning_curves",
    "plot_per_stage_f1",
    "plot_reliability",
]

STAGE_COLORS: dict[int, str] = {
    W: "#f2c14e",
    N1: "#9ecae1",
    N2: "#4292c6",
    N3: "#08306b",
    REM: "#d7301f",
}
# Conventional hypnogram order, top to bottom: W, REM, N1, N2, N3.
_LEVEL = {W: 4, REM: 3, N1: 2, N2: 1, N3: 0}


def new_figure(width: float, height: float) -> Figure:
    """A pyplot-free figure with an Agg canvas attached."""
    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _plain(text: object) -> str:
    """Text shown literally by matplotlib: ``$`` would otherwise start mathtext."""
    return str(text).replace("$", r"\$")


def _levels(y: np.ndarray) -> np.ndarray:
    y = np.asarray(y).astype(np.int64)
    out = np.full(y.shape, np.nan)
    for code, level in _LEVEL.items():
        out[y == code] = level
    return out


def _draw_hypnogram(ax, y: np.ndarray, hours: np.ndarray, label: str, color: str) -> None:
    lv = _levels(y)
    # Repeat the last value so the final epoch gets its full width in a step plot.
    ax.step(hours, np.append(lv, lv[-1:]), where="post", color=color, lw=1.0, label=label)
    rem = np.where(np.asarray(y) == REM, lv, np.nan)
    ax.step(hours, np.append(rem, rem[-1:]), where="post", color=STAGE_COLORS[REM], lw=2.5)
    unknown = np.asarray(y) == UNKNOWN
    if unknown.any():
        for start, stop in _runs(unknown):
            ax.axvspan(hours[start], hours[stop], color="0.85", lw=0)
    ax.set_yticks([_LEVEL[s] for s in SCORED_STAGES], [STAGE_NAMES[s] for s in SCORED_STAGES])
    ax.set_ylim(-0.5, 4.5)
    ax.set_ylabel(label)
    ax.grid(axis="y", alpha=0.3)


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """(start, stop) of each run of True in ``mask``."""
    padded = np.concatenate([[False], mask, [False]]).astype(np.int8)
    edges = np.flatnonzero(np.diff(padded))
    return list(zip(edges[::2].tolist(), edges[1::2].tolist(), strict=True))


def plot_hypnogram(
    y_true: np.ndarray | None,
    y_pred: np.ndarray | None = None,
    probabilities: np.ndarray | None = None,
    epoch_s: float = 30.0,
    title: str | None = None,
) -> Figure:
    """True hypnogram on top (when scored), then the predicted one, then the hypnodensity
    (stacked per-stage probabilities) when ``probabilities`` (n_epochs, 5) is given. UNKNOWN
    epochs are shaded grey. The x axis is hours from the first epoch shown."""
    panels = []
    if y_true is not None:
        panels.append(("true", np.asarray(y_true), "black"))
    if y_pred is not None:
        panels.append(("predicted", np.asarray(y_pred), "0.3"))
    if not panels:
        raise ValueError("plot_hypnogram needs y_true or y_pred")
    n = panels[0][1].size
    if n == 0:
        raise ValueError("cannot plot an empty hypnogram")
    if any(y.size != n for _, y, _ in panels):
        raise ValueError(f"y_pred has {panels[-1][1].size} epochs, y_true has {n}")
    if probabilities is not None:
        probabilities = np.asarray(probabilities, dtype=np.float64)
        if probabilities.shape != (n, len(SCORED_STAGES)):
            raise ValueError(
                f"probabilities must be ({n}, {len(SCORED_STAGES)}), got {probabilities.shape}"
            )
    n_axes = len(panels) + (probabilities is not None)
    fig = new_figure(10.0, 1.6 * n_axes + 0.6)
    axes = fig.subplots(n_axes, 1, sharex=True, squeeze=False)[:, 0]
    hours = np.arange(n + 1) * epoch_s / 3600.0
    for ax, (label, y, color) in zip(axes, panels, strict=False):
        _draw_hypnogram(ax, y, hours, label, color)
    if probabilities is not None:
        ax = axes[-1]
        centres = (np.arange(n) + 0.5) * epoch_s / 3600.0
        ax.stackplot(
            centres,
            probabilities.T,
            labels=[STAGE_NAMES[s] for s in SCORED_STAGES],
            colors=[STAGE_COLORS[s] for s in SCORED_STAGES],
            step="mid",
            lw=0,
        )
        ax.set_ylim(0, 1)
        ax.set_ylabel("hypnodensity")
        ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize="small", frameon=False)
    axes[-1].set_xlim(hours[0], hours[-1])
    axes[-1].set_xlabel("time (h)")
    if title:
        fig.suptitle(_plain(title))
    return fig


def plot_confusion(
    cm: np.ndarray, normalize: bool = True, title: str | None = None, labels=None
) -> Figure:
    """Confusion matrix (rows true, columns predicted) as a heat map with the values written in
    each cell; ``normalize`` divides each row by its total (recall per true stage), and the row
    totals are shown in the y labels."""
    cm = np.asarray(cm, dtype=np.float64)
    if cm.ndim != 2 or cm.shape[0] != cm.shape[1]:
        raise ValueError(f"confusion matrix must be square, got shape {cm.shape}")
    k = cm.shape[0]
    if labels is None:
        labels = [STAGE_NAMES[s] for s in SCORED_STAGES] if k == 5 else [str(i) for i in range(k)]
    totals = cm.sum(axis=1)
    shown = cm / np.where(totals > 0, totals, 1.0)[:, None] if normalize else cm
    fig = new_figure(4.8, 4.2)
    ax = fig.subplots()
    im = ax.imshow(shown, cmap="Blues", vmin=0, vmax=1 if normalize else None)
    scale = 1.0 if normalize else (shown.max() if shown.size else 0)
    for i in range(k):
        for j in range(k):
            value = shown[i, j]
            text = f"{value:.2f}" if normalize else f"{int(value)}"
            color = "white" if scale and value > 0.6 * scale else "black"
            ax.text(j, i, text, ha="center", va="center", color=color, fontsize="small")
    ax.set_xticks(range(k), labels)
    ax.set_yticks(range(k), [f"{lab} ({int(t)})" for lab, t in zip(labels, totals, strict=True)])
    ax.set_xlabel("predicted")
    ax.set_ylabel("true (epochs)")
    fig.colorbar(im, ax=ax, shrink=0.8)
    ax.set_title(
        _plain(title)
        if title
        else ("confusion matrix (row-normalised)" if normalize else "confusion")
    )
    return fig


def plot_per_stage_f1(scores_by_model: Mapping[str, Mapping]) -> Figure:
    """Grouped bars of F1 per stage, one group per stage and one bar per model.

    Each value is a :func:`~medscale.evaluate.metrics.score` dictionary (its
    ``f1_per_stage`` is used) or directly a ``{stage name: F1}`` mapping. NaN F1 (stage absent)
    is drawn as a missing bar."""
    if not scores_by_model:
        raise ValueError("plot_per_stage_f1 needs at least one model")
    stages = [STAGE_NAMES[s] for s in SCORED_STAGES]
    fig = new_figure(6.5, 3.5)
    ax = fig.subplots()
    n_models = len(scores_by_model)
    width = 0.8 / n_models
    x = np.arange(len(stages))
    for i, (name, scores) in enumerate(scores_by_model.items()):
        per_stage = scores.get("f1_per_stage", scores)
        values = np.array([float(per_stage.get(s, np.nan)) for s in stages])
        bars = ax.bar(
            x + (i - (n_models - 1) / 2) * width, np.nan_to_num(values), width, label=_plain(name)
        )
        for bar, v in zip(bars, values, strict=True):
            if not np.isnan(v):
                ax.annotate(
                    f"{v:.2f}",
                    (bar.get_x() + bar.get_width() / 2, v),
                    ha="center",
                    va="bottom",
                    fontsize="x-small",
                )
    ax.set_xticks(x, stages)
    ax.set_ylim(0, 1.08)
    ax.set_ylabel("F1")
    ax.set_title("F1 per stage")
    if n_models > 1:
        ax.legend(fontsize="small")
    ax.grid(axis="y", alpha=0.3)
    return fig


def plot_reliability(calibration: Mapping, title: str) -> Figure:
    """Reliability diagram per stage from a :func:`~medscale.evaluate.metrics.calibration`
    dictionary: the fraction of epochs truly in the stage against the mean predicted
    probability, per probability bin (marker area grows with the bin's epochs), beside the
    diagonal of perfect calibration; each panel states the stage's ECE and the epochs n."""
    per_stage = calibration["per_stage"]
    fig = new_figure(2.2 * len(per_stage), 2.6)
    axes = fig.subplots(1, len(per_stage), sharey=True)
    total = max(1, calibration["n_epochs"])
    for ax, code in zip(axes, SCORED_STAGES, strict=True):
        stage = STAGE_NAMES[code]
        cal = per_stage[stage]
        ax.plot([0, 1], [0, 1], color="#999", lw=0.8, ls="--")
        bins = cal["bins"]
        xs = [b["mean_predicted"] for b in bins]
        ys = [b["observed"] for b in bins]
        sizes = [10 + 200 * b["n"] / total for b in bins]
        ax.plot(xs, ys, color=STAGE_COLORS[code], lw=1)
        ax.scatter(xs, ys, s=sizes, color=STAGE_COLORS[code], zorder=3)
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_title(f"{stage}: ECE {cal['ece']:.3f}", fontsize="small")
        ax.set_xlabel("predicted", fontsize="small")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("observed fraction", fontsize="small")
    fig.suptitle(_plain(f"{title} (n = {calibration['n_epochs']} epochs)"), fontsize="medium")
    return fig


def _series(rows: Sequence[Mapping], key: str, x_key: str) -> tuple[np.ndarray, np.ndarray]:
    xs, ys = [], []
    for row in rows:
        value = row.get(key)
        if value is None or row.get(x_key) is None:
            continue
        value = float(value)
        if np.isnan(value):
            continue
        xs.append(float(row[x_key]))
        ys.append(value)
    return np.array(xs), np.array(ys)


def plot_learning_curves(rows: Sequence[Mapping], x_key: str = "step") -> Figure:
    """Losses (left) and validation metrics (right) against ``x_key``.

    ``rows`` are dictionaries such as ``{"step": 100, "train_loss": 0.9, "val_kappa": 0.6,
    "val_macro_f1": 0.55}``; a key may be absent or None in some rows (validation runs less
    often than logging). Every numeric key ending in ``loss`` goes to the left panel and every
    other ``val_*`` key to the right one."""
    if not rows:
        raise ValueError("plot_learning_curves needs at least one row")
    keys: list[str] = []
    for row in rows:
        for key in row:
            if key != x_key and key not in keys:
                keys.append(key)
    loss_keys = [k for k in keys if k.endswith("loss")]
    metric_keys = [k for k in keys if k.startswith("val_") and not k.endswith("loss")]
    fig = new_figure(10.0, 3.6)
    ax_loss, ax_metric = fig.subplots(1, 2)
    for ax, group, ylabel in ((ax_loss, loss_keys, "loss"), (ax_metric, metric_keys, "score")):
        drawn = False
        for key in group:
            xs, ys = _series(rows, key, x_key)
            if xs.size:
                ax.plot(xs, ys, marker="o" if xs.size < 30 else None, ms=3, label=key)
                drawn = True
        ax.set_xlabel(x_key)
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        if drawn:
            ax.legend(fontsize="small")
        else:
            ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes)
    ax_loss.set_title("losses")
    ax_metric.set_title("validation metrics")
    return fig
