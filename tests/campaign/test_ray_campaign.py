"""`--executor ray`: worker loops as Ray tasks on a private local Ray, sharing one ledger."""

from __future__ import annotations

import pytest
import yaml

from medscale.campaign.executors import run_campaign

pytestmark = [pytest.mark.slow, pytest.mark.real]


def test_ray_workers_share_the_campaign(tmp_path):
    pytest.importorskip("ray", reason="Ray is in the 'ray' extra")
    spec = {
        "name": "r",
        "objective": "synthetic",
        "design": {"grid": {"x": [i / 10 for i in range(8)], "sleep_s": [0.6]}},
        "execution": {"slots": 1, "heartbeat_s": 2},
        "ray": {"workers": 2, "cpus_per_worker": 1},
    }
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec))
    campaign, said = run_campaign(path, tmp_path / "c", executor="ray", progress=False)
    assert sum(said["trials_per_worker"]) == 8
    status = campaign.status()
    assert (status["done"], status["pending"]) == (8, 0)
    workers = {t.user_attrs["ms:worker"] for t in campaign.study.trials}
    assert all(":ray-" in w for w in workers) and len(workers) == 2
