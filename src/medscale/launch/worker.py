"""One rank of a training run: ``python -m medscale.launch.worker CONFIG --store S --out R``.

Every launcher (torchrun, srun, Ray) starts this, or calls `run_rank`, in each process. It
reads its place from the environment (`medscale.launch.rendezvous`), refuses a broken
rendezvous before waiting on the network, joins the process group and calls the one
`medscale.train.train`. Exit status: 0 finished, 3 stopped by SIGTERM with a checkpoint
written (resume to continue), 1 failed, 2 bad input.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from medscale.errors import MedscaleError
from medscale.launch.rendezvous import (
    RankEnv,
    default_backend,
    init_distributed,
    preflight,
    read_rank_env,
)

log = logging.getLogger(__name__)

EXIT_CHECKPOINTED = 3


def run_rank(
    config_path: str | Path,
    store: str,
    out_dir: str | Path,
    *,
    resume: bool = False,
    progress: bool = True,
    info: RankEnv | None = None,
    max_steps: int | None = None,
):
    """Train as the rank ``info`` describes (default: from the environment); returns the
    `medscale.train.TrainResult`. Initialises ``torch.distributed`` unless it already is
    (Ray Train does it itself)."""
    import torch.distributed as dist

    from medscale.train import TrainConfig, train
    from medscale.train.trainer import _device

    config = TrainConfig.load(config_path)
    if max_steps is not None:
        config = TrainConfig.from_dict(config.to_dict() | {"max_steps": max_steps})
    if dist.is_available() and dist.is_initialized():
        rank, world_size = dist.get_rank(), dist.get_world_size()
    else:
        info = info or read_rank_env()
        preflight(info)
        rank, world_size = info.rank, info.world_size
        if info.distributed:
            backend = config.distributed.backend
            if backend == "auto":
                backend = default_backend(_device(config).type)
            init_distributed(
                info,
                backend=backend,
                timeout_s=config.distributed.timeout_s,
                rendezvous_timeout_s=config.distributed.rendezvous_timeout_s,
            )
    try:
        result = train(
            config,
            store,
            out_dir,
            resume=resume,
            progress=progress and rank == 0,
            rank=rank,
            world_size=world_size,
        )
        if world_size > 1:  # no rank exits (and gets its node's step killed) before rank 0
            dist.barrier()  # has written the checkpoint and result.json
        return result
    except RuntimeError as exc:
        if world_size > 1 and not isinstance(exc, MedscaleError):
            raise RuntimeError(
                f"rank {rank}/{world_size}: a collective failed ({exc}). A peer rank died or "
                f"hangs; this rank's stack is in {Path(out_dir) / 'stacks'}"
            ) from exc
        raise


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m medscale.launch.worker")
    parser.add_argument("config")
    parser.add_argument("--store", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--max-steps", type=int)
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    import torch.distributed as dist

    try:
        result = run_rank(
            args.config,
            args.store,
            args.out,
            resume=args.resume,
            progress=not args.quiet,
            max_steps=args.max_steps,
        )
    except MedscaleError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    finally:
        if dist.is_available() and dist.is_initialized():
            dist.destroy_process_group()
    if result.finished:
        return 0
    print(f"stopped by {result.stopped} at step {result.step}; checkpoint saved", file=sys.stderr)
    return EXIT_CHECKPOINTED


if __name__ == "__main__":
    sys.exit(main())
