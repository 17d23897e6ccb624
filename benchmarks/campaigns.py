"""Campaign orchestration (issue 6): ledger latency per operation, overhead per
process-isolated trial, and references measured in the same run (Optuna's own loop in
process, Ray Tune's default, a bare ``sbatch``).

Run: ``python benchmarks/campaigns.py [--trials 1000] [--sql-trials 300]
[--subprocess-trials 100] [--repeats 1] [--ray-trials 50] [--slurm] [--out FILE.json]``

1. **Ledger operations** (`medscale.campaign.ledger.open_ledger`): for ``journal:`` (the
   local default), ``sqlite:///`` and ``postgresql+psycopg://`` (a private server from
   ``scripts/pg-up.sh``; skipped, with the reason, when it cannot start), one process runs
   N trials through the operations the worker loop makes, in its order: ``enqueue_trial``
   (keeping two trials waiting, as the planner's window of 2 × slots does for one slot),
   ``plan_lock`` (enter and leave), ``ask`` (pops a waiting trial), ``beat``,
   ``set_user_attr``, ``tell``, ``claim``. Then, with N trials in the ledger, the two reads
   the worker makes before each pop: ``get_trials`` and ``claims``. Milliseconds, median
   and p95 over the N calls.
2. **Orchestration overhead**: a campaign of N trivial trials (``objective: synthetic``, a
   grid of N values of ``x``) run by ``Worker(campaign, slots=1).run()``, every trial in its
   own process (``trial_process: forkserver`` and ``subprocess``), on the journal ledger, and
   with fewer trials on SQLite and PostgreSQL. Each campaign runs in a fresh Python process
   (so each pays its fork server's start, as ``medscale campaign run`` does); the time is
   from opening the campaign to ``run()`` returning, per trial = that wall / N. Also given:
   the median wall of one trial process as the worker saw it (``ms:wall_s``: start to
   exit), and the median time from one trial's start to the next one's in the first and the
   last tenth of the campaign (growth with the number of trials in the ledger).
3. **References, same run**: Optuna's ``study.optimize`` in process with
   ``JournalStorage(JournalFileBackend(...))`` (Optuna's default lock) and a
   ``RandomSampler`` on the same trivial objective; Ray Tune's default (``Tuner`` on a
   function trainable, ``tune.grid_search`` over ``--ray-trials`` values,
   ``max_concurrent_trials=--ray-concurrency``, ``ray.init(address="local", num_cpus=2,
   include_dashboard=False)``, ``RAY_USAGE_STATS_ENABLED=0``) in a fresh process, with import,
   ``ray.init`` and shutdown reported apart from ``fit``.
4. ``--slurm``: a private cluster from ``scripts/slurm-up.sh``; ``--slurm-trials`` bare jobs
   ``sbatch --wait --wrap "python -c '<the trivial objective>'"`` one after another (and the
   same jobs submitted with ``sbatch --parsable`` and followed with ``scontrol`` every 50 ms,
   since ``sbatch --wait`` first looks after 2 s), against a campaign of as many trivial
   trials through ``run_campaign(..., executor="slurm")`` (an array of one worker that pops
   every trial); the cluster is stopped with ``scripts/slurm-down.sh`` at the end.

Keep this module's top level light: fork-server trial processes re-run the main script
(as ``__mp_main__``) when it is started by path.
"""

from __future__ import annotations

import argparse
import datetime
import itertools
import json
import os
import platform
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
SCRIPTS = REPO / "scripts"
OPS = ("enqueue_trial", "plan_lock", "ask", "beat", "set_user_attr", "tell", "claim")
READS = ("get_trials", "claims")
#: the trivial objective as a bare job runs it (the values `synthetic` computes, no medscale)
BARE_CODE = (
    "import math, random; print(math.exp(-(2.0 - 0.3) ** 2) + random.Random(1).gauss(0, 0.01))"
)
GOAL_OP_MS = 5.0
GOAL_TRIAL_MS = 250.0


# -- small helpers -------------------------------------------------------------------------


def _code_state() -> dict[str, Any]:
    """The commit, whether the engine's sources differ from it, and their newest mtime (a
    change during the run means the campaigns did not all run the same code)."""

    def git(*cmd: str) -> str:
        done = subprocess.run(["git", *cmd], cwd=REPO, capture_output=True, text=True)
        return done.stdout.strip() if done.returncode == 0 else "?"

    sources = sorted((REPO / "src" / "medscale" / "campaign").glob("*.py"))
    return {
        "commit": git("rev-parse", "--short", "HEAD"),
        "engine_dirty": bool(git("status", "--porcelain", "--", "src/medscale/campaign")),
        "engine_mtime": max((f.stat().st_mtime for f in sources), default=0.0),
    }


def _loadavg() -> list[float]:
    return [float(v) for v in Path("/proc/loadavg").read_text().split()[:3]]


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def _p95(values: list[float]) -> float:
    if len(values) < 2:
        return values[0] if values else float("nan")
    return statistics.quantiles(values, n=100, method="inclusive")[94]


def _ms(seconds: list[float]) -> list[float]:
    return [s * 1e3 for s in seconds]


def _timed(times: list[float], fn: Any, *args: Any, **kwargs: Any) -> Any:
    t0 = time.perf_counter()
    out = fn(*args, **kwargs)
    times.append(time.perf_counter() - t0)
    return out


def grid_spec(name: str, n: int, trial_process: str, extra: str = "") -> str:
    values = ", ".join(str(i) for i in range(n))
    return (
        f"name: {name}\nobjective: synthetic\nseed: 1\ndesign:\n  grid:\n    x: [{values}]\n"
        f"execution: {{slots: 1, heartbeat_s: 10, trial_process: {trial_process}}}\n{extra}"
    )


def run_child(
    name: str,
    args: dict[str, Any],
    work: Path,
    *,
    timeout: float,
    env: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Run ``name`` in a fresh interpreter (this file with ``--child``); its JSON result, or
    ``{"skipped": reason}`` when it failed."""
    work.mkdir(parents=True, exist_ok=True)
    out = work / f"{name}-result.json"
    log = work / f"{name}.log"
    out.unlink(missing_ok=True)
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", name]
    cmd += ["--child-out", str(out), "--child-args", json.dumps(args)]
    with open(log, "w") as f:
        try:
            done = subprocess.run(
                cmd, stdout=f, stderr=subprocess.STDOUT, env=env, timeout=timeout, cwd=work
            )
            rc: int | str = done.returncode
        except subprocess.TimeoutExpired:
            rc = f"timeout after {timeout:.0f} s"
    if rc == 0 and out.is_file():
        return json.loads(out.read_text())
    tail = log.read_text(errors="replace")[-2000:] if log.is_file() else ""
    return {"skipped": f"{name} failed ({rc}); log {log}:\n{tail}"}


# -- children: each runs in its own interpreter ----------------------------------------------


def child_ledger_ops(args: dict[str, Any]) -> dict[str, Any]:
    """Part 1: per-operation latency of one ledger, N trials in one process."""
    from medscale.campaign.ledger import open_ledger

    n, url = int(args["n"]), args["url"]
    t0 = time.perf_counter()
    ledger = open_ledger(url, args["name"], heartbeat_s=10)
    open_s = time.perf_counter() - t0
    study = ledger.study
    times: dict[str, list[float]] = {op: [] for op in (*OPS, *READS)}
    window = 2

    def enqueue(i: int) -> None:
        attrs = {"ms:key": f'grid:{{"x":{i}}}', "ms:attempt": 1, "ms:retry_of": None}
        _timed(times["enqueue_trial"], study.enqueue_trial, {}, user_attrs=attrs)

    for i in range(min(window, n)):
        enqueue(i)
    for i in range(n):
        if i + window < n:
            enqueue(i + window)
        lock = ledger.plan_lock()
        t = time.perf_counter()
        lock.__enter__()
        held = time.perf_counter() - t
        try:
            trial = _timed(times["ask"], study.ask)
        finally:
            t = time.perf_counter()
            lock.__exit__(None, None, None)
            times["plan_lock"].append(held + time.perf_counter() - t)
        _timed(times["beat"], ledger.beat, trial._trial_id)
        _timed(times["set_user_attr"], trial.set_user_attr, "ms:wall_s", 0.01)
        _timed(times["tell"], study.tell, trial, float(i))
        key = trial.user_attrs["ms:key"]
        won = _timed(times["claim"], ledger.claim, key, trial.number)
        if not won:
            raise RuntimeError(f"claim of {key} (trial {trial.number}) lost in a single process")
    for _ in range(min(n, 50)):
        _timed(times["get_trials"], study.get_trials, deepcopy=False)
        _timed(times["claims"], ledger.claims)
    trials = study.get_trials(deepcopy=False)
    complete = sum(1 for t in trials if t.state.name == "COMPLETE")
    claims = len(ledger.claims())
    ledger.close()
    return {
        "url_kind": url.split(":", 1)[0],
        "trials": n,
        "open_s": open_s,
        "complete": complete,
        "claims": claims,
        "ms": {op: _ms(v) for op, v in times.items()},
    }


def child_orchestration(args: dict[str, Any]) -> dict[str, Any]:
    """Part 2: one campaign of N trivial trials, one slot, from opening to the end."""
    from medscale.campaign import Campaign, CampaignSpec, Worker

    n, folder = int(args["n"]), Path(args["folder"])
    folder.mkdir(parents=True, exist_ok=True)
    spec = CampaignSpec.from_text(grid_spec(args["name"], n, args["mode"]), folder)
    t0 = time.perf_counter()
    campaign = Campaign(spec, folder / "campaign", ledger=args.get("url"))
    t_open = time.perf_counter() - t0
    ran = Worker(campaign, slots=1).run()
    wall = time.perf_counter() - t0
    status = campaign.status()
    trials = sorted(campaign.study.get_trials(deepcopy=False), key=lambda t: t.number)
    starts = [t.datetime_start.timestamp() for t in trials if t.datetime_start is not None]
    cycles = [b - a for a, b in itertools.pairwise(starts)]
    tenth = max(1, len(cycles) // 10)
    trial_walls = [float(t.user_attrs.get("ms:wall_s") or 0) for t in trials]
    campaign.ledger.close()
    return {
        "mode": args["mode"],
        "ledger": campaign.ledger.url.split(":", 1)[0],
        "trials": n,
        "ran": ran,
        "done": status["done"],
        "failed": status["failed"],
        "attempts": status["attempts"],
        "open_s": t_open,
        "wall_s": wall,
        "per_trial_ms": wall / n * 1e3,
        "trial_process_ms_median": _median(trial_walls) * 1e3,
        "cycle_ms_first_tenth": _median(cycles[:tenth]) * 1e3,
        "cycle_ms_last_tenth": _median(cycles[-tenth:]) * 1e3,
    }


def child_optuna(args: dict[str, Any]) -> dict[str, Any]:
    """Part 3a: Optuna's own loop in process on the journal file, the same objective."""
    import math
    import random

    import optuna
    from optuna.storages.journal import JournalFileBackend, JournalStorage

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    n = int(args["n"])

    def objective(trial: optuna.Trial) -> float:
        x = float(trial.suggest_int("x", 0, n - 1))
        return math.exp(-((x - 0.3) ** 2)) + random.Random(trial.number).gauss(0.0, 0.01)

    t0 = time.perf_counter()
    storage = JournalStorage(JournalFileBackend(str(Path(args["folder"]) / "journal.jsonl")))
    study = optuna.create_study(
        storage=storage, study_name="optuna-ref", sampler=optuna.samplers.RandomSampler(seed=1)
    )
    t_open = time.perf_counter() - t0
    t1 = time.perf_counter()
    study.optimize(objective, n_trials=n)
    wall = time.perf_counter() - t1
    done = sum(1 for t in study.get_trials(deepcopy=False) if t.state.name == "COMPLETE")
    return {
        "trials": n,
        "done": done,
        "open_s": t_open,
        "wall_s": wall,
        "per_trial_ms": wall / n * 1e3,
    }


def _ray_trainable(config: dict[str, Any]) -> None:
    import math
    import random

    from ray import tune

    x = float(config["x"])
    tune.report({"value": math.exp(-((x - 0.3) ** 2)) + random.Random(int(x)).gauss(0.0, 0.01)})


def child_ray(args: dict[str, Any]) -> dict[str, Any]:
    """Part 3b: Ray Tune's default on a trivial function trainable."""
    n, concurrency = int(args["n"]), int(args["concurrency"])
    t0 = time.perf_counter()
    import ray
    from ray import tune

    t_import = time.perf_counter() - t0
    t1 = time.perf_counter()
    ray.init(address="local", num_cpus=2, include_dashboard=False)
    t_init = time.perf_counter() - t1
    try:
        t2 = time.perf_counter()
        tuner = tune.Tuner(
            _ray_trainable,
            param_space={"x": tune.grid_search(list(range(n)))},
            tune_config=tune.TuneConfig(max_concurrent_trials=concurrency),
            run_config=tune.RunConfig(name="bench", storage_path=args["folder"], verbose=0),
        )
        results = tuner.fit()
        t_fit = time.perf_counter() - t2
        errors = results.num_errors
        done = len(results) - errors
    finally:
        t3 = time.perf_counter()
        ray.shutdown()
        t_shutdown = time.perf_counter() - t3
    return {
        "ray": ray.__version__,
        "trials": n,
        "done": done,
        "errors": errors,
        "max_concurrent_trials": concurrency,
        "import_s": t_import,
        "init_s": t_init,
        "fit_s": t_fit,
        "shutdown_s": t_shutdown,
        "per_trial_ms": t_fit / n * 1e3,
    }


def child_slurm_campaign(args: dict[str, Any]) -> dict[str, Any]:
    """Part 4b: a campaign of N trivial trials through ``run_campaign(executor="slurm")``."""
    from medscale.campaign.executors import run_campaign

    n, folder = int(args["n"]), Path(args["folder"])
    folder.mkdir(parents=True, exist_ok=True)
    spec_path = folder / "spec.yaml"
    slurm = 'slurm: {tasks: 1, time: "00:10:00"}\n'
    spec_path.write_text(grid_spec(args["name"], n, "forkserver", slurm))
    t_wall0 = time.time()
    t0 = time.perf_counter()
    campaign, info = run_campaign(spec_path, folder / "campaign", executor="slurm", progress=False)
    wall = time.perf_counter() - t0
    t_wall1 = time.time()
    status = campaign.status()
    trials = campaign.study.get_trials(deepcopy=False)
    starts = [t.datetime_start.timestamp() for t in trials if t.datetime_start]
    ends = [t.datetime_complete.timestamp() for t in trials if t.datetime_complete]
    return {
        "trials": n,
        "done": status["done"],
        "job": info,
        "wall_s": wall,
        "per_trial_s": wall / n,
        "to_first_trial_s": min(starts) - t_wall0 if starts else None,
        "trials_span_s": max(ends) - min(starts) if starts and ends else None,
        "last_trial_to_return_s": t_wall1 - max(ends) if ends else None,
    }


CHILDREN = {
    "ledger_ops": child_ledger_ops,
    "orchestration": child_orchestration,
    "optuna": child_optuna,
    "ray": child_ray,
    "slurm_campaign": child_slurm_campaign,
}


# -- servers and clusters ----------------------------------------------------------------------


def pg_up(folder: Path) -> tuple[str | None, str]:
    """(URL, "") of a private PostgreSQL server, or (None, why not)."""
    try:
        done = subprocess.run(
            ["bash", str(SCRIPTS / "pg-up.sh"), str(folder)],
            capture_output=True,
            text=True,
            timeout=600,
        )
    except subprocess.TimeoutExpired:
        return None, "scripts/pg-up.sh took over 600 s"
    if done.returncode != 0:
        return None, f"scripts/pg-up.sh exited {done.returncode}: {done.stderr.strip()[-600:]}"
    return done.stdout.strip(), ""


def pg_down(folder: Path) -> None:
    subprocess.run(["bash", str(SCRIPTS / "pg-down.sh"), str(folder)], capture_output=True)


def slurm_up(folder: Path) -> tuple[dict[str, str] | None, str]:
    """The environment of a private SLURM cluster (``export K=V`` lines of slurm-up.sh), or
    (None, why not)."""
    try:
        done = subprocess.run(
            ["bash", str(SCRIPTS / "slurm-up.sh"), str(folder)],
            capture_output=True,
            text=True,
            timeout=900,
        )
    except subprocess.TimeoutExpired:
        return None, "scripts/slurm-up.sh took over 900 s"
    if done.returncode != 0:
        return None, f"scripts/slurm-up.sh exited {done.returncode}: {done.stderr.strip()[-600:]}"
    env = dict(os.environ)
    for line in done.stdout.splitlines():
        if not line.startswith("export ") or "=" not in line:
            continue
        name, _, value = line[len("export ") :].partition("=")
        value = shlex.split(value)[0] if value.strip() else ""
        env[name] = os.path.expandvars(value.replace("$PATH", env.get("PATH", "")))
    if not shutil.which("sbatch", path=env.get("PATH")):
        return None, "sbatch is not on PATH after scripts/slurm-up.sh"
    return env, ""


def slurm_down(folder: Path) -> None:
    subprocess.run(["bash", str(SCRIPTS / "slurm-down.sh"), str(folder)], capture_output=True)


def bare_sbatch_wait(env: dict[str, str], work: Path) -> float:
    """Seconds for ``sbatch --wait`` of one bare trivial job."""
    wrap = f"{shlex.quote(sys.executable)} -c {shlex.quote(BARE_CODE)}"
    t0 = time.perf_counter()
    subprocess.run(
        ["sbatch", "--wait", "--quiet", "-o", "/dev/null", f"--chdir={work}", "--wrap", wrap],
        env=env,
        check=True,
        capture_output=True,
    )
    return time.perf_counter() - t0


def bare_sbatch_polled(env: dict[str, str], work: Path, poll_s: float = 0.05) -> float:
    """Seconds from ``sbatch --parsable`` of one bare job to ``scontrol`` showing it ended."""
    wrap = f"{shlex.quote(sys.executable)} -c {shlex.quote(BARE_CODE)}"
    t0 = time.perf_counter()
    job = subprocess.run(
        ["sbatch", "--parsable", "-o", "/dev/null", f"--chdir={work}", "--wrap", wrap],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    while True:
        shown = subprocess.run(
            ["scontrol", "-o", "show", "job", job], env=env, capture_output=True, text=True
        ).stdout
        state = next((f[9:] for f in shown.split() if f.startswith("JobState=")), "")
        if state in ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL"):
            if state != "COMPLETED":
                raise RuntimeError(f"bare job {job} ended {state}")
            return time.perf_counter() - t0
        time.sleep(poll_s)


# -- the parts, run from the parent ----------------------------------------------------------


def part_ledger_ops(args: argparse.Namespace, work: Path, pg_url: str | None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    kinds = [
        ("journal", f"journal:{work / 'ops-journal'}", args.trials),
        ("sqlite", f"sqlite:///{work / 'ops-sqlite' / 'ledger.db'}", args.sql_trials),
    ]
    if pg_url:
        kinds.append(("postgresql", pg_url, args.sql_trials))
    for kind, url, n in kinds:
        print(f"  ledger operations: {kind}, {n} trials (load {_loadavg()[0]:.2f})", flush=True)
        name = f"ops-{kind}-{os.getpid()}"
        timeout = 120 + n * 2.0
        out[kind] = run_child(
            "ledger_ops", {"n": n, "url": url, "name": name}, work / f"ops-{kind}", timeout=timeout
        )
    return out


def part_orchestration(args: argparse.Namespace, work: Path, pg_url: str | None) -> dict[str, Any]:
    variants = [
        ("journal, forkserver", None, "forkserver", args.trials),
        ("journal, subprocess", None, "subprocess", args.subprocess_trials),
        ("sqlite, forkserver", "sqlite", "forkserver", args.sql_trials),
    ]
    if pg_url:
        variants.append(("postgresql, forkserver", "postgresql", "forkserver", args.sql_trials))
    runs: dict[str, list[dict[str, Any]]] = {v[0]: [] for v in variants}
    optuna_runs: list[dict[str, Any]] = []
    for r in range(args.repeats):
        for label, kind, mode, n in variants:
            folder = work / f"orch-{label.replace(', ', '-')}-{r}"
            url = None
            if kind == "sqlite":
                url = f"sqlite:///{folder / 'ledger.db'}"
            elif kind == "postgresql":
                url = pg_url
            print(
                f"  campaign {label}, {n} trials, repeat {r + 1} (load {_loadavg()[0]:.2f})",
                flush=True,
            )
            name = f"bench-{label.replace(', ', '-')}-{r}-{os.getpid()}"
            child = {"n": n, "mode": mode, "url": url, "folder": str(folder), "name": name}
            runs[label].append(run_child("orchestration", child, folder, timeout=300 + n * 3.0))
        print(f"  Optuna optimize(), {args.trials} trials (load {_loadavg()[0]:.2f})", flush=True)
        folder = work / f"optuna-{r}"
        optuna_runs.append(
            run_child("optuna", {"n": args.trials, "folder": str(folder)}, folder, timeout=900)
        )
    return {"campaigns": runs, "optuna": optuna_runs}


def part_ray(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    print(
        f"  Ray Tune, {args.ray_trials} trials, max_concurrent_trials={args.ray_concurrency} "
        f"(load {_loadavg()[0]:.2f})",
        flush=True,
    )
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env["RAY_USAGE_STATS_ENABLED"] = "0"
    folder = work / "ray"
    child = {"n": args.ray_trials, "concurrency": args.ray_concurrency, "folder": str(folder)}
    return run_child("ray", child, folder, timeout=300 + args.ray_trials * 20.0, env=env)


def part_slurm(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    folder = Path(args.slurm_dir)
    print(f"  starting a private SLURM cluster in {folder}", flush=True)
    t0 = time.perf_counter()
    env, why = slurm_up(folder)
    up_s = time.perf_counter() - t0
    if env is None:
        print(f"  SLURM skipped: {why}", flush=True)
        return {"skipped": why}
    out: dict[str, Any] = {"up_s": up_s, "wait": [], "polled": [], "campaigns": []}
    try:
        jobs = work / "slurm-bare"
        jobs.mkdir(parents=True, exist_ok=True)
        k = args.slurm_trials
        for r in range(args.repeats):
            print(
                f"  SLURM repeat {r + 1}: {k} bare jobs with sbatch --wait, {k} polled, "
                f"a campaign of {k} trials (load {_loadavg()[0]:.2f})",
                flush=True,
            )
            out["wait"] += [bare_sbatch_wait(env, jobs) for _ in range(k)]
            out["polled"] += [bare_sbatch_polled(env, jobs) for _ in range(k)]
            camp = work / f"slurm-campaign-{r}"
            child = {"n": k, "folder": str(camp), "name": f"bench-slurm-{r}-{os.getpid()}"}
            out["campaigns"].append(
                run_child("slurm_campaign", child, camp, timeout=600 + k * 30.0, env=env)
            )
    finally:
        slurm_down(folder)
    return out


# -- the report ------------------------------------------------------------------------------


def _ok(result: dict[str, Any]) -> bool:
    return "skipped" not in result


def summarize(results: dict[str, Any]) -> dict[str, Any]:
    """Medians and ratios the table and the JSON report."""
    s: dict[str, Any] = {"ledger_ops": {}, "campaigns": {}}
    for kind, r in results["ledger_ops"].items():
        if not _ok(r):
            s["ledger_ops"][kind] = {"skipped": r["skipped"]}
            continue
        s["ledger_ops"][kind] = {
            "trials": r["trials"],
            "open_s": r["open_s"],
            **{op: {"median": _median(v), "p95": _p95(v)} for op, v in r["ms"].items()},
        }
    for label, runs in results["orchestration"]["campaigns"].items():
        good = [r for r in runs if _ok(r)]
        if not good:
            s["campaigns"][label] = {"skipped": runs[0]["skipped"] if runs else "not run"}
            continue
        s["campaigns"][label] = {
            "trials": good[0]["trials"],
            "repeats": len(good),
            "all_done": all(r["done"] == r["trials"] and r["failed"] == 0 for r in good),
            "wall_s": _median([r["wall_s"] for r in good]),
            "per_trial_ms": _median([r["per_trial_ms"] for r in good]),
            "per_trial_ms_runs": [r["per_trial_ms"] for r in good],
            "open_s": _median([r["open_s"] for r in good]),
            "trial_process_ms": _median([r["trial_process_ms_median"] for r in good]),
            "cycle_ms_first_tenth": _median([r["cycle_ms_first_tenth"] for r in good]),
            "cycle_ms_last_tenth": _median([r["cycle_ms_last_tenth"] for r in good]),
        }
    opt = [r for r in results["orchestration"]["optuna"] if _ok(r)]
    if opt:
        s["optuna"] = {
            "trials": opt[0]["trials"],
            "per_trial_ms": _median([r["per_trial_ms"] for r in opt]),
            "per_trial_ms_runs": [r["per_trial_ms"] for r in opt],
        }
    ray = results.get("ray")
    if ray is not None:
        s["ray"] = ray if not _ok(ray) else {k: v for k, v in ray.items()}
    slurm = results.get("slurm")
    if slurm is not None and _ok(slurm):
        camps = [c for c in slurm["campaigns"] if _ok(c)]
        s["slurm"] = {
            "up_s": slurm["up_s"],
            "wait_s_per_trial": _median(slurm["wait"]),
            "polled_s_per_trial": _median(slurm["polled"]),
            "campaign_wall_s": _median([c["wall_s"] for c in camps]) if camps else None,
            "campaign_s_per_trial": _median([c["per_trial_s"] for c in camps]) if camps else None,
            "campaign_runs": camps,
            "campaign_failures": [c["skipped"] for c in slurm["campaigns"] if not _ok(c)],
        }
    elif slurm is not None:
        s["slurm"] = slurm
    fs = s["campaigns"].get("journal, forkserver", {}).get("per_trial_ms")
    ratios: dict[str, float] = {}
    if fs:
        sub = s["campaigns"].get("journal, subprocess", {}).get("per_trial_ms")
        if sub:
            ratios["subprocess / forkserver (journal)"] = sub / fs
        if "optuna" in s:
            ratios["medscale forkserver / Optuna in process"] = fs / s["optuna"]["per_trial_ms"]
        if "ray" in s and _ok(s["ray"]):
            ratios["Ray Tune / medscale forkserver"] = s["ray"]["per_trial_ms"] / fs
    if "ray" in s and _ok(s["ray"]) and "optuna" in s:
        ratios["Ray Tune / Optuna in process"] = (
            s["ray"]["per_trial_ms"] / s["optuna"]["per_trial_ms"]
        )
    sl = s.get("slurm") or {}
    if sl.get("campaign_s_per_trial"):
        ratios["SLURM campaign / bare sbatch --wait (per trial)"] = (
            sl["campaign_s_per_trial"] / sl["wait_s_per_trial"]
        )
        ratios["SLURM campaign / bare sbatch polled (per trial)"] = (
            sl["campaign_s_per_trial"] / sl["polled_s_per_trial"]
        )
    s["ratios"] = ratios
    return s


def print_report(s: dict[str, Any]) -> None:
    ops = s["ledger_ops"]
    kinds = list(ops)
    print("\nLedger operations, ms median / p95")
    head = " | ".join(
        f"{k} ({ops[k]['trials']} trials)" if "trials" in ops[k] else k for k in kinds
    )
    print(f"| operation | {head} |")
    print("|---|" + "---|" * len(kinds))
    for op in (*OPS, *READS):
        cells = []
        for k in kinds:
            if "skipped" in ops[k]:
                cells.append("skipped")
            else:
                cells.append(f"{ops[k][op]['median']:.2f} / {ops[k][op]['p95']:.2f}")
        label = op if op in OPS else f"{op} (N trials in the ledger)"
        print(f"| {label} | " + " | ".join(cells) + " |")
    opens = ["skipped" if "skipped" in ops[k] else f"{ops[k]['open_s']:.2f}" for k in kinds]
    print("| open the ledger (s) | " + " | ".join(opens) + " |")
    for k in kinds:
        if "skipped" in ops[k]:
            print(f"{k} skipped: {ops[k]['skipped'][:400]}")
    journal = ops.get("journal", {})
    if "ask" in journal:
        worst = max(journal[op]["median"] for op in OPS)
        worst95 = max(journal[op]["p95"] for op in OPS)
        met = "met" if worst <= GOAL_OP_MS else "missed"
        print(
            f"goal ≤ {GOAL_OP_MS:g} ms per operation, journal: {met} (worst median {worst:.2f} ms, "
            f"worst p95 {worst95:.2f} ms)"
        )

    print("\nOrchestration, one slot, trivial trials")
    print(
        "| campaign | trials | repeats | wall s | ms per trial | trial process ms | "
        "start-to-start ms, first / last tenth | all done |"
    )
    print("|---|---:|---:|---:|---:|---:|---|---|")
    for label, c in s["campaigns"].items():
        if "skipped" in c:
            print(f"| {label} | skipped | | | | | | {c['skipped'][:300]} |")
            continue
        print(
            f"| {label} | {c['trials']} | {c['repeats']} | {c['wall_s']:.1f} | "
            f"{c['per_trial_ms']:.1f} | {c['trial_process_ms']:.1f} | "
            f"{c['cycle_ms_first_tenth']:.1f} / {c['cycle_ms_last_tenth']:.1f} | {c['all_done']} |"
        )
    if "optuna" in s:
        o = s["optuna"]
        row = f"| Optuna optimize() in process, journal | {o['trials']} | | | "
        print(row + f"{o['per_trial_ms']:.2f} | | | |")
    ray = s.get("ray")
    if ray is not None and _ok(ray):
        print(
            f"| Ray Tune {ray['ray']} (Tuner, grid_search, max_concurrent_trials="
            f"{ray['max_concurrent_trials']}) | {ray['trials']} | 1 | {ray['fit_s']:.1f} | "
            f"{ray['per_trial_ms']:.1f} | | | {ray['errors'] == 0} |"
        )
        print(
            f"Ray: import {ray['import_s']:.1f} s, ray.init {ray['init_s']:.1f} s, "
            f"shutdown {ray['shutdown_s']:.1f} s (not in the per-trial figure)"
        )
    elif ray is not None:
        print(f"Ray skipped: {ray['skipped'][:600]}")
    for label in ("journal, forkserver", "journal, subprocess"):
        c = s["campaigns"].get(label, {})
        if "per_trial_ms" in c:
            met = "met" if c["per_trial_ms"] <= GOAL_TRIAL_MS else "missed"
            print(
                f"goal ≤ {GOAL_TRIAL_MS:g} ms per trial, {label}: {met} ({c['per_trial_ms']:.1f})"
            )

    sl = s.get("slurm")
    if sl is not None:
        print("\nSLURM (private one-node cluster)")
        if "skipped" in sl:
            print(f"skipped: {sl['skipped']}")
        else:
            print(f"cluster start (scripts/slurm-up.sh): {sl['up_s']:.1f} s")
            print(f"bare job, sbatch --wait: {sl['wait_s_per_trial']:.2f} s per trial (median)")
            print(
                f"bare job, sbatch --parsable + scontrol every 50 ms: "
                f"{sl['polled_s_per_trial']:.2f} s per trial (median)"
            )
            if sl["campaign_s_per_trial"] is not None:
                c = sl["campaign_runs"][0]
                print(
                    f"campaign via run_campaign(executor='slurm'), {c['trials']} trials: wall "
                    f"{sl['campaign_wall_s']:.2f} s, {sl['campaign_s_per_trial']:.2f} s per trial "
                    f"(first run: submit → first trial {c['to_first_trial_s']:.2f} s, trials "
                    f"{c['trials_span_s']:.2f} s, last trial → return "
                    f"{c['last_trial_to_return_s']:.2f} s)"
                )
            for failure in sl["campaign_failures"]:
                print(f"campaign failed: {failure[:600]}")
    print("\nRatios")
    for name, value in s["ratios"].items():
        print(f"  {name}: {value:.2f}×")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=1000, help="journal ledger and Optuna")
    parser.add_argument("--sql-trials", type=int, default=300, help="SQLite and PostgreSQL")
    parser.add_argument("--subprocess-trials", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=1, help="campaigns per variant")
    parser.add_argument("--ray-trials", type=int, default=50, help="0 skips Ray")
    parser.add_argument("--ray-concurrency", type=int, default=1, help="max_concurrent_trials")
    parser.add_argument("--no-pg", action="store_true", help="skip PostgreSQL")
    parser.add_argument("--pg-dir", default="/tmp/msbpg")
    parser.add_argument("--slurm", action="store_true", help="also measure SLURM")
    parser.add_argument("--slurm-trials", type=int, default=5)
    parser.add_argument("--slurm-dir", default="/tmp/msb-slurm")
    parser.add_argument("--out", help="write the results as JSON here")
    parser.add_argument("--work", help="keep the work folder here (default: a temporary one)")
    parser.add_argument("--child", choices=sorted(CHILDREN), help=argparse.SUPPRESS)
    parser.add_argument("--child-out", help=argparse.SUPPRESS)
    parser.add_argument("--child-args", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        result = CHILDREN[args.child](json.loads(args.child_args))
        Path(args.child_out).write_text(json.dumps(result))
        return
    if min(args.trials, args.sql_trials, args.subprocess_trials, args.slurm_trials) < 2:
        parser.error("every trial count must be at least 2")

    from importlib.metadata import version

    started = time.perf_counter()
    meta: dict[str, Any] = {
        "command": " ".join(shlex.quote(a) for a in sys.argv),
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "host_cpus": os.cpu_count(),
        "python": platform.python_version(),
        "optuna": version("optuna"),
        "loadavg_before": _loadavg(),
        "code_before": _code_state(),
    }
    print(f"load average before: {meta['loadavg_before']}", flush=True)
    work_root = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="msb-campaigns-"))
    work_root.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {}
    pg_url = None
    pg_dir = Path(args.pg_dir)
    try:
        if not args.no_pg:
            pg_url, why = pg_up(pg_dir)
            if pg_url is None:
                print(f"PostgreSQL skipped: {why}", flush=True)
                meta["pg_skipped"] = why
        else:
            meta["pg_skipped"] = "--no-pg"
        print("1. ledger operations", flush=True)
        results["ledger_ops"] = part_ledger_ops(args, work_root, pg_url)
        print("2–3. campaigns and Optuna's own loop", flush=True)
        results["orchestration"] = part_orchestration(args, work_root, pg_url)
    finally:
        if pg_url is not None:
            pg_down(pg_dir)
    if args.ray_trials:
        print("3. Ray Tune", flush=True)
        results["ray"] = part_ray(args, work_root)
    if args.slurm:
        print("4. SLURM", flush=True)
        results["slurm"] = part_slurm(args, work_root)
    meta["loadavg_after"] = _loadavg()
    meta["code_after"] = _code_state()
    meta["seconds"] = time.perf_counter() - started
    summary = summarize(results)
    print_report(summary)
    print(
        f"\nload average before {meta['loadavg_before']}, after {meta['loadavg_after']}; "
        f"whole benchmark {meta['seconds']:.0f} s"
    )
    before, after = meta["code_before"], meta["code_after"]
    print(f"code: commit {before['commit']}, engine sources modified: {before['engine_dirty']}")
    if before != after:
        print(f"WARNING: the engine's sources changed during the run ({before} -> {after})")
    if args.out:
        Path(args.out).write_text(
            json.dumps({"meta": meta, "summary": summary, "raw": results}, indent=1) + "\n"
        )
        print(f"wrote {args.out}")
    if not args.work:
        shutil.rmtree(work_root, ignore_errors=True)


if __name__ == "__main__":
    main()
