"""What another process or node loads a run's inputs from.

Shared by every launcher (`medscale.launch.train` and `medscale.launch.ray` both use it, so it
lives in neither of them, and they do not import each other for it).
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["config_reference", "store_reference"]


def config_reference(config: str | Path) -> str:
    """What another process (or node) loads the config from: a bundled name, or an
    absolute path."""
    path = Path(config)
    return str(path.resolve()) if path.is_file() else str(config)


def store_reference(store: str) -> str:
    """What another process (or node) opens the store from: a URL as is, else an absolute
    path."""
    return str(Path(store).resolve()) if "://" not in store else store
