"""Scale-out on one CPU machine: DDP on 2 ranks against 1 process, the trainer end to end,
launcher start-up, and recovery after a killed rank.

Run: ``python benchmarks/scale_out.py [--repeats 3] [--steps 2] [--batch 16] [--e2e-steps 10]``
(7–10 minutes on 2 cores, depending on load).

1. **DDP step** (`torch.multiprocessing.spawn`, gloo on 127.0.0.1): usleep-small as the bundled
   config builds it (``build_model('usleep-small', in_channels=2)``), random windows of
   7 epochs × 30 s × 128 Hz × 2 channels, one training step = forward, masked cross-entropy,
   backward, gradient clipping and Adam, as in the trainer. The global batch is the same
   everywhere: 1 process × ``--batch`` (2 intra-op threads; and 1 thread as a second
   reference) against 2 ranks × ``--batch``/2 (1 thread each). Each repeat times ``--steps``
   steps after ``--warmup`` untimed ones, in freshly spawned processes; the variants take
   turns, one repeat each, and figures are medians over repeats of the mean step. On the 2
   ranks, steps with gradient sync and steps under ``ddp.no_sync()`` alternate one by one:
   the all-reduce share of a step is (t_sync − t_nosync) / t_sync, and the gradient bytes
   (parameters × 4) over that difference are the implied all-reduce bandwidth. The same 2
   ranks then time one all-reduce of a buffer of the gradients' size on its own, and every
   variant reports its processes' CPU seconds a step (all threads).
2. **Trainer end to end**: ``medscale train`` with the usleep-small config (global batch
   ``--batch``, ``--e2e-steps`` steps, no validation, no checkpoint before the last step) on a
   small synthetic store, in one process (2 threads), under ``--launcher torchrun --nproc 2``
   (1 thread a rank) and in one process with 1 thread (a second reference); steps/s is the
   ``steps_per_s`` of the run's last train record (metrics.jsonl), which leaves out process
   start-up.
3. **Launcher start-up**: wall time of a 1-step ``medscale train`` subprocess, in process and
   under torchrun (2 ranks), medians over ``--launch-repeats``; the difference is torchrun's
   start-up cost. SLURM (when ``sbatch`` is on PATH, ``SLURM_CONF`` is set and the cluster
   answers) and Ray (when it imports and `medscale.launch.ray.train_on_ray` exists): seconds
   from submitting / starting the command to the run's first train record.
4. **Recovery**: torchrun with ``--max-restarts 1`` and a checkpoint every 5 steps; once the
   run has logged step ``--kill-at``, rank 1 gets SIGKILL; reported are the seconds from the
   kill until the restarted ranks resume from the checkpoint and until they log a step past it
   (training progresses again), and the steps lost (logged before the kill, recomputed after).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import yaml

from medscale.evaluate.inference import masked_cross_entropy
from medscale.ingest import ingest
from medscale.models import build_model
from medscale.synth import synthesize_nights
from medscale.testing import worker_pids
from medscale.train import TrainConfig

WINDOW_EPOCHS, EPOCH_SAMPLES, CHANNELS = 7, 30 * 128, 2
RANK_ENV = {"OMP_NUM_THREADS": "1", "TORCH_DISABLE_SHARE_RDZV_TCP_STORE": "1"}
SINGLE_ENV = {"OMP_NUM_THREADS": "2"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def _runs(values: list[float], fmt: str = "{:.2f}") -> str:
    return ", ".join(fmt.format(v) for v in values)


# -- 1. the DDP step, spawned ranks ---------------------------------------------------------


def _micro_rank(
    rank: int,
    world: int,
    threads: int,
    rank_batch: int,
    port: int,
    warmup: int,
    steps: int,
    nosync_first: bool,
    out: str,
) -> None:
    """One repeat of one variant: ``warmup`` untimed steps, then ``steps`` timed ones (on
    several ranks, each synced step paired with one under ``no_sync()``, alternating)."""
    torch.set_num_threads(threads)
    if world > 1:
        dist.init_process_group(
            "gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world
        )
    torch.manual_seed(0)
    model = build_model("usleep-small", in_channels=CHANNELS)
    net: Any = model
    if world > 1:
        from torch.nn.parallel import DistributedDataParallel

        net = DistributedDataParallel(model)
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-3)
    generator = torch.Generator().manual_seed(rank)
    x = torch.randn(rank_batch, CHANNELS, WINDOW_EPOCHS * EPOCH_SAMPLES, generator=generator)
    y = torch.randint(0, 5, (rank_batch, WINDOW_EPOCHS), generator=generator)

    def one_step() -> None:
        loss = masked_cross_entropy(net(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()

    def timed(sync: bool) -> tuple[float, float]:
        """Wall seconds (between barriers: the slower rank counts) and this process's CPU
        seconds (all its threads) of one step."""
        if world > 1:
            dist.barrier()
        started, cpu = time.perf_counter(), time.process_time()
        if sync:
            one_step()
        else:
            with net.no_sync():
                one_step()
        cpu = time.process_time() - cpu
        if world > 1:
            dist.barrier()
        return time.perf_counter() - started, cpu

    for _ in range(warmup):
        one_step()
    if world > 1:
        with net.no_sync():
            one_step()
    sync, nosync, cpu_sync = [], [], []
    modes = [True, False] if world > 1 else [True]
    for _ in range(steps):
        for mode in reversed(modes) if nosync_first else modes:
            wall, cpu = timed(mode)
            if mode:
                sync.append(wall)
                cpu_sync.append(cpu)
            else:
                nosync.append(wall)
        nosync_first = not nosync_first
    params = sum(p.numel() for p in model.parameters())
    allreduce = []
    if world > 1:  # the gradient all-reduce alone: one flat buffer of the gradients' size
        flat = torch.zeros(params)
        for k in range(25):
            dist.barrier()
            started = time.perf_counter()
            dist.all_reduce(flat)
            if k >= 5:
                allreduce.append(time.perf_counter() - started)
    result = {
        "sync": statistics.fmean(sync),
        "nosync": statistics.fmean(nosync) if nosync else None,
        "cpu": statistics.fmean(cpu_sync),
        "allreduce": allreduce,
        "params": params,
    }
    Path(f"{out}.rank{rank}").write_text(json.dumps(result))
    if world > 1:
        dist.destroy_process_group()


def micro(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    """The variants take turns, one repeat each, so drifting load hits them alike."""
    variants = [
        ("1 process × 2 threads", 1, 2),
        ("1 process × 1 thread", 1, 1),
        ("2 ranks × 1 thread (DDP)", 2, 1),
    ]
    results: dict[str, Any] = {
        name: {"sync": [], "nosync": [], "cpu_ranks": [[] for _ in range(world)], "allreduce": []}
        for name, world, _ in variants
    }
    for k in range(args.repeats):
        started = time.perf_counter()
        for name, world, threads in variants[k % 3 :] + variants[: k % 3]:
            out = work / f"micro-{world}x{threads}-{k}.json"
            mp.spawn(
                _micro_rank,
                args=(
                    world,
                    threads,
                    args.batch // world,
                    _free_port(),
                    args.warmup,
                    args.steps,
                    bool(k % 2),
                    str(out),
                ),
                nprocs=world,
                join=True,
            )
            ranks = [json.loads(Path(f"{out}.rank{r}").read_text()) for r in range(world)]
            r = results[name]
            r["sync"].append(ranks[0]["sync"])
            if ranks[0]["nosync"] is not None:
                r["nosync"].append(ranks[0]["nosync"])
            r["allreduce"] += ranks[0]["allreduce"]
            r["params"] = ranks[0]["params"]
            for rank, values in enumerate(ranks):
                r["cpu_ranks"][rank].append(values["cpu"])
        print(f"  repeat {k + 1}: {time.perf_counter() - started:.0f} s", flush=True)
    return results


# -- 2.–4. runs through `medscale train` ------------------------------------------------------


def build_store(work: Path, nights: int, hours: float) -> Path:
    synthesize_nights(work / "nights", nights, seed=3, duration_h=hours, progress=False)
    ingest("synthetic", work / "nights", work / "store", progress=False)
    shutil.rmtree(work / "nights")
    return work / "store"


def write_config(path: Path, batch: int, **overrides: Any) -> Path:
    """usleep-small as bundled, with the global batch, no validation and ``overrides``."""
    config = TrainConfig.load("usleep-small").to_dict()
    config["batch_size"] = batch
    config["val_every"] = 10**6
    config["checkpoint_every"] = 10**6
    config["split"] = {**config["split"], "val_subset": None}  # no validation at all
    config.update(overrides)
    TrainConfig.from_dict(config)  # refuse a bad override here, not in a rank
    path.write_text(yaml.safe_dump(config))
    return path


def train_records(run: Path) -> list[dict[str, Any]]:
    path = run / "metrics.jsonl"
    if not path.is_file():
        return []
    records = []
    for line in path.read_text().splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:  # a line being written
            continue
        if record.get("kind") == "train":
            records.append(record)
    return records


def medscale_train(config: Path, store: Path, run: Path, *extra: str) -> list[str]:
    command = [sys.executable, "-m", "medscale.cli.main", "train", str(config)]
    return [*command, "--store", str(store), "--out", str(run), "--quiet", *extra]


def timed_run(
    command: list[str], env: dict[str, str], run: Path, timeout: float, poll_s: float = 0.1
) -> dict[str, Any]:
    """Run ``command``; seconds to its first train record and to its exit, and its output."""
    started = time.perf_counter()
    proc = subprocess.Popen(
        command,
        env={**os.environ, **env, "PYTHONUNBUFFERED": "1"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    first = None
    try:
        while proc.poll() is None:
            if first is None and train_records(run):
                first = time.perf_counter() - started
            if time.perf_counter() - started > timeout:
                os.killpg(proc.pid, signal.SIGKILL)
                raise TimeoutError(f"{' '.join(command[:6])}… ran past {timeout:.0f} s")
            time.sleep(poll_s)
    finally:
        output = proc.communicate()[0].decode(errors="replace")
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        raise RuntimeError(f"exit {proc.returncode}: {' '.join(command)}\n{output[-3000:]}")
    if first is None and train_records(run):
        first = wall
    return {"first_step_s": first, "wall_s": wall, "output": output}


def end_to_end(args: argparse.Namespace, work: Path, store: Path) -> dict[str, Any]:
    config = write_config(work / "e2e.yaml", args.batch, max_steps=args.e2e_steps, log_every=10)
    cases = [
        ("1 process × 2 threads", SINGLE_ENV, ()),
        ("torchrun, 2 ranks × 1 thread", RANK_ENV, ("--launcher", "torchrun", "--nproc", "2")),
        ("1 process × 1 thread", {"OMP_NUM_THREADS": "1"}, ()),
    ]
    results = {}
    for name, env, extra in cases:
        run = work / f"e2e-{len(results)}"
        timing = timed_run(medscale_train(config, store, run, *extra), env, run, args.timeout)
        last = train_records(run)[-1]
        results[name] = {
            "steps_per_s": last["steps_per_s"],
            "step": last["step"],
            "wall_s": timing["wall_s"],
        }
        print(f"  {name}: {last['steps_per_s']:.3f} steps/s", flush=True)
    return results


def launchers(args: argparse.Namespace, work: Path, store: Path) -> dict[str, Any]:
    config = write_config(work / "launch.yaml", args.batch, max_steps=1, log_every=1)
    cases = [
        ("in process (1 × 2 threads)", SINGLE_ENV, ()),
        ("torchrun, 2 ranks", RANK_ENV, ("--launcher", "torchrun", "--nproc", "2")),
    ]
    results: dict[str, Any] = {name: {"wall_s": [], "first_step_s": []} for name, _, _ in cases}
    for k in range(args.launch_repeats):
        for name, env, extra in cases if k % 2 == 0 else cases[::-1]:
            run = work / f"launch-{len(results)}-{k}-{name.split()[0]}"
            timing = timed_run(medscale_train(config, store, run, *extra), env, run, args.timeout)
            results[name]["wall_s"].append(timing["wall_s"])
            results[name]["first_step_s"].append(timing["first_step_s"])
    print("  1-step runs: done", flush=True)
    results["slurm"] = slurm_first_step(args, work, store, config)
    results["ray"] = ray_first_step(args, work, store)
    return results


def slurm_first_step(
    args: argparse.Namespace, work: Path, store: Path, config: Path
) -> dict[str, Any]:
    if shutil.which("sbatch") is None:
        return {"skipped": "sbatch is not on PATH"}
    if not os.environ.get("SLURM_CONF"):
        return {"skipped": "SLURM_CONF is not set (no cluster from scripts/slurm-up.sh here)"}
    try:
        ping = subprocess.run(["sinfo", "-h"], capture_output=True, text=True, timeout=15)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return {"skipped": f"the SLURM cluster does not answer ({exc})"}
    if ping.returncode != 0:
        return {"skipped": f"the SLURM cluster does not answer: {ping.stderr.strip()[:200]}"}
    run = work / "slurm-run"
    started = time.perf_counter()
    done = subprocess.run(
        medscale_train(config, store, run, "--launcher", "slurm", "--nproc", "2"),
        capture_output=True,
        text=True,
        env={**os.environ, **RANK_ENV},
    )
    submitted = time.perf_counter() - started
    job_id = None
    for line in done.stdout.splitlines():
        if line.startswith("submitted SLURM job"):
            job_id = line.split()[3]
    if done.returncode != 0 or job_id is None:
        return {"skipped": f"submission failed: {(done.stderr or done.stdout).strip()[-300:]}"}
    while not train_records(run):
        if time.perf_counter() - started > args.timeout:
            subprocess.run(["scancel", job_id], check=False)
            return {"skipped": f"job {job_id} logged no step in {args.timeout:.0f} s (cancelled)"}
        time.sleep(0.1)
    return {"first_step_s": time.perf_counter() - started, "submit_s": submitted, "job": job_id}


def ray_first_step(args: argparse.Namespace, work: Path, store: Path) -> dict[str, Any]:
    try:
        import ray  # noqa: F401

        from medscale.launch.ray import train_on_ray  # noqa: F401
    except ImportError as exc:
        return {"skipped": f"Ray or medscale.launch.ray.train_on_ray is missing ({exc})"}
    # --max-steps is not passed to Ray workers: the step limit goes in the config.
    config = write_config(work / "ray.yaml", args.batch, max_steps=1, log_every=1)
    run = work / "ray-run"
    command = medscale_train(config, store, run, "--launcher", "ray", "--nproc", "2")
    try:
        timing = timed_run(command, RANK_ENV, run, args.timeout)
    except (RuntimeError, TimeoutError) as exc:
        return {"skipped": f"the Ray run failed: {str(exc)[-600:]}"}
    return {"first_step_s": timing["first_step_s"], "wall_s": timing["wall_s"]}


def recovery(args: argparse.Namespace, work: Path, store: Path) -> dict[str, Any]:
    config = write_config(
        work / "recover.yaml",
        args.batch,
        max_steps=args.kill_at + 3,
        checkpoint_every=5,
        log_every=1,
    )
    run = work / "recover-run"
    command = medscale_train(
        config, store, run, "--launcher", "torchrun", "--nproc", "2", "--max-restarts", "1"
    )
    proc = subprocess.Popen(
        command,
        env={**os.environ, **RANK_ENV, "PYTHONUNBUFFERED": "1"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    started = time.perf_counter()
    try:
        while not (records := train_records(run)) or records[-1]["step"] < args.kill_at:
            if proc.poll() is not None or time.perf_counter() - started > args.timeout:
                raise RuntimeError("the recovery run did not reach the kill step")
            time.sleep(0.02)
        pids = worker_pids(run)
        if set(pids) != {0, 1}:
            raise RuntimeError(f"worker pids not found: {pids}")
        seen = {(r["step"], r["elapsed_s"]) for r in train_records(run)}
        last_logged = max(step for step, _ in seen)
        os.kill(pids[1], signal.SIGKILL)
        killed = time.perf_counter()
        resumed_s = progressed_s = resume_step = None
        manifest = run / "manifest.json"
        while progressed_s is None:
            if proc.poll() is not None and resume_step is None:
                raise RuntimeError("torchrun ended without a restart")
            if time.perf_counter() - killed > args.timeout:
                raise RuntimeError("no progress after the restart")
            if resume_step is None:
                try:
                    resumes = json.loads(manifest.read_text())["run"]["resumes"]
                except (OSError, ValueError, KeyError):
                    resumes = []
                if resumes:
                    resumed_s = time.perf_counter() - killed
                    resume_step = resumes[-1]["step"]
            else:
                fresh = [
                    r
                    for r in train_records(run)
                    if r["step"] > resume_step and (r["step"], r["elapsed_s"]) not in seen
                ]
                if fresh:
                    progressed_s = time.perf_counter() - killed
            time.sleep(0.02)
        output = proc.communicate(timeout=args.timeout)[0].decode(errors="replace")
        if proc.returncode != 0:
            raise RuntimeError(f"the restarted run failed (exit {proc.returncode})\n{output}")
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    step_s = 1 / train_records(run)[-1]["steps_per_s"]
    return {
        "killed_after_step": last_logged,
        "resume_step": resume_step,
        "steps_lost": last_logged - resume_step,
        "kill_to_resume_s": resumed_s,
        "kill_to_progress_s": progressed_s,
        "step_s_after": step_s,
    }


# -- report -----------------------------------------------------------------------------------


def report(args, load_before, load_after, micro_r, e2e_r, launch_r, rec_r) -> None:
    b = args.batch
    print()
    print(
        f"usleep-small, global batch {b}, windows {WINDOW_EPOCHS} × 30 s × 128 Hz × "
        f"{CHANNELS} ch; {os.cpu_count()} CPUs, load average {load_before:.2f} before, "
        f"{load_after:.2f} after; medians of {args.repeats} repeats × {args.steps} steps"
    )
    print()
    print("| measurement | figure | ratio | runs |")
    print("|---|---:|---:|---|")
    ref = _median(micro_r["1 process × 2 threads"]["sync"])
    for name, r in micro_r.items():
        t = _median(r["sync"])
        per_rank = f"batch {b // 2} a rank" if "ranks" in name else f"batch {b}"
        cpu = " / ".join(f"{_median(c):.2f}" for c in r["cpu_ranks"])
        print(
            f"| training step, {name}, {per_rank} | {1 / t:.3f} steps/s, {b / t:.2f} "
            f"windows/s | {ref / t:.2f}× | {_runs(r['sync'], '{:.2f} s')}; CPU s a step "
            f"(per process): {cpu} |"
        )
    ddp = micro_r["2 ranks × 1 thread (DDP)"]
    t_sync, t_nosync = _median(ddp["sync"]), _median(ddp["nosync"])
    params = ddp["params"]
    grad_bytes = params * 4
    share = (t_sync - t_nosync) / t_sync
    print(
        f"| DDP step under `no_sync()`, 2 ranks | {1 / t_nosync:.3f} steps/s | "
        f"| {_runs(ddp['nosync'], '{:.2f} s')} |"
    )
    print(f"| all-reduce share of the DDP step, (t_sync − t_nosync)/t_sync | {share:.1%} | | |")
    if t_sync > t_nosync:
        bandwidth = f"{grad_bytes / (t_sync - t_nosync) / 1e6:.1f} MB/s"
    else:
        bandwidth = "n/a (no difference above noise)"
    print(
        f"| gradient volume per step ({params:,} parameters × 4 B) | {grad_bytes / 1e3:.1f} kB "
        f"| | implied all-reduce bandwidth {bandwidth} |"
    )
    t_ar = _median(ddp["allreduce"])
    print(
        f"| gloo all-reduce of one {grad_bytes / 1e3:.1f} kB buffer alone, 2 ranks "
        f"(median of {len(ddp['allreduce'])}) | {t_ar * 1e3:.2f} ms | | "
        f"{grad_bytes / t_ar / 1e6:.0f} MB/s; {t_ar / t_sync:.3%} of the DDP step |"
    )
    e_ref = e2e_r["1 process × 2 threads"]["steps_per_s"]
    for name, r in e2e_r.items():
        print(
            f"| `medscale train`, {name}, {r['step']} steps | {r['steps_per_s']:.3f} steps/s, "
            f"{r['steps_per_s'] * b:.2f} windows/s | {r['steps_per_s'] / e_ref:.2f}× | "
            f"wall {r['wall_s']:.1f} s |"
        )
    walls = {}
    for name in ("in process (1 × 2 threads)", "torchrun, 2 ranks"):
        r = launch_r[name]
        walls[name] = _median(r["wall_s"])
        print(
            f"| 1-step `medscale train`, {name}: wall | {walls[name]:.1f} s | | "
            f"{_runs(r['wall_s'], '{:.1f} s')}; first step logged at "
            f"{_median(r['first_step_s']):.1f} s (median) |"
        )
    print(
        f"| torchrun start-up overhead (difference of medians) | "
        f"{walls['torchrun, 2 ranks'] - walls['in process (1 × 2 threads)']:.1f} s | | |"
    )
    for kind, label in (("slurm", "SLURM submit"), ("ray", "Ray start")):
        r = launch_r[kind]
        if "skipped" in r:
            print(f"| {label} to first step | skipped | | {r['skipped'][:300]} |")
        else:
            extra = f"wall {r['wall_s']:.1f} s" if "wall_s" in r else f"job {r.get('job')}"
            figure = f"{r['first_step_s']:.1f} s"
            print(f"| {label} to first step (2 ranks, 1 run) | {figure} | | {extra} |")
    print(
        f"| recovery: SIGKILL rank 1 → ranks resumed from step {rec_r['resume_step']} | "
        f"{rec_r['kill_to_resume_s']:.1f} s | | 1 run |"
    )
    print(
        f"| recovery: SIGKILL rank 1 → first step past the checkpoint logged | "
        f"{rec_r['kill_to_progress_s']:.1f} s | | step time after restart "
        f"{rec_r['step_s_after']:.2f} s |"
    )
    print(
        f"| recovery: steps lost (logged up to {rec_r['killed_after_step']}, checkpoint "
        f"{rec_r['resume_step']}) | {rec_r['steps_lost']} | | |"
    )
    print()
    print(
        f"DDP 2 ranks / 1 process × 2 threads: {ref / t_sync:.2f}×; "
        f"/ 1 process × 1 thread: {_median(micro_r['1 process × 1 thread']['sync']) / t_sync:.2f}×"
    )
    print(
        f"all-reduce share {share:.1%}; {params:,} parameters, {grad_bytes:,} gradient bytes a step"
    )
    e_ddp = e2e_r["torchrun, 2 ranks × 1 thread"]["steps_per_s"]
    e_one = e2e_r["1 process × 1 thread"]["steps_per_s"]
    print(
        f"trainer torchrun 2 ranks / 1 process × 2 threads: {e_ddp / e_ref:.2f}×; "
        f"/ 1 process × 1 thread: {e_ddp / e_one:.2f}×"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="timed blocks per variant")
    parser.add_argument("--steps", type=int, default=2, help="steps per timed block")
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps first")
    parser.add_argument("--batch", type=int, default=16, help="global batch (even)")
    parser.add_argument("--e2e-steps", type=int, default=10)
    parser.add_argument("--launch-repeats", type=int, default=2)
    parser.add_argument("--kill-at", type=int, default=7, help="SIGKILL rank 1 after this step")
    parser.add_argument("--nights", type=int, default=6)
    parser.add_argument("--hours", type=float, default=1.0)
    parser.add_argument("--timeout", type=float, default=300, help="seconds per run at most")
    args = parser.parse_args()
    if args.batch % 2:
        parser.error("--batch must be even (it is split over 2 ranks)")
    if args.kill_at < 6:
        parser.error("--kill-at must be past the first checkpoint (step 5)")
    load_before = os.getloadavg()[0]
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="scale-out-") as tmp:
        work = Path(tmp)
        loads = {}

        def part(title: str) -> None:
            loads[title] = os.getloadavg()[0]
            print(f"{title} (load average {loads[title]:.2f})", flush=True)

        part("1. DDP step (spawned ranks)")
        micro_r = micro(args, work)
        store = build_store(work, args.nights, args.hours)
        part("2. trainer end to end")
        e2e_r = end_to_end(args, work, store)
        part("3. launchers")
        launch_r = launchers(args, work, store)
        part("4. recovery after SIGKILL of rank 1")
        rec_r = recovery(args, work, store)
    load_after = os.getloadavg()[0]
    report(args, load_before, load_after, micro_r, e2e_r, launch_r, rec_r)
    print(
        "load average (1 min) at the start of each part: "
        + ", ".join(f"{title.split('.')[0]}: {value:.2f}" for title, value in loads.items())
    )
    print(f"whole benchmark: {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
