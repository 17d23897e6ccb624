"""The training run's HTML report: learning curves and validation scores, one file."""

from __future__ import annotations

from pathlib import Path

from medscale.evaluate.plots import plot_learning_curves
from medscale.evaluate.report import Section, Table, write_html_report
from medscale.train.metrics_log import read_records

_VAL_KEYS = ("kappa", "accuracy", "macro_f1", "mcc", "val_loss")


def learning_curve_rows(run_dir: str | Path) -> list[dict]:
    """``metrics.jsonl`` as rows for `plot_learning_curves`: train loss, val loss and scores."""
    rows = []
    for record in read_records(Path(run_dir) / "metrics.jsonl"):
        if record.get("kind") == "train":
            rows.append({"step": record["step"], "train_loss": record.get("loss")})
        elif record.get("kind") == "val":
            row = {"step": record["step"], "val_loss": record.get("val_loss")}
            row |= {f"val_{k}": record.get(k) for k in _VAL_KEYS if k != "val_loss"}
            rows.append(row)
    return rows


def training_section(run_dir: str | Path) -> Section | None:
    """Learning curves and the validation table of a run (None before its first record)."""
    rows = learning_curve_rows(run_dir)
    if not rows:
        return None
    validations = [
        {k: r[k] for k in ("step", "val_loss", "val_kappa", "val_accuracy", "val_macro_f1")}
        for r in rows
        if "val_loss" in r
    ]
    items: list = [plot_learning_curves(rows)]
    if validations:
        items.append(Table(validations, caption="validation on whole nights (soft vote)"))
    return Section("Training", items)


def write_training_report(run_dir: str | Path, title: str | None = None) -> Path | None:
    """Write ``RUN_DIR/report.html``; None when the run has logged nothing yet."""
    run_dir = Path(run_dir)
    section = training_section(run_dir)
    if section is None:
        return None
    return write_html_report(
        run_dir / "report.html", title or f"medscale training run {run_dir.name}", [section]
    )
