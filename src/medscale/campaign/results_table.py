"""A campaign's results table as CSV: one row per trial key, ``metrics`` and ``params``
spread into ``metrics.<name>`` / ``params.<name>`` columns."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["BASE_COLUMNS", "flatten_row", "results_csv", "unique_rows"]

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


def _csv_cell(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, (Mapping, list, tuple)):
        return json.dumps(value, sort_keys=True, default=str)
    return str(value)


def flatten_row(row: Mapping[str, Any]) -> dict[str, Any]:
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


def results_csv(rows: Sequence[Mapping[str, Any]]) -> bytes:
    flat = [flatten_row(r) for r in rows]
    columns = _columns(flat)
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(columns)
    for row in flat:
        writer.writerow([_csv_cell(row.get(c)) for c in columns])
    return buf.getvalue().encode("utf-8")


def unique_rows(rows: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """One row per key: a later row replaces an earlier one, at the earlier one's place."""
    by_key: dict[str, Mapping[str, Any]] = {}
    for i, row in enumerate(rows):
        key = row.get("key")
        if key is None:
            raise ValueError(f"results row {i} has no 'key'")
        by_key[str(key)] = row
    return list(by_key.values())
