"""How far data parallelism pays, and the rule a campaign applies: ranks per trial.

A DDP step on N ranks costs the compute of one rank's share plus a ring all-reduce of the
gradients, which moves ``2 (N - 1) / N`` times their size through each rank's link and takes
``2 (N - 1)`` latency-bound hops. With no overlap of the two (the conservative case):

    t(N) = t_compute + 2 (N - 1) / N · bytes / bandwidth + 2 (N - 1) · latency

at a fixed per-rank batch (weak scaling). The speed-up over one rank is ``N · t(1) / t(N)``.
For a campaign of many trials on G devices, nnU-Net's advice holds: every rank spent on one
trial's all-reduce is one not spent on another trial, so `ranks_per_trial` picks the ranks
per trial that finish the whole campaign first (see ``docs/scaling.md``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Interconnect:
    """Per-rank all-reduce bandwidth (bytes/s) and per-hop latency (s) of a link."""

    bandwidth_bytes_s: float
    latency_s: float = 10e-6


def allreduce_seconds(grad_bytes: float, world_size: int, link: Interconnect) -> float:
    """A ring all-reduce of ``grad_bytes`` over ``world_size`` ranks."""
    if world_size <= 1:
        return 0.0
    hops = 2 * (world_size - 1)
    return hops / world_size * grad_bytes / link.bandwidth_bytes_s + hops * link.latency_s


def ddp_speedup(compute_s: float, grad_bytes: float, world_size: int, link: Interconnect) -> float:
    """Throughput of ``world_size`` ranks over one rank's, at a fixed per-rank batch."""
    step = compute_s + allreduce_seconds(grad_bytes, world_size, link)
    return world_size * compute_s / step


def ranks_per_trial(
    n_trials: int,
    n_devices: int,
    compute_s: float,
    grad_bytes: float,
    link: Interconnect,
    *,
    choices: Sequence[int] | None = None,
    min_speedup_per_rank: float = 0.0,
) -> int:
    """The ranks each trial should get so that ``n_trials`` equal trials on ``n_devices``
    finish soonest: the makespan ``ceil(n_trials / (n_devices // r)) / speedup(r)`` (in units
    of one trial on one rank) is minimised; ties go to fewer ranks (less to go wrong).
    ``min_speedup_per_rank`` (e.g. 0.7) also refuses a width whose parallel efficiency is
    lower, whatever the makespan."""
    if n_trials < 1 or n_devices < 1:
        raise ValueError("n_trials and n_devices must be at least 1")
    if choices is None:
        choices = [2**k for k in range(int(math.log2(n_devices)) + 1)]
    best, best_time = 1, math.inf
    for ranks in sorted(r for r in choices if 1 <= r <= n_devices):
        speedup = ddp_speedup(compute_s, grad_bytes, ranks, link)
        if ranks > 1 and speedup / ranks < min_speedup_per_rank:
            continue
        waves = math.ceil(n_trials / (n_devices // ranks))
        makespan = waves / speedup
        if makespan < best_time * (1 - 1e-9):
            best, best_time = ranks, makespan
    return best
