"""SIGKILL the campaign driver (with its trial processes) and single trial processes at random
moments, rerun `medscale campaign run` each time, then finish: every trial must be done
exactly once, with its planned seed and the value its seed gives, and no result lost."""

from __future__ import annotations

import contextlib
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from optuna.trial import TrialState

from medscale.campaign import Campaign, CampaignSpec
from medscale.campaign.engine import A
from medscale.campaign.objectives import synthetic
from medscale.campaign.trial import TrialContext

N_KEYS = 40


def expected_value(spec: CampaignSpec, key: str, tmp: Path) -> float:
    planned = next(t for t in spec.trials() if t.key == key)
    context = TrialContext(
        key=key,
        assignment=planned.assignment,
        params={},
        seed=planned.seed,
        trial_dir=tmp,
        spec={},
        spec_folder=tmp,
        campaign_dir=tmp,
        metric="kappa",
        devices=(),
        job={},
    )
    return synthetic(context)["value"]


def driver(spec_path: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "medscale.cli.main", "campaign", "run", str(spec_path), "-q"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # its own process group: killed with its fork server and trials
    )


@pytest.mark.slow
@pytest.mark.parametrize("round_seed", [1, 2, 3])
def test_killed_campaign_resumes_with_every_trial_done_exactly_once(tmp_path, round_seed):
    rng = random.Random(round_seed)
    spec_path = tmp_path / "spec.yaml"
    spec_path.write_text(
        yaml.safe_dump(
            {
                "name": "killed",
                "objective": "synthetic",
                "seed": round_seed,
                "design": {"grid": {"x": [i / 10 for i in range(N_KEYS)], "sleep_s": [0.5]}},
                "execution": {"slots": 2, "heartbeat_s": 0.5, "max_attempts": 50},
            }
        )
    )
    spec = CampaignSpec.load(spec_path)
    folder = tmp_path / "campaigns" / "killed"
    kills = 0
    for _ in range(8):
        proc = driver(spec_path)
        time.sleep(rng.uniform(1.0, 3.0))
        if rng.random() < 0.5:  # also kill one running trial process
            pids = list(folder.glob("trials/*/pid"))
            if pids:
                with contextlib.suppress(ProcessLookupError, ValueError):
                    os.kill(int(rng.choice(pids).read_text()), signal.SIGKILL)
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            kills += 1
        proc.wait()
    assert kills >= 4, "the driver finished before it could be killed: make trials longer"
    final = driver(spec_path)
    assert final.wait(timeout=300) == 0

    campaign = Campaign(spec, folder)
    trials = campaign.study.get_trials(deepcopy=False)
    claims = campaign.ledger.claims()
    assert set(claims) == {t.key for t in spec.trials()}
    by_number = {t.number: t for t in trials}
    for planned in spec.trials():
        counted = by_number[claims[planned.key]]
        assert counted.state == TrialState.COMPLETE
        assert counted.user_attrs[A + "key"] == planned.key
        assert counted.user_attrs[A + "seed"] == planned.seed
        assert counted.value == pytest.approx(expected_value(spec, planned.key, tmp_path))
        complete = [
            t
            for t in trials
            if t.user_attrs.get(A + "key") == planned.key and t.state == TrialState.COMPLETE
        ]
        assert len(complete) == 1, f"{planned.key} completed {len(complete)} times"
    assert not [t for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    status = campaign.status()
    assert (status["done"], status["pending"], status["failed"]) == (N_KEYS, 0, 0)
