"""Subject-level splits, folds and nested data fractions, tied to the store's content."""

from __future__ import annotations

import json
import shutil

import pytest

from medscale.data import (
    SplitMismatchError,
    TrainWindows,
    load_split,
    make_kfold_splits,
    make_split,
    write_split,
)
from medscale.store import Store


def _subject(store: Store, key: str) -> str:
    info = store.recording(*key.split("/", 1))
    return f"{info.dataset}/{info.subject}"


def test_holdout_split_is_subject_level_complete_and_seeded(serving_store):
    store = Store(serving_store)
    split = make_split(store, val_fraction=0.2, test_fraction=0.2, seed=4)
    parts = split.subsets
    assert sorted(k for v in parts.values() for k in v) == sorted(i.key for i in store.recordings())
    subjects = {name: {_subject(store, k) for k in keys} for name, keys in parts.items()}
    assert not subjects["train"] & subjects["test"] and not subjects["train"] & subjects["val"]
    assert make_split(store, val_fraction=0.2, test_fraction=0.2, seed=4) == split


def test_kfold_tests_each_subject_once(serving_store):
    folds = make_kfold_splits(serving_store, 3, seed=1)
    tested = [k for f in folds for k in f.subsets["test"]]
    assert sorted(tested) == sorted(i.key for i in Store(serving_store).recordings())
    for fold in folds:
        assert not set(fold.subsets["train"]) & set(fold.subsets["test"])


def test_data_fractions_are_nested(serving_store):
    split = make_split(serving_store, val_fraction=0.0, test_fraction=0.2, fractions=(0.2, 0.5, 1))
    small, half, full = split.fraction(0.2), split.fraction(0.5), split.fraction(1.0)
    assert 0 < len(small) <= len(half) <= len(full)
    assert set(small) <= set(half) <= set(full) == set(split.subsets["train"])


def test_split_file_round_trips_and_feeds_a_loader(serving_store, tmp_path):
    split = make_split(serving_store, seed=2)
    path = write_split(split, tmp_path / "split.json")
    again = load_split(path, serving_store)
    assert again == split
    dataset = TrainWindows(serving_store, recordings=again.subsets["train"])
    assert {dataset.index.key(r) for r in range(len(dataset.index))} == set(split.subsets["train"])


def test_split_for_other_store_content_is_refused(serving_store, tmp_path):
    path = write_split(make_split(serving_store), tmp_path / "split.json")
    changed = tmp_path / "store"
    shutil.copytree(serving_store, changed)
    commit = changed / "commits" / "synthetic" / "synth-000.json"
    record = json.loads(commit.read_text())
    record["content_hash"] = "0" * 64
    commit.write_text(json.dumps(record))
    with pytest.raises(SplitMismatchError, match="store content hash"):
        load_split(path, changed)


def test_foreign_file_is_not_a_split(tmp_path):
    path = tmp_path / "x.json"
    path.write_text("{}")
    with pytest.raises(SplitMismatchError, match="not a medscale split file"):
        load_split(path)
