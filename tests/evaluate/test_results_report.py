"""evaluate_predictions, written outputs, figures and the self-contained HTML report."""

from __future__ import annotations

import csv
import json
import re

import numpy as np
import pytest

from medscale.errors import SpecError
from medscale.evaluate import metrics as M
from medscale.evaluate.plots import (
    plot_confusion,
    plot_hypnogram,
    plot_learning_curves,
    plot_per_stage_f1,
)
from medscale.evaluate.report import Image, Section, Table, figure_to_png, write_html_report
from medscale.evaluate.results import RecordingPrediction, evaluate_predictions
from medscale.io.stages import UNKNOWN

HOSTILE = "<script>alert('x')</script>&\"$a$"


def _night(rng, n=240, lead_wake=40, accuracy=0.8):
    y = rng.integers(1, 5, n)
    y[:lead_wake] = 0
    y[-lead_wake:] = 0
    y[rng.random(n) < 0.03] = UNKNOWN
    guess = np.where(rng.random(n) < accuracy, np.maximum(y, 0), rng.integers(0, 5, n))
    probs = rng.random((n, 5)) * 0.5
    probs[np.arange(n), guess] += 1.0
    return y, probs / probs.sum(axis=1, keepdims=True)


def _predictions(seed=0, n_rec=6, hostile=False, accuracy=0.8):
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n_rec):
        ds = "dsA" if i % 2 else "dsB"
        rid = f"rec{i}" + (HOSTILE if hostile and i == 0 else "")
        y, p = _night(rng, accuracy=accuracy)
        out.append(RecordingPrediction(f"{ds}/{rid}", ds, y, p))
    return out


def test_evaluate_pooled_matches_metrics():
    preds = _predictions()
    res = evaluate_predictions(preds, n_boot=200)
    pooled = M.score(
        np.concatenate([p.y_true for p in preds]), np.concatenate([p.y_pred for p in preds])
    )
    for key in ("kappa", "accuracy", "macro_f1", "mcc", "n_epochs"):
        assert res.pooled["model"][key] == pytest.approx(pooled[key])
    for metric in M.METRICS:
        low, high = res.pooled["model"]["ci"][metric]
        assert low <= res.pooled["model"][metric] <= high
        # Same seed, same resamples as the public bootstrap function.
        expected = M.bootstrap_ci([(p.y_true, p.y_pred) for p in preds], metric, n_boot=200)
        assert (low, high) == pytest.approx(expected)
    assert res.pooled["model"]["n_recordings"] == 6
    assert res.confusion["model"].sum() == pooled["n_epochs"]
    rows = [r for r in res.per_recording if r["model"] == "model"]
    assert len(rows) == 6
    first = next(r for r in rows if r["key"] == preds[0].key)
    assert first["kappa"] == pytest.approx(M.score(preds[0].y_true, preds[0].y_pred)["kappa"])
    datasets = {r["dataset"]: r for r in res.per_dataset}
    assert set(datasets) == {"dsA", "dsB", "(all)"}
    assert datasets["dsA"]["n_recordings"] == 3
    assert datasets["(all)"]["kappa"] == pytest.approx(pooled["kappa"])
    assert datasets["dsA"]["kappa_low"] <= datasets["dsA"]["kappa"] <= datasets["dsA"]["kappa_high"]


def test_wake_trimming_changes_scored_epochs_and_is_stated():
    preds = _predictions()
    full = evaluate_predictions(preds, n_boot=20)
    trimmed = evaluate_predictions(preds, n_boot=20, wake_margin_min=5)  # 10 epochs margin
    assert trimmed.pooled["model"]["n_epochs"] < full.pooled["model"]["n_epochs"]
    expected = sum(int((M.trim_wake(p.y_true, margin_min=5)[0] != UNKNOWN).sum()) for p in preds)
    assert trimmed.pooled["model"]["n_epochs"] == expected
    assert "not applied" in full.trimming_statement()
    assert "5 min" in trimmed.trimming_statement()
    assert all(r["wake_trimmed"] and r["wake_margin_min"] == 5 for r in trimmed.per_recording)
    assert all(not r["wake_trimmed"] for r in full.per_dataset)
    d = json.loads(trimmed.to_json())
    assert d["wake_trimming"]["applied"] is True and d["wake_trimming"]["margin_min"] == 5


def test_baselines_side_by_side_and_checked():
    preds = _predictions()
    weak = [
        RecordingPrediction(p.key, p.dataset, p.y_true, np.full_like(p.probabilities, 0.2))
        for p in preds
    ]
    res = evaluate_predictions(preds, n_boot=20, baselines={"yasa": weak})
    assert res.models == ["model", "yasa"]
    assert res.pooled["yasa"]["kappa"] < res.pooled["model"]["kappa"]
    assert {r["model"] for r in res.per_dataset} == {"model", "yasa"}
    with pytest.raises(SpecError, match="same recordings"):
        evaluate_predictions(preds, n_boot=5, baselines={"yasa": weak[:-1]})
    other = [RecordingPrediction(weak[0].key, "dsB", weak[0].y_true[::-1], weak[0].probabilities)]
    with pytest.raises(SpecError, match="differ"):
        evaluate_predictions(preds[:1], n_boot=5, baselines={"yasa": other})


def test_input_validation():
    with pytest.raises(SpecError, match="shape"):
        RecordingPrediction("a/b", "a", np.zeros(3, int), np.zeros((3, 4)))
    with pytest.raises(SpecError, match="integer"):
        RecordingPrediction("a/b", "a", np.zeros(3), np.zeros((3, 5)))
    p = _predictions(n_rec=1)[0]
    with pytest.raises(SpecError, match="twice"):
        evaluate_predictions([p, p])
    with pytest.raises(SpecError, match="no predictions"):
        evaluate_predictions([])
    unknown = RecordingPrediction("a/u", "a", np.full(4, -1), np.full((4, 5), 0.2))
    with pytest.raises(SpecError, match="UNKNOWN"):
        evaluate_predictions([unknown], n_boot=5)
    # A recording with nothing to score is kept with NaN scores next to others.
    res = evaluate_predictions([p, unknown], n_boot=5)
    row = next(r for r in res.per_recording if r["key"] == "a/u")
    assert row["n_epochs"] == 0 and np.isnan(row["kappa"])


def test_write_outputs_and_report(tmp_path):
    preds = _predictions(hostile=True)
    res = evaluate_predictions(preds, n_boot=50, wake_margin_min=30, n_examples=1)
    paths = res.write(tmp_path / "out")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "metrics.json",
        "per_dataset.csv",
        "per_recording.csv",
        "report.html",
    ]
    metrics = json.loads(paths["metrics.json"].read_text())
    assert metrics["wake_trimming"]["applied"] is True
    assert metrics["bootstrap"]["unit"] == "recording"
    assert set(metrics["models"]["model"]["ci"]) == set(M.METRICS)
    for name in ("per_recording.csv", "per_dataset.csv"):
        with open(paths[name], newline="") as fh:
            rows = list(csv.DictReader(fh))
        assert rows and all(r["wake_trimmed"] == "True" and r["wake_margin_min"] for r in rows)
    with open(paths["per_recording.csv"], newline="") as fh:
        keys = [r["key"] for r in csv.DictReader(fh)]
    assert preds[0].key in keys  # hostile id round-trips through CSV quoting

    html = paths["report.html"].read_text()
    assert "<script" not in html
    assert "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;" in html
    assert "Wake trimming: applied with a margin of 30 min" in html
    # reliability diagram, confusion matrix, per-stage F1, one example hypnogram
    assert len(re.findall(r'src="data:image/png;base64,', html)) == 4
    # Calibration beside kappa; every table scrolls rather than running off the page.
    assert "<h2>Calibration</h2>" in html and "ECE" in html
    assert metrics["models"]["model"]["calibration"]["n_epochs"] == res.pooled["model"]["n_epochs"]
    assert html.count('<div class="table-scroll"><table') == html.count("<table")
    # Sleep statistics of a few nights: no correlation, a reason instead.
    assert f"too few nights (n = {len(preds)})" in html
    # Self-contained: no external references of any kind.
    assert not re.search(r'(src|href)="(?!data:)', html)
    assert "<link" not in html and "@import" not in html


def test_nan_becomes_null_in_json():
    # One class only: kappa undefined (NaN) -> null in strict JSON.
    y = np.zeros(10, dtype=int)
    probs = np.zeros((10, 5))
    probs[:, 0] = 1.0
    res = evaluate_predictions([RecordingPrediction("a/1", "a", y, probs)], n_boot=5)
    d = json.loads(res.to_json())
    assert d["models"]["model"]["kappa"] is None
    assert d["models"]["model"]["f1_per_stage"]["N1"] is None


# ------------------------------------------------------------------------------ figures


def _figure_cases():
    rng = np.random.default_rng(0)
    y, probs = _night(rng)
    pred = probs.argmax(axis=1)
    curves = [
        {"step": 1, "train_loss": 1.2},
        {"step": 2, "train_loss": 1.0, "val_loss": 1.1, "val_kappa": 0.4},
        {"step": 3, "train_loss": 0.9, "val_kappa": None, "val_macro_f1": 0.3},
    ]
    return {
        "hypnogram_full": lambda: plot_hypnogram(y, pred, probs, title=HOSTILE),
        "hypnogram_true_only": lambda: plot_hypnogram(y, epoch_s=20),
        "confusion": lambda: plot_confusion(M.confusion_matrix(y, pred)),
        "confusion_counts_empty": lambda: plot_confusion(np.zeros((5, 5)), normalize=False),
        "per_stage_f1": lambda: plot_per_stage_f1(
            {"a": M.score(y, pred), "b$": {"W": 0.5, "N1": np.nan}}
        ),
        "learning_curves": lambda: plot_learning_curves(curves),
    }


@pytest.mark.parametrize("case", list(_figure_cases()))
def test_plots_render_without_pyplot_state(case):
    import matplotlib._pylab_helpers

    before = set(matplotlib._pylab_helpers.Gcf.figs)
    fig = _figure_cases()[case]()
    assert figure_to_png(fig, dpi=30).startswith(b"\x89PNG")
    assert set(matplotlib._pylab_helpers.Gcf.figs) == before


def test_plot_argument_errors():
    y = np.zeros(10, dtype=int)
    with pytest.raises(ValueError, match="probabilities"):
        plot_hypnogram(y, probabilities=np.zeros((10, 4)))
    with pytest.raises(ValueError, match="y_pred"):
        plot_hypnogram(y, y_pred=np.zeros(9, dtype=int))
    with pytest.raises(ValueError, match="empty"):
        plot_hypnogram(np.array([], dtype=int))
    with pytest.raises(ValueError, match="at least one row"):
        plot_learning_curves([])
    with pytest.raises(ValueError, match="square"):
        plot_confusion(np.zeros((2, 3)))


def test_html_report_single_file_escaped(tmp_path):
    rng = np.random.default_rng(1)
    y, probs = _night(rng, n=60, lead_wake=5)
    out = tmp_path / "sub" / "report.html"
    written = write_html_report(
        out,
        f"title {HOSTILE}",
        [
            Section(
                f"heading {HOSTILE}",
                [
                    f"text {HOSTILE}",
                    Table([{"key": HOSTILE, "x": 0.12345, "n": 3, "missing": float("nan")}]),
                    plot_hypnogram(y, probs.argmax(axis=1), probs, title="night"),
                    Image(b"\x89PNG fake", alt=HOSTILE, caption=HOSTILE),
                ],
            ),
            ("learning curves", [plot_learning_curves([{"step": 0, "train_loss": 1.0}])]),
        ],
    )
    assert written == out
    assert [p.name for p in out.parent.iterdir()] == ["report.html"]
    html = out.read_text()
    assert "<script" not in html and "$a$" in html
    # title tag, h1, h2, paragraph, table cell, alt, caption
    assert html.count("&lt;script&gt;") == 7
    assert "0.123" in html and "n/a" in html
    assert html.count("data:image/png;base64,") == 3
    with pytest.raises(TypeError, match="cannot put"):
        write_html_report(tmp_path / "x.html", "t", [("s", [object()])])
