"""A forked worker shares the index's pages: sampling from it copies (almost) nothing."""

from __future__ import annotations

import multiprocessing
import os
from pathlib import Path

import numpy as np
import pytest

from medscale.data import SamplingConfig, WindowIndex, draw_window
from medscale.tasks import SLEEP_STAGING

from .fakes import fake_info

SMAPS = Path("/proc/self/smaps_rollup")


def _private_kib() -> int:
    fields = dict(line.split(":", 1) for line in SMAPS.read_text().splitlines()[1:])
    return sum(int(fields[k].split()[0]) for k in ("Private_Clean", "Private_Dirty"))


def _sample_in_child(index: WindowIndex, queue) -> None:
    before = _private_kib()
    for i in range(5000):
        draw_window(index, 0, 0, i)
    queue.put(_private_kib() - before)


@pytest.mark.skipif(not SMAPS.exists() or os.name != "posix", reason="needs Linux smaps_rollup")
def test_forked_worker_does_not_copy_a_20000_recording_index():
    rng = np.random.default_rng(0)
    infos, hyps = [], []
    for k in range(20_000):
        infos.append(fake_info(k, 960, f"d{k % 4}", [("C4", "EEG"), ("E1", "EOG")]))
        hyps.append(rng.integers(0, 5, size=960).astype(np.int8))
    index = WindowIndex(infos, hyps, SamplingConfig(), task=SLEEP_STAGING)
    del infos, hyps
    assert index.nbytes > 90_000_000  # ~19 M epochs: a copy would show up plainly
    fork = multiprocessing.get_context("fork")
    queue = fork.Queue()
    child = fork.Process(target=_sample_in_child, args=(index, queue))
    child.start()
    grown_kib = queue.get(timeout=300)
    child.join(timeout=300)
    assert grown_kib < 8 * 1024, f"the worker copied {grown_kib} KiB while sampling"
