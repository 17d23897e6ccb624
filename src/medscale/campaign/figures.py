"""The campaign report's figures, drawn with :func:`medscale.evaluate.plots.new_figure` (Agg,
no pyplot)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from matplotlib.ticker import MaxNLocator

from medscale.evaluate.plots import _plain, new_figure

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = [
    "folds_figure",
    "fraction_figure",
    "history_figure",
    "importances_figure",
    "loo_figure",
]


def loo_figure(effects: Sequence[Mapping[str, Any]], metric: str, direction: str) -> Figure:
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


def fraction_figure(curve: Sequence[Mapping[str, Any]], metric: str) -> Figure:
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


def folds_figure(folds: Sequence[Mapping[str, Any]], ci: tuple[float, ...], metric: str) -> Figure:
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


def history_figure(numbers: np.ndarray, values: np.ndarray, metric: str, direction: str) -> Figure:
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


def importances_figure(importances: Mapping[str, float]) -> Figure:
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
