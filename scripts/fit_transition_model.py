"""Fit the surrogate hypnogram model shipped as ``medscale/synth/transition_model.json``.

The model is a first-order Markov chain over 30-s AASM stages (W, N1, N2, N3, REM): one
transition matrix for the stretch before the first REM epoch (a first-order chain alone puts REM
minutes after sleep onset far too often), then one per third of the sleep period, so that N3
comes early and REM late as in real nights. Log-normal fits of the sleep-onset latency, of the
REM latency and of the final wake run complete it.

Sources (real scorings under the shared data folder, parsed here with small local code so the
script depends on nothing but numpy):

- ``sleepedf_hypnograms_csv/*.csv``: one R&K character per epoch (W,1,2,3,4,R,?), CR-separated.
  The SC files cover ~24 h, so each is first cut to its main sleep episode (sleep runs split
  by >= 60 min of wake, which drops naps); every file is then trimmed to 30 min before its first
  and after its last sleep epoch.
- ``yasa_examples/data_full_6hrs_100Hz_hypno_30s.txt``: ints 0..4 after ``#`` comments.
- ``mitbih_slpdb_annotations/*.an``: rdann text dumps; the first Aux token is the stage.

``?``, ``MT`` and ``M`` epochs break the chain: no transition is counted into or out of them.

Usage::

    python scripts/fit_transition_model.py [--data /work/shared/data] [--out PATH]
"""

from __future__ import annotations

import argparse
import json
import math
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

W, N1, N2, N3, REM = 0, 1, 2, 3, 4
BREAK = -1  # an epoch that breaks the chain: unscored, movement time
STAGES = ("W", "N1", "N2", "N3", "REM")
N_THIRDS = 3
EPOCH_S = 30.0
TRIM_EPOCHS = 60  # 30 min of context kept before the first and after the last sleep epoch
EPISODE_GAP_EPOCHS = 120  # a wake (or unscored) run of 60 min or more separates sleep episodes
MIN_SLPDB_HOURS = 5.0  # shorter slpdb records are segments of a night, not whole nights

RK_CHAR = {"W": W, "1": N1, "2": N2, "3": N3, "4": N3, "R": REM, "?": BREAK}
SLPDB_TOKEN = {"W": W, "1": N1, "2": N2, "3": N3, "4": N3, "R": REM, "MT": BREAK, "M": BREAK}

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "data"
DEFAULT_OUT = REPO / "src" / "medscale" / "synth" / "transition_model.json"


@dataclass
class Night:
    """One scored recording as stage codes, with what it can be used for."""

    name: str
    source: str
    stages: np.ndarray  # int8, BREAK for unusable epochs
    onset_latency_epochs: int | None  # None when the record does not start at lights off
    final_wake_epochs: int | None  # None when the record does not end at lights on
    note: str = ""


def read_sleepedf_csv(path: Path) -> np.ndarray:
    text = path.read_bytes().decode("ascii")
    chars = [c for c in re.split(r"[\r\n]+", text) if c]
    unknown = sorted({c for c in chars if c not in RK_CHAR})
    if unknown:
        raise ValueError(f"{path}: unexpected stage characters {unknown}; expected {list(RK_CHAR)}")
    return np.array([RK_CHAR[c] for c in chars], dtype=np.int8)


def read_yasa_txt(path: Path) -> np.ndarray:
    values = [
        int(line) for line in path.read_text().splitlines() if line.strip() and line[0] != "#"
    ]
    if any(v not in range(5) for v in values):
        raise ValueError(f"{path}: stage codes outside 0..4")
    return np.array(values, dtype=np.int8)


def read_slpdb_an(path: Path) -> np.ndarray:
    out = []
    for line in path.read_text().splitlines()[1:]:  # first line is the column header
        parts = line.split("\t")
        token = parts[1].split()[0] if len(parts) > 1 and parts[1].strip() else "?"
        if token not in SLPDB_TOKEN:
            raise ValueError(f"{path}: unexpected stage token {token!r} in line {line!r}")
        out.append(SLPDB_TOKEN[token])
    return np.array(out, dtype=np.int8)


def slpdb_hours(path: Path) -> float:
    """Record length from the WFDB header next to the annotation dump."""
    first = path.with_suffix(".hea").read_text().splitlines()[0].split()
    sfreq_hz = float(first[2].split("/")[0])
    return int(first[3]) / sfreq_hz / 3600.0


def is_sleep(stages: np.ndarray) -> np.ndarray:
    return (stages >= N1) & (stages <= REM)


def sleep_period(stages: np.ndarray) -> tuple[int, int]:
    """(first, last) sleep epoch."""
    idx = np.flatnonzero(is_sleep(stages))
    if idx.size == 0:
        raise ValueError("no sleep epochs")
    return int(idx[0]), int(idx[-1])


def main_sleep_episode(stages: np.ndarray) -> tuple[int, int]:
    """(first, last) sleep epoch of the episode with the most sleep.

    Episodes are separated by runs of >= 60 min without sleep, so an afternoon nap in a 24-h
    Sleep-EDF file does not stretch the night.
    """
    idx = np.flatnonzero(is_sleep(stages))
    if idx.size == 0:
        raise ValueError("no sleep epochs")
    cuts = np.flatnonzero(np.diff(idx) > EPISODE_GAP_EPOCHS)
    starts = np.concatenate([[0], cuts + 1])
    stops = np.concatenate([cuts, [idx.size - 1]])
    best = int(np.argmax(stops - starts))
    return int(idx[starts[best]]), int(idx[stops[best]])


def load_nights(data: Path) -> tuple[list[Night], list[dict]]:
    nights: list[Night] = []
    excluded: list[dict] = []
    for path in sorted((data / "sleepedf_hypnograms_csv").glob("*.csv")):
        raw = read_sleepedf_csv(path)
        telemetry = path.name.startswith("ST")
        # Only the ~24-h SC files hold naps and days; an ST file is one night, long awakenings
        # included.
        first, last = sleep_period(raw) if telemetry else main_sleep_episode(raw)
        lo, hi = max(0, first - TRIM_EPOCHS), min(raw.size, last + TRIM_EPOCHS + 1)
        # SC files run ~24 h from afternoon to afternoon: their lead and tail wake say nothing
        # about sleep latency. ST (telemetry) files are night recordings from lights off, so
        # their untrimmed lead and tail wake are the latency and the final wake.
        nights.append(
            Night(
                path.name.split("-")[0],
                "sleepedf_hypnograms_csv",
                raw[lo:hi],
                onset_latency_epochs=first if telemetry else None,
                final_wake_epochs=raw.size - 1 - last if telemetry else None,
                note=f"kept epochs {lo}..{hi - 1} of {raw.size}",
            )
        )
    yasa = data / "yasa_examples" / "data_full_6hrs_100Hz_hypno_30s.txt"
    stages = read_yasa_txt(yasa)
    nights.append(
        Night(
            "yasa_full_6hrs",
            "yasa_examples",
            stages,
            onset_latency_epochs=sleep_period(stages)[0],
            final_wake_epochs=None,  # the 6-h file ends in REM: it was cut, not woken up
        )
    )
    for path in sorted((data / "mitbih_slpdb_annotations").glob("*.an")):
        stages = read_slpdb_an(path)
        hours = slpdb_hours(path)
        if hours < MIN_SLPDB_HOURS or path.stem[-1] in "abx":
            excluded.append(
                {
                    "name": path.stem,
                    "source": "mitbih_slpdb_annotations",
                    "epochs": int(stages.size),
                    "reason": f"segment of a night ({hours:.1f} h); its thirds are not a night's",
                }
            )
            continue
        # slpdb recordings often start after sleep onset: their lead wake is not a latency.
        nights.append(
            Night(
                path.stem,
                "mitbih_slpdb_annotations",
                stages,
                onset_latency_epochs=None,
                final_wake_epochs=None,
            )
        )
    return nights, excluded


def count_transitions(nights: list[Night]) -> tuple[np.ndarray, np.ndarray]:
    """Transition counts inside each night's sleep period (first to last sleep epoch).

    Returns ``(before_rem, by_third)``: counts [from, to] up to the first REM epoch, and
    counts [third, from, to] from the first REM epoch on. The step into the first REM epoch is
    left out of both: the REM latency fit models it.
    """
    before_rem = np.zeros((5, 5), dtype=np.int64)
    by_third = np.zeros((N_THIRDS, 5, 5), dtype=np.int64)
    for night in nights:
        first, last = sleep_period(night.stages)
        span = last - first + 1
        seg = night.stages[first : last + 1]
        rem = np.flatnonzero(seg == REM)
        first_rem = int(rem[0]) if rem.size else span
        for k in range(span - 1):
            a, b = int(seg[k]), int(seg[k + 1])
            if a == BREAK or b == BREAK or k + 1 == first_rem:
                continue
            if k < first_rem:
                before_rem[a, b] += 1
            else:
                by_third[min(N_THIRDS - 1, (k * N_THIRDS) // span), a, b] += 1
    return before_rem, by_third


def lognormal_fit(values: list[int]) -> dict:
    """Fit log(1 + epochs) ~ Normal(mu, sigma); +1 keeps zero-latency nights."""
    logs = np.log1p(np.asarray(values, dtype=float))
    return {
        "model": "epochs = exp(Normal(mu, sigma)) - 1",
        "mu": round(float(logs.mean()), 6),
        "sigma": round(float(logs.std(ddof=1)), 6),
        "n_nights": len(values),
        "median_epochs": float(np.median(values)),
        "observed_epochs": sorted(int(v) for v in values),
    }


def fit(data: Path) -> dict:
    nights, excluded = load_nights(data)
    before_rem, counts = count_transitions(nights)
    rows = counts.sum(axis=2, keepdims=True)
    if (rows == 0).any():
        raise ValueError("a stage never occurs in some third; cannot estimate its transitions")
    probs = counts / rows
    # Before the first REM there is no REM row; the sampler never visits it.
    pre_rows = before_rem[:REM].sum(axis=1, keepdims=True)
    pre_probs = np.zeros((5, 5))
    pre_probs[:REM] = before_rem[:REM] / pre_rows
    pre_probs[REM, REM] = 1.0

    first_sleep = np.zeros(5, dtype=np.int64)
    latencies, final_wakes, rem_latencies = [], [], []
    for night in nights:
        first, _ = sleep_period(night.stages)
        first_sleep[night.stages[first]] += 1
        rem = np.flatnonzero(night.stages[first:] == REM)
        if rem.size and night.source != "mitbih_slpdb_annotations":
            # slpdb records often start after sleep onset, so their first REM is no latency.
            rem_latencies.append(int(rem[0]))
        if night.onset_latency_epochs is not None:
            latencies.append(night.onset_latency_epochs)
        if night.final_wake_epochs is not None:
            final_wakes.append(night.final_wake_epochs)

    per_source: dict[str, dict] = {}
    for night in nights:
        entry = per_source.setdefault(
            night.source, {"nights": 0, "epochs": 0, "sleep_period_epochs": 0, "stage_epochs": {}}
        )
        first, last = sleep_period(night.stages)
        entry["nights"] += 1
        entry["epochs"] += int(night.stages.size)
        entry["sleep_period_epochs"] += last - first + 1
        for code, name in enumerate(STAGES):
            entry["stage_epochs"][name] = entry["stage_epochs"].get(name, 0) + int(
                (night.stages == code).sum()
            )
        entry["stage_epochs"]["break"] = entry["stage_epochs"].get("break", 0) + int(
            (night.stages == BREAK).sum()
        )

    return {
        "format": "medscale-synth-transition-model",
        "version": 1,
        "description": (
            "First-order Markov chain of 30-s AASM stages inside the sleep period: one matrix "
            "before the first REM epoch, then one per third of the sleep period; sleep-onset "
            "latency, REM latency and final wake run as log-normal fits. Fitted from real "
            "scorings by scripts/fit_transition_model.py."
        ),
        "epoch_length_s": EPOCH_S,
        "stages": list(STAGES),
        "n_thirds": N_THIRDS,
        "transition_probabilities": np.round(probs, 6).tolist(),
        "transition_counts": counts.tolist(),
        "before_first_rem_probabilities": np.round(pre_probs, 6).tolist(),
        "before_first_rem_counts": before_rem.tolist(),
        "first_sleep_stage_probabilities": np.round(first_sleep / first_sleep.sum(), 6).tolist(),
        "first_sleep_stage_counts": first_sleep.tolist(),
        "sleep_onset_latency": lognormal_fit(latencies),
        "final_wake": lognormal_fit(final_wakes),
        "rem_latency": lognormal_fit(rem_latencies),
        "preprocessing": {
            "sleep_episode_gap_epochs": EPISODE_GAP_EPOCHS,
            "sleepedf_trim_epochs": TRIM_EPOCHS,
            "rk_to_aasm": "S3 and S4 -> N3; '?', MT and M break the chain",
            "latency_sources": "Sleep-EDF ST (telemetry) nights and the YASA night, which start "
            "at lights off; final wake from Sleep-EDF ST nights only; REM latency (epochs from "
            "the first sleep epoch to the first REM epoch) from Sleep-EDF and YASA nights",
            "min_slpdb_hours": MIN_SLPDB_HOURS,
        },
        "sources": per_source,
        "transitions_counted": int(counts.sum() + before_rem.sum()),
        "nights_used": [
            {"name": n.name, "source": n.source, "epochs": int(n.stages.size), "note": n.note}
            for n in nights
        ],
        "excluded": excluded,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="shared data folder")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="JSON file to write")
    args = parser.parse_args(argv)
    model = fit(args.data)
    args.out.write_text(json.dumps(model, indent=1) + "\n", encoding="utf-8")
    probs = np.asarray(model["transition_probabilities"])
    print(f"wrote {args.out}: {model['transitions_counted']} transitions")
    for third in range(N_THIRDS):
        stationary = np.linalg.matrix_power(probs[third], 512)[0]
        shares = ", ".join(f"{s} {p:.2f}" for s, p in zip(STAGES, stationary, strict=True))
        print(f"third {third + 1} stationary shares: {shares}")
    for key in ("sleep_onset_latency", "rem_latency", "final_wake"):
        fit_ = model[key]
        print(f"{key}: median {fit_['median_epochs']} epochs over {fit_['n_nights']} nights")
    if math.isnan(float(model["sleep_onset_latency"]["sigma"])):
        raise SystemExit("too few nights for the latency fit")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
