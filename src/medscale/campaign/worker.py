"""The worker loop every executor runs: pull the next trial from the campaign under the
ledger's plan lock, run it in its own process, record its cost, tell Optuna the outcome and
claim the key; heartbeats and reaping run beside it (see :mod:`medscale.campaign.engine`)."""

from __future__ import annotations

import os
import signal
import socket
import threading
import time
import warnings
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState

from medscale.atomic import write_json_atomic
from medscale.campaign.engine import A, Campaign, Started
from medscale.campaign.processes import (
    alive,
    exitcode,
    join,
    read_outcome,
    start_trial_process,
    terminate,
    trial_forkserver,
)
from medscale.campaign.spec import trial_seed

__all__ = ["ProgressBar", "Worker", "install_stop_handler"]


class Worker:
    """Runs trials of one campaign on ``slots`` slots until none is left.

    ``name`` identifies the worker in the ledger (host, pid, SLURM or Ray ids).
    """

    def __init__(
        self,
        campaign: Campaign,
        *,
        slots: int | None = None,
        name: str | None = None,
        deadline: float | None = None,
    ):
        self.campaign = campaign
        self.deadline = deadline  # time.monotonic() when this worker's allocation ends
        self.execution = campaign.execution
        self.layout = campaign.layout(slots)
        self.slots = self.layout.slots
        self.name = name or f"{socket.gethostname()}:{os.getpid()}"
        self.running: dict[int, Any] = {}
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.done = threading.Event()
        self.trials_run = 0
        self._ctx: Any = None
        if self.execution.trial_process == "forkserver":
            self._ctx = trial_forkserver(campaign.objective)
        if campaign.spec.is_bayesian:
            self._set_sampler()

    def _set_sampler(self) -> None:
        bayes = self.campaign.spec.model.design.bayesian
        assert bayes is not None
        seed = trial_seed(self.campaign.spec.seed, f"sampler:{self.name}")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            if bayes.sampler == "gp":
                sampler: Any = optuna.samplers.GPSampler(seed=seed)
            else:
                sampler = optuna.samplers.TPESampler(
                    multivariate=True, constant_liar=True, seed=seed
                )
        study = self.campaign.study
        study.sampler = sampler
        if bayes.pruner == "median":
            study.pruner = optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=1)
        elif bayes.pruner == "successive_halving":
            study.pruner = optuna.pruners.SuccessiveHalvingPruner()

    def _devices(self, slot: int) -> tuple[int, ...]:
        g = self.layout.gpus
        return tuple(self.execution.devices[slot * g : (slot + 1) * g]) if g else ()

    def run(self, progress: bool = False) -> int:
        """Run until the campaign has nothing left; return the number of trials this worker ran."""
        self.campaign.prepare()
        beat = threading.Thread(target=self._heartbeats, daemon=True)
        beat.start()
        threads = [
            threading.Thread(target=self._slot, args=(i,), daemon=True) for i in range(self.slots)
        ]
        bar = ProgressBar(self.campaign, progress)
        for t in threads:
            t.start()
        try:
            while any(t.is_alive() for t in threads):
                for t in threads:
                    t.join(timeout=0.5)
                bar.update()
        finally:
            self.done.set()
            bar.close()
        return self.trials_run

    def stop(self) -> None:
        """Stop taking trials; SIGTERM the running ones (they checkpoint; they are retried)."""
        self.stopping.set()
        with self.lock:
            for proc in self.running.values():
                terminate(proc)

    def _heartbeats(self) -> None:
        hb = self.campaign.ledger.heartbeat_s
        last_reap = 0.0
        while not self.done.wait(min(hb / 4, 1.0)):
            with self.lock:
                ids = list(self.running)
            for trial_id in ids:
                self.campaign.ledger.beat(trial_id)
            if time.monotonic() - last_reap >= hb / 4:
                last_reap = time.monotonic()
                with self.campaign.ledger.plan_lock():
                    self.campaign._reap(self.campaign.study.get_trials(deepcopy=False))

    def _slot(self, slot: int) -> None:
        campaign = self.campaign
        idle = min(campaign.ledger.heartbeat_s / 4, 1.0)
        while not self.stopping.is_set():
            if self._too_late():
                return
            with campaign.ledger.plan_lock():
                started = campaign.next_trial(self.slots, self.name)
                if isinstance(started, Started):
                    with self.lock:
                        self.running[started.trial._trial_id] = None
            if started is False:
                return
            if started is None:
                time.sleep(idle)
                continue
            self._run_one(started, slot)

    def _too_late(self) -> bool:
        """True when a trial started now would outlast this worker's allocation (it is left
        for another worker, rather than started, killed and retried)."""
        if self.deadline is None:
            return False
        expected = self.campaign.expected_wall_s()
        left = self.deadline - time.monotonic()
        if expected is None or expected < left:
            return False
        self.campaign.event("allocation_ending", worker=self.name, left_s=left, trial_s=expected)
        return True

    def _run_one(self, started: Started, slot: int) -> None:
        campaign = self.campaign
        trial = started.trial
        trial_dir = campaign.folder / "trials" / started.slug
        trial_dir.mkdir(parents=True, exist_ok=True)
        (trial_dir / "outcome.json").unlink(missing_ok=True)
        devices = self._devices(slot)
        params = dict(trial.params) or campaign.prepare().get(started.key, {}).get("params", {})
        doc = campaign.job_document(
            started.key,
            campaign.planned[started.key].assignment if started.key in campaign.planned else {},
            params,
            started.attempt,
            devices,
            self.layout.ranks,
        )
        write_json_atomic(trial_dir / "trial.json", doc, indent=1, default=str)
        if campaign.ledger.claimed(started.key):  # done meanwhile: do not run it twice
            trial.set_user_attr(A + "skipped", True)
            self._tell(trial, None, TrialState.FAIL, started)
            return
        t0 = time.perf_counter()
        proc = self._start(trial_dir)
        with self.lock:
            self.running[trial._trial_id] = proc
        pruned = self._wait(proc, trial, trial_dir)
        wall = time.perf_counter() - t0
        outcome = read_outcome(trial_dir, started.attempt)
        device_s = wall * self.layout.held
        cost = device_s / 3600 * campaign.spec.model.cost.per_device_hour
        attrs = {
            "wall_s": round(wall, 4),
            "device_s": round(device_s, 4),
            "cost": round(cost, 8),
            "peak_rss_mb": outcome.get("peak_rss_mb"),
            "peak_device_mb": outcome.get("peak_device_mb"),
            "exit": exitcode(proc),
            "metrics": outcome.get("metrics"),
        }
        if "value" in outcome and not pruned:
            state, value = TrialState.COMPLETE, outcome["value"]
        elif pruned:
            state, value = TrialState.PRUNED, None
        else:
            state, value = TrialState.FAIL, None
            if "error" in outcome:
                attrs["error"] = outcome["error"][-4000:]
                attrs["final"] = not self.execution.retry_errors
            elif "interrupted" in outcome:
                attrs["interrupted"] = outcome["interrupted"]
        try:
            for name, v in attrs.items():
                trial.set_user_attr(A + name, v)
        except (ValueError, RuntimeError):
            pass  # declared dead meanwhile: _tell records the late result
        self._tell(trial, value, state, started)
        with self.lock:
            self.running.pop(trial._trial_id, None)
            self.trials_run += 1
        campaign.ledger.drop_beat(trial._trial_id)

    def _tell(self, trial: Any, value: float | None, state: TrialState, started: Started) -> None:
        campaign = self.campaign
        try:
            if state == TrialState.COMPLETE:
                campaign.study.tell(trial, value)
            else:
                campaign.study.tell(trial, state=state)
        except (ValueError, RuntimeError) as exc:  # UpdateFinishedTrialError is a RuntimeError
            campaign.event(
                "late_result",
                trial=trial.number,
                key=started.key,
                value=value,
                state=state.name,
                reason=str(exc),
            )
            return
        if state == TrialState.COMPLETE:
            campaign.ledger.claim(started.key, trial.number)

    def _start(self, trial_dir: Path) -> Any:
        return start_trial_process(trial_dir, self._ctx)

    def _wait(self, proc: Any, trial: Any, trial_dir: Path) -> bool:
        """Wait for the trial process; feed its intermediate values to the pruner. True when
        it was pruned."""
        prune = self.campaign.spec.is_bayesian and (
            self.campaign.spec.model.design.bayesian.pruner != "none"  # type: ignore[union-attr]
        )
        metric = self.campaign.spec.model.metric
        seen: set[int] = set()
        pruned = False
        while alive(proc):
            join(proc, 0.2)
            if not prune or pruned:
                continue
            from medscale.train.metrics_log import read_records

            for record in read_records(trial_dir / "run" / "metrics.jsonl"):
                step = record.get("step")
                if record.get("kind") != "val" or step in seen or metric not in record:
                    continue
                seen.add(step)
                trial.report(float(record[metric]), int(step))
                if trial.should_prune():
                    pruned = True
                    terminate(proc)
                    break
        return pruned


class ProgressBar:
    """Done keys out of all, with an ETA (tqdm), refreshed from the ledger."""

    def __init__(self, campaign: Campaign, enabled: bool) -> None:
        self.campaign = campaign
        self.bar = None
        self.last = 0.0
        if enabled:
            from tqdm.auto import tqdm

            self.bar = tqdm(
                total=campaign.spec.n_trials(),
                unit="trial",
                dynamic_ncols=True,
                desc=campaign.spec.name,
            )

    def update(self) -> None:
        if self.bar is None or time.monotonic() - self.last < 2.0:
            return
        self.last = time.monotonic()
        status = self.campaign.status()
        self.bar.n = status["done"] + status["failed"] + status["pruned"]
        self.bar.set_postfix(
            running=status["running"],
            failed=status["failed"],
            retried=status["retried"],
            refresh=False,
        )
        self.bar.refresh()

    def close(self) -> None:
        if self.bar is not None:
            self.update()
            self.bar.close()


def install_stop_handler(worker: Worker) -> None:
    """SIGTERM (a SLURM allocation ending, a Ray task cancelled): stop taking trials and
    SIGTERM the running ones, which checkpoint and are retried by the next worker."""

    def handle(signum: int, frame: Any) -> None:
        worker.stop()

    signal.signal(signal.SIGTERM, handle)
