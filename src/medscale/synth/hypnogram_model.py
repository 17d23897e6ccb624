"""Surrogate hypnograms from a Markov model fitted to real scorings.

The model (``transition_model.json``, written by ``scripts/fit_transition_model.py``) holds 5x5
transition matrices of 30-s AASM stages (one for the stretch before the first REM epoch, then one
per third of the sleep period), the stage of the first sleep epoch, and log-normal fits of the
sleep-onset latency, the REM latency and the final wake run.

A sampled night is: wake for the sleep-onset latency, then the chain for the sleep period, then
the final wake. Inside the sleep period the chain runs on the before-REM matrix until the sampled
REM latency has passed and it is in N1 or N2, steps into REM, and from then on uses the matrix
of the current third. A first-order chain cannot produce a REM latency by itself.
"""

from __future__ import annotations

import bisect
import json
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

import numpy as np

from medscale.errors import SpecError
from medscale.io.stages import N1, N2, N3, REM, W

MODEL_FILE = "transition_model.json"
# A short night cannot hold a full latency and final wake: cap them to these shares of it.
MAX_LATENCY_SHARE = 0.25
MAX_FINAL_WAKE_SHARE = 0.1
# ... and keep the first REM within the first third of the sleep period.
MAX_REM_LATENCY_SHARE = 1 / 3


@dataclass(frozen=True)
class TransitionModel:
    """The fitted hypnogram model.

    ``transitions[t, a, b]`` is P(next stage b | stage a) in third ``t`` of the sleep period,
    after the first REM epoch; ``before_first_rem[a, b]`` the same before it. Latencies (sleep
    onset, first REM after sleep onset, final wake) are log-normal in ``1 + epochs``.
    """

    transitions: np.ndarray
    before_first_rem: np.ndarray
    first_sleep_stage: np.ndarray
    latency_mu: float
    latency_sigma: float
    rem_latency_mu: float
    rem_latency_sigma: float
    final_wake_mu: float
    final_wake_sigma: float
    epoch_length_s: float
    sources: dict

    @property
    def n_thirds(self) -> int:
        return int(self.transitions.shape[0])


def _check_stochastic(name: str, probs: np.ndarray, shape: tuple[int, ...]) -> None:
    if probs.shape != shape or (probs < 0).any() or not np.allclose(probs.sum(axis=-1), 1, 1e-4):
        raise SpecError(
            f"{MODEL_FILE}: {name} must be {shape} non-negative probabilities whose rows sum to 1"
        )


@lru_cache(maxsize=1)
def load_transition_model() -> TransitionModel:
    """Read the fitted model shipped with medscale (cached).

    Returns
    -------
    TransitionModel
        The transition matrices and latency fits.
    """
    path = resources.files("medscale.synth") / MODEL_FILE
    raw = json.loads(path.read_text(encoding="utf-8"))
    if raw.get("format") != "medscale-synth-transition-model" or raw.get("version") != 1:
        raise SpecError(f"{MODEL_FILE}: not a version-1 medscale-synth transition model")
    transitions = np.asarray(raw["transition_probabilities"], dtype=float)
    n_thirds = int(raw["n_thirds"])
    _check_stochastic("transition_probabilities", transitions, (n_thirds, 5, 5))
    before_first_rem = np.asarray(raw["before_first_rem_probabilities"], dtype=float)
    _check_stochastic("before_first_rem_probabilities", before_first_rem, (5, 5))
    first = np.asarray(raw["first_sleep_stage_probabilities"], dtype=float)
    _check_stochastic("first_sleep_stage_probabilities", first, (5,))
    for array in (transitions, before_first_rem, first):
        array.setflags(write=False)
    return TransitionModel(
        transitions=transitions,
        before_first_rem=before_first_rem,
        first_sleep_stage=first,
        latency_mu=float(raw["sleep_onset_latency"]["mu"]),
        latency_sigma=float(raw["sleep_onset_latency"]["sigma"]),
        rem_latency_mu=float(raw["rem_latency"]["mu"]),
        rem_latency_sigma=float(raw["rem_latency"]["sigma"]),
        final_wake_mu=float(raw["final_wake"]["mu"]),
        final_wake_sigma=float(raw["final_wake"]["sigma"]),
        epoch_length_s=float(raw["epoch_length_s"]),
        sources=raw["sources"],
    )


def _lognormal_epochs(mu: float, sigma: float, cap: int, rng: np.random.Generator) -> int:
    return int(min(cap, max(0, round(np.exp(rng.normal(mu, sigma)) - 1))))


def sample_hypnogram(
    n_epochs: int, rng: np.random.Generator, model: TransitionModel | None = None
) -> np.ndarray:
    """Sample one night of 30-s AASM stages.

    Parameters
    ----------
    n_epochs : int
        Length of the night in epochs (lights off to lights on).
    rng : numpy.random.Generator
        Source of randomness; the result depends only on its state.
    model : TransitionModel | None
        The model to sample from; the shipped one by default.

    Returns
    -------
    numpy.ndarray
        int8 stage codes (W=0, N1=1, N2=2, N3=3, REM=4), shape ``(n_epochs,)``. The thirds of
        the sampled sleep period use their own transition matrix, so a short night is a
        compressed whole night rather than the start of one.
    """
    if isinstance(n_epochs, bool) or not isinstance(n_epochs, int | np.integer) or n_epochs < 1:
        raise SpecError(f"n_epochs must be a positive integer, got {n_epochs!r}")
    model = model or load_transition_model()
    n_epochs = int(n_epochs)
    latency = _lognormal_epochs(
        model.latency_mu, model.latency_sigma, int(MAX_LATENCY_SHARE * n_epochs), rng
    )
    final_wake = _lognormal_epochs(
        model.final_wake_mu, model.final_wake_sigma, int(MAX_FINAL_WAKE_SHARE * n_epochs), rng
    )
    n_sleep = n_epochs - latency - final_wake
    rem_latency = _lognormal_epochs(
        model.rem_latency_mu, model.rem_latency_sigma, int(MAX_REM_LATENCY_SHARE * n_sleep), rng
    )
    stages = np.full(n_epochs, W, dtype=np.int8)

    # Inverse-CDF sampling with pre-drawn uniforms: one draw per epoch, fast in plain Python.
    cdfs = [_cdf_rows(matrix) for matrix in model.transitions]
    cdf_before_rem = _cdf_rows(model.before_first_rem)
    first = model.first_sleep_stage.copy()
    first[REM] = 0.0
    first_cdf = np.cumsum(first / first.sum()).tolist()
    uniforms = rng.random(n_sleep).tolist()
    n_thirds = model.n_thirds
    state = min(REM, bisect.bisect_right(first_cdf, uniforms[0]))
    stages[latency] = state
    had_rem = False
    for k in range(1, n_sleep):
        if had_rem:
            third = min(n_thirds - 1, ((k - 1) * n_thirds) // n_sleep)
            state = min(REM, bisect.bisect_right(cdfs[third][state], uniforms[k]))
        elif k >= rem_latency and state in (N1, N2):
            state, had_rem = REM, True
        else:
            state = min(N3, bisect.bisect_right(cdf_before_rem[state], uniforms[k]))
        stages[latency + k] = state
    return stages


def _cdf_rows(matrix: np.ndarray) -> list[list[float]]:
    return [np.cumsum(row).tolist() for row in matrix]
