"""``--launcher torchrun``: the ranks of this node under ``torch.distributed.run``.

One node: ``--standalone`` (torchrun picks a free port on 127.0.0.1). Several nodes: run the
same command on each node with its ``node_rank`` and the first node's ``host:port`` as the
c10d rendezvous endpoint (`medscale.launch.slurm` writes that for SLURM). Workers always get
``--resume``, so a restart after a rank died (``max_restarts``) continues from the last
checkpoint; whether the run folder may be started fresh is checked here, once, before.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from medscale.errors import RendezvousError
from medscale.launch.rendezvous import is_loopback

#: Elastic restarts in torch 2.13 hang or fail without it (pytorch issue #135712).
TORCHRUN_ENV = {"TORCH_DISABLE_SHARE_RDZV_TCP_STORE": "1"}


@dataclass(frozen=True)
class TorchrunPlan:
    """How many ranks, on how many nodes, meeting where."""

    nproc_per_node: int = 1
    nnodes: int = 1
    rdzv_endpoint: str | None = None  # host:port of the first node; None: standalone
    rdzv_id: str = "medscale"
    max_restarts: int = 0
    join_timeout_s: int = 60

    def check(self) -> None:
        if self.nproc_per_node < 1 or self.nnodes < 1:
            raise RendezvousError("--nproc and --nnodes must be at least 1")
        if self.nnodes > 1:
            if not self.rdzv_endpoint:
                raise RendezvousError(
                    f"{self.nnodes} nodes need --rdzv-endpoint HOST:PORT (the first node's "
                    "hostname), the same on every node"
                )
            host = self.rdzv_endpoint.rsplit(":", 1)[0]
            if is_loopback(host):
                raise RendezvousError(
                    f"--rdzv-endpoint {self.rdzv_endpoint}: a {self.nnodes}-node run cannot meet "
                    "on localhost (each node would wait for itself); give the first node's "
                    "hostname"
                )
            if "$" in self.rdzv_endpoint or "$" in self.rdzv_id:
                raise RendezvousError(
                    f"rendezvous {self.rdzv_endpoint!r} / id {self.rdzv_id!r} holds an "
                    "unexpanded shell variable (single quotes in the batch script?)"
                )


def torchrun_args(plan: TorchrunPlan, *, check: bool = True) -> list[str]:
    """The ``torch.distributed.run`` options for ``plan`` (without the program)."""
    if check:
        plan.check()
    args = [f"--nproc_per_node={plan.nproc_per_node}", f"--max_restarts={plan.max_restarts}"]
    if plan.nnodes == 1 and plan.rdzv_endpoint is None:
        return ["--standalone", *args]
    return [
        *args,
        f"--nnodes={plan.nnodes}",
        "--rdzv_backend=c10d",  # assigns node ranks itself
        f"--rdzv_endpoint={plan.rdzv_endpoint}",
        f"--rdzv_id={plan.rdzv_id}",
        f"--rdzv_conf=join_timeout={plan.join_timeout_s}",
    ]


def worker_args(
    config: str | Path,
    store: str,
    out_dir: str | Path,
    *,
    quiet: bool,
    max_steps: int | None = None,
) -> list[str]:
    args = ["-m", "medscale.launch.worker", str(config), "--store", str(store)]
    args += ["--out", str(out_dir), "--resume"]
    if max_steps is not None:
        args += ["--max-steps", str(max_steps)]
    return args + (["--quiet"] if quiet else [])


def torchrun_command(
    plan: TorchrunPlan,
    config: str | Path,
    store: str,
    out_dir: str | Path,
    *,
    python: str = sys.executable,
    quiet: bool = False,
    max_steps: int | None = None,
) -> list[str]:
    return [
        python,
        "-m",
        "torch.distributed.run",
        *torchrun_args(plan),
        *worker_args(config, store, out_dir, quiet=quiet, max_steps=max_steps),
    ]


def run_torchrun(
    plan: TorchrunPlan,
    config: str | Path,
    store: str,
    out_dir: str | Path,
    *,
    resume: bool = False,
    quiet: bool = False,
    max_steps: int | None = None,
) -> int:
    """Run the training under torchrun here; its exit status (0: every rank finished)."""
    from medscale.train.trainer import check_run_dir

    check_run_dir(Path(out_dir), resume)
    command = torchrun_command(plan, config, store, out_dir, quiet=quiet, max_steps=max_steps)
    env = {**os.environ, **TORCHRUN_ENV}
    return subprocess.run(command, env=env, check=False).returncode
