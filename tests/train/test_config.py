from __future__ import annotations

import math

import pytest
import yaml

from medscale.errors import SpecError
from medscale.tasks import SLEEP_STAGING, TOY_EVENTS
from medscale.train import TrainConfig, bundled_configs
from medscale.train.trainer import lr_factor, monitored_metric

from .conftest import tiny_config


@pytest.mark.parametrize(
    ("patch", "named"),
    [
        ({"max_step": 5}, "max_step"),
        ({"optimizer": {"lrr": 0.1}}, r"optimizer\.lrr"),
        ({"early_stopping": {"mode": "up"}}, r"early_stopping\.mode"),
        ({"batch_size": "many"}, "batch_size"),
        ({"data": {"sampling": {"window_epoch": 3}}}, r"data\.sampling\.window_epoch"),
        ({"schedule": {"kind": "cosine", "warmup": 5}}, r"schedule\.warmup"),
        ({"log": ["csv", "wandb"]}, r"log\.1"),
    ],
)
def test_unknown_or_mistyped_keys_are_refused_naming_the_key(patch, named):
    with pytest.raises(SpecError, match=named):
        TrainConfig.from_dict(tiny_config(**patch))


def test_a_yaml_file_is_read_and_a_relative_split_path_resolves_beside_it(tmp_path):
    data = tiny_config(split="splits/s.json")
    (tmp_path / "run.yaml").write_text(yaml.safe_dump(data))
    config = TrainConfig.load(tmp_path / "run.yaml")
    assert config.split.file == str((tmp_path / "splits" / "s.json").resolve())
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump({**data, "optimiser": {}}))
    with pytest.raises(SpecError, match=r"bad\.yaml: optimiser"):
        TrainConfig.load(tmp_path / "bad.yaml")


def test_one_seed_drives_the_data_seed_and_a_conflicting_one_is_refused():
    config = TrainConfig.from_dict(tiny_config(seed=42))
    assert config.data.seed == 42
    with pytest.raises(SpecError, match=r"data\.seed \(1\) differs from seed \(42\)"):
        TrainConfig.from_dict(tiny_config(seed=42, data={"seed": 1}))


def test_config_round_trips_and_is_frozen():
    config = TrainConfig.from_dict(tiny_config())
    again = TrainConfig.from_dict(yaml.safe_load(config.to_yaml()))
    assert again == config
    with pytest.raises(Exception, match="frozen"):
        config.batch_size = 3  # type: ignore[misc]


def test_the_config_hash_ignores_workers_and_logging_but_not_the_optimizer():
    base = TrainConfig.from_dict(tiny_config())
    same = TrainConfig.from_dict(tiny_config(num_workers=2, log=["csv", "jsonl", "tensorboard"]))
    other = TrainConfig.from_dict(tiny_config(optimizer={"lr": 0.01}))
    assert base.config_hash() == same.config_hash()
    assert base.config_hash() != other.config_hash()
    assert base.config_hash({"split_sha256": "a"}) != base.config_hash({"split_sha256": "b"})


def test_bundled_configs_load_by_name():
    assert "usleep-small" in bundled_configs()
    config = TrainConfig.load("usleep-small")
    assert config.model == "usleep-small"
    with pytest.raises(SpecError, match="no such config file, nor a bundled config"):
        TrainConfig.load("no-such-config")


def test_learning_rate_schedules():
    warm_cos = TrainConfig.from_dict(
        tiny_config(max_steps=12, schedule={"kind": "cosine", "warmup_steps": 2, "min_factor": 0.1})
    )
    assert [lr_factor(warm_cos, s) for s in (0, 1)] == [0.5, 1.0]
    assert lr_factor(warm_cos, 2) == 1.0
    assert math.isclose(lr_factor(warm_cos, 12), 0.1)
    assert math.isclose(lr_factor(warm_cos, 7), 0.1 + 0.9 * 0.5)
    step = TrainConfig.from_dict(
        tiny_config(schedule={"kind": "step", "step_size": 3, "gamma": 0.5})
    )
    assert [lr_factor(step, s) for s in range(7)] == [1, 1, 1, 0.5, 0.5, 0.5, 0.25]


def test_the_early_stopping_metric_is_any_the_task_reports_in_its_direction():
    def monitor(task, **stopping):
        return monitored_metric(TrainConfig.from_dict(tiny_config(early_stopping=stopping)), task)

    assert (monitor(SLEEP_STAGING).name, monitor(SLEEP_STAGING).mode) == ("kappa", "max")
    assert monitor(SLEEP_STAGING, metric="mcc").name == "mcc"
    assert (monitor(TOY_EVENTS).name, monitor(TOY_EVENTS, metric="loss").mode) == (
        "f1_event",
        "min",
    )
    assert monitor(TOY_EVENTS, metric="accuracy", mode="min").mode == "min"
    with pytest.raises(
        SpecError, match=r"early_stopping\.metric: task 'sleep_staging' reports no metric 'loss'"
    ):
        monitor(SLEEP_STAGING, metric="loss")
