"""medscale.campaign.report: the numbers (LOO effects, data-fraction curve) against scipy, and
the written results.csv / report.html / PNG files for each form and for an empty table."""

from __future__ import annotations

import base64
import csv
import json
import math
import re
import shutil
import struct
import subprocess
import zlib

import markupsafe
import numpy as np
import pytest
from scipy import stats

from medscale.campaign.report import write_report
from medscale.campaign.results_table import BASE_COLUMNS
from medscale.campaign.statistics import fraction_curve, loo_effects, mean_ci

HOSTILE = "<script>alert('x')</script>&\"$a$"


def _row(key, status="done", value=None, **fields):
    row = {
        "key": key,
        "status": status,
        "number": None,
        "attempts": 1,
        "value": value,
        "metrics": {} if value is None else {"kappa": value, "accuracy": 0.5},
        "params": {},
        "leave_out": None,
        "fold": None,
        "fraction": None,
        "seed": 7,
        "wall_s": 60.0,
        "device_s": 120.0,
        "peak_rss_mb": 900.0,
        "cost": 0.5,
        "run_dir": None,
        "error": None,
    }
    row.update(fields)
    return row


def _loo_key(item, fold):
    return "loo+kfold:" + json.dumps({"fold": fold, "leave_out": item}, sort_keys=True)


# Reference kappa per fold and each arm's (non-constant) difference to it per fold.
REF = [0.70, 0.64, 0.75, 0.68]
DIFFS = {
    "eeg": [-0.21, -0.15, -0.30, -0.18],
    "eog": [-0.02, -0.05, 0.01, -0.04],
    "emg": [0.03, 0.00, 0.02, 0.05],
}


def _loo_rows():
    rows = []
    for fold, ref in enumerate(REF):
        rows.append(_row(_loo_key("all", fold), value=ref, leave_out="all", fold=fold))
        for item, diffs in DIFFS.items():
            rows.append(
                _row(_loo_key(item, fold), value=ref + diffs[fold], leave_out=item, fold=fold)
            )
    # Shuffled: pairing must go by fold, not by position.
    order = np.random.default_rng(3).permutation(len(rows))
    return [rows[i] for i in order]


def _png_ok(path):
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path.name} is not a PNG"
    length, kind = struct.unpack(">I4s", data[8:16])
    assert kind == b"IHDR" and length == 13
    width, height = struct.unpack(">II", data[16:24])
    assert width > 50 and height > 50
    crc = struct.unpack(">I", data[29:33])[0]
    assert crc == zlib.crc32(data[12:29]), "IHDR checksum is wrong"
    assert data.endswith(b"IEND\xaeB`\x82")
    return data


def html_escaped(text):
    """``text`` as the report's template engine escapes it."""
    return str(markupsafe.escape(text))


def _section(text, heading):
    """The HTML of the section whose <h2> is ``heading``."""
    match = re.search(rf"<section><h2>{re.escape(heading)}</h2>(.*?)</section>", text, re.S)
    assert match, f"no section {heading!r}"
    return match.group(1)


def _no_partials(folder):
    assert not [p.name for p in folder.iterdir() if p.name.startswith(".")]


# --------------------------------------------------------------------------- numbers


def test_mean_ci_matches_scipy_t_interval():
    x = [0.3, 0.5, 0.45, 0.2, 0.61]
    mean, low, high = mean_ci(x)
    want = stats.t.interval(0.95, len(x) - 1, loc=np.mean(x), scale=stats.sem(x))
    assert mean == pytest.approx(np.mean(x), abs=1e-15)
    assert (low, high) == pytest.approx(want, abs=1e-12)
    assert mean_ci([0.4, None, float("nan"), 0.6])[0] == pytest.approx(0.5)
    one = mean_ci([0.4])
    assert one[0] == 0.4 and math.isnan(one[1]) and math.isnan(one[2])
    assert all(math.isnan(v) for v in mean_ci([]))
    assert mean_ci([0.25, 0.25, 0.25]) == (0.25, 0.25, 0.25)


def test_loo_effects_paired_mean_and_t_interval():
    effects = loo_effects(_loo_rows())
    assert [e["item"] for e in effects] == ["eeg", "eog", "emg"]  # biggest drop first
    assert "all" not in {e["item"] for e in effects}
    for e in effects:
        d = np.array(DIFFS[e["item"]])
        assert e["n_folds"] == 4
        assert e["folds"] == [0, 1, 2, 3]
        assert e["differences"] == pytest.approx(d, abs=1e-12)
        assert e["effect"] == pytest.approx(d.mean(), abs=1e-12)
        low, high = stats.t.interval(0.95, d.size - 1, loc=d.mean(), scale=stats.sem(d))
        assert e["ci_low"] == pytest.approx(low, abs=1e-12)
        assert e["ci_high"] == pytest.approx(high, abs=1e-12)
        assert e["reference_mean"] == pytest.approx(np.mean(REF), abs=1e-12)
        assert e["arm_mean"] == pytest.approx(np.mean(REF) + d.mean(), abs=1e-12)
    # Lower is better: the order flips.
    minimize = loo_effects(_loo_rows(), direction="minimize")
    assert [e["item"] for e in minimize] == ["emg", "eog", "eeg"]
    with pytest.raises(ValueError, match="direction"):
        loo_effects(_loo_rows(), direction="up")


def test_loo_effects_pairs_only_finished_folds_and_reads_metrics():
    rows = _loo_rows()
    for row in rows:
        if row["leave_out"] == "eog" and row["fold"] == 2:
            row.update(status="failed", value=None, metrics={}, error="RuntimeError: boom")
        if row["leave_out"] == "all" and row["fold"] == 0:
            row["value"] = float("nan")  # the reference of fold 0 is unusable
        if row["leave_out"] == "emg":
            row.update(status="pending", value=None, metrics={})
        # metrics["kappa"] differs from value: the chosen key must be read.
        if row["metrics"]:
            row["metrics"] = {"kappa": 2 * row["metrics"]["kappa"]}
    by_value = {e["item"]: e for e in loo_effects(rows)}
    assert by_value["eeg"]["folds"] == [1, 2, 3]
    assert by_value["eeg"]["effect"] == pytest.approx(np.mean(DIFFS["eeg"][1:]), abs=1e-12)
    assert by_value["eog"]["folds"] == [1, 3]
    assert by_value["eog"]["differences"] == pytest.approx(
        [DIFFS["eog"][1], DIFFS["eog"][3]], abs=1e-12
    )
    assert by_value["emg"]["n_folds"] == 0 and math.isnan(by_value["emg"]["effect"])
    assert [e["item"] for e in loo_effects(rows)][-1] == "emg"  # no pair: last
    by_kappa = {e["item"]: e for e in loo_effects(rows, "kappa")}
    # The fold-0 reference kappa is finite (only its value is NaN), so fold 0 counts here.
    assert by_kappa["eeg"]["folds"] == [0, 1, 2, 3]
    assert by_kappa["eeg"]["effect"] == pytest.approx(2 * np.mean(DIFFS["eeg"]), abs=1e-12)


def test_loo_effects_without_folds_single_pair_no_interval():
    rows = [
        _row("loo:all", value=0.7, leave_out="all"),
        _row("loo:eeg", value=0.5, leave_out="eeg"),
        _row("loo:eog", value=0.72, leave_out="eog"),
    ]
    effects = loo_effects(rows)
    assert [e["item"] for e in effects] == ["eeg", "eog"]
    assert effects[0]["effect"] == pytest.approx(-0.2)
    assert effects[0]["n_folds"] == 1
    assert math.isnan(effects[0]["ci_low"]) and math.isnan(effects[0]["ci_high"])


def test_fraction_curve_means_across_folds():
    values = {0.05: [0.30, 0.36, 0.27], 0.2: [0.50, 0.55, 0.58], 1.0: [0.70, 0.74, 0.69]}
    rows = []
    for fraction, per_fold in values.items():
        for fold, v in enumerate(per_fold):
            key = json.dumps({"fold": fold, "fraction": fraction})
            rows.append(_row(key, value=v, fraction=fraction, fold=fold))
    rows.append(_row("failed", status="failed", fraction=0.2, fold=3, error="E"))
    rows.reverse()
    curve = fraction_curve(rows)
    assert [c["fraction"] for c in curve] == [0.05, 0.2, 1.0]
    for c in curve:
        v = np.array(values[c["fraction"]])
        assert c["n"] == 3 and c["folds"] == [0, 1, 2]
        assert c["values"] == pytest.approx(v)
        assert c["mean"] == pytest.approx(v.mean(), abs=1e-12)
        low, high = stats.t.interval(0.95, 2, loc=v.mean(), scale=stats.sem(v))
        assert (c["ci_low"], c["ci_high"]) == pytest.approx((low, high), abs=1e-12)
    # Without folds: one point per fraction, no interval.
    single = fraction_curve([_row("a", value=0.4, fraction=0.5), _row("b", value=0.6, fraction=1)])
    assert [(c["fraction"], c["n"], c["mean"]) for c in single] == [(0.5, 1, 0.4), (1.0, 1, 0.6)]
    assert math.isnan(single[0]["ci_low"])


# --------------------------------------------------------------------------- written report


def test_write_report_loo_kfold(tmp_path):
    campaign = tmp_path / "campaign"
    rows = _loo_rows()
    for row in rows:
        row["run_dir"] = f"trials/{row['leave_out']}-{row['fold']}"
        (campaign / row["run_dir"]).mkdir(parents=True)
    # A finished training run: its report and manifest get linked; the others do not have them.
    (campaign / "trials/eeg-0/report.html").write_text("<html></html>")
    (campaign / "trials/eeg-0/manifest.json").write_text("{}")
    rows.append(
        _row(
            "loo+kfold:" + HOSTILE,
            status="failed",
            leave_out="eog",
            fold=9,
            attempts=3,
            error=f"ValueError: bad {HOSTILE}",
            run_dir="trials/fail dir",
        )
    )
    out = campaign / "report"
    written = write_report(
        rows, out, title=f"LOO {HOSTILE}", forms=["leave_one_out", "kfold"], campaign_dir=campaign
    )
    assert set(written) == {"csv", "html", "loo_effects"}
    assert written["html"] == out / "report.html"
    png = _png_ok(out / "loo_effects.png")
    text = written["html"].read_text()
    assert base64.b64encode(png).decode() in text  # the same picture, embedded
    for heading in ("Summary", "Leave-one-out: which left-out item matters most", "Leaderboard"):
        assert f"<h2>{heading}</h2>" in text
    assert "<h2>K-fold: per-fold values</h2>" not in text  # kfold is not alone here
    assert 'alt="Which left-out item matters most"' in text
    assert "Only one fold" not in text
    # Effects table: most important first, with the numbers from loo_effects.
    effects = _section(text, "Leave-one-out: which left-out item matters most")
    assert [m for m in re.findall(r"<tr><td>(\w+)</td>", effects)] == ["eeg", "eog", "emg"]
    d = np.array(DIFFS["eeg"])
    low, _ = stats.t.interval(0.95, 3, loc=d.mean(), scale=stats.sem(d))
    assert f">{low:.4g}</td>" in effects
    # Relative links from report/ to the run folders, report and manifest only where present.
    assert '<a href="../trials/eeg-0/">' in text
    assert '<a href="../trials/eeg-0/report.html">report</a>' in text
    assert '<a href="../trials/eeg-0/manifest.json">manifest</a>' in text
    assert "../trials/eeg-1/report.html" not in text
    assert '<a href="../trials/fail%20dir/">' in text
    # Every hostile string is escaped, the failed trial is listed with its error.
    assert "<script>alert" not in text
    assert html_escaped(HOSTILE) in text
    failed = _section(text, "Failed trials")
    assert f"ValueError: bad {html_escaped(HOSTILE)}" in failed
    # Summary counts.
    summary = _section(text, "Summary")
    assert '<tr><td>done</td><td class="num">16</td></tr>' in summary
    assert '<tr><td>failed</td><td class="num">1</td></tr>' in summary
    assert "cost, total (USD)" in summary
    # results.csv: one row per key, flattened.
    with written["csv"].open(newline="") as f:
        table = list(csv.DictReader(f))
    assert len(table) == len(rows)
    assert list(table[0])[: len(BASE_COLUMNS)] == list(BASE_COLUMNS)
    assert {"metrics.kappa", "metrics.accuracy"} <= set(table[0])
    eeg0 = next(r for r in table if r["key"] == _loo_key("eeg", 0))
    assert float(eeg0["metrics.kappa"]) == pytest.approx(REF[0] + DIFFS["eeg"][0])
    assert eeg0["fold"] == "0" and eeg0["error"] == ""
    _no_partials(out)


def test_write_report_loo_single_fold_says_no_interval(tmp_path):
    rows = [
        _row("loo:all", value=0.7, leave_out="all", run_dir="r/all"),
        _row("loo:eeg", value=0.5, leave_out="eeg", run_dir="r/eeg"),
        _row("loo:eog", value=0.72, leave_out="eog", run_dir="r/eog"),
    ]
    written = write_report(rows, tmp_path, title="one fold", forms=["leave_one_out"])
    text = written["html"].read_text()
    assert "Only one fold: no confidence interval" in text
    _png_ok(written["loo_effects"])
    assert '<a href="r/eeg/">' in text  # campaign_dir defaults to out_dir


def test_write_report_data_fraction(tmp_path):
    rows = []
    for fraction in (0.01, 0.1, 0.5, 1.0):
        for fold in range(3):
            value = 0.4 + 0.3 * fraction + 0.01 * fold
            key = json.dumps({"fold": fold, "fraction": fraction})
            rows.append(_row(key, value=value, fraction=fraction, fold=fold, run_dir=f"t/{key}"))
    written = write_report(
        rows, tmp_path, title="fractions", forms=["data_fraction", "kfold"], metric="kappa"
    )
    assert set(written) == {"csv", "html", "data_fraction"}
    _png_ok(tmp_path / "data_fraction.png")
    text = written["html"].read_text()
    section = _section(text, "Data fraction: kappa vs fraction of training data")
    assert "Mean and 95% t confidence interval across folds" in section
    mean_01 = np.mean([0.4 + 0.3 * 0.1 + 0.01 * f for f in range(3)])
    assert f'data-v="{float(mean_01)!r}"' in section
    # The key holds quotes and braces: escaped in text, percent-encoded in the link.
    assert "t/%7B%22fold%22%3A%200%2C%20%22fraction%22%3A%200.01%7D/" in section


def test_write_report_grid_leaderboard_sorted(tmp_path):
    values = {0.001: 0.61, 0.003: 0.72, 0.01: 0.55, 0.03: float("nan")}
    rows = [
        _row(f"grid:lr={lr}", value=v, params={"optimizer.lr": lr}, run_dir=f"g/{i}")
        for i, (lr, v) in enumerate(values.items())
    ]
    rows.append(_row("grid:lr=0.1", status="running", params={"optimizer.lr": 0.1}))
    rows.append(_row("grid:lr=0.1", status="pending", params={"optimizer.lr": 0.1}))  # same key
    for direction, best_first in (("maximize", [0.72, 0.61, 0.55]), ("minimize", [0.55, 0.61])):
        out = tmp_path / direction
        written = write_report(rows, out, title="grid", forms=["grid"], direction=direction)
        assert set(written) == {"csv", "html"}
        text = written["html"].read_text()
        board = _section(text, "Leaderboard")
        assert "<th>params.optimizer.lr</th>" in board
        assert 'class="sortable"' in board and "<script>" in text
        keys = re.findall(r"<td>(grid:lr=[\d.]+)</td>", board)
        assert keys[: len(best_first)] == [
            f"grid:lr={lr}" for v in best_first for lr, x in values.items() if x == v
        ]
        assert keys[-1] == "grid:lr=0.1"  # unfinished last; NaN value before it
        assert keys.count("grid:lr=0.1") == 1
        assert "<td>pending</td>" in board and "<td>running</td>" not in board
        with written["csv"].open(newline="") as f:
            table = list(csv.DictReader(f))
        assert [r["key"] for r in table] == [r["key"] for r in rows[:5]]
        assert table[-1]["status"] == "pending" and table[-1]["params.optimizer.lr"] == "0.1"
        assert table[3]["value"] == "nan"


def test_write_report_bayesian_with_study(tmp_path):
    optuna = pytest.importorskip("optuna")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    study.optimize(lambda t: (t.suggest_float("x", -1, 1)) ** 2, n_trials=8)
    rows = [
        _row(
            f"bayes:{t.number}",
            value=t.value,
            number=t.number,
            params=t.params,
            run_dir=f"trials/{t.number}",
        )
        for t in study.trials
    ]
    written = write_report(
        rows, tmp_path, title="bayes", forms=["bayesian"], direction="minimize", study=study
    )
    assert set(written) == {"csv", "html", "history", "importances"}
    for name in ("history", "importances"):
        _png_ok(tmp_path / f"{name}.png")
    text = written["html"].read_text()
    section = _section(text, "Bayesian optimisation: history and parameter importances")
    assert 'alt="Optimisation history"' in section
    assert 'alt="Parameter importances"' in section
    assert "<td>x</td>" in section  # the importances table
    best = min(t.value for t in study.trials)
    board = _section(text, "Leaderboard")
    first = re.search(r"<td>(bayes:\d+)</td>", board).group(1)
    assert first == f"bayes:{study.best_trial.number}"
    assert f"{best:.4g}" in board
    assert "<th>params.x</th>" in board

    # Without a study, or with too few complete trials: the history only, and a note.
    written = write_report(rows, tmp_path / "no-study", title="b", forms=["bayesian"])
    assert set(written) == {"csv", "html", "history"}
    assert "No Optuna study was given" in written["html"].read_text()
    tiny = optuna.create_study()
    tiny.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=1)
    written = write_report(rows[:1], tmp_path / "tiny", title="b", forms=["bayesian"], study=tiny)
    assert "parameter importances need at least two" in written["html"].read_text()


def test_write_report_kfold_alone(tmp_path):
    vals = [0.61, 0.70, 0.66, 0.59, 0.72]
    rows = [_row(f"kfold:{f}", value=v, fold=f, run_dir=f"f{f}") for f, v in enumerate(vals)]
    written = write_report(rows, tmp_path, title="cv", forms=["kfold"])
    assert set(written) == {"csv", "html", "folds"}
    _png_ok(written["folds"])
    section = _section(written["html"].read_text(), "K-fold: per-fold values")
    mean, low, high = mean_ci(vals)
    assert f"Mean kappa: {mean:.4g}, " in section
    assert f"95% t confidence interval [{low:.4g}, {high:.4g}] across 5 folds" in section
    assert '<a href="f3/">fold 3</a>' in section


@pytest.mark.parametrize("status", [None, "pending"])
def test_write_report_empty_table(tmp_path, status):
    rows = [] if status is None else [_row("grid:a", status=status), _row("grid:b", "failed")]
    written = write_report(rows, tmp_path, title="nothing yet", forms=["leave_one_out", "kfold"])
    assert set(written) == {"csv", "html"}
    assert not list(tmp_path.glob("*.png"))
    text = written["html"].read_text()
    assert "<h2>Summary</h2>" in text and "<h2>Results</h2>" in text
    if status is None:
        assert "There are no trials in the results table" in text
        assert "<h2>Leaderboard</h2>" not in text
        assert written["csv"].read_text().strip() == ",".join(BASE_COLUMNS)
    else:
        assert "There are no finished trials yet" in text
        assert "<h2>Failed trials</h2>" in text
    assert "<h2>Leave-one-out" not in text
    _no_partials(tmp_path)


def test_write_report_rejects_bad_input(tmp_path):
    with pytest.raises(ValueError, match="direction"):
        write_report([], tmp_path, title="t", forms=["grid"], direction="best")
    with pytest.raises(ValueError, match="no 'key'"):
        write_report([{"status": "done"}], tmp_path, title="t", forms=["grid"])


def test_sort_script_is_valid_javascript(tmp_path):
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed")
    written = write_report([_row("a", value=0.5)], tmp_path, title="t", forms=["grid"])
    script = re.search(r"<script>(.*?)</script>", written["html"].read_text(), re.S).group(1)
    (tmp_path / "sort.js").write_text(script)
    result = subprocess.run([node, "--check", str(tmp_path / "sort.js")], capture_output=True)
    assert result.returncode == 0, result.stderr.decode()
