"""Data parallelism in real processes (torchrun, gloo): gradients are the data-parallel
mean, validation metrics come from every rank's nights, a killed rank restarts from the
checkpoint and ends bit-identical, a run resumes at another world size, and a hung peer
gives a stack dump and an error instead of a hang."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import time
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from medscale.testing import worker_pids  # noqa: E402
from medscale.train import TrainConfig, load_checkpoint  # noqa: E402
from medscale.train.metrics_log import read_records  # noqa: E402

from .conftest import (  # noqa: E402
    assert_same_weights,
    ddp_config,
    finish,
    strip_timing,
    torchrun,
    wait_for_train_step,
    write_config,
)

pytestmark = [pytest.mark.slow, pytest.mark.real]


def test_ddp_run_records_its_world(ddp_run):
    _, out = ddp_run
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["run"]["world_size"] == 2
    assert manifest["run"]["rank_batch_size"] == 2 and manifest["run"]["global_batch_size"] == 4
    assert manifest["run"]["backend"] == "gloo"
    state = load_checkpoint(out / "checkpoints" / "last.pt")
    assert len(state["per_rank"]) == 2  # every rank's RNG is in the checkpoint
    assert not torch.equal(
        state["per_rank"][0]["rng"]["torch"], state["per_rank"][1]["rng"]["torch"]
    )


def test_validation_metrics_equal_single_process_metrics(ddp_run, train_store):
    """The 2-rank validation at step 12 scored the val nights split over both ranks; one
    process scoring all of them with the same weights gets exactly the same numbers."""
    from medscale.data.splits import load_split
    from medscale.data.torch_data import EvalNights
    from medscale.store.store import Store
    from medscale.train.trainer import build_run_model, validate

    config_path, out = ddp_run
    config = TrainConfig.load(config_path)
    store = Store(train_store, read_only=True)
    split = load_split(out / "split.json", store)
    val = split.subsets["val"]
    assert len(val) == 2, "each rank scores one validation night"
    model, _ = build_run_model(config)
    model.load_state_dict(load_checkpoint(out / "checkpoints" / "last.pt")["model"])
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        nights = EvalNights(store, config.data, recordings=val)
        single = validate(model, nights, "cpu", contextlib.nullcontext)
    finally:
        torch.set_num_threads(threads)
    logged = [r for r in read_records(out / "metrics.jsonl") if r["kind"] == "val"][-1]
    assert logged["step"] == 12
    for key in ("kappa", "accuracy", "macro_f1", "mcc", "val_loss", "n_epochs"):
        assert logged[key] == single[key], key


def test_killed_rank_restarts_from_checkpoint_bit_identical(ddp_run, train_store, tmp_path):
    """SIGKILL rank 1 after step 5: torchrun restarts both ranks (max_restarts=1), they resume
    from the step-4 checkpoint and end with the uninterrupted run's weights and metrics."""
    config, uninterrupted = ddp_run
    out = tmp_path / "killed"
    proc = torchrun(config, train_store, out, "--max_restarts=1")
    wait_for_train_step(out, 5, proc)
    pids = worker_pids(out)
    assert set(pids) == {0, 1}, pids
    os.kill(pids[1], signal.SIGKILL)
    text = finish(proc)
    assert proc.returncode == 0, text
    assert_same_weights(uninterrupted, out)
    assert strip_timing(read_records(out / "metrics.jsonl")) == strip_timing(
        read_records(uninterrupted / "metrics.jsonl")
    )
    resumes = json.loads((out / "manifest.json").read_text())["run"]["resumes"]
    assert [r["step"] for r in resumes] in ([4], [8])


def test_resume_at_another_world_size(ddp_run, train_store, tmp_path):
    """A 2-rank run stopped by SIGTERM resumes on 1 process: the global sample position
    carries over, and the run finishes at max_steps."""
    from medscale.launch.train import launch_training

    config, _ = ddp_run
    out = tmp_path / "moved"
    proc = torchrun(config, train_store, out)
    wait_for_train_step(out, 5, proc)
    proc.send_signal(signal.SIGTERM)  # torchrun passes it to the ranks: checkpoint, stop
    finish(proc)
    stopped = json.loads((out / "result.json").read_text())
    assert stopped["stopped"] == "SIGTERM" and not stopped["finished"]
    outcome = launch_training(config, str(train_store), out, resume=True, progress=False)
    assert outcome.exit_code == 0 and outcome.result["step"] == 12
    resume = json.loads((out / "manifest.json").read_text())["run"]["resumes"][-1]
    assert resume["step"] == stopped["step"]
    assert (resume["from_world_size"], resume["world_size"]) == (2, 1)
    state = load_checkpoint(out / "checkpoints" / "last.pt")
    assert state["sampler"]["global_start"] == (12 % 8) * 4  # 8 steps an epoch of 32 samples


def _running(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_hung_peer_dumps_stacks_and_fails_instead_of_hanging(train_store, tmp_path):
    """Rank 1 frozen (SIGSTOP) mid-run: rank 0's next collective times out after
    distributed.timeout_s, its stack is dumped to stacks/rank0.txt, and it exits with an
    error naming the cause, long before torch's default 30 minutes."""
    config = write_config(
        tmp_path / "run.yaml",
        ddp_config(max_steps=400, val_every=1000, distributed={"timeout_s": 4}),
    )
    out = tmp_path / "hung"
    proc = torchrun(config, train_store, out)
    wait_for_train_step(out, 3, proc)
    pids = worker_pids(out)
    os.kill(pids[1], signal.SIGSTOP)
    frozen_at = time.monotonic()
    stack_file = out / "stacks" / "rank0.txt"
    try:
        while time.monotonic() - frozen_at < 60:
            if stack_file.is_file() and "File" in stack_file.read_text():
                break
            time.sleep(0.2)
        waited = time.monotonic() - frozen_at
        assert "File" in stack_file.read_text(), "no stack dump from rank 0"
        assert waited < 30
        # The dump comes first; keep rank 1 frozen until rank 0's collective has failed too.
        while _running(pids[0]) and time.monotonic() - frozen_at < 60:
            time.sleep(0.2)
        assert not _running(pids[0]), "rank 0 still waits after 60 s"
    finally:
        os.kill(pids[1], signal.SIGCONT)
    text = finish(proc, timeout=600)
    assert proc.returncode != 0
    assert "a collective failed" in text and "stacks" in text, text[-3000:]
    assert "trainer.py" in stack_file.read_text()


def _ddp_gradients(rank: int, world: int, port: int, x, y, out: str) -> None:
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    from medscale.evaluate.inference import masked_cross_entropy
    from medscale.models import build_model

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank,
                            world_size=world)  # fmt: skip
    torch.manual_seed(rank)  # rank 1 starts from other weights: DDP must broadcast rank 0's
    model = build_model("usleep-small", depth=3, init_filters=4, in_channels=2)
    ddp = DistributedDataParallel(model)
    loss = masked_cross_entropy(ddp(x[rank::world]), y[rank::world])
    loss.backward()
    grads = {name: p.grad for name, p in model.named_parameters()}
    torch.save({"grads": grads, "weights": model.state_dict()}, f"{out}/rank{rank}.pt")
    dist.destroy_process_group()


def test_ddp_gradient_is_the_mean_of_the_ranks_shares(tmp_path):
    """Two gloo ranks, each with its strided half of a batch of 8 windows: every rank ends
    with rank 0's weights and the mean of the two halves' gradients, as one process computes
    them half by half."""
    import socket

    import torch.multiprocessing as mp

    from medscale.evaluate.inference import masked_cross_entropy
    from medscale.models import build_model

    generator = torch.Generator().manual_seed(5)
    x = torch.randn(8, 2, 2 * 30 * 128, generator=generator)
    y = torch.randint(0, 5, (8, 2), generator=generator)
    y[0, 1] = -1  # an UNKNOWN epoch is masked alike everywhere
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(_ddp_gradients, args=(2, port, x, y, str(tmp_path)), nprocs=2, join=True)

    torch.manual_seed(0)
    model = build_model("usleep-small", depth=3, init_filters=4, in_channels=2)
    expected = {name: torch.zeros_like(p) for name, p in model.named_parameters()}
    for rank in range(2):
        model.zero_grad()
        masked_cross_entropy(model(x[rank::2]), y[rank::2]).backward()
        for name, p in model.named_parameters():
            expected[name] += p.grad / 2
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(2)]
    for name, value in expected.items():
        for got in ranks:
            torch.testing.assert_close(got["grads"][name], value, rtol=1e-4, atol=1e-6)
    for name, tensor in ranks[1]["weights"].items():
        if tensor.is_floating_point() and "running" not in name:
            assert torch.equal(tensor, ranks[0]["weights"][name]), name
