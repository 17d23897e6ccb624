"""Subject-level splits, k-fold splits and nested data-fraction subsets, as versioned files.

A split file names recordings by ``dataset/recording_id`` and carries the store's content
hash: loading it against a store with other content fails, so a run never silently evaluates
on different data. Subjects are ``dataset/subject``: one subject's nights never straddle
subsets. Everything is a pure function of (store content, seed, arguments).
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from medscale import __version__
from medscale.errors import SpecError, SplitMismatchError
from medscale.store.store import Store

SPLIT_FORMAT = "medscale-split"
SPLIT_VERSION = 1
DEFAULT_FRACTIONS = (0.01, 0.1, 0.25, 0.5, 1.0)


@dataclass(frozen=True)
class Split:
    """Named subsets of recording keys, and nested fractions of the ``train`` subset."""

    kind: str
    seed: int
    store_content_hash: str
    subsets: dict[str, list[str]]
    fractions: dict[str, list[str]] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)

    def fraction(self, fraction: float) -> list[str]:
        """The training recordings of a data fraction (one written in the file)."""
        key = _fraction_key(fraction)
        if key not in self.fractions:
            raise SpecError(
                f"data fraction {fraction} is not in this split; it holds {list(self.fractions)}"
            )
        return self.fractions[key]

    def to_json(self) -> dict[str, Any]:
        return {
            "format": SPLIT_FORMAT,
            "version": SPLIT_VERSION,
            "created_by": f"medscale {__version__}",
            "kind": self.kind,
            "seed": self.seed,
            "store_content_hash": self.store_content_hash,
            "subsets": self.subsets,
            "fractions": self.fractions,
            "details": self.details,
        }


def _fraction_key(fraction: float) -> str:
    return f"{fraction:g}"


def _subjects(store: Store) -> tuple[list[str], dict[str, list[str]]]:
    by_subject: dict[str, list[str]] = defaultdict(list)
    for info in store.recordings():
        by_subject[f"{info.dataset}/{info.subject}"].append(info.key)
    if not by_subject:
        raise SpecError(f"{store.location}: the store holds no recordings to split")
    return sorted(by_subject), by_subject


def _shuffled(items: list[str], seed: int, salt: int) -> list[str]:
    rng = np.random.default_rng([seed, salt])
    return [items[k] for k in rng.permutation(len(items))]


def _nested(
    subjects: list[str], by_subject: dict[str, list[str]], seed: int, fractions: Sequence[float]
) -> dict[str, list[str]]:
    """Fraction f keeps the first ceil(f × n) subjects of one seeded order: nested by design."""
    order = _shuffled(sorted(subjects), seed, 1)
    out = {}
    for f in sorted(fractions):
        if not 0 < f <= 1:
            raise SpecError(f"data fraction {f} must be in (0, 1]")
        n = max(1, math.ceil(f * len(order))) if order else 0
        out[_fraction_key(f)] = sorted(k for s in order[:n] for k in by_subject[s])
    return out


def make_split(
    store: Store | str,
    *,
    val_fraction: float = 0.1,
    test_fraction: float = 0.1,
    seed: int = 0,
    fractions: Sequence[float] = DEFAULT_FRACTIONS,
) -> Split:
    """A subject-level train/val/test split (at least one subject in each non-empty subset)."""
    store = store if isinstance(store, Store) else Store(store, read_only=True)
    if val_fraction < 0 or test_fraction < 0 or val_fraction + test_fraction >= 1:
        raise SpecError(
            f"val_fraction ({val_fraction}) and test_fraction ({test_fraction}) must be >= 0 "
            "and sum to less than 1"
        )
    subjects, by_subject = _subjects(store)
    order = _shuffled(subjects, seed, 0)
    n = len(order)
    n_test = max(1, round(test_fraction * n)) if test_fraction > 0 else 0
    n_val = max(1, round(val_fraction * n)) if val_fraction > 0 else 0
    if n_test + n_val >= n:
        n_recordings = sum(len(v) for v in by_subject.values())
        raise SpecError(
            f"{store.location}: {n} subject(s) ({n_recordings} recording(s)) are too few for a "
            f"split with val_fraction={val_fraction} and test_fraction={test_fraction}: it puts "
            f"{n_val} subject(s) in val and {n_test} in test, so it needs at least "
            f"{n_test + n_val + 1} subjects (a subject's nights never straddle subsets). "
            "Ingest more subjects, or change the training config's `split` key: "
            "`split: {val_fraction: 0, val_subset: null}` trains without validation, "
            "`test_fraction: 0` keeps no test subjects, and `split: {file: SPLIT.json}` takes "
            "your own split (docs/training.md)"
        )
    parts = {
        "test": order[:n_test],
        "val": order[n_test : n_test + n_val],
        "train": order[n_test + n_val :],
    }
    subsets = {name: sorted(k for s in subs for k in by_subject[s]) for name, subs in parts.items()}
    return Split(
        kind="holdout",
        seed=seed,
        store_content_hash=store.content_hash(),
        subsets=subsets,
        fractions=_nested(parts["train"], by_subject, seed, fractions),
        details={
            "val_fraction": val_fraction,
            "test_fraction": test_fraction,
            "subjects": {k: len(v) for k, v in parts.items()},
        },
    )


def make_kfold_splits(
    store: Store | str,
    k: int,
    *,
    seed: int = 0,
    fractions: Sequence[float] = DEFAULT_FRACTIONS,
) -> list[Split]:
    """``k`` subject-level folds: fold ``i`` tests on a k-th of the subjects, trains on the rest."""
    store = store if isinstance(store, Store) else Store(store, read_only=True)
    subjects, by_subject = _subjects(store)
    if not 2 <= k <= len(subjects):
        n_recordings = sum(len(v) for v in by_subject.values())
        raise SpecError(
            f"{store.location}: k={k} subject-level folds need 2 <= k <= the number of subjects, "
            f"and the store holds {len(subjects)} subject(s) ({n_recordings} recording(s)). "
            f"Choose k between 2 and {len(subjects)} (a campaign spec's `design: {{kfold: {{k: "
            "...}}`, or `cross_validate(k=...)`; k=None is one fold per subject), or ingest "
            "more subjects"
        )
    order = _shuffled(subjects, seed, 0)
    folds = [order[i::k] for i in range(k)]
    digest = store.content_hash()
    out = []
    for i in range(k):
        train = [s for j, fold in enumerate(folds) if j != i for s in fold]
        out.append(
            Split(
                kind="kfold",
                seed=seed,
                store_content_hash=digest,
                subsets={
                    "train": sorted(r for s in train for r in by_subject[s]),
                    "test": sorted(r for s in folds[i] for r in by_subject[s]),
                },
                fractions=_nested(train, by_subject, seed, fractions),
                details={"fold": i, "k": k},
            )
        )
    return out


def write_split(split: Split, path: str | Path) -> Path:
    """Write a split file (JSON)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(split.to_json(), indent=1, sort_keys=True) + "\n")
    return path


def load_split(path: str | Path, store: Store | str | None = None) -> Split:
    """Read a split file; with ``store``, refuse it unless the store's content hash matches."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise SplitMismatchError(f"{path}: cannot read split file ({exc})") from exc
    if not isinstance(data, dict) or data.get("format") != SPLIT_FORMAT:
        raise SplitMismatchError(f"{path}: not a medscale split file (format {SPLIT_FORMAT!r})")
    if data.get("version") != SPLIT_VERSION:
        raise SplitMismatchError(
            f"{path}: split file version {data.get('version')!r}; this medscale reads "
            f"{SPLIT_VERSION}"
        )
    split = Split(
        kind=data["kind"],
        seed=data["seed"],
        store_content_hash=data["store_content_hash"],
        subsets={k: list(v) for k, v in data["subsets"].items()},
        fractions={k: list(v) for k, v in data.get("fractions", {}).items()},
        details=data.get("details", {}),
    )
    if store is not None:
        store = store if isinstance(store, Store) else Store(store, read_only=True)
        actual = store.content_hash()
        if actual != split.store_content_hash:
            raise SplitMismatchError(
                f"{path}: split was made for store content hash "
                f"{split.store_content_hash[:16]}..., but {store.location} has "
                f"{actual[:16]}...; the store changed since: make a new split"
            )
    return split
