"""`migrate_store`: bring a layout-1 (sleep-only) store to layout 2 in place.

Layout 1 held ``hypnogram`` and ``stage_epochs`` per recording and a sleep-shaped commit
record (``epoch_length_s``, ``n_epochs``, ``stage_counts``, ``stage_offsets``). Layout 2 names
the same bytes ``segment_labels`` and ``class_segments``, records each array's dimensions, and
stores the task (``sleep_staging``) in the root attributes. No sample is rewritten: arrays are
renamed, metadata files are rewritten, so content hashes stay the same.

Resumable: each recording's arrays are renamed first (a step that is skipped when done), then
its commit record is replaced atomically; the root's version changes last. Until then every
reader refuses the store as layout 1, so nobody reads a half-migrated store. Run it again
after a crash and it finishes the rest.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import fsspec
import numpy as np

from medscale import __version__
from medscale.errors import StoreError, StoreVersionError
from medscale.store.layout import ARRAY_DIMS, LAYOUT_VERSION, STORE_ATTRIBUTE
from medscale.store.store import _is_url, replace_file
from medscale.tasks import SLEEP_STAGING

_RENAMED = {"hypnogram": "segment_labels", "stage_epochs": "class_segments"}


@dataclass(frozen=True)
class MigrationReport:
    location: str
    from_version: int
    migrated: int  # commit records rewritten by this run
    already: int  # commit records an earlier, interrupted run had rewritten

    def to_text(self) -> str:
        if self.from_version == LAYOUT_VERSION:
            return f"{self.location}: already layout v{LAYOUT_VERSION}, nothing to do"
        return (
            f"{self.location}: layout v{self.from_version} -> v{LAYOUT_VERSION}, "
            f"{self.migrated} recording(s) migrated"
            + (f", {self.already} done by an earlier run" if self.already else "")
        )


def _read_json(fs: fsspec.AbstractFileSystem, path: str) -> dict[str, Any]:
    try:
        return json.loads(fs.cat_file(path))
    except (OSError, ValueError) as exc:
        raise StoreError(f"{path}: cannot read ({exc})") from None


def _write_json(fs: fsspec.AbstractFileSystem, path: str, data: dict, atomic_put: bool) -> None:
    replace_file(
        fs, path, json.dumps(data, indent=1, sort_keys=True).encode(), atomic_put=atomic_put
    )


def _migrate_recording(
    fs: fsspec.AbstractFileSystem, root: str, commit: dict[str, Any], atomic_put: bool
) -> dict[str, Any]:
    """Rename and describe one recording's arrays; return its layout-2 commit record."""
    group = f"{root}/recordings/{commit['dataset']}/{commit['recording_id']}"
    for old, new in _RENAMED.items():
        src, dst = f"{group}/{old}", f"{group}/{new}"
        if fs.exists(src):
            if fs.exists(dst):  # an object-store copy cut short: the old array is still whole
                fs.rm(dst, recursive=True)
            fs.mv(src, dst, recursive=True)
    arrays = {}
    for name in ("signals", "segment_labels", "class_segments"):
        meta_path = f"{group}/{name}/zarr.json"
        if not fs.isfile(meta_path):
            raise StoreError(
                f"{meta_path} is missing: {commit['dataset']}/{commit['recording_id']} is "
                "committed but incomplete; re-ingest it"
            )
        meta = _read_json(fs, meta_path)
        if meta.get("dimension_names") != list(ARRAY_DIMS[name]):
            meta["dimension_names"] = list(ARRAY_DIMS[name])
            _write_json(fs, meta_path, meta, atomic_put)
        arrays[name] = {
            "dims": list(ARRAY_DIMS[name]),
            "shape": meta["shape"],
            "dtype": np.dtype(meta["data_type"]).str,
        }
    out = {k: v for k, v in commit.items() if k not in _OLD_FIELDS}
    out |= {
        "arrays": arrays,
        "segment_s": commit["epoch_length_s"],
        "n_segments": commit["n_epochs"],
        "spacing": None,
        "class_counts": commit["stage_counts"],
        "class_offsets": commit["stage_offsets"],
    }
    return out


_OLD_FIELDS = ("epoch_length_s", "n_epochs", "stage_counts", "stage_offsets")


def migrate_store(location: str | Path) -> MigrationReport:
    """Migrate the store at ``location`` to the current layout, in place (see module doc)."""
    location = str(location)
    fs, root = fsspec.core.url_to_fs(location)
    root_meta_path = f"{root}/zarr.json"
    if not fs.isfile(root_meta_path):
        raise StoreError(f"{location} is not a medscale store (no zarr.json)")
    root_meta = _read_json(fs, root_meta_path)
    attrs = root_meta.get("attributes", {}).get(STORE_ATTRIBUTE)
    if not isinstance(attrs, dict):
        raise StoreError(f"{location} is not a medscale store (no '{STORE_ATTRIBUTE}' attributes)")
    version = attrs.get("layout_version")
    if version == LAYOUT_VERSION:
        return MigrationReport(location, version, 0, 0)
    if version != 1:
        raise StoreVersionError(
            f"{location}: layout version {version!r} cannot be migrated by medscale "
            f"{__version__} (it migrates version 1 to {LAYOUT_VERSION})"
        )
    atomic_put = _is_url(location)
    migrated = already = 0
    commits = f"{root}/commits"
    paths = sorted(fs.glob(f"{commits}/*/*.json")) if fs.exists(commits) else []
    for path in paths:
        commit = _read_json(fs, path)
        if "arrays" in commit:
            already += 1
            continue
        _write_json(fs, path, _migrate_recording(fs, root, commit, atomic_put), atomic_put)
        migrated += 1
    attrs = attrs | {
        "layout_version": LAYOUT_VERSION,
        "task": SLEEP_STAGING.to_json(),
        "migrated_by": f"medscale {__version__} from layout 1",
    }
    root_meta["attributes"][STORE_ATTRIBUTE] = attrs
    _write_json(fs, root_meta_path, root_meta, atomic_put)
    return MigrationReport(location, 1, migrated, already)
