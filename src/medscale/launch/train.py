"""`launch_training`: one training run, started where ``launcher`` says.

``local`` with one process trains in this process; ``local`` with ``nproc > 1`` and
``torchrun`` start ``torch.distributed.run`` here; ``slurm`` writes and submits a batch script
(``dry_run``: returns it unsubmitted); ``ray`` runs the ranks under Ray Train. All of them end
in the same `medscale.train.train`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from medscale.errors import SpecError
from medscale.launch.references import config_reference, store_reference
from medscale.train.config import TrainConfig

Launcher = Literal["local", "torchrun", "slurm", "ray"]
LAUNCHERS: tuple[str, ...] = ("local", "torchrun", "slurm", "ray")


@dataclass
class LaunchOutcome:
    """What a launch did: an exit status, or a submitted job, or a script (dry run)."""

    launcher: str
    exit_code: int = 0
    result: dict[str, Any] | None = None  # the run's result.json, when it ran here
    job_id: str | None = None
    script: str | None = None
    script_path: Path | None = None
    notes: list[str] = field(default_factory=list)


def _read_result(out_dir: Path) -> dict[str, Any] | None:
    path = out_dir / "result.json"
    return json.loads(path.read_text()) if path.is_file() else None


def launch_training(
    config: str | Path,
    store: str,
    out_dir: str | Path,
    *,
    launcher: Launcher = "local",
    nproc: int = 1,
    nnodes: int = 1,
    rdzv_endpoint: str | None = None,
    max_restarts: int = 0,
    resume: bool = False,
    max_steps: int | None = None,
    dry_run: bool = False,
    ray_address: str | None = None,
    progress: bool = True,
) -> LaunchOutcome:
    """Train ``config`` on ``store`` into ``out_dir`` with ``launcher`` (see the module)."""
    if launcher not in LAUNCHERS:
        raise SpecError(f"launcher {launcher!r}: expected one of {', '.join(LAUNCHERS)}")
    out_dir = Path(out_dir).resolve()
    train_config = TrainConfig.load(config)
    if max_steps is not None:
        train_config = TrainConfig.from_dict(train_config.to_dict() | {"max_steps": max_steps})
    config_ref, store_ref = config_reference(config), store_reference(store)

    if launcher == "local" and nproc == 1 and nnodes == 1:
        from medscale.train import train

        result = train(train_config, store, out_dir, resume=resume, progress=progress)
        return LaunchOutcome(launcher, 0 if result.finished else 3, _read_result(out_dir))

    if launcher in ("local", "torchrun"):
        from medscale.launch.torchrun import TorchrunPlan, run_torchrun

        plan = TorchrunPlan(
            nproc_per_node=nproc,
            nnodes=nnodes,
            rdzv_endpoint=rdzv_endpoint,
            rdzv_id=out_dir.name,
            max_restarts=max_restarts,
        )
        code = run_torchrun(
            plan,
            config_ref,
            store_ref,
            out_dir,
            resume=resume,
            quiet=not progress,
            max_steps=max_steps,
        )
        result = _read_result(out_dir)
        if code != 0 and result is not None and not result["finished"]:
            code = 3  # stopped by a signal with a checkpoint written
        return LaunchOutcome(launcher, code, result)

    if launcher == "slurm":
        from medscale.launch.slurm import submit, train_script
        from medscale.train.trainer import check_run_dir

        slurm = train_config.slurm
        updates: dict[str, Any] = {}
        if nnodes != 1:
            updates["nodes"] = nnodes
        if nproc != 1:
            updates["procs_per_node"] = nproc
        slurm = slurm.model_copy(update=updates)
        script = train_script(slurm, config_ref, store_ref, out_dir, max_steps=max_steps)
        script_path = out_dir / "train.sbatch"
        if dry_run:
            return LaunchOutcome(launcher, script=script, script_path=script_path)
        check_run_dir(out_dir, resume)
        job_id = submit(script, script_path)
        return LaunchOutcome(launcher, job_id=job_id, script=script, script_path=script_path)

    from medscale.launch.ray import train_on_ray

    ray_config = train_config.ray
    if ray_address is not None:
        ray_config = ray_config.model_copy(update={"address": ray_address})
    if nproc != 1:
        ray_config = ray_config.model_copy(update={"num_workers": nproc})
    summary = train_on_ray(
        config_ref,
        store_ref,
        out_dir,
        resume=resume,
        ray_config=ray_config,
        max_steps=max_steps,
        progress=progress,
    )
    code = 0 if summary["finished"] else 3  # not finished: stopped with a checkpoint
    return LaunchOutcome(launcher, code, _read_result(out_dir))
