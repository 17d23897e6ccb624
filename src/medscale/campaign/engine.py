"""The campaign engine: plan trials into the ledger, hand them out, count each key once.

Workers pull; nothing pushes. Every worker (a local pool, a SLURM array task, a Ray task)
runs the same loop: under the ledger's plan lock it fails trials whose heartbeat stopped,
claims finished-but-unclaimed keys, re-enqueues keys that lost their worker (same params and
seed, up to ``max_attempts``), enqueues the next keys (at most two per slot waiting), and
pops one; then, outside the lock, it runs the trial in its own process, records its cost,
tells Optuna the outcome and claims the key. A key counts only through its claim, so a trial
declared dead whose worker comes back late changes nothing (its result goes to
``events.jsonl``).

This module holds the campaign's state and planning (:class:`Campaign`); the loop is
:class:`medscale.campaign.worker.Worker`, and the trial processes it starts are managed by
:mod:`medscale.campaign.processes`.

The campaign folder::

    CAMPAIGN/spec.yaml            the spec it was started with
    CAMPAIGN/ledger/              the journal ledger (default)
    CAMPAIGN/splits/              split files shared by all arms (fold-<i>.json, holdout.json)
    CAMPAIGN/trials/<slug>/       trial.json, outcome.json, trial.log, run/ (the training run)
    CAMPAIGN/events.jsonl         reaped trials, late results, budget stops
    CAMPAIGN/estimate.json        written by `estimate`
    CAMPAIGN/report/              written by `report`
"""

from __future__ import annotations

import json
import time
import warnings
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from medscale.atomic import write_text_atomic
from medscale.campaign.ledger import Ledger, open_ledger
from medscale.campaign.objectives import OBJECTIVES, trial_config
from medscale.campaign.spec import CampaignSpec, key_slug, trial_seed
from medscale.errors import SpecError

__all__ = ["Campaign", "KeyState", "Layout", "Started"]

SCHEMA = 1
A = "ms:"  # prefix of every user attr medscale writes


@dataclass
class KeyState:
    """Where one trial key stands, from all its attempts."""

    key: str
    status: str  # done | running | waiting | pending | failed | pruned
    attempts: int
    trials: list[FrozenTrial] = field(default_factory=list)
    counted: FrozenTrial | None = None


@dataclass(frozen=True)
class Layout:
    """How a worker shares out its devices: ``slots`` trials at once, each with ``ranks``
    DDP ranks on ``gpus`` GPUs (0: CPU), holding ``held`` devices (GPUs, or CPU cores)."""

    slots: int
    ranks: int
    gpus: int
    held: float


@dataclass
class Started:
    trial: optuna.Trial
    key: str
    attempt: int
    slug: str


class Campaign:
    """A spec bound to its folder and ledger."""

    def __init__(
        self, spec: CampaignSpec, folder: str | Path, *, ledger: str | None = None
    ) -> None:
        self.spec = spec
        self.folder = Path(folder).resolve()
        self.folder.mkdir(parents=True, exist_ok=True)
        url = ledger or spec.model.ledger or f"journal:{self.folder / 'ledger'}"
        self.ledger: Ledger = open_ledger(
            url, spec.name, heartbeat_s=spec.model.execution.heartbeat_s
        )
        self.study = self.ledger.study
        self._check_spec()
        self.planned = {t.key: t for t in spec.trials()}
        self._jobs: dict[str, dict[str, Any]] | None = None
        self._budget_said: set[str] = set()

    # -- the spec and the study ------------------------------------------------------------

    def _check_spec(self) -> None:
        attrs = self.study.user_attrs
        spec_copy = self.folder / "spec.yaml"
        if not attrs:
            for name, value in {
                "schema": SCHEMA,
                "spec_hash": self.spec.hash,
                "campaign_seed": self.spec.seed,
                "forms": self.spec.forms,
            }.items():
                self.study.set_user_attr(A + name, value)
            if not spec_copy.exists():
                write_text_atomic(spec_copy, self.spec.text)  # never half a spec on resume
        elif attrs.get(A + "spec_hash") != self.spec.hash:
            raise SpecError(
                f"{self.ledger.url}: campaign {self.spec.name!r} was started with another spec "
                f"(see {spec_copy}); its trials would not match. Use a new campaign folder or "
                "name, or restore the original spec"
            )

    @property
    def execution(self) -> Any:
        return self.spec.model.execution

    def layout(self, slots: int | None = None) -> Layout:
        """Slots, ranks and devices per trial; ``ranks_per_trial: auto`` is decided here from
        ``estimate.json`` (`medscale.launch.scaling.ranks_per_trial`)."""
        ex = self.execution
        ranks = ex.ranks_per_trial
        if ranks == "auto":
            ranks = self._auto_ranks()
        gpus = (ranks if ranks > 1 else max(ex.gpus_per_trial, 1)) if ex.devices else 0
        if slots is None:
            slots = len(ex.devices) // gpus if ex.ranks_per_trial == "auto" else ex.slots
        if gpus and slots * gpus > len(ex.devices):
            raise SpecError(
                f"{slots} slot(s) × {gpus} GPU(s) need that many ids in execution.devices, "
                f"got {list(ex.devices)}"
            )
        return Layout(slots=max(1, slots), ranks=ranks, gpus=gpus, held=gpus or ex.cpus_per_trial)

    def _auto_ranks(self) -> int:
        from medscale.launch.scaling import Interconnect, ranks_per_trial

        path = self.folder / "estimate.json"
        if not path.is_file():
            raise SpecError(
                "execution.ranks_per_trial: auto needs the step time and model size of a "
                f"calibration: run `medscale campaign estimate` first (no {path})"
            )
        calibration = json.loads(path.read_text())["calibration"]
        if not calibration.get("step_s") or not calibration.get("parameters"):
            return 1  # not a training objective: nothing to parallelise
        return ranks_per_trial(
            self.spec.n_trials(),
            len(self.execution.devices),
            float(calibration["step_s"]),
            4.0 * float(calibration["parameters"]),  # float32 gradients
            Interconnect(self.execution.link_gb_s * 1e9),
        )

    @property
    def objective(self) -> str:
        name = self.spec.model.objective
        return OBJECTIVES.get(name, name)

    # -- preparing trials -----------------------------------------------------------------

    def prepare(self) -> dict[str, dict[str, Any]]:
        """Per fixed key: what its trial process needs; writes the shared split files and
        validates every trial's config, so a bad spec fails before anything runs."""
        if self._jobs is not None:
            return self._jobs
        spec = self.spec
        jobs: dict[str, dict[str, Any]] = {}
        if spec.model.objective != "train":
            for key, planned in self.planned.items():
                jobs[key] = {"params": dict(planned.assignment)}
            self._jobs = jobs
            return jobs
        from medscale.store.store import Store
        from medscale.train.config import TrainConfig

        if spec.store_path is None:
            raise SpecError(f"{spec.source}: the train objective needs 'store'")
        store = Store(spec.store_path, read_only=True)
        base = _base_config(spec)
        splits, has_val = self._write_splits(store, base)
        loo = spec.model.design.leave_one_out
        excluded = _check_leave_one_out(spec, store, base) if loo is not None else {}
        grid_names = set((spec.model.design.grid or {}).keys())
        for key, planned in self.planned.items():
            fold = planned.assignment.get("fold")
            split_file = splits[fold if fold is not None else "holdout"]
            params = {k: v for k, v in planned.assignment.items() if k in grid_names}
            config = trial_config(
                base,
                planned.assignment,
                params,
                seed=planned.seed,
                split_file=split_file,
                has_val=has_val,
                leave_out_over=None if loo is None else loo.over,
            )
            TrainConfig.from_dict(config, f"{spec.source}: trial {key}")  # fail early
            jobs[key] = {
                "params": params,
                "config": config,
                "store": str(spec.store_path),
                "exclude_recordings": excluded.get(planned.assignment.get("leave_out", "all")),
            }
        self._jobs = jobs
        return jobs

    def _write_splits(self, store: Any, base: dict[str, Any]) -> tuple[dict[Any, Path], bool]:
        from medscale.data.splits import load_split, make_kfold_splits, make_split, write_split

        design = self.spec.model.design
        fractions = sorted({1.0, *(design.data_fraction.fractions if design.data_fraction else ())})
        folder = self.folder / "splits"
        if design.kfold is not None:
            seed = design.kfold.seed if design.kfold.seed is not None else self.spec.seed
            made = make_kfold_splits(store, design.kfold.k, seed=seed, fractions=fractions)
            named: dict[Any, Any] = {i: s for i, s in enumerate(made)}
            has_val = False
        else:
            split_cfg = base.get("split") or {}
            made_one = make_split(
                store,
                val_fraction=float(split_cfg.get("val_fraction", 0.1)),
                test_fraction=float(split_cfg.get("test_fraction", 0.1)) or 0.1,
                seed=self.spec.seed,
                fractions=fractions,
            )
            named = {"holdout": made_one}
            has_val = (
                bool(made_one.subsets.get("val")) and split_cfg.get("val_subset", "val") is not None
            )
        paths = {}
        for name, split in named.items():
            path = folder / (f"fold-{name}.json" if name != "holdout" else "holdout.json")
            if path.is_file():
                if load_split(path, store).subsets != split.subsets:
                    raise SpecError(f"{path} holds another split than this spec makes")
            else:
                write_split(split, path)
            paths[name] = path
        return paths, has_val

    def job_document(
        self,
        key: str,
        assignment: dict[str, Any],
        params: dict[str, Any],
        attempt: int,
        devices: tuple[int, ...],
        ranks: int = 1,
    ) -> dict[str, Any]:
        """``trial.json``: everything the trial process reads."""
        seed = trial_seed(self.spec.seed, key) if self.spec.is_bayesian else self.planned[key].seed
        doc: dict[str, Any] = {
            "key": key,
            "assignment": assignment,
            "params": params,
            "seed": seed,
            "attempt": attempt,
            "objective": self.objective,
            "metric": self.spec.model.metric,
            "spec": self.spec.model.model_dump(mode="json"),
            "spec_folder": str(self.spec.folder),
            "campaign_dir": str(self.folder),
            "devices": list(devices),
            "cpu_only": not devices,
            "cpu_threads": max(1, int(self.execution.cpus_per_trial // ranks)),
            "ranks": ranks,
        }
        if self.spec.is_bayesian and self.spec.model.objective == "train":
            doc.update(self._bayesian_job(params, seed))
        elif not self.spec.is_bayesian:
            doc.update({k: v for k, v in self.prepare()[key].items() if k != "params"})
        return doc

    def _bayesian_job(self, params: dict[str, Any], seed: int) -> dict[str, Any]:
        from medscale.store.store import Store

        if self.spec.store_path is None:
            raise SpecError(f"{self.spec.source}: the train objective needs 'store'")
        base = _base_config(self.spec)
        splits, has_val = self._write_splits(Store(self.spec.store_path, read_only=True), base)
        configs = [
            trial_config(
                base, {}, params, seed=seed, split_file=path, has_val=has_val, leave_out_over=None
            )
            for path in splits.values()
        ]
        if "kfold" in self.spec.forms:  # every fold inside the trial; value: their mean
            return {"folds": configs, "store": str(self.spec.store_path)}
        return {"config": configs[0], "store": str(self.spec.store_path)}

    # -- the state of every key -----------------------------------------------------------

    def key_states(self, trials: list[FrozenTrial] | None = None) -> dict[str, KeyState]:
        """Every key's state; counted trials come from the claims only."""
        trials = self.study.get_trials(deepcopy=False) if trials is None else trials
        claims = self.ledger.claims()
        by_key: dict[str, list[FrozenTrial]] = defaultdict(list)
        for t in trials:
            key = t.user_attrs.get(A + "key")
            if key is not None and not t.user_attrs.get(A + "skipped"):
                by_key[key].append(t)
        keys = (
            list(self.planned)
            if not self.spec.is_bayesian
            else sorted(by_key, key=lambda k: int(k.split(":", 1)[1]))
        )
        numbers = {t.number: t for t in trials}
        out = {}
        for key in keys:
            attempts = by_key.get(key, [])
            states = {t.state for t in attempts}
            counted = numbers.get(claims[key]) if key in claims else None
            if counted is not None:
                status = "done"
            elif TrialState.RUNNING in states:
                status = "running"
            elif TrialState.WAITING in states:
                status = "waiting"
            elif TrialState.PRUNED in states:
                status = "pruned"
            elif attempts and (
                len(attempts) >= self.execution.max_attempts
                or any(t.user_attrs.get(A + "final") for t in attempts)
            ):
                status = "failed"
            else:
                status = "pending"
            out[key] = KeyState(key, status, len(attempts), attempts, counted)
        return out

    # -- under the plan lock ----------------------------------------------------------------

    def _reap(self, trials: list[FrozenTrial]) -> list[FrozenTrial]:
        """Fail RUNNING trials whose heartbeat stopped; returns the trials as they are now."""
        running = [t for t in trials if t.state == TrialState.RUNNING]
        dead = set(self.ledger.stale([t._trial_id for t in running]))
        if not dead:
            return trials
        storage = self.study._storage
        for t in running:
            if t._trial_id not in dead:
                continue
            try:
                storage.set_trial_user_attr(t._trial_id, A + "dead", time.time())
                storage.set_trial_state_values(t._trial_id, TrialState.FAIL)
            except (ValueError, RuntimeError):
                continue  # finished meanwhile
            self.ledger.drop_beat(t._trial_id)
            self.event("reaped", trial=t.number, key=t.user_attrs.get(A + "key"))
        return self.study.get_trials(deepcopy=False)

    def _reconcile(self, states: dict[str, KeyState]) -> None:
        """Claim keys whose COMPLETE trial's worker died between tell and claim."""
        for state in states.values():
            if state.status == "done":
                continue
            complete = [t for t in state.trials if t.state == TrialState.COMPLETE]
            if complete and self.ledger.claim(state.key, min(t.number for t in complete)):
                state.status = "done"
                state.counted = min(complete, key=lambda t: t.number)

    def expected_wall_s(self) -> float | None:
        """A trial's expected wall time: the mean of finished ones, else the estimate's."""
        walls = [
            float(t.user_attrs[A + "wall_s"])
            for t in self.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
            if t.user_attrs.get(A + "wall_s") is not None
        ]
        if walls:
            return sum(walls) / len(walls)
        estimate = self.folder / "estimate.json"
        if estimate.is_file():
            per_trial = json.loads(estimate.read_text()).get("per_trial")
            return None if per_trial is None else float(per_trial["wall_s"])
        return None

    def _cost_per_trial(self, states: dict[str, KeyState]) -> float | None:
        done = [s.counted.user_attrs.get(A + "cost") for s in states.values() if s.counted]
        done = [c for c in done if c is not None]
        if done:
            return sum(done) / len(done)
        estimate = self.folder / "estimate.json"
        if estimate.is_file():
            return float(json.loads(estimate.read_text())["per_trial"]["cost"])
        return None

    def spent(self, trials: list[FrozenTrial]) -> tuple[float, float]:
        """(device-seconds, cost) of every finished attempt, counted or not."""
        device_s = sum(float(t.user_attrs.get(A + "device_s") or 0) for t in trials)
        cost = sum(float(t.user_attrs.get(A + "cost") or 0) for t in trials)
        return device_s, cost

    def _within_budget(self, key: str, states: dict[str, KeyState], trials: list) -> bool:
        budget = self.spec.model.budget
        if budget.max_cost is None and budget.max_device_hours is None:
            return True
        per_trial = self._cost_per_trial(states)
        device_s, cost = self.spent(trials)
        busy = sum(1 for s in states.values() if s.status in ("running", "waiting"))
        price = self.spec.model.cost.per_device_hour
        per_trial_h = None
        done_h = [
            float(s.counted.user_attrs.get(A + "device_s") or 0) / 3600
            for s in states.values()
            if s.counted
        ]
        if done_h:
            per_trial_h = sum(done_h) / len(done_h)
        elif per_trial is not None and price > 0:
            per_trial_h = per_trial / price
        checks = []
        if budget.max_cost is not None:
            nxt = per_trial if per_trial is not None else 0.0
            checks.append(("cost", cost + (busy + 1) * nxt, budget.max_cost))
        if budget.max_device_hours is not None:
            nxt_h = per_trial_h if per_trial_h is not None else 0.0
            checks.append(
                ("device-hours", device_s / 3600 + (busy + 1) * nxt_h, budget.max_device_hours)
            )
        for what, projected, cap in checks:
            if projected > cap:
                if key not in self._budget_said:
                    self._budget_said.add(key)
                    self.event(
                        "budget",
                        key=key,
                        message=f"not launching {key}: {what} would reach {projected:.4g} "
                        f"(spent + running + this trial) > cap {cap:g}",
                    )
                return False
        return True

    def _plan(self, states: dict[str, KeyState], trials: list[FrozenTrial], slots: int) -> None:
        """Enqueue keys until ``2 × slots`` trials wait (retries first, then new keys)."""
        waiting = sum(1 for s in states.values() if s.status == "waiting")
        room = 2 * slots - waiting
        for state in states.values():
            if room <= 0:
                return
            if state.status != "pending":
                continue
            if not self._within_budget(state.key, states, trials):
                continue
            last = max(state.trials, key=lambda t: t.number) if state.trials else None
            attrs = {
                A + "key": state.key,
                A + "attempt": state.attempts + 1,
                A + "retry_of": None if last is None else last.number,
            }
            params = dict(last.params) if last is not None and self.spec.is_bayesian else {}
            self.study.enqueue_trial(params, user_attrs=attrs)
            state.status = "waiting"
            room -= 1

    def next_trial(self, slots: int, worker: str) -> Started | bool | None:
        """Under the plan lock: reap, reconcile, plan, pop. A started trial, or None when
        nothing can start now, or False when the campaign has nothing left to do."""
        trials = self._reap(self.study.get_trials(deepcopy=False))
        states = self.key_states(trials)
        self._reconcile(states)
        self._plan(states, trials, slots)
        waiting = any(s.status == "waiting" for s in states.values())
        new_bayes = (
            self.spec.is_bayesian
            and not waiting
            and len(states) < self.spec.n_trials()
            and self._within_budget(f"bo:{len(states)}", states, trials)
        )
        if not waiting and not new_bayes:
            running = any(s.status == "running" for s in states.values())
            return None if running else False
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            trial = self.study.ask(self.spec.search_space() or None)
        self.ledger.beat(trial._trial_id)  # before the lock is released: see Ledger.stale
        key = trial.user_attrs.get(A + "key")
        attempt = int(trial.user_attrs.get(A + "attempt") or 1)
        if key is None and new_bayes:
            key = f"bo:{len(states)}"
            trial.set_user_attr(A + "key", key)
            trial.set_user_attr(A + "attempt", 1)
        if key is None:  # cannot happen under the lock; never let a keyless trial run
            self.study.tell(trial, state=TrialState.FAIL)
            return None
        slug = key_slug(key)
        trial.set_user_attr(A + "worker", worker)
        trial.set_user_attr(A + "run_dir", f"trials/{slug}")
        trial.set_user_attr(
            A + "seed",
            trial_seed(self.spec.seed, key) if self.spec.is_bayesian else self.planned[key].seed,
        )
        return Started(trial, key, attempt, slug)

    def event(self, kind: str, **fields: Any) -> None:
        line = json.dumps({"time": time.time(), "event": kind, **fields}, default=str)
        with open(self.folder / "events.jsonl", "a") as f:
            f.write(line + "\n")

    def events(self) -> list[dict[str, Any]]:
        path = self.folder / "events.jsonl"
        if not path.is_file():
            return []
        out = []
        for line in path.read_text().splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:
                continue
        return out

    # -- reading results --------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        """Counts per state, retries, hours and cost spent, and an ETA (read-only)."""
        trials = self.study.get_trials(deepcopy=False)
        states = self.key_states(trials)
        counts: dict[str, int] = defaultdict(int)
        for s in states.values():
            counts[s.status] += 1
        if self.spec.is_bayesian:
            counts["pending"] += max(0, self.spec.n_trials() - len(states))
        retried = sum(1 for s in states.values() if s.attempts > 1)
        device_s, cost = self.spent(trials)
        walls = [
            float(s.counted.user_attrs.get(A + "wall_s") or 0) for s in states.values() if s.counted
        ]
        left = counts["pending"] + counts["waiting"] + counts["running"]
        slots = self.execution.slots
        eta = None if not walls else round(sum(walls) / len(walls) * left / slots, 1)
        budget = [e["message"] for e in self.events() if e.get("event") == "budget"]
        return {
            "campaign": self.spec.name,
            "ledger": self.ledger.url,
            "trials": len(states) if not self.spec.is_bayesian else self.spec.n_trials(),
            "done": counts["done"],
            "running": counts["running"] + counts["waiting"],
            "failed": counts["failed"],
            "pruned": counts["pruned"],
            "pending": counts["pending"],
            "retried": retried,
            "attempts": sum(s.attempts for s in states.values()),
            "device_hours": round(device_s / 3600, 6),
            "cost": round(cost, 6),
            "cost_unit": self.spec.model.cost.unit,
            "eta_s": eta,
            "budget_stops": budget[-3:],
        }

    def rows(self) -> list[dict[str, Any]]:
        """One row per key for `medscale.campaign.report`: the counted trial of a done key,
        else its latest attempt."""
        rows = []
        grid = set((self.spec.model.design.grid or {}).keys())
        for state in self.key_states().values():
            t = state.counted
            shown = t or (max(state.trials, key=lambda x: x.number) if state.trials else None)
            attrs = shown.user_attrs if shown is not None else {}
            assignment = self.planned[state.key].assignment if state.key in self.planned else {}
            error_lines = (attrs.get(A + "error") or "").strip().splitlines()
            params = {k: v for k, v in assignment.items() if k in grid}
            if shown is not None and shown.params:
                params.update(shown.params)
            rows.append(
                {
                    "key": state.key,
                    "status": state.status,
                    "number": None if shown is None else shown.number,
                    "attempts": state.attempts,
                    "value": None if t is None else t.value,
                    "metrics": attrs.get(A + "metrics") or {},
                    "params": params,
                    "leave_out": assignment.get("leave_out"),
                    "fold": assignment.get("fold"),
                    "fraction": assignment.get("fraction"),
                    "seed": attrs.get(A + "seed"),
                    "wall_s": attrs.get(A + "wall_s"),
                    "device_s": attrs.get(A + "device_s"),
                    "peak_rss_mb": attrs.get(A + "peak_rss_mb"),
                    "cost": attrs.get(A + "cost"),
                    "run_dir": attrs.get(A + "run_dir"),
                    "error": error_lines[-1] if error_lines else None,  # the exception line
                }
            )
        return rows


def _base_config(spec: CampaignSpec) -> dict[str, Any]:
    """The base training config as a dict (a bundled name, a file, or inline)."""
    from medscale.train.config import TrainConfig, bundled_configs

    base = spec.model.base
    if base is None:
        raise SpecError(f"{spec.source}: the train objective needs 'base' (a training config)")
    if isinstance(base, dict):
        return TrainConfig.from_dict(base, f"{spec.source}: base").to_dict()
    path = spec.resolve(base)
    if not path.is_file() and base not in bundled_configs():
        raise SpecError(f"{spec.source}: base {base!r} is neither a file nor a bundled config")
    return TrainConfig.load(path if path.is_file() else base).to_dict()


def _check_leave_one_out(
    spec: CampaignSpec, store: Any, base: dict[str, Any]
) -> dict[str, list[str]]:
    """Refuse items no recording has; for subjects and datasets, the recordings each item
    removes from training."""
    loo = spec.model.design.leave_one_out
    assert loo is not None
    infos = store.recordings()
    if loo.over == "channels":
        known = sorted({c.name for info in infos for c in info.channels})
    elif loo.over == "channel_groups":
        groups = ((base.get("data") or {}).get("sampling") or {}).get("channel_groups") or []
        known = [g["name"] for g in groups]
    elif loo.over == "subjects":
        known = sorted({f"{i.dataset}/{i.subject}" for i in infos})
    else:
        known = sorted({i.dataset for i in infos})
    unknown = [item for item in loo.items if item not in known]
    if unknown:
        raise SpecError(
            f"{spec.source}: design.leave_one_out names {loo.over} {unknown} that no recording "
            f"of {store.location} has; known: {known}"
        )
    if loo.over == "subjects":
        return {
            item: [i.key for i in infos if f"{i.dataset}/{i.subject}" == item] for item in loo.items
        }
    if loo.over == "datasets":
        return {item: [i.key for i in infos if i.dataset == item] for item in loo.items}
    return {}
