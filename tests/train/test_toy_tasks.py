"""Beyond sleep, end to end: the SYNTHETIC toy event and image tasks go ingest (records
written into a store) → sampler → train (a few steps, validating) → evaluate (the test
subset) → predict (task outputs, streamed chunk by chunk for the causal event model). Nothing
on this path knows sleep: the store's task picks the sampler, the loss, the metrics and the
early-stopping metric."""

from __future__ import annotations

import contextlib

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from medscale.data.evaluation import EvalImages  # noqa: E402
from medscale.data.splits import load_split  # noqa: E402
from medscale.data.torch_data import EvalNights  # noqa: E402
from medscale.errors import SpecError  # noqa: E402
from medscale.predict.task import predict_image, predict_signals  # noqa: E402
from medscale.store.store import Store  # noqa: E402
from medscale.synth.toy import write_toy_event_store, write_toy_image_store  # noqa: E402
from medscale.train import TrainConfig, train  # noqa: E402
from medscale.train.metrics_log import read_records  # noqa: E402
from medscale.train.trained import load_trained_model  # noqa: E402
from medscale.train.trainer import validate  # noqa: E402

SPLIT = {"val_fraction": 0.25, "test_fraction": 0.25}


def _common(**overrides):
    config = {
        "optimizer": {"lr": 0.01},
        "batch_size": 4,
        "max_steps": 6,
        "val_every": 3,
        "checkpoint_every": 3,
        "log_every": 3,
        "split": SPLIT,
        "seed": 1,
    }
    return {**config, **overrides}


def _evaluate(run, store, data, evaluation):
    """The trained model on the split's test subset, scored as validation scores."""
    trained = load_trained_model(run)
    test = load_split(run / "split.json", store).subsets["test"]
    records = evaluation(store, data, recordings=test)
    metrics = validate(trained.model, records, "cpu", contextlib.nullcontext, task=store.task)
    return trained, test, metrics


def test_toy_events_ingest_train_evaluate_predict(tmp_path):
    store = write_toy_event_store(tmp_path / "store", n_records=4, duration_s=60.0, sfreq_hz=32.0)
    sampling = {
        "window_epochs": 4,
        "samples_per_epoch": 24,
        "channel_groups": [{"name": "a", "names": ["S0"]}, {"name": "b", "names": ["S1"]}],
    }
    config = TrainConfig.from_dict(
        _common(
            model="toy-event-net",
            model_kwargs={"segment_samples": 64, "hidden": 4},
            data={"sampling": sampling, "eval_chunk_epochs": 10},
            early_stopping={"metric": "loss"},  # min mode, from the task's declaration
        )
    )
    result = train(config, store.location, tmp_path / "run", progress=False)
    assert result.finished and result.step == 6
    assert set(result.last_validation) >= {"f1_event", "accuracy", "loss", "val_loss"}
    vals = [r for r in read_records(tmp_path / "run" / "metrics.jsonl") if r["kind"] == "val"]
    assert len(vals) == 2 and result.best_metric == min(v["loss"] for v in vals)  # min mode

    trained, test, metrics = _evaluate(tmp_path / "run", store, config.data, EvalNights)
    assert metrics["n_nights"] == 1 and metrics["n_segments"] == 30  # 60 s of 2-s segments
    assert 0.0 <= metrics["f1_event"] <= 1.0 and np.isfinite(metrics["loss"])

    # Predict the test recording from chunks of 100 samples (not whole segments), scaled as
    # in training: the causal model streams, and equals one forward over the whole recording.
    nights = EvalNights(store, config.data, recordings=test)
    whole = nights.processor.scale(
        nights.reader.read(0, [0, 1], 0, 30 * 64), 0, (0, 1)
    )  # both channels, all 30 segments
    chunks = [whole[:, i : i + 100] for i in range(0, whole.shape[1], 100)]
    output = predict_signals(trained.model, store.task, chunks, segment_samples=64)
    with torch.no_grad():
        full = torch.softmax(trained.model(torch.from_numpy(whole)[None]), dim=1)[0].T
    np.testing.assert_allclose(output.probabilities, full.numpy(), rtol=1e-5, atol=1e-6)
    assert output.probabilities.shape == (30, 2) and output.events.shape[1] == 4
    covered = sum(int((off - on) / 2.0) for on, off, _, _ in output.events)
    assert covered == int((output.classes == 1).sum())


def test_toy_images_ingest_train_evaluate_predict(tmp_path):
    store = write_toy_image_store(tmp_path / "store", n_images=16, size=16)
    config = TrainConfig.from_dict(
        _common(
            model="toy-image-net",
            model_kwargs={"width": 4},
            data={"sampling": {"samples_per_epoch": 24}},
        )
    )
    result = train(config, store.location, tmp_path / "run", progress=False)
    assert result.finished and result.step == 6
    assert set(result.last_validation) >= {"macro_auroc", "loss", "n_images"}
    assert result.best_metric is not None

    trained, test, metrics = _evaluate(tmp_path / "run", store, config.data, EvalImages)
    assert metrics["n_images"] == len(test) == 4 and np.isfinite(metrics["loss"])

    image = next(iter(EvalImages(store, config.data, recordings=test[:1])))
    output = predict_image(trained.model, store.task, image["x"])
    assert output.probabilities.shape == (3,) and set(output.classes) <= {0, 1}


def test_a_model_for_another_task_is_refused_before_training(tmp_path):
    store = write_toy_image_store(tmp_path / "store", n_images=8, size=16)
    config = TrainConfig.from_dict(
        _common(model="toy-event-net", data={"sampling": {"samples_per_epoch": 8}})
    )
    with pytest.raises(SpecError, match="input_kind: model 'signals', data 'image'"):
        train(config, Store(store.location), tmp_path / "run", progress=False)
