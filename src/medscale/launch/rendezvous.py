"""Where a rank is and whom it meets: read from the launcher's environment, checked before
anything waits on the network, then ``torch.distributed`` initialised with short timeouts.

torchrun sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``LOCAL_WORLD_SIZE``, ``GROUP_RANK``,
``GROUP_WORLD_SIZE``, ``MASTER_ADDR`` and ``MASTER_PORT``; a plain ``srun`` (one task per rank)
sets ``SLURM_PROCID``, ``SLURM_NTASKS``, ``SLURM_LOCALID``, ``SLURM_NODEID`` and
``SLURM_NNODES``, and the batch script sets ``MASTER_ADDR``/``MASTER_PORT``. The usual ways
these go wrong (localhost as the address of a multi-node run, the node id used as the rank,
``$SLURM_JOB_ID`` left unexpanded in single quotes) are refused by `preflight` with a message
that says how to fix them, instead of hanging until a timeout.
"""

from __future__ import annotations

import ipaddress
import os
import socket
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta

from medscale.errors import RendezvousError

LOOPBACK_NAMES = {"localhost", "localhost.localdomain", "ip6-localhost"}


@dataclass(frozen=True)
class RankEnv:
    """One rank's place in the run, as its launcher described it."""

    rank: int
    world_size: int
    local_rank: int
    local_world_size: int
    node_rank: int
    nnodes: int
    master_addr: str
    master_port: int
    launcher: str  # "torchrun", "slurm" (srun, one task per rank) or "single"
    run_id: str | None = None

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def _int(env: Mapping[str, str], name: str, default: int | None = None) -> int:
    value = env.get(name)
    if value is None:
        if default is None:
            raise RendezvousError(f"environment variable {name} is not set")
        return default
    try:
        return int(value)
    except ValueError:
        raise RendezvousError(f"environment variable {name}={value!r} is not an integer") from None


def read_rank_env(env: Mapping[str, str] | None = None) -> RankEnv:
    """This process's `RankEnv` from torchrun's or SLURM's variables (neither: one rank)."""
    env = os.environ if env is None else env
    addr = env.get("MASTER_ADDR", "127.0.0.1")
    if "RANK" in env and "WORLD_SIZE" in env:
        world = _int(env, "WORLD_SIZE")
        local_world = _int(env, "LOCAL_WORLD_SIZE", world)
        return RankEnv(
            rank=_int(env, "RANK"),
            world_size=world,
            local_rank=_int(env, "LOCAL_RANK", 0),
            local_world_size=local_world,
            node_rank=_int(env, "GROUP_RANK", 0),
            nnodes=_int(env, "GROUP_WORLD_SIZE", max(1, world // max(1, local_world))),
            master_addr=addr,
            master_port=_int(env, "MASTER_PORT", 29500),
            launcher="torchrun" if "TORCHELASTIC_RUN_ID" in env else "env",
            run_id=env.get("TORCHELASTIC_RUN_ID"),
        )
    if "SLURM_PROCID" in env and "SLURM_NTASKS" in env:
        world = _int(env, "SLURM_NTASKS")
        nnodes = _int(env, "SLURM_NNODES", 1)
        return RankEnv(
            rank=_int(env, "SLURM_PROCID"),
            world_size=world,
            local_rank=_int(env, "SLURM_LOCALID", 0),
            local_world_size=max(1, world // nnodes),
            node_rank=_int(env, "SLURM_NODEID", 0),
            nnodes=nnodes,
            master_addr=addr,
            master_port=_int(env, "MASTER_PORT", 29500),
            launcher="slurm",
            run_id=env.get("SLURM_JOB_ID"),
        )
    return RankEnv(0, 1, 0, 1, 0, 1, addr, _int(env, "MASTER_PORT", 29500), "single")


def is_loopback(host: str) -> bool:
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def preflight(info: RankEnv, env: Mapping[str, str] | None = None) -> None:
    """Refuse a rendezvous that cannot work, before anything waits on the network."""
    env = os.environ if env is None else env
    where = f"rank {info.rank} ({info.launcher})"
    for name, value in (("MASTER_ADDR", info.master_addr), ("run id", info.run_id or "")):
        if "$" in value:
            raise RendezvousError(
                f"{where}: {name} is {value!r}, an unexpanded shell variable. In the batch "
                'script use double quotes ("$SLURM_JOB_ID"), not single quotes'
            )
    if info.world_size < 1 or not 0 <= info.rank < info.world_size:
        raise RendezvousError(
            f"{where}: rank {info.rank} is outside 0..{info.world_size - 1} (world size "
            f"{info.world_size}); every rank must be given the same world size"
        )
    if not 0 <= info.local_rank < info.local_world_size:
        raise RendezvousError(
            f"{where}: local rank {info.local_rank} is outside 0..{info.local_world_size - 1}"
        )
    if info.nnodes * info.local_world_size != info.world_size and info.launcher != "slurm":
        raise RendezvousError(
            f"{where}: world size {info.world_size} differs from {info.nnodes} nodes × "
            f"{info.local_world_size} ranks a node; give every node the same --nproc_per_node"
        )
    if "SLURM_PROCID" in env and "RANK" in env and info.launcher != "torchrun":
        slurm_tasks = env.get("SLURM_NTASKS")
        if slurm_tasks == str(info.world_size) and env["SLURM_PROCID"] != str(info.rank):
            raise RendezvousError(
                f"{where}: RANK={info.rank} but SLURM_PROCID={env['SLURM_PROCID']} with one "
                "srun task per rank; set RANK=$SLURM_PROCID (SLURM_NODEID numbers nodes, "
                "not ranks; SLURM_LOCALID is the local rank)"
            )
    if info.nnodes > 1 and is_loopback(info.master_addr):
        raise RendezvousError(
            f"{where}: a {info.nnodes}-node run meets at {info.master_addr!r}, which on every "
            "node is that node itself. Use the first node's hostname: "
            'MASTER_ADDR=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1), or '
            "torchrun --rdzv_endpoint=<first-node>:<port>"
        )
    if info.distributed:
        try:
            socket.getaddrinfo(info.master_addr, info.master_port)
        except socket.gaierror as exc:
            raise RendezvousError(
                f"{where}: the rendezvous host {info.master_addr!r} does not resolve ({exc}); "
                "check MASTER_ADDR"
            ) from None
        if not 0 < info.master_port < 65536:
            raise RendezvousError(f"{where}: MASTER_PORT {info.master_port} is not a port")


def wait_for_listener(host: str, port: int, timeout_s: float) -> None:
    """Return once something accepts TCP connections at ``host:port``; fail after
    ``timeout_s`` with a message instead of waiting out torch's own (long) timeout."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with socket.create_connection((host, port), timeout=1.0):
                return
        except OSError as exc:
            if time.monotonic() >= deadline:
                raise RendezvousError(
                    f"nothing answers at {host}:{port} after {timeout_s:.0f} s ({exc}): rank 0 "
                    "is not running there, or the address or port is wrong (MASTER_ADDR/"
                    "MASTER_PORT, --rdzv_endpoint)"
                ) from None
            time.sleep(0.2)


def default_backend(device_type: str) -> str:
    """NCCL on GPUs (RCCL on ROCm builds of torch answers to the same name), gloo on CPUs."""
    return "nccl" if device_type == "cuda" else "gloo"


def init_distributed(
    info: RankEnv,
    *,
    backend: str = "gloo",
    timeout_s: float = 300.0,
    rendezvous_timeout_s: float = 60.0,
) -> None:
    """``torch.distributed.init_process_group`` for ``info``, every collective bounded by
    ``timeout_s``. Under torchrun the agent's store is used; otherwise rank 0 hosts a TCP store
    at MASTER_ADDR:MASTER_PORT and the others wait at most ``rendezvous_timeout_s`` for it."""
    import torch.distributed as dist

    timeout = timedelta(seconds=timeout_s)
    if info.launcher == "torchrun":
        dist.init_process_group(backend, timeout=timeout)
        return
    if info.rank != 0:
        wait_for_listener(info.master_addr, info.master_port, rendezvous_timeout_s)
    try:
        store = dist.TCPStore(
            info.master_addr,
            info.master_port,
            info.world_size,
            is_master=info.rank == 0,
            timeout=timedelta(seconds=rendezvous_timeout_s),
        )
    except (RuntimeError, OSError) as exc:
        raise RendezvousError(
            f"rank {info.rank}: could not {'open' if info.rank == 0 else 'join'} the "
            f"rendezvous at {info.master_addr}:{info.master_port} ({exc}). Is the port in use, "
            "or did some ranks never start?"
        ) from None
    dist.init_process_group(
        backend, store=store, rank=info.rank, world_size=info.world_size, timeout=timeout
    )
