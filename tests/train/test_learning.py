"""Both bundled model configs learn sleep stages on surrogate nights, scored on held-out
nights by the same evaluation users run (tests/train/conftest.py builds the store)."""

from __future__ import annotations

import pytest

from medscale.evaluate.run import evaluate_run
from medscale.train import TrainConfig, train

pytestmark = pytest.mark.slow


def test_lseqsleepnet_small_stages_held_out_nights_well_above_chance(train_store, tmp_path):
    # 4 half-hour nights: 2 train, 1 val, 1 test. On the demo's 10 three-hour nights the same
    # config reaches kappa 0.94 on held-out nights (docs/training.md); here it has far less.
    config = TrainConfig.load("lseqsleepnet-small")
    config = TrainConfig.from_dict(
        config.to_dict()
        | {
            "max_steps": 150,
            "val_every": 150,
            "split": {"val_fraction": 0.25, "test_fraction": 0.25},
        }
    )
    train(config, train_store, tmp_path / "run", progress=False)
    result, _ = evaluate_run(tmp_path / "run", train_store, out_dir=tmp_path / "eval", n_boot=10)
    pooled = result.pooled["lseqsleepnet-small"]
    assert pooled["n_recordings"] == 1
    assert pooled["kappa"] > 0.5, pooled  # chance is 0; a constant stage gives 0 too
