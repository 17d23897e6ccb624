"""The pre-flight check refuses rendezvous that cannot work, fast and with a fix."""

from __future__ import annotations

import socket
import time

import pytest

from medscale.errors import RendezvousError
from medscale.launch.rendezvous import (
    RankEnv,
    preflight,
    read_rank_env,
    wait_for_listener,
)
from medscale.launch.torchrun import TorchrunPlan, torchrun_args


def torchrun_env(**overrides: str) -> dict[str, str]:
    env = {
        "RANK": "1",
        "WORLD_SIZE": "4",
        "LOCAL_RANK": "1",
        "LOCAL_WORLD_SIZE": "2",
        "GROUP_RANK": "0",
        "GROUP_WORLD_SIZE": "2",
        "MASTER_ADDR": "node001",
        "MASTER_PORT": "29500",
        "TORCHELASTIC_RUN_ID": "4242",
    }
    return {**env, **overrides}


def test_torchrun_environment_is_read():
    info = read_rank_env(torchrun_env())
    assert info == RankEnv(1, 4, 1, 2, 0, 2, "node001", 29500, "torchrun", "4242")


def test_slurm_environment_is_read():
    env = {
        "SLURM_PROCID": "3",
        "SLURM_NTASKS": "4",
        "SLURM_LOCALID": "1",
        "SLURM_NODEID": "1",
        "SLURM_NNODES": "2",
        "SLURM_JOB_ID": "77",
        "MASTER_ADDR": "node001",
    }
    info = read_rank_env(env)
    assert (info.rank, info.world_size, info.local_rank, info.node_rank) == (3, 4, 1, 1)
    assert info.launcher == "slurm" and info.run_id == "77"


def test_no_environment_is_one_rank():
    info = read_rank_env({})
    assert (info.rank, info.world_size, info.distributed) == (0, 1, False)
    preflight(info, {})


@pytest.mark.parametrize("addr", ["localhost", "127.0.0.1", "127.0.1.1", "::1"])
def test_multi_node_on_localhost_is_refused(addr):
    env = torchrun_env(MASTER_ADDR=addr)
    with pytest.raises(RendezvousError, match="first node's hostname"):
        preflight(read_rank_env(env), env)


def test_single_node_on_localhost_is_fine():
    env = torchrun_env(WORLD_SIZE="2", GROUP_WORLD_SIZE="1", MASTER_ADDR="127.0.0.1")
    preflight(read_rank_env(env), env)


def test_unexpanded_job_id_is_refused():
    env = torchrun_env(TORCHELASTIC_RUN_ID="$SLURM_JOB_ID", MASTER_ADDR="127.0.0.1")
    env["GROUP_WORLD_SIZE"] = "1"
    env["LOCAL_WORLD_SIZE"] = "4"
    with pytest.raises(RendezvousError, match=r"unexpanded.*double quotes"):
        preflight(read_rank_env(env), env)


def test_rank_outside_world_is_refused():
    env = torchrun_env(RANK="4")
    with pytest.raises(RendezvousError, match=r"rank 4 is outside 0\.\.3"):
        preflight(read_rank_env(env), env)


def test_world_size_that_disagrees_with_nodes_is_refused():
    env = torchrun_env(WORLD_SIZE="3", RANK="0")
    with pytest.raises(RendezvousError, match="world size 3 differs from 2 nodes"):
        preflight(read_rank_env(env), env)


def test_node_id_used_as_rank_is_refused():
    # srun -n 4 (one task per rank) but the script set RANK from SLURM_NODEID.
    env = {
        "RANK": "1",
        "WORLD_SIZE": "4",
        "LOCAL_WORLD_SIZE": "2",
        "LOCAL_RANK": "1",
        "GROUP_WORLD_SIZE": "2",
        "MASTER_ADDR": "node001",
        "SLURM_PROCID": "3",
        "SLURM_NTASKS": "4",
        "SLURM_NODEID": "1",
    }
    with pytest.raises(RendezvousError, match="RANK=1 but SLURM_PROCID=3"):
        preflight(read_rank_env(env), env)


def test_unresolvable_host_is_refused():
    env = torchrun_env(MASTER_ADDR="no-such-host.invalid")
    with pytest.raises(RendezvousError, match="does not resolve"):
        preflight(read_rank_env(env), env)


def test_nobody_listening_fails_within_the_timeout():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    started = time.monotonic()
    with pytest.raises(RendezvousError, match=f"nothing answers at 127.0.0.1:{port}"):
        wait_for_listener("127.0.0.1", port, timeout_s=1.5)
    assert time.monotonic() - started < 5


def test_torchrun_plan_for_several_nodes_needs_a_real_endpoint():
    with pytest.raises(RendezvousError, match="--rdzv-endpoint"):
        torchrun_args(TorchrunPlan(nproc_per_node=2, nnodes=2))
    with pytest.raises(RendezvousError, match="cannot meet on localhost"):
        torchrun_args(TorchrunPlan(nproc_per_node=2, nnodes=2, rdzv_endpoint="localhost:29500"))
    args = torchrun_args(TorchrunPlan(nproc_per_node=2, nnodes=2, rdzv_endpoint="node001:29500"))
    assert "--rdzv_endpoint=node001:29500" in args and "--nnodes=2" in args
    assert torchrun_args(TorchrunPlan(nproc_per_node=2))[0] == "--standalone"
