"""The scaling model and the ranks-per-trial rule behave as the arithmetic says."""

from __future__ import annotations

import pytest

from medscale.launch.scaling import (
    Interconnect,
    allreduce_seconds,
    ddp_speedup,
    ranks_per_trial,
)

NVLINK = Interconnect(bandwidth_bytes_s=100e9, latency_s=5e-6)
SLOW = Interconnect(bandwidth_bytes_s=1e9, latency_s=50e-6)
USLEEP_GRAD = 3_114_337 * 4  # full U-Sleep, float32 gradients


def test_ring_allreduce_volume():
    assert allreduce_seconds(1e9, 1, SLOW) == 0.0
    # 2 ranks: each sends and receives half the buffer twice: 1 × bytes / bandwidth.
    assert allreduce_seconds(1e9, 2, Interconnect(1e9, 0.0)) == pytest.approx(1.0)
    # Many ranks: approaches 2 × bytes / bandwidth.
    assert allreduce_seconds(1e9, 512, Interconnect(1e9, 0.0)) == pytest.approx(2.0, rel=0.01)


def test_speedup_is_linear_when_the_allreduce_is_free_and_falls_when_it_is_not():
    assert ddp_speedup(0.2, USLEEP_GRAD, 8, Interconnect(1e18, 0.0)) == pytest.approx(8.0)
    fast, slow = ddp_speedup(0.2, USLEEP_GRAD, 8, NVLINK), ddp_speedup(0.2, USLEEP_GRAD, 8, SLOW)
    assert 7.9 < fast < 8.0 and slow < fast


def test_many_trials_get_one_device_each():
    # Freiburg's 288 leave-one-out trials on 8 GPUs: DDP can only lose.
    assert ranks_per_trial(288, 8, 0.2, USLEEP_GRAD, NVLINK) == 1


def test_one_trial_gets_every_device_when_the_allreduce_is_cheap():
    assert ranks_per_trial(1, 8, 0.2, USLEEP_GRAD, NVLINK) == 8


def test_a_slow_link_or_a_tiny_step_keeps_trials_narrow():
    # A 2 ms step against ~22 ms of all-reduce per step on a 1 GB/s link.
    assert ranks_per_trial(1, 8, 0.002, USLEEP_GRAD, SLOW, min_speedup_per_rank=0.5) == 1


def test_fewer_trials_than_devices_spread_over_them():
    assert ranks_per_trial(2, 8, 0.2, USLEEP_GRAD, NVLINK) == 4
    with pytest.raises(ValueError):
        ranks_per_trial(0, 8, 0.2, USLEEP_GRAD, NVLINK)
