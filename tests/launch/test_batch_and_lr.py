"""How batch size and learning rate follow the world size (no processes needed)."""

from __future__ import annotations

import math

import pytest

from medscale.errors import SpecError
from medscale.train import TrainConfig
from medscale.train.trainer import lr_factor, lr_multiplier, rank_batch_size, world_lr_scale

from .conftest import ddp_config


def config(**distributed) -> TrainConfig:
    return TrainConfig.from_dict(ddp_config(distributed=distributed))


def test_global_batch_is_split_over_the_ranks():
    assert [rank_batch_size(config(), w) for w in (1, 2, 4)] == [4, 2, 1]
    with pytest.raises(SpecError, match="must divide evenly over 3 ranks"):
        rank_batch_size(config(), 3)


def test_per_rank_batch_with_scaled_learning_rate():
    linear = config(per_rank_batch=True, lr_scaling="linear", lr_warmup_steps=5)
    assert rank_batch_size(linear, 8) == 4
    assert world_lr_scale(linear, 8) == 8.0
    assert world_lr_scale(config(per_rank_batch=True, lr_scaling="sqrt"), 8) == math.sqrt(8)
    assert world_lr_scale(config(), 8) == 1.0


def test_lr_scaling_with_a_global_batch_is_refused():
    with pytest.raises(SpecError, match="lr_scaling needs per_rank_batch"):
        config(lr_scaling="linear")


def test_launch_settings_stay_out_of_the_config_hash():
    base = config().config_hash()
    assert config(timeout_s=5, rendezvous_timeout_s=3, backend="gloo").config_hash() == base
    moved = TrainConfig.from_dict(ddp_config(slurm={"partition": "gpu"}, ray={"num_workers": 4}))
    assert moved.config_hash() == base
    assert config(per_rank_batch=True).config_hash() != base


def test_scaled_learning_rate_ramps_up_over_the_warmup():
    linear = config(per_rank_batch=True, lr_scaling="linear", lr_warmup_steps=4)
    ramp = [lr_multiplier(linear, step, 8) / lr_factor(linear, step) for step in range(6)]
    assert ramp == pytest.approx([1 + 7 * 0.25, 1 + 7 * 0.5, 1 + 7 * 0.75, 8.0, 8.0, 8.0])
    assert lr_multiplier(config(), 3, 8) == lr_factor(config(), 3)  # global batch: unscaled
