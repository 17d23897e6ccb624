"""Metrics against scikit-learn, known-answer sleep statistics, bootstrap, trimming, voting."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from medscale.errors import SpecError
from medscale.evaluate import metrics as M
from medscale.io.stages import N1, N2, N3, REM, UNKNOWN, W

sk = pytest.importorskip("sklearn.metrics")

STAGES = ["W", "N1", "N2", "N3", "REM"]


def _sklearn_scores(y_true, y_pred):
    """scikit-learn's answers on the epochs with a known true stage."""
    keep = y_true != UNKNOWN
    t, p = y_true[keep], y_pred[keep]
    present = sorted(set(t.tolist()) | set(p.tolist()))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # sklearn warns on undefined kappa / single label
        kappa = sk.cohen_kappa_score(t, p)
        out = {
            "cm": sk.confusion_matrix(t, p, labels=list(range(5))),
            "kappa": kappa,
            "accuracy": sk.accuracy_score(t, p),
            "macro_f1": sk.f1_score(t, p, average="macro", labels=present),
            "macro_f1_default": sk.f1_score(t, p, average="macro"),
            "mcc": sk.matthews_corrcoef(t, p),
            "f1": sk.f1_score(t, p, average=None, labels=list(range(5)), zero_division=np.nan),
        }
    return out


def _random_case(rng):
    n = int(rng.integers(1, 400))
    # Random subset of classes (so some are missing), skewed probabilities.
    k_true = rng.choice(5, size=int(rng.integers(1, 6)), replace=False)
    k_pred = rng.choice(5, size=int(rng.integers(1, 6)), replace=False)
    y_true = rng.choice(k_true, size=n)
    y_pred = np.where(rng.random(n) < 0.6, y_true, rng.choice(k_pred, size=n))
    unknown = rng.random(n) < rng.choice([0.0, 0.1, 0.5])
    y_true = np.where(unknown, UNKNOWN, y_true)
    if (y_true != UNKNOWN).sum() == 0:
        y_true[0] = int(k_true[0])
    return y_true, y_pred


def _assert_matches(y_true, y_pred):
    ours = M.score(y_true, y_pred)
    ref = _sklearn_scores(y_true, y_pred)
    np.testing.assert_array_equal(M.confusion_matrix(y_true, y_pred), ref["cm"])
    np.testing.assert_allclose(ours["kappa"], ref["kappa"], rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(ours["accuracy"], ref["accuracy"], rtol=1e-12)
    np.testing.assert_allclose(ours["macro_f1"], ref["macro_f1"], rtol=1e-12)
    np.testing.assert_allclose(ours["macro_f1"], ref["macro_f1_default"], rtol=1e-12)
    np.testing.assert_allclose(ours["mcc"], ref["mcc"], rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose([ours["f1_per_stage"][s] for s in STAGES], ref["f1"], rtol=1e-12)
    assert ours["n_epochs"] == int((y_true != UNKNOWN).sum())
    assert list(ours) == ["kappa", "accuracy", "macro_f1", "mcc", "f1_per_stage", "n_epochs"]
    assert list(ours["f1_per_stage"]) == STAGES


@pytest.mark.parametrize("seed", range(100))
def test_scores_match_sklearn_random(seed):
    y_true, y_pred = _random_case(np.random.default_rng(seed))
    _assert_matches(y_true, y_pred)


@settings(max_examples=25, deadline=None)
@given(
    st.lists(st.tuples(st.integers(-1, 4), st.integers(0, 4)), min_size=1, max_size=60).filter(
        lambda pairs: any(t != UNKNOWN for t, _ in pairs)
    )
)
def test_scores_match_sklearn_hypothesis(pairs):
    y_true = np.array([t for t, _ in pairs])
    y_pred = np.array([p for _, p in pairs])
    _assert_matches(y_true, y_pred)


@pytest.mark.parametrize(
    ("y_true", "y_pred"),
    [
        ([0, 0, 0], [0, 0, 0]),  # kappa undefined -> NaN, MCC 0
        ([1, 1, 1], [2, 2, 2]),  # nothing right
        ([0, 1, -1, -1], [0, 1, 4, 3]),  # UNKNOWN hides the only 3 and 4 predictions
        ([0, 0, 1, 1], [0, 0, 0, 0]),  # a constant prediction
        ([4, 3, 2, 1, 0], [0, 1, 2, 3, 4]),
        ([2], [2]),
    ],
)
def test_scores_match_sklearn_edge_cases(y_true, y_pred):
    _assert_matches(np.array(y_true), np.array(y_pred))


def test_missing_classes_are_nan_and_left_out_of_macro():
    s = M.score([0, 0, 2, 2], [0, 2, 2, 2])
    assert np.isnan(s["f1_per_stage"]["N1"]) and np.isnan(s["f1_per_stage"]["REM"])
    assert s["macro_f1"] == pytest.approx((2 / 3 + 0.8) / 2)
    # A class only predicted counts, with F1 0.
    s = M.score([0, 0], [0, 3])
    assert s["f1_per_stage"]["N3"] == 0.0
    assert s["macro_f1"] == pytest.approx((2 / 3 + 0) / 2)


def test_known_kappa():
    # po = 0.75, pe = (2*3 + 2*1)/16 = 0.5 -> kappa 0.5
    assert M.score([0, 0, 1, 1], [0, 0, 0, 1])["kappa"] == pytest.approx(0.5)


def test_empty_and_all_unknown_raise_clear_error():
    with pytest.raises(SpecError, match="no epochs with a known true stage"):
        M.score([], [])
    with pytest.raises(ValueError, match="all are UNKNOWN"):
        M.score([-1, -1], [0, 1])


def test_bad_inputs_raise():
    with pytest.raises(ValueError, match="epochs"):
        M.confusion_matrix([0, 1], [0])
    with pytest.raises(ValueError, match="y_pred holds codes"):
        M.confusion_matrix([0, 1], [0, 5])
    with pytest.raises(ValueError, match="y_true holds codes"):
        M.confusion_matrix([0, 7], [0, 1])
    # A prediction of -1 is fine where the truth is UNKNOWN (epoch excluded).
    assert M.confusion_matrix([-1, 1], [-1, 1]).sum() == 1


# ------------------------------------------------------------------------------ bootstrap


def _recordings(seed, n_rec=8):
    rng = np.random.default_rng(seed)
    recs = []
    for _ in range(n_rec):
        n = int(rng.integers(200, 400))
        t = rng.integers(0, 5, n)
        p = np.where(rng.random(n) < rng.uniform(0.5, 0.9), t, rng.integers(0, 5, n))
        t[rng.random(n) < 0.05] = UNKNOWN
        recs.append((t, p))
    return recs


@pytest.mark.parametrize("metric", [*M.METRICS, "f1_N1", "f1_REM"])
def test_bootstrap_contains_point_and_is_deterministic(metric):
    recs = _recordings(1)
    low, high = M.bootstrap_ci(recs, metric, n_boot=300, seed=3)
    pooled = M.score(np.concatenate([t for t, _ in recs]), np.concatenate([p for _, p in recs]))
    point = pooled[metric] if metric in M.METRICS else pooled["f1_per_stage"][metric[3:]]
    assert low <= point <= high
    assert low < high
    assert M.bootstrap_ci(recs, metric, n_boot=300, seed=3) == (low, high)
    assert M.bootstrap_ci(recs, metric, n_boot=300, seed=4) != (low, high)


def test_bootstrap_resamples_recordings_not_epochs():
    # Two recordings, one perfect and one all wrong: resamples are {both perfect, mixed,
    # both wrong}, so the accuracy interval spans (almost) 0 to 1.
    t = np.array([0, 1, 2, 3, 4] * 20)
    recs = [(t, t), (t, (t + 1) % 5)]
    low, high = M.bootstrap_ci(recs, "accuracy", n_boot=500, seed=0)
    assert low == 0.0 and high == 1.0
    # A single recording cannot vary.
    assert M.bootstrap_ci(recs[:1], "accuracy", n_boot=50) == (1.0, 1.0)


def test_bootstrap_level_narrows_interval():
    recs = _recordings(2)
    lo95, hi95 = M.bootstrap_ci(recs, "kappa", n_boot=400, seed=0, level=0.95)
    lo50, hi50 = M.bootstrap_ci(recs, "kappa", n_boot=400, seed=0, level=0.5)
    assert lo95 <= lo50 <= hi50 <= hi95


def test_bootstrap_bad_arguments():
    recs = _recordings(0, 2)
    with pytest.raises(SpecError, match="unknown metric"):
        M.bootstrap_ci(recs, "f2")
    with pytest.raises(SpecError, match="unknown metric"):
        M.bootstrap_ci(recs, "f1_N4")
    with pytest.raises(SpecError, match="level"):
        M.bootstrap_ci(recs, "kappa", level=1.0)
    with pytest.raises(SpecError, match="at least one recording"):
        M.bootstrap_ci([], "kappa")
    with pytest.raises(SpecError, match="UNKNOWN"):
        M.bootstrap_ci([(np.array([-1, -1]), np.array([0, 0]))], "kappa")


# ------------------------------------------------------------------------ sleep statistics


def _epochs(*runs):
    return np.concatenate([np.full(n, stage) for stage, n in runs])


def test_sleep_statistics_known_answer():
    # 20 W, 10 N1, 40 N2, 6 W, 30 N3, 4 UNKNOWN, 20 REM, 10 W  (140 epochs of 30 s)
    hyp = _epochs((W, 20), (N1, 10), (N2, 40), (W, 6), (N3, 30), (UNKNOWN, 4), (REM, 20), (W, 10))
    s = M.sleep_statistics(hyp)
    assert list(s) == list(M.SLEEP_STATISTICS)
    assert s["TIB_min"] == 70.0
    assert s["TST_min"] == 50.0  # 100 sleep epochs
    assert s["SOL_min"] == 10.0
    assert s["SPT_min"] == 55.0  # epochs 20 .. 129
    assert s["WASO_min"] == 3.0  # the 6 W epochs; UNKNOWN is not wake
    assert s["SE_pct"] == pytest.approx(100 * 50 / 70)
    assert s["W_min"] == 18.0
    assert (s["N1_min"], s["N2_min"], s["N3_min"], s["REM_min"]) == (5.0, 20.0, 15.0, 10.0)
    assert (s["N1_pct"], s["N2_pct"], s["N3_pct"], s["REM_pct"]) == (10.0, 40.0, 30.0, 20.0)


def test_sleep_statistics_epoch_length_and_edges():
    hyp = _epochs((N2, 4), (W, 2), (REM, 2))  # sleep from the first epoch, ends in sleep
    s = M.sleep_statistics(hyp, epoch_s=60)
    assert s["SOL_min"] == 0.0 and s["WASO_min"] == 2.0 and s["TST_min"] == 6.0
    assert s["SE_pct"] == 75.0 and s["N2_pct"] == pytest.approx(100 * 4 / 6)


def test_sleep_statistics_without_sleep():
    s = M.sleep_statistics(np.zeros(10, dtype=int))
    assert s["TST_min"] == 0.0 and s["SE_pct"] == 0.0 and s["SPT_min"] == 0.0
    assert np.isnan(s["SOL_min"]) and np.isnan(s["WASO_min"]) and np.isnan(s["N2_pct"])
    with pytest.raises(ValueError, match="not stages"):
        M.sleep_statistics([0, 9])


def test_sleep_statistics_agreement_known_answer():
    t1 = _epochs((W, 10), (N2, 50), (W, 10))
    p1 = _epochs((W, 14), (N2, 46), (W, 10))  # SOL +2 min, TST -2 min
    t2 = _epochs((W, 20), (N2, 30), (REM, 20))
    p2 = t2.copy()
    p2[-1] = UNKNOWN  # UNKNOWN only in the prediction is a disagreement in sleep
    rows = {r["statistic"]: r for r in M.sleep_statistics_agreement([(t1, p1), (t2, p2)])}
    assert "TIB_min" not in rows
    assert rows["SOL_min"]["mean_diff"] == pytest.approx(1.0)
    assert rows["SOL_min"]["mean_abs_diff"] == pytest.approx(1.0)
    assert rows["TST_min"]["mean_diff"] == pytest.approx((-2.0 - 0.5) / 2)
    assert rows["TST_min"]["n"] == 2
    assert np.isnan(rows["SOL_min"]["pearson_r"])  # two nights: any r would be +-1
    assert set(rows["TST_min"]) == {
        "statistic",
        "n",
        "mean_true",
        "mean_pred",
        "mean_diff",
        "mean_abs_diff",
        "sd_diff",
        "pearson_r",
        "pearson_r_low",
        "pearson_r_high",
    }


def test_pearson_r_and_its_interval_only_from_enough_nights():
    rng = np.random.default_rng(0)
    n = M.MIN_NIGHTS_FOR_CORRELATION
    pairs = []
    for _ in range(n):
        onset = int(rng.integers(2, 30))
        truth = _epochs((W, onset), (N2, 100 - onset))
        pred = _epochs((W, onset + 1), (N2, 99 - onset))  # SOL off by one epoch everywhere
        pairs.append((truth, pred))
    rows = {r["statistic"]: r for r in M.sleep_statistics_agreement(pairs)}
    sol = rows["SOL_min"]
    assert sol["n"] == n and sol["pearson_r"] == pytest.approx(1.0)
    assert sol["pearson_r_low"] <= sol["pearson_r"] <= sol["pearson_r_high"]
    fewer = {r["statistic"]: r for r in M.sleep_statistics_agreement(pairs[: n - 1])}
    assert all(np.isnan(fewer["SOL_min"][k]) for k in ("pearson_r", "pearson_r_low"))


def test_calibration_known_answers():
    y = np.array([N2] * 8 + [W] * 2 + [UNKNOWN])
    always_sure = np.zeros((11, 5))
    always_sure[:, N2] = 1.0  # says N2 with certainty: right 8 times in 10
    cal = M.calibration(y, always_sure)
    assert cal["n_epochs"] == 10  # UNKNOWN left out
    assert cal["ece"] == pytest.approx(0.2)  # confidence 1.0, accuracy 0.8
    (n2_bin,) = cal["per_stage"]["N2"]["bins"]
    assert n2_bin["n"] == 10 and n2_bin["observed"] == pytest.approx(0.8)
    assert cal["per_stage"]["W"]["ece"] == pytest.approx(0.2)  # says 0 where 2 in 10 are W
    honest = np.zeros((11, 5))
    honest[:, N2], honest[:, W] = 0.8, 0.2  # the true frequencies: calibrated
    assert M.calibration(y, honest)["per_stage"]["N2"]["ece"] == pytest.approx(0.0)


def test_sleep_statistics_agreement_masks_truth_unknown():
    t = _epochs((UNKNOWN, 10), (W, 4), (N2, 10))
    p = _epochs((N2, 24))  # predicted sleep where the truth is unknown must not count
    rows = {r["statistic"]: r for r in M.sleep_statistics_agreement([(t, p)])}
    assert rows["TST_min"]["mean_diff"] == pytest.approx(2.0)  # the 4 W epochs
    assert np.isnan(rows["TST_min"]["pearson_r"])  # one recording


# --------------------------------------------------------------------- trimming, voting


def test_trim_wake_margin_and_other_arrays():
    y = _epochs((W, 100), (N2, 10), (W, 5), (REM, 10), (W, 100))
    probs = np.arange(y.size * 5, dtype=float).reshape(-1, 5)
    pred = np.arange(y.size)
    yt, pt, pr = M.trim_wake(y, probs, pred, margin_min=10, epoch_s=30)  # 20 epochs margin
    assert yt.size == 20 + 25 + 20
    assert pr[0] == 80 and pr[-1] == 144
    np.testing.assert_array_equal(pt, probs[80:145])
    assert M.wake_trim_slice(y, 10, 30) == slice(80, 145)
    # Margin larger than the record is clipped.
    assert M.wake_trim_slice(y, 600, 30) == slice(0, y.size)
    assert M.wake_trim_slice(y, 0, 30) == slice(100, 125)
    # Default: 30 min of 30-s epochs = 60 epochs.
    assert M.wake_trim_slice(y) == slice(40, 185)


def test_trim_wake_no_sleep_keeps_all_and_checks_lengths():
    y = np.zeros(50, dtype=int)
    (yt,) = M.trim_wake(y)
    assert yt.size == 50
    with pytest.raises(ValueError, match="epochs"):
        M.trim_wake(y, np.zeros(49))
    with pytest.raises(SpecError, match="margin_min"):
        M.trim_wake(y, margin_min=-1)


def test_soft_vote():
    a = np.array([[0.6, 0.1, 0.1, 0.1, 0.1], [0.2, 0.2, 0.2, 0.2, 0.2]])
    b = np.array([[0.0, 1.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0, 1.0]])
    v = M.soft_vote([a, b])
    np.testing.assert_allclose(v, (a + b) / 2)
    np.testing.assert_array_equal(v.argmax(axis=1), [1, 4])
    np.testing.assert_allclose(M.soft_vote([a]), a)
    with pytest.raises(ValueError, match="shape"):
        M.soft_vote([a, b[:1]])
    with pytest.raises(SpecError):
        M.soft_vote([])


def test_metrics_import_needs_only_numpy():
    import subprocess
    import sys

    code = (
        "import sys, medscale.evaluate.metrics; "
        "bad = [m for m in ('sklearn', 'matplotlib', 'torch') if m in sys.modules]; "
        "assert not bad, bad"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
