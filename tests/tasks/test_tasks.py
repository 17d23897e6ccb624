"""The Task description: validation, the registry, JSON round trip and target building."""

from __future__ import annotations

import numpy as np
import pytest

from medscale.errors import SpecError
from medscale.tasks import (
    SLEEP_STAGING,
    TOY_EVENTS,
    TOY_IMAGES,
    Metric,
    Task,
    event_segments,
    get_task,
    list_tasks,
    register_task,
)


def test_registry_holds_sleep_and_the_toy_tasks_and_names_unknown_ones():
    assert {"sleep_staging", "toy_events", "toy_images"} <= set(list_tasks())
    assert get_task("sleep_staging") is SLEEP_STAGING
    with pytest.raises(SpecError, match=r"unknown task 'nope'.*sleep_staging"):
        get_task("nope")
    with pytest.raises(SpecError, match="already registered"):
        register_task(Task(**{**SLEEP_STAGING.to_json_kwargs(), "monitor": "mcc"}))


def test_sleep_task_keeps_the_five_aasm_classes_and_30_s_segments():
    assert SLEEP_STAGING.class_names == ("W", "N1", "N2", "N3", "REM")
    assert SLEEP_STAGING.n_outputs == 5 and SLEEP_STAGING.segment_s == 30.0
    assert SLEEP_STAGING.loss == "cross_entropy" and SLEEP_STAGING.label_array == "segment_labels"
    hyp = np.array([0, 1, -1, 4, 2], dtype=np.int8)
    np.testing.assert_array_equal(SLEEP_STAGING.targets(hyp, start=1, stop=4), [1, -1, 4])


@pytest.mark.parametrize("task", [SLEEP_STAGING, TOY_EVENTS, TOY_IMAGES])
def test_json_round_trip(task):
    assert Task.from_json(task.to_json()) == task


def test_from_json_names_bad_fields():
    with pytest.raises(SpecError, match=r"store zarr.json: unknown fields \['colour'\]"):
        Task.from_json({**SLEEP_STAGING.to_json(), "colour": 1}, "store zarr.json")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"label_kind": "pixels"}, "label_kind 'pixels'"),
        ({"input_kind": "image"}, "does not go with label_kind"),
        ({"segment_s": None}, "needs segment_s"),
        ({"monitor": "auroc"}, "monitor 'auroc' is not one of"),
        ({"class_names": ("W",)}, "at least two classes"),
        ({"name": "a b"}, "task name"),
    ],
)
def test_invalid_tasks_are_refused_with_the_reason(change, message):
    with pytest.raises(SpecError, match=message):
        Task(**{**SLEEP_STAGING.to_json_kwargs(), **change})


def test_metric_direction():
    assert Metric("kappa").better(0.8, 0.7) and not Metric("kappa").better(0.6, 0.7)
    assert TOY_EVENTS.metric("loss").better(0.1, 0.2)
    with pytest.raises(SpecError, match="reports no metric 'kappa'"):
        TOY_EVENTS.metric("kappa")


def test_event_segments_label_a_segment_covered_at_least_half():
    # segments of 2 s: [0,2) [2,4) [4,6) [6,8) [8,10) [10,12)
    events = np.array([[3.0, 7.5, -1, 1], [10.0, 10.5, 0, 1]])
    np.testing.assert_array_equal(event_segments(events, 6, 2.0), [0, 1, 1, 1, 0, 0])
    np.testing.assert_array_equal(TOY_EVENTS.targets(events, start=2, stop=6), [1, 1, 0, 0])
    assert event_segments(np.zeros((0, 4)), 3, 2.0).tolist() == [0, 0, 0]


def test_image_targets_are_float_multi_hot():
    out = TOY_IMAGES.targets(np.array([1, 0, 1], dtype=np.uint8))
    assert out.dtype == np.float32 and out.tolist() == [1.0, 0.0, 1.0]
    assert TOY_IMAGES.loss == "binary_cross_entropy" and TOY_IMAGES.n_outputs == 3
