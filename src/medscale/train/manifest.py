"""What a run directory records about where and how it ran: `manifest.json`.

The manifest holds the resolved config and its hash, the seed, the git commit of the medscale
source (and whether it had uncommitted changes), package versions, the hardware, the store's
content hash and the split file's hash: enough for `medscale.train.rerun` to repeat the run
and to say whether a bitwise comparison is fair.
"""

from __future__ import annotations

import hashlib
import os
import platform
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import Any

from medscale.atomic import write_json_atomic

MANIFEST_FORMAT = "medscale-run"
MANIFEST_VERSION = 1
_PACKAGES = ("medscale", "torch", "numpy", "scipy", "pydantic", "zarr", "numcodecs", "tqdm")


def write_json(data: Any, path: str | Path) -> Path:
    """Write JSON atomically (`medscale.atomic`)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_json_atomic(path, data, indent=1, sort_keys=True)


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def weights_sha256(model_state: dict[str, Any]) -> str:
    """sha256 over the tensors' names, dtypes, shapes and bytes, in name order."""
    import torch

    h = hashlib.sha256()
    for name in sorted(model_state):
        t = model_state[name].detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}\n".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def git_info(path: str | Path | None = None) -> dict[str, Any] | None:
    """Commit and dirty flag of the git checkout holding ``path`` (the medscale source by
    default); None when it is not in a checkout or git is missing. ``dirty`` counts changes
    to tracked files; ``untracked`` says whether untracked files exist."""
    if path is None:
        import medscale

        path = Path(medscale.__file__).resolve().parent

    def git(*args: str) -> str:
        out = subprocess.run(
            ["git", "-C", str(path), *args], capture_output=True, text=True, timeout=20
        )
        if out.returncode != 0:
            raise OSError(out.stderr.strip())
        return out.stdout.strip()

    try:
        root = git("rev-parse", "--show-toplevel")
        commit = git("rev-parse", "HEAD")
        tracked = git("status", "--porcelain", "--untracked-files=no")
        untracked = git("status", "--porcelain", "--untracked-files=normal")
    except (OSError, subprocess.SubprocessError):
        return None
    return {
        "root": root,
        "commit": commit,
        "dirty": bool(tracked),
        "untracked": any(line.startswith("??") for line in untracked.splitlines()),
    }


def package_versions() -> dict[str, str | None]:
    versions: dict[str, str | None] = {"python": platform.python_version()}
    for name in _PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def hardware_info() -> dict[str, Any]:
    import torch

    cuda = []
    if torch.cuda.is_available():
        cuda = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    return {
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_model": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "affinity_cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "torch_threads": torch.get_num_threads(),
        "cuda_devices": cuda,
        "cuda_version": torch.version.cuda,
        "cudnn_version": torch.backends.cudnn.version() if torch.cuda.is_available() else None,
    }


def compute_fingerprint(manifest: dict[str, Any]) -> dict[str, Any]:
    """The parts of a manifest that must agree for two runs to be expected bitwise equal."""
    hw, versions = manifest["hardware"], manifest["versions"]
    return {
        "device": manifest["device"],
        "cpu_model": hw["cpu_model"],
        "torch_threads": hw["torch_threads"],
        "cuda_devices": hw["cuda_devices"],
        "python": versions["python"],
        "torch": versions["torch"],
        "numpy": versions["numpy"],
        "scipy": versions["scipy"],
    }


def build_manifest(
    *,
    config: dict[str, Any],
    config_hash: str,
    seed: int,
    device: str,
    store: dict[str, Any],
    split: dict[str, Any],
    run: dict[str, Any],
) -> dict[str, Any]:
    return {
        "format": MANIFEST_FORMAT,
        "version": MANIFEST_VERSION,
        "created_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "command": sys.argv,
        "seed": seed,
        "config": config,
        "config_hash": config_hash,
        "device": device,
        "git": git_info(),
        "versions": package_versions(),
        "hardware": hardware_info(),
        "store": store,
        "split": split,
        "run": run,
    }
