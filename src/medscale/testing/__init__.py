"""Helpers that the tests and the benchmarks share (not part of the public API)."""

from __future__ import annotations

from pathlib import Path


def worker_pids(out_dir: Path) -> dict[int, int]:
    """rank -> pid of the local `medscale.launch.worker` processes training into ``out_dir``
    (read from /proc: their command lines and the RANK torchrun gave them)."""
    pids = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().split(b"\0")
            if b"medscale.launch.worker" not in cmdline or str(out_dir).encode() not in cmdline:
                continue
            if b"torch.distributed.run" in cmdline:
                continue
            items = (entry / "environ").read_bytes().split(b"\0")
            environ = dict(item.split(b"=", 1) for item in items if b"=" in item)
            pids[int(environ[b"RANK"])] = int(entry.name)
        except (OSError, KeyError, ValueError):
            continue
    return pids
