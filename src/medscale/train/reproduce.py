"""`rerun`: repeat a finished run from its manifest and say whether it came out the same.

The rerun trains the manifest's resolved config on the same store content (checked by hash)
with the run's own copy of its split (``split.json``, checked by hash) into a new folder, then
compares the final weights (``checkpoints/last.pt``) and the metric records.

On the same configuration (device, CPU model, torch threads, CUDA devices, python, torch, numpy
and scipy versions, see `medscale.train.manifest.compute_fingerprint`) the comparison is
bitwise: every tensor equal, every metric value equal. Anywhere else floating-point results may
legitimately differ, so the comparison is within a tolerance and the result says so.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medscale.errors import MedscaleError, SpecError
from medscale.store.store import Store
from medscale.train.checkpoint import load_checkpoint
from medscale.train.config import TrainConfig
from medscale.train.manifest import MANIFEST_FORMAT, compute_fingerprint, file_sha256
from medscale.train.metrics_log import TIMING_COLUMNS, read_records


class RerunError(MedscaleError, ValueError):
    """A run cannot be repeated: unfinished, foreign manifest, or its data changed."""


@dataclass(frozen=True)
class RerunResult:
    """The outcome of `rerun`. ``mode`` is ``"bitwise"`` or ``"tolerance"``; ``why_tolerance``
    lists the configuration differences that made a bitwise comparison unfair."""

    original: Path
    rerun_dir: Path
    mode: str
    weights_match: bool
    metrics_match: bool
    max_weight_diff: float
    max_metric_diff: float
    why_tolerance: list[str] = field(default_factory=list)
    differences: list[str] = field(default_factory=list)

    @property
    def matched(self) -> bool:
        return self.weights_match and self.metrics_match

    def summary(self) -> str:
        verdict = "MATCH" if self.matched else "MISMATCH"
        lines = [
            f"{verdict} ({self.mode}): {self.original} vs {self.rerun_dir}",
            f"  weights: {'equal' if self.weights_match else 'differ'} "
            f"(max abs diff {self.max_weight_diff:.3g})",
            f"  metrics: {'equal' if self.metrics_match else 'differ'} "
            f"(max abs diff {self.max_metric_diff:.3g})",
        ]
        if self.why_tolerance:
            lines.append("  compared within a tolerance because: " + "; ".join(self.why_tolerance))
        lines += [f"  {d}" for d in self.differences[:10]]
        return "\n".join(lines)


def _read_manifest(run_dir: Path) -> dict[str, Any]:
    path = run_dir / "manifest.json"
    try:
        manifest = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise RerunError(f"{path}: cannot read the run manifest ({exc})") from None
    if manifest.get("format") != MANIFEST_FORMAT:
        raise RerunError(f"{path}: not a medscale run manifest")
    return manifest


def _default_out(run_dir: Path) -> Path:
    for n in range(1, 1000):
        candidate = run_dir.with_name(f"{run_dir.name}-rerun{n if n > 1 else ''}")
        if not candidate.exists():
            return candidate
    raise RerunError(f"{run_dir}: too many rerun folders beside it; pass out_dir")


def compare_weights(
    a: dict[str, Any], b: dict[str, Any], *, bitwise: bool, rtol: float, atol: float
) -> tuple[bool, float, list[str]]:
    import torch

    differences = []
    if set(a) != set(b):
        return False, math.inf, [f"tensor names differ: {sorted(set(a) ^ set(b))[:5]}"]
    worst = 0.0
    for name in sorted(a):
        x, y = a[name], b[name]
        if x.shape != y.shape or x.dtype != y.dtype:
            differences.append(f"{name}: shape/dtype {x.shape}/{x.dtype} vs {y.shape}/{y.dtype}")
            worst = math.inf
            continue
        if torch.equal(x, y):
            continue
        diff = float((x.double() - y.double()).abs().max()) if x.numel() else 0.0
        worst = max(worst, diff)
        close = x.is_floating_point() and torch.allclose(x, y, rtol=rtol, atol=atol)
        if bitwise or not close:
            differences.append(f"{name}: max abs diff {diff:.3g}")
    return not differences, worst, differences


def compare_records(
    a: list[dict[str, Any]], b: list[dict[str, Any]], *, bitwise: bool, rtol: float, atol: float
) -> tuple[bool, float, list[str]]:
    if len(a) != len(b):
        return False, math.inf, [f"metric records: {len(a)} vs {len(b)}"]
    differences, worst = [], 0.0
    for ra, rb in zip(a, b, strict=True):
        for key in sorted(set(ra) | set(rb)):
            if key in TIMING_COLUMNS:
                continue
            va, vb = ra.get(key), rb.get(key)
            if isinstance(va, dict) and isinstance(vb, dict):
                pairs = [(f"{key}.{k}", va.get(k), vb.get(k)) for k in sorted(set(va) | set(vb))]
            else:
                pairs = [(key, va, vb)]
            for name, x, y in pairs:
                if x == y:
                    continue
                numeric = all(isinstance(v, int | float) for v in (x, y))
                diff = abs(x - y) if numeric else math.inf
                worst = max(worst, diff)
                if bitwise or not numeric or diff > atol + rtol * abs(y):
                    differences.append(f"step {ra.get('step')} {ra.get('kind')} {name}: {x} vs {y}")
    return not differences, worst, differences


def rerun(
    run_dir: str | Path,
    *,
    out_dir: str | Path | None = None,
    store: Store | str | None = None,
    progress: bool = False,
    rtol: float = 1e-3,
    atol: float = 1e-4,
) -> RerunResult:
    """Repeat the finished run in ``run_dir`` into ``out_dir`` (default: ``<run_dir>-rerun``)
    and compare. ``store`` overrides the manifest's store location (its content must match)."""
    from medscale.train.trainer import train

    run_dir = Path(run_dir)
    manifest = _read_manifest(run_dir)
    result_path = run_dir / "result.json"
    if not result_path.is_file() or not json.loads(result_path.read_text()).get("finished"):
        raise RerunError(f"{run_dir}: the run has not finished (resume it first)")
    split_copy = run_dir / manifest["split"]["copy"]
    if not split_copy.is_file() or file_sha256(split_copy) != manifest["split"]["sha256"]:
        raise RerunError(f"{split_copy}: missing, or not the split file the run used (hash)")
    config = TrainConfig.from_dict(manifest["config"], f"{run_dir / 'manifest.json'}: config")
    config = config.model_copy(
        update={"split": config.split.model_copy(update={"file": str(split_copy.resolve())})}
    )
    store = store if store is not None else manifest["store"]["location"]
    store = store if isinstance(store, Store) else Store(store, read_only=True)
    if store.content_hash() != manifest["store"]["content_hash"]:
        raise RerunError(
            f"{store.location}: store content differs from the run's (content hash); "
            "the run cannot be repeated on it"
        )
    out = Path(out_dir) if out_dir is not None else _default_out(run_dir)
    if out.resolve() == run_dir.resolve():
        raise SpecError("rerun: out_dir must differ from the run being repeated")
    train(config, store, out, progress=progress)

    new_manifest = _read_manifest(out)
    old_fp, new_fp = compute_fingerprint(manifest), compute_fingerprint(new_manifest)
    why = [f"{k}: {old_fp[k]!r} then, {new_fp[k]!r} now" for k in old_fp if old_fp[k] != new_fp[k]]
    if manifest["config"].get("deterministic") is False:
        why.append("the run was not deterministic (deterministic: false)")
    if new_fp["device"] != "cpu":
        why.append(f"device {new_fp['device']}: GPU kernels are compared within a tolerance")
    bitwise = not why
    a = load_checkpoint(run_dir / "checkpoints" / "last.pt")["model"]
    b = load_checkpoint(out / "checkpoints" / "last.pt")["model"]
    w_ok, w_diff, w_list = compare_weights(a, b, bitwise=bitwise, rtol=rtol, atol=atol)
    m_ok, m_diff, m_list = compare_records(
        read_records(run_dir / "metrics.jsonl"),
        read_records(out / "metrics.jsonl"),
        bitwise=bitwise,
        rtol=rtol,
        atol=atol,
    )
    return RerunResult(
        original=run_dir,
        rerun_dir=out,
        mode="bitwise" if bitwise else "tolerance",
        weights_match=w_ok,
        metrics_match=m_ok,
        max_weight_diff=w_diff,
        max_metric_diff=m_diff,
        why_tolerance=why,
        differences=w_list + m_list,
    )
