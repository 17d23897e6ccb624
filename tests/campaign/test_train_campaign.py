"""Training campaigns end to end on surrogate data: leave-one-channel-group-out × 3 folds and
a data-fraction curve, locally and on the real local SLURM, each with its report; and
`estimate` against the measured device-hours of the same campaign."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from medscale.campaign import Campaign, CampaignSpec
from medscale.campaign.estimate import estimate
from medscale.campaign.executors import run_campaign
from medscale.campaign.report import write_report
from medscale.errors import SpecError

pytestmark = pytest.mark.slow

BASE = {
    "model": "usleep-small",
    "model_kwargs": {"depth": 3, "init_filters": 4},
    "data": {
        "sampling": {
            "window_epochs": 2,
            "samples_per_epoch": 8,
            "channel_groups": [
                {"name": "eeg", "types": ["EEG"]},
                {"name": "eog", "types": ["EOG"]},
            ],
        },
        "eval_chunk_epochs": 60,
    },
    "batch_size": 2,
    "max_steps": 12,
    "checkpoint_every": 6,
    "val_every": 6,
    "log_every": 1,
}


def write_spec(folder: Path, store: Path, design: dict, **extra) -> Path:
    spec = {
        "name": extra.pop("name", "c"),
        "store": str(store),
        "base": {**BASE, **extra.pop("base_changes", {})},
        "seed": 3,
        "design": design,
        "execution": {"slots": 1, "heartbeat_s": 5},
        "cost": {"prices": {"cpu-core-hour": 0.04}, "instance": "cpu-core-hour"},
        **extra,
    }
    path = folder / "spec.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


LOCO = {"leave_one_out": {"over": "channel_groups", "items": ["eog"]}, "kfold": {"k": 3}}
FRACTION = {"data_fraction": {"fractions": [0.5, 1.0]}}


def report(campaign: Campaign, out: Path) -> dict[str, Path]:
    spec = campaign.spec
    return write_report(
        campaign.rows(),
        out,
        title=spec.name,
        forms=spec.forms,
        metric=spec.model.metric,
        campaign_dir=campaign.folder,
    )


def check_done(campaign: Campaign, n: int) -> None:
    rows = campaign.rows()
    assert len(rows) == n and {r["status"] for r in rows} == {"done"}, rows
    for row in rows:
        run_dir = campaign.folder / row["run_dir"] / "run"
        assert (run_dir / "manifest.json").is_file() and (run_dir / "result.json").is_file()
        assert -1 <= row["value"] <= 1 and row["metrics"]["test_recordings"] >= 1


def test_leave_one_out_names_a_channel_no_recording_has(tmp_path, train_store):
    path = write_spec(
        tmp_path, train_store, {"leave_one_out": {"over": "channels", "items": ["EEG Cz-M9"]}}
    )
    with pytest.raises(SpecError, match=r"channels \['EEG Cz-M9'\] that no recording"):
        Campaign(CampaignSpec.load(path), tmp_path / "c").prepare()


def test_leave_one_channel_group_out_by_3_folds_locally_with_estimate(tmp_path, train_store):
    # 48 steps: training, not the fixed start and test, is most of each trial (as in real use)
    path = write_spec(tmp_path, train_store, LOCO, base_changes={"max_steps": 48})
    projected = estimate(Campaign(CampaignSpec.load(path), tmp_path / "est"), calibration_steps=8)
    campaign, said = run_campaign(path, tmp_path / "run", progress=False)
    assert said["trials_run"] == 6
    check_done(campaign, 6)
    # the arm trained without the EOG group, the reference with it
    arm = next(r for r in campaign.rows() if r["leave_out"] == "eog")
    config = yaml.safe_load((campaign.folder / arm["run_dir"] / "run" / "config.yaml").read_text())
    assert [g["name"] for g in config["data"]["sampling"]["channel_groups"]] == ["eeg"]
    measured_h = campaign.status()["device_hours"]
    ratio = projected["device_hours"] / measured_h
    print(f"estimate {projected['device_hours']:.5f} h vs measured {measured_h:.5f} h: {ratio:.2f}")
    assert 0.75 <= ratio <= 1.25
    paths = report(campaign, tmp_path / "report")
    assert paths["loo_effects"].is_file()
    assert "Which left-out item matters most" in paths["html"].read_text()


def test_data_fraction_curve_locally(tmp_path, train_store):
    path = write_spec(tmp_path, train_store, FRACTION)
    campaign, _ = run_campaign(path, tmp_path / "run", progress=False)
    check_done(campaign, 2)
    rows = {r["fraction"]: r for r in campaign.rows()}
    # the smaller fraction trained on fewer recordings of the same split
    manifests = {
        f: yaml.safe_load((campaign.folder / r["run_dir"] / "run" / "manifest.json").read_text())
        for f, r in rows.items()
    }
    counts = {f: m["split"]["train_recordings"] for f, m in manifests.items()}
    assert counts[0.5] < counts[1.0]
    assert report(campaign, tmp_path / "report")["data_fraction"].is_file()


@pytest.mark.real
@pytest.mark.parametrize("design", [LOCO, FRACTION], ids=["loco-3fold", "data-fraction"])
def test_campaigns_on_the_real_slurm(tmp_path, train_store, slurm_cluster, design):
    path = write_spec(tmp_path, train_store, design, slurm={"tasks": 2, "time": "00:20:00"})
    campaign, said = run_campaign(path, tmp_path / "run", executor="slurm", progress=False)
    assert set(said["states"].values()) == {"COMPLETED"}, said
    n = 6 if design is LOCO else 2
    check_done(campaign, n)
    workers = {t.user_attrs["ms:worker"] for t in campaign.study.trials}
    assert all(":slurm-" in w for w in workers)
    assert report(campaign, tmp_path / "report")["html"].is_file()


def test_a_trial_can_be_a_two_rank_ddp_training(tmp_path, train_store):
    path = write_spec(
        tmp_path,
        train_store,
        {"grid": {"optimizer.lr": [0.001]}},
        execution={"slots": 1, "heartbeat_s": 5, "ranks_per_trial": 2, "cpus_per_trial": 2},
    )
    campaign, _ = run_campaign(path, tmp_path / "run", progress=False)
    check_done(campaign, 1)
    row = campaign.rows()[0]
    assert row["metrics"]["ranks"] == 2
    manifest = json.loads((campaign.folder / row["run_dir"] / "run" / "manifest.json").read_text())
    assert manifest["run"]["world_size"] == 2
    assert row["device_s"] == pytest.approx(2 * row["wall_s"], rel=1e-3)  # 2 CPU cores held


def test_ranks_per_trial_auto_follows_the_scaling_rule(tmp_path):
    from medscale.launch.scaling import Interconnect, ranks_per_trial

    spec_path = tmp_path / "spec.yaml"
    spec_path.write_text(
        yaml.safe_dump(
            {
                "name": "auto",
                "objective": "synthetic",
                "design": {"grid": {"x": [0, 1, 2, 3]}},
                "execution": {
                    "devices": list(range(8)),
                    "ranks_per_trial": "auto",
                    "link_gb_s": 100,
                },
            }
        )
    )
    campaign = Campaign(CampaignSpec.load(spec_path), tmp_path / "c")
    with pytest.raises(SpecError, match="run `medscale campaign estimate` first"):
        campaign.layout()
    # 4 trials on 8 GPUs: a compute-bound step (2 s, 12 MB of gradients) gets 2 ranks each
    (tmp_path / "c" / "estimate.json").write_text(
        json.dumps({"calibration": {"step_s": 2.0, "parameters": 3_114_337}})
    )
    expected = ranks_per_trial(4, 8, 2.0, 4 * 3_114_337, Interconnect(100e9))
    layout = campaign.layout()
    assert expected == 2 and (layout.ranks, layout.gpus, layout.slots) == (2, 2, 4)


def test_bayesian_by_kfold_trains_every_fold_inside_each_trial(tmp_path, train_store):
    path = write_spec(
        tmp_path,
        train_store,
        {
            "kfold": {"k": 2},
            "bayesian": {
                "n_trials": 2,
                "params": {"optimizer.lr": {"low": 1e-4, "high": 1e-2, "log": True}},
            },
        },
    )
    spec = CampaignSpec.load(path)
    assert spec.is_bayesian and spec.n_trials() == 2 and spec.trials() == []
    campaign, _ = run_campaign(path, tmp_path / "run", progress=False)
    rows = campaign.rows()
    assert [r["status"] for r in rows] == ["done", "done"]
    for row in rows:
        folds = row["metrics"]["fold_values"]
        assert len(folds) == 2 and row["value"] == pytest.approx(sum(folds) / 2)
        assert 1e-4 <= row["params"]["optimizer.lr"] <= 1e-2
        trial_run = campaign.folder / row["run_dir"] / "run"
        assert (trial_run / "fold-0" / "result.json").is_file()
        assert (trial_run / "fold-1" / "result.json").is_file()
