"""Atomic file writes: a reader sees the old file or the whole new one, never half of it,
and a crash (even of the machine) never leaves a truncated file under the final name.

The data go to a temporary file in the same folder (a rename is atomic only within one file
system), are flushed and fsynced, the temporary file is renamed over the target with
`os.replace`, and the folder is fsynced so that the rename itself survives a power cut. On any
error the temporary file is removed and the target is left as it was. Temporary names are
``.<name>.<random>.partial``: hidden, unique per writer, and easy to recognise.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

__all__ = ["atomic_open", "write_bytes_atomic", "write_json_atomic", "write_text_atomic"]


@contextlib.contextmanager
def atomic_open(
    path: str | os.PathLike[str], mode: str = "wb", **open_kwargs: Any
) -> Iterator[IO[Any]]:
    """Open a temporary file to write ``path`` through; it replaces ``path`` when the
    ``with`` block ends without an error (see the module docstring).

    ``mode`` is ``"wb"`` or ``"w"``; ``open_kwargs`` go to `open` (``encoding``,
    ``newline``). The target's folder must exist. The file gets the permissions a plain
    `open` would give it (the process umask applies)."""
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_open writes a whole new file: mode 'w' or 'wb', not {mode!r}")
    path = Path(path)
    partial = path.with_name(f".{path.name}.{uuid.uuid4().hex}.partial")
    try:
        with open(partial, mode.replace("w", "x"), **open_kwargs) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)
    _fsync_folder(path.parent)


def write_bytes_atomic(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically; returns ``path``."""
    with atomic_open(path, "wb") as f:
        f.write(data)
    return Path(path)


def write_text_atomic(path: str | os.PathLike[str], text: str, encoding: str = "utf-8") -> Path:
    """Write ``text`` to ``path`` atomically; returns ``path``."""
    return write_bytes_atomic(path, text.encode(encoding))


def write_json_atomic(path: str | os.PathLike[str], data: Any, **dumps_kwargs: Any) -> Path:
    """Write ``data`` as JSON (``json.dumps(data, **dumps_kwargs)`` and a newline) to ``path``
    atomically; returns ``path``."""
    return write_text_atomic(path, json.dumps(data, **dumps_kwargs) + "\n")


def _fsync_folder(folder: Path) -> None:
    """Make a rename in ``folder`` durable. Some file systems (and Windows) cannot open or
    fsync a folder: there the rename is as durable as the system allows."""
    try:
        fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError as exc:
        if exc.errno not in (errno.EINVAL, errno.ENOTSUP, errno.EBADF):
            raise
    finally:
        os.close(fd)
