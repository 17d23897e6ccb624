"""The campaign engine on the synthetic objective: specs, keys and seeds, running, failures,
heartbeats, budget, Bayesian search with pruning, and every ledger backend."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from optuna.trial import TrialState

from medscale.campaign import Campaign, CampaignSpec, Worker, trial_seed
from medscale.campaign.engine import A
from medscale.errors import SpecError


def make_spec(folder: Path, **overrides) -> CampaignSpec:
    data = {
        "name": "t",
        "objective": "synthetic",
        "seed": 5,
        "design": {"grid": {"x": [0.0, 0.5, 1.0], "y": [0.0, -0.2]}},
        "execution": {"slots": 2, "heartbeat_s": 1.0},
        **overrides,
    }
    path = folder / "spec.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return CampaignSpec.load(path)


def run(spec: CampaignSpec, folder: Path, ledger: str | None = None) -> Campaign:
    campaign = Campaign(spec, folder, ledger=ledger)
    Worker(campaign).run()
    return campaign


def counted(campaign: Campaign) -> dict[str, object]:
    return {row["key"]: row for row in campaign.rows()}


# -- the spec ---------------------------------------------------------------------------


def test_unknown_key_and_empty_space_are_refused(tmp_path):
    with pytest.raises(SpecError, match=r"design\.gird"):
        make_spec(tmp_path, design={"gird": {"x": [1]}})
    with pytest.raises(SpecError, match=r"design\.grid\.x is an empty list"):
        make_spec(tmp_path, design={"grid": {"x": []}})
    with pytest.raises(SpecError, match="empty search space"):
        make_spec(tmp_path, design={"grid": {}})
    with pytest.raises(SpecError, match="names no form"):
        make_spec(tmp_path, design={})
    with pytest.raises(SpecError, match="'bayesian' composes with 'kfold' only"):
        bayes = {"n_trials": 2, "params": {"x": {"low": 0, "high": 1}}}
        make_spec(tmp_path, design={"grid": {"y": [1]}, "bayesian": bayes})
    with pytest.raises(SpecError, match="needs low < high"):
        make_spec(
            tmp_path, design={"bayesian": {"n_trials": 2, "params": {"x": {"low": 1, "high": 1}}}}
        )
    with pytest.raises(SpecError, match="instance 'aws' is not in prices"):
        make_spec(tmp_path, cost={"prices": {"lumi": 1.0}, "instance": "aws"})


def test_forms_compose_in_the_written_order_with_a_reference_arm(tmp_path):
    spec = make_spec(
        tmp_path,
        design={
            "leave_one_out": {"over": "channel_groups", "items": ["eeg", "eog"]},
            "kfold": {"k": 3},
        },
    )
    keys = [t.key for t in spec.trials()]
    assert len(keys) == 9 and len(set(keys)) == 9
    assert keys[0] == 'leave_one_out+kfold:{"fold":0,"leave_out":"all"}'
    # an arm and its reference share the seed of their fold; folds differ
    seeds = {(t.assignment["leave_out"], t.assignment["fold"]): t.seed for t in spec.trials()}
    assert seeds[("eeg", 1)] == seeds[("all", 1)] == seeds[("eog", 1)]
    assert len({seeds[("all", f)] for f in range(3)}) == 3


def test_seeds_are_a_pure_function_of_campaign_seed_and_key():
    assert trial_seed(5, "grid:{}") == trial_seed(5, "grid:{}")
    assert trial_seed(5, "grid:{}") != trial_seed(6, "grid:{}")
    assert trial_seed(5, 'grid:{"x":1}') != trial_seed(5, 'grid:{"x":2}')
    assert 0 <= trial_seed(2**63 + 1, "k") < 2**32


def test_another_spec_in_the_same_folder_is_refused(tmp_path):
    run(make_spec(tmp_path), tmp_path / "c")
    other = make_spec(tmp_path, seed=6)
    with pytest.raises(SpecError, match="started with another spec"):
        Campaign(other, tmp_path / "c")


# -- running ----------------------------------------------------------------------------


def test_grid_runs_every_key_once_with_its_seed_and_cost(tmp_path):
    spec = make_spec(tmp_path, cost={"prices": {"cpu": 3.6}, "instance": "cpu"})
    campaign = run(spec, tmp_path / "c")
    rows = counted(campaign)
    assert len(rows) == 6 and {r["status"] for r in rows.values()} == {"done"}
    claims = campaign.ledger.claims()
    assert set(claims) == set(rows)
    for trial in spec.trials():
        row = rows[trial.key]
        assert row["seed"] == trial.seed
        assert row["metrics"]["seed_echo"] == trial.seed  # the trial process saw that seed
        assert row["device_s"] > 0 and row["cost"] == pytest.approx(
            row["device_s"] / 1000, rel=2e-2
        )
    status = campaign.status()
    assert (status["done"], status["pending"], status["failed"]) == (6, 0, 0)
    assert status["cost"] == pytest.approx(sum(r["cost"] for r in rows.values()), abs=1e-6)
    # a rerun finds nothing to do
    assert Worker(Campaign(spec, tmp_path / "c")).run() == 0


def test_a_trial_that_raises_is_recorded_with_its_traceback_and_the_rest_go_on(tmp_path):
    spec = make_spec(tmp_path, design={"grid": {"x": [0.0, 1.0, 2.0], "fail_at_x": [1.0]}})
    campaign = run(spec, tmp_path / "c")
    rows = counted(campaign)
    failed = [r for r in rows.values() if r["status"] == "failed"]
    assert len(failed) == 1 and "synthetic failure" in failed[0]["error"]
    assert failed[0]["attempts"] == 1  # an error is not retried (retry_errors: false)
    assert sum(r["status"] == "done" for r in rows.values()) == 2
    trial = campaign.study.trials[failed[0]["number"]]
    assert "Traceback" in trial.user_attrs[A + "error"]


def test_a_killed_trial_process_is_retried_with_the_same_seed(tmp_path):
    spec = make_spec(
        tmp_path,
        design={"grid": {"x": [0.0, 1.0], "sleep_s": [3.0]}},
        execution={"slots": 2, "heartbeat_s": 1.0},
    )
    campaign = Campaign(spec, tmp_path / "c")
    worker = Worker(campaign)
    import threading

    thread = threading.Thread(target=worker.run)
    thread.start()
    pid_file = next(iter(sorted((tmp_path / "c").glob("trials/*"))), None)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        pids = list((tmp_path / "c").glob("trials/*/pid"))
        if pids:
            pid_file = pids[0]
            break
        time.sleep(0.05)
    assert pid_file is not None
    os.kill(int(pid_file.read_text()), signal.SIGKILL)
    thread.join(timeout=300)
    assert not thread.is_alive()
    rows = counted(campaign)
    assert {r["status"] for r in rows.values()} == {"done"}
    retried = [r for r in rows.values() if r["attempts"] == 2]
    assert len(retried) == 1
    attempts = [t for t in campaign.study.trials if t.user_attrs[A + "key"] == retried[0]["key"]]
    assert [t.state for t in attempts] == [TrialState.FAIL, TrialState.COMPLETE]
    assert attempts[0].user_attrs[A + "seed"] == attempts[1].user_attrs[A + "seed"]
    assert attempts[1].user_attrs[A + "retry_of"] == attempts[0].number


def test_a_dead_worker_is_detected_within_two_heartbeats(tmp_path):
    """A worker SIGSTOPped mid-trial stops beating; another worker fails its trial within
    2 × heartbeat_s and retries the key; the frozen worker's late result counts nothing."""
    spec = make_spec(
        tmp_path,
        design={"grid": {"x": [0.0], "sleep_s": [2.0]}},
        execution={"slots": 1, "heartbeat_s": 1.0},
    )
    folder = tmp_path / "c"
    Campaign(spec, folder)  # create the ledger before two processes open it
    spec_path = str(tmp_path / "spec.yaml")
    code = (
        "from medscale.campaign import Campaign, CampaignSpec, Worker; "
        f"Worker(Campaign(CampaignSpec.load({spec_path!r}), {str(folder)!r})).run()"
    )
    first = subprocess.Popen([sys.executable, "-c", code])
    try:
        deadline = time.monotonic() + 30
        while not list(folder.glob("trials/*/pid")) and time.monotonic() < deadline:
            time.sleep(0.02)
        os.kill(first.pid, signal.SIGSTOP)
        stopped = time.monotonic()
        campaign = Campaign(spec, folder)
        detected = None
        while time.monotonic() - stopped < 10:
            with campaign.ledger.plan_lock():
                trials = campaign._reap(campaign.study.get_trials(deepcopy=False))
            if any(t.state == TrialState.FAIL for t in trials):
                detected = time.monotonic() - stopped
                break
            time.sleep(0.05)
        assert detected is not None and detected <= 2 * spec.model.execution.heartbeat_s + 0.3
        Worker(campaign).run()  # retries the key
        os.kill(first.pid, signal.SIGCONT)
        first.wait(timeout=300)
    finally:
        if first.poll() is None:
            os.kill(first.pid, signal.SIGCONT)
            first.kill()
    rows = counted(campaign)
    assert rows[spec.trials()[0].key]["status"] == "done"
    assert rows[spec.trials()[0].key]["attempts"] == 2
    late = [e for e in campaign.events() if e["event"] == "late_result"]
    assert len(late) <= 1  # the frozen worker's tell, if it got that far, was refused
    assert len(campaign.ledger.claims()) == 1


def test_budget_cap_stops_launching_and_says_so(tmp_path):
    spec = make_spec(
        tmp_path,
        design={"grid": {"x": [0.0, 0.1, 0.2, 0.3, 0.4, 0.5], "sleep_s": [0.5]}},
        execution={"slots": 1, "heartbeat_s": 1.0},
        cost={"prices": {"gpu": 3600.0}, "instance": "gpu"},  # 1 unit per device-second
        budget={"max_cost": 1.6},
    )
    campaign = run(spec, tmp_path / "c")
    status = campaign.status()
    assert 1 <= status["done"] < 6 and status["pending"] == 6 - status["done"]
    assert status["cost"] <= 1.6
    assert status["budget_stops"] and "cap 1.6" in status["budget_stops"][0]


def test_bayesian_search_prunes_and_reports_history(tmp_path):
    spec = make_spec(
        tmp_path,
        design={
            "bayesian": {
                "n_trials": 8,
                "pruner": "median",
                "params": {
                    "x": {"low": -1.0, "high": 1.0},
                    "steps": {"type": "categorical", "choices": [4]},
                    "sleep_s": {"type": "categorical", "choices": [0.4]},
                },
            }
        },
        execution={"slots": 1, "heartbeat_s": 1.0},
    )
    campaign = run(spec, tmp_path / "c")
    trials = campaign.study.trials
    assert len(trials) == 8
    assert {t.user_attrs[A + "key"] for t in trials} == {f"bo:{i}" for i in range(8)}
    states = [t.state for t in trials]
    assert states.count(TrialState.COMPLETE) >= 2
    assert TrialState.PRUNED in states  # far-off x values report lower intermediate values
    assert all(-1 <= t.params["x"] <= 1 for t in trials)
    status = campaign.status()
    assert status["done"] + status["pruned"] == 8 and status["pending"] == 0


@pytest.mark.parametrize("kind", ["sqlite", "file"])
def test_other_ledgers_run_the_same_campaign(tmp_path, kind):
    url = f"sqlite:///{tmp_path / 'l.db'}" if kind == "sqlite" else f"file://{tmp_path / 'shared'}"
    campaign = run(make_spec(tmp_path), tmp_path / "c", ledger=url)
    assert campaign.status()["done"] == 6
    assert len(campaign.ledger.claims()) == 6
    assert not campaign.ledger.claim(next(iter(campaign.ledger.claims())), 99)


@pytest.mark.real
def test_postgresql_ledger(tmp_path, postgres_fresh_url):
    campaign = run(make_spec(tmp_path), tmp_path / "c", ledger=postgres_fresh_url)
    assert campaign.status()["done"] == 6
    claims = campaign.ledger.claims()
    assert len(claims) == 6 and not campaign.ledger.claim(next(iter(claims)), 99)
    with campaign.ledger.plan_lock():
        assert campaign.ledger.stale([10**6]) == [10**6]  # never beat: dead
    campaign.ledger.close()


def test_cli_status_and_report(tmp_path):
    from medscale.cli.main import main

    make_spec(tmp_path)
    spec_path = str(tmp_path / "spec.yaml")
    assert main(["campaign", "run", spec_path, "-q"]) == 0
    assert main(["campaign", "status", spec_path, "--json"]) == 0
    assert main(["campaign", "report", spec_path]) == 0
    report = tmp_path / "campaigns" / "t" / "report"
    assert (report / "report.html").is_file() and (report / "results.csv").is_file()
    assert len((report / "results.csv").read_text().splitlines()) == 7
    status = json.loads(subprocess.run(
        [sys.executable, "-m", "medscale.cli.main", "campaign", "status", spec_path, "--json"],
        capture_output=True, text=True, check=True,
    ).stdout)  # fmt: skip
    assert status["done"] == 6


def test_slurm_worker_script_asks_for_the_spec_resources(tmp_path):
    from medscale.campaign.executors import worker_script

    spec = make_spec(
        tmp_path,
        slurm={"tasks": 3, "partition": "gpu", "gpus_per_task": 1, "setup": ["module load x"]},
    )
    script = worker_script(Campaign(spec, tmp_path / "c"), tmp_path / "spec.yaml")
    lines = script.splitlines()
    for expected in ("#SBATCH --array=0-2", "#SBATCH --partition=gpu", "#SBATCH --gpus-per-node=1"):
        assert expected in lines
    assert lines.index("module load x") < len(lines) - 1
    assert lines[-1].startswith("exec ") and "campaign worker" in lines[-1]
    assert f"--dir {tmp_path / 'c'}" in lines[-1] and "--ledger journal:" in lines[-1]


def test_squeue_time_left_is_parsed():
    from medscale.campaign.executors import parse_time_left

    assert parse_time_left("1-02:03:04\n") == 86400 + 2 * 3600 + 3 * 60 + 4
    assert parse_time_left("02:03:04") == 2 * 3600 + 3 * 60 + 4
    assert parse_time_left("3:04") == 184
    assert parse_time_left("UNLIMITED") is None and parse_time_left("") is None


def test_a_worker_takes_no_trial_its_allocation_cannot_finish(tmp_path):
    spec = make_spec(tmp_path, design={"grid": {"x": [3.0, 4.0], "sleep_s": [0.5]}})
    late = Campaign(spec, tmp_path / "c")
    (tmp_path / "c" / "estimate.json").write_text(json.dumps({"per_trial": {"wall_s": 5.0}}))
    ran = Worker(late, slots=1, deadline=time.monotonic() + 2.0).run()
    assert ran == 0 and late.status()["pending"] == 2
    assert [e["event"] for e in late.events()] == ["allocation_ending"]
    # with time for a trial, the same worker runs them
    assert Worker(late, slots=1, deadline=time.monotonic() + 600).run() == 2
