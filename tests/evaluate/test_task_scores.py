"""Task metrics beyond sleep, and the task's loss."""

from __future__ import annotations

import numpy as np
import pytest

from medscale.errors import SpecError
from medscale.evaluate.task_scores import score_task
from medscale.tasks import SLEEP_STAGING, TOY_EVENTS, TOY_IMAGES


def _onehot(codes, n):
    return np.eye(n)[codes]


def test_event_segments_are_scored_with_the_event_f1_and_unscored_ones_skipped():
    truth = np.array([0, 0, 1, 1, 0, 1, -1, -1])
    guess = np.array([0, 1, 1, 0, 0, 1, 1, 0])
    metrics = score_task(TOY_EVENTS, truth, _onehot(guess, 2))
    # events: 3 true, 3 predicted on scored segments, 2 hits: precision = recall = 2/3
    assert metrics["f1_event"] == pytest.approx(2 / 3)
    assert metrics["accuracy"] == pytest.approx(4 / 6) and metrics["n_segments"] == 6
    with pytest.raises(SpecError, match="nothing to score"):
        score_task(TOY_EVENTS, np.array([-1, -1]), _onehot(np.array([0, 1]), 2))


def test_images_get_the_macro_auroc_of_classes_with_both_truths():
    truth = np.array([[1, 0, 1], [0, 0, 1], [1, 0, 1], [0, 0, 1]])
    probs = np.array([[0.9, 0.2, 0.5], [0.1, 0.3, 0.5], [0.4, 0.1, 0.5], [0.6, 0.4, 0.5]])
    metrics = score_task(TOY_IMAGES, truth, probs)
    # class 0: positives 0.9, 0.4 vs negatives 0.1, 0.6 -> 3 of 4 pairs ordered; classes 1, 2
    # have one truth only and are left out
    assert metrics["macro_auroc"] == pytest.approx(0.75) and metrics["n_images"] == 4


def test_sleep_keeps_its_own_scorer():
    truth = np.array([0, 1, 2, 3, 4, 2])
    metrics = score_task(SLEEP_STAGING, truth, _onehot(truth, 5))
    assert metrics["kappa"] == 1.0 and set(metrics["f1_per_stage"]) == {
        "W",
        "N1",
        "N2",
        "N3",
        "REM",
    }


def test_the_loss_follows_the_task():
    torch = pytest.importorskip("torch")
    from medscale.evaluate.inference import task_loss

    logits = torch.tensor([[2.0, -1.0, 0.0]])
    multi_hot = torch.tensor([[1.0, 0.0, 1.0]])
    expected = torch.nn.functional.binary_cross_entropy_with_logits(logits, multi_hot)
    assert torch.equal(task_loss(TOY_IMAGES)(logits, multi_hot), expected)
    segment_logits = torch.zeros(1, 2, 3)  # uniform over 2 classes: ln 2 per scored segment
    loss = task_loss(TOY_EVENTS)(segment_logits, torch.tensor([[1, -1, 0]]))
    assert float(loss) == pytest.approx(np.log(2))
