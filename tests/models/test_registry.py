"""The registry and the contract every registered model keeps."""

from __future__ import annotations

import inspect

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from medscale.errors import SpecError  # noqa: E402
from medscale.models import (  # noqa: E402
    build_model,
    model_arguments,
    model_names,
    register_model,
    registry,
)

from .conftest import EPOCH_SAMPLES, synthetic_spectrograms  # noqa: E402

EXPECTED = {"usleep", "usleep-small", "lseqsleepnet", "lseqsleepnet-small"}


@pytest.fixture
def scratch_registry(monkeypatch):
    """A copy of the registry, so that test registrations do not leak."""
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))


def test_the_four_models_are_registered():
    assert set(model_names()) >= EXPECTED
    assert model_names() == sorted(model_names())


def test_an_unknown_name_lists_the_known_ones():
    with pytest.raises(SpecError) as info:
        build_model("unet-9000")
    message = str(info.value)
    assert "'unet-9000'" in message
    for name in model_names():
        assert name in message


def test_an_unknown_argument_is_named_with_the_valid_ones():
    with pytest.raises(SpecError) as info:
        build_model("usleep", in_chanels=2)
    message = str(info.value)
    assert "'in_chanels'" in message
    for valid in ("in_channels", "depth", "complexity_factor", "samples_per_prediction"):
        assert valid in message


def test_bad_values_are_spec_errors():
    with pytest.raises(SpecError, match="depth"):
        build_model("usleep", depth=0)
    with pytest.raises(SpecError, match="in_channels"):
        build_model("lseqsleepnet", in_channels=1.5)
    with pytest.raises(SpecError, match="dropout"):
        build_model("lseqsleepnet", dropout=1.0)


def test_small_presets_take_the_full_argument_list_with_their_own_defaults():
    args = model_arguments("usleep-small")
    assert args["depth"] == 5 and args["init_filters"] == 8
    assert set(args) == set(model_arguments("usleep"))
    assert model_arguments("usleep")["depth"] == 12
    model = build_model("usleep-small", depth=3)  # an override beats the preset
    assert len(model.encoder) == 3


def test_registering_a_taken_name_or_a_catch_all_factory_is_refused(scratch_registry):
    @register_model("toy")
    def toy(width: int = 3):
        return torch.nn.Linear(width, width)

    assert isinstance(build_model("toy", width=2), torch.nn.Linear)
    with pytest.raises(SpecError, match="already registered"):

        @register_model("toy")
        def other_toy(width: int = 3):
            return torch.nn.Linear(width, 1)

    with pytest.raises(SpecError, match="kwargs"):

        @register_model("loose")
        def loose(**kwargs):
            return torch.nn.Identity()

    assert "loose" not in model_names()


def test_with_defaults_rejects_arguments_the_factory_lacks():
    from medscale.models import USleep

    with pytest.raises(SpecError, match="widht"):
        registry.with_defaults(USleep, widht=3)
    preset = registry.with_defaults(USleep, depth=2)
    assert inspect.signature(preset).parameters["depth"].default == 2


def _contract_input(model, batch: int = 2):
    """A valid input of 2 scoring epochs (or one subsequence pair) for any registered model."""
    rng = np.random.default_rng(0)
    if model.data_spec.input_kind == "signals":
        n_epochs = 2
        x = rng.standard_normal((batch, model.in_channels, n_epochs * EPOCH_SAMPLES))
        return torch.from_numpy(x.astype(np.float32)), n_epochs
    assert model.data_spec.input_kind == "spectrogram"
    n_epochs = 2 * model.subseq_len
    spec, _ = synthetic_spectrograms(rng, batch, n_epochs, model.in_channels)
    return torch.from_numpy(spec), n_epochs


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_every_model_keeps_the_contract(name):
    model = build_model(name).eval()
    spec = model.data_spec
    assert spec.input_kind in ("signals", "spectrogram") and spec.causal is False
    assert model.n_classes == spec.n_classes == 5 and spec.channels == model.in_channels
    x, n_epochs = _contract_input(model)
    with torch.no_grad():
        out = model(x)
    assert out.shape == (2, 5, n_epochs)
    assert out.dtype == torch.float32 and torch.isfinite(out).all()
    with pytest.raises(SpecError):
        model(x[:, :1] if model.in_channels > 1 else torch.cat([x, x], dim=1))


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_a_fixed_seed_builds_identical_weights(name):
    def weights(seed):
        torch.manual_seed(seed)
        return build_model(name).state_dict()

    first, second, other = weights(7), weights(7), weights(8)
    assert first.keys() == second.keys()
    assert all(torch.equal(first[k], second[k]) for k in first)
    assert any(not torch.equal(first[k], other[k]) for k in first)  # the seed matters
