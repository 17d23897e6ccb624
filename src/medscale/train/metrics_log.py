"""Metric records of a run: ``metrics.csv`` and ``metrics.jsonl`` always, MLflow and
TensorBoard (`medscale.train.tracking`) when asked for and installed (skipped with a logged
warning otherwise).

Each record is a dict with ``kind`` ("train" or "val"), ``step`` and numbers. On resume the
files are cut back to the records up to the checkpoint's step, so a resumed run's files equal
those of a run that was never interrupted (apart from the wall-clock columns).
"""

from __future__ import annotations

import csv
import json
import logging
import math
from collections.abc import Iterable
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

CSV_COLUMNS = (
    "kind",
    "step",
    "epoch",
    "lr",
    "loss",
    "grad_norm",
    "val_loss",
    "kappa",
    "accuracy",
    "macro_f1",
    "mcc",
    "n_epochs",
    "best",
    "elapsed_s",
    "steps_per_s",
)
#: Columns that depend on the wall clock: left out when runs are compared.
TIMING_COLUMNS = ("elapsed_s", "steps_per_s")


def clean_json(value: Any) -> Any:
    """``value`` with non-finite floats as None (strict JSON) and numpy scalars as numbers."""
    if isinstance(value, dict):
        return {str(k): clean_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [clean_json(v) for v in value]
    if hasattr(value, "item") and not isinstance(value, str | bytes):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def read_records(path: str | Path) -> list[dict[str, Any]]:
    """The records of a ``metrics.jsonl`` file (an empty list when it is missing)."""
    path = Path(path)
    if not path.is_file():
        return []
    records = []
    for line in path.read_text().splitlines():
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except ValueError:
            break  # a line cut short by a kill: nothing after it is trustworthy
    return records


class MetricsLogger:
    """Appends records to the run's files and to the optional backends."""

    def __init__(
        self,
        run_dir: str | Path,
        backends: Iterable[str] = (),
        *,
        keep_until_step: int | None = None,
        enabled: bool = True,
        config: dict[str, Any] | None = None,
    ) -> None:
        """``config`` (the run's, as a dict) goes to the tracking backends, cleaned of
        anything sensitive (`medscale.train.tracking`)."""
        self.run_dir = Path(run_dir)
        self.enabled = enabled
        self.jsonl_path = self.run_dir / "metrics.jsonl"
        self.csv_path = self.run_dir / "metrics.csv"
        self._extra: list[Any] = []
        if not enabled:
            return
        kept = []
        if keep_until_step is not None:
            kept = [r for r in read_records(self.jsonl_path) if r.get("step", 0) <= keep_until_step]
        self.jsonl_path.write_text("".join(json.dumps(r) + "\n" for r in kept))
        with open(self.csv_path, "w", newline="") as f:
            writer = csv.DictWriter(f, CSV_COLUMNS, extrasaction="ignore")
            writer.writeheader()
            for record in kept:
                writer.writerow(self._csv_row(record))
        for name in dict.fromkeys(backends):
            if name in ("csv", "jsonl"):
                continue
            backend = _open_backend(name, self.run_dir, config or {})
            if backend is not None:
                self._extra.append(backend)

    @staticmethod
    def _csv_row(record: dict[str, Any]) -> dict[str, Any]:
        return {k: (repr(v) if isinstance(v, float) else v) for k, v in record.items()}

    def write(self, record: dict[str, Any]) -> None:
        if not self.enabled:
            return
        clean = clean_json(record)
        with open(self.jsonl_path, "a") as f:
            f.write(json.dumps(clean) + "\n")
        with open(self.csv_path, "a", newline="") as f:
            csv.DictWriter(f, CSV_COLUMNS, extrasaction="ignore").writerow(self._csv_row(clean))
        numbers = {
            f"{record['kind']}/{k}": float(v)
            for k, v in clean.items()
            if isinstance(v, int | float) and not isinstance(v, bool) and k not in ("step",)
        }
        for backend in self._extra:
            backend.log(numbers, int(record["step"]))

    def close(self) -> None:
        for backend in self._extra:
            backend.close()
        self._extra = []


def _open_backend(name: str, run_dir: Path, config: dict[str, Any]) -> Any:
    from medscale.train.tracking import open_tracker

    try:
        return open_tracker(name, run_dir, config)
    except ImportError as exc:
        log.warning("log backend %r is not installed (%s); skipped", name, exc)
        return None
