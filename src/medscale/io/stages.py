"""AASM stage codes and label maps.

Every vocabulary (Rechtschaffen & Kales, AASM spellings, integer codes) is normalised to
W, N1, N2, N3, REM or UNKNOWN through a label map. Label maps are data: YAML files in
``medscale/datasets/labelmaps/``, or inline in a dataset spec.
"""

from __future__ import annotations

from collections.abc import Mapping
from importlib import resources
from pathlib import Path

import numpy as np
import yaml

from medscale.errors import AnnotationReadError, SpecError

W, N1, N2, N3, REM = 0, 1, 2, 3, 4
UNKNOWN = -1
STAGE_NAMES: dict[int, str] = {W: "W", N1: "N1", N2: "N2", N3: "N3", REM: "REM", UNKNOWN: "UNKNOWN"}
STAGE_CODES: dict[str, int] = {name: code for code, name in STAGE_NAMES.items()}
SCORED_STAGES: tuple[int, ...] = (W, N1, N2, N3, REM)


def list_label_maps() -> list[str]:
    """Names of the label maps shipped with medscale."""
    folder = resources.files("medscale.datasets") / "labelmaps"
    return sorted(
        p.name.removesuffix(".yaml") for p in folder.iterdir() if p.name.endswith(".yaml")
    )


def load_label_map(name_or_mapping: str | Mapping[str, str]) -> dict[str, int]:
    """Return ``{source label: stage code}`` from a shipped map's name or an inline mapping.

    Keys are matched after stripping whitespace. Values must be AASM stage names.
    """
    if isinstance(name_or_mapping, str):
        known = list_label_maps()
        if name_or_mapping not in known:
            raise SpecError(f"unknown label map {name_or_mapping!r}; shipped maps are {known}")
        path = resources.files("medscale.datasets") / "labelmaps" / f"{name_or_mapping}.yaml"
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
        where = f"label map {name_or_mapping!r}"
    else:
        raw, where = dict(name_or_mapping), "inline label map"
    if not isinstance(raw, dict) or not raw:
        raise SpecError(f"{where}: expected a non-empty mapping of source label -> AASM stage")
    out: dict[str, int] = {}
    for key, value in raw.items():
        if str(value) not in STAGE_CODES:
            raise SpecError(
                f"{where}: label {key!r} maps to {value!r}; expected one of {list(STAGE_CODES)}"
            )
        out[str(key).strip()] = STAGE_CODES[str(value)]
    return out


def map_labels(labels: list[str], label_map: Mapping[str, int], source: Path | str) -> np.ndarray:
    """Map source labels to int8 stage codes; an unmapped label is an error naming it."""
    out = np.empty(len(labels), dtype=np.int8)
    cache: dict[str, int] = {}
    for i, label in enumerate(labels):
        key = label.strip()
        code = cache.get(key)
        if code is None:
            if key not in label_map:
                raise AnnotationReadError(
                    f"{source}: stage label {key!r} (epoch {i}) is not in the label map; "
                    f"known labels: {sorted(label_map)}"
                )
            code = cache[key] = label_map[key]
        out[i] = code
    return out
