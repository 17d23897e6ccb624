"""Task-driven prediction without a store: chunks of any length, events from segments."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from medscale.errors import SpecError  # noqa: E402
from medscale.models import build_model  # noqa: E402
from medscale.predict.task import predict_signals, segment_events  # noqa: E402
from medscale.tasks import SLEEP_STAGING, TOY_EVENTS, TOY_IMAGES  # noqa: E402


def test_runs_of_event_segments_become_event_rows():
    rows = segment_events(np.array([0, 1, 1, 0, 0, 1, 2, 2]), 2.0)
    expected = [[2.0, 6.0, -1, 1], [10.0, 12.0, -1, 1], [12.0, 16.0, -1, 2]]
    np.testing.assert_array_equal(rows, expected)
    assert segment_events(np.zeros(4, dtype=int), 2.0).shape == (0, 4)


def test_a_non_causal_model_sees_whole_chunks_of_segments_and_the_tail():
    """usleep-small, 4-segment chunks over 10 segments fed as uneven pieces: the result is
    the model on segments 0-3, 4-7 and 8-9, and samples after the last segment are dropped."""
    torch.manual_seed(0)
    model = build_model("usleep-small", in_channels=1, epoch_samples=64, depth=2).eval()
    x = np.random.default_rng(0).standard_normal((1, 10 * 64 + 30)).astype(np.float32)
    pieces = [x[:, :100], x[:, 100:101], x[:, 101:500], x[:, 500:]]
    out = predict_signals(model, SLEEP_STAGING, pieces, segment_samples=64, chunk_segments=4)
    with torch.no_grad():
        parts = [
            model(torch.from_numpy(x[None, :, a * 64 : b * 64]))
            for a, b in ((0, 4), (4, 8), (8, 10))
        ]
    expected = torch.softmax(torch.cat(parts, dim=-1), dim=1)[0].T.numpy()
    np.testing.assert_allclose(out.probabilities, expected, rtol=1e-5, atol=1e-6)
    assert out.classes.shape == (10,) and out.events is None


def test_the_wrong_kind_of_task_or_too_short_an_input_is_refused():
    model = build_model("toy-event-net", segment_samples=16)
    with pytest.raises(SpecError, match="not a per-segment signals task"):
        predict_signals(model, TOY_IMAGES, [np.zeros((1, 32), np.float32)], segment_samples=16)
    with pytest.raises(SpecError, match="shorter than one segment"):
        predict_signals(model, TOY_EVENTS, [np.zeros((1, 10), np.float32)], segment_samples=16)
