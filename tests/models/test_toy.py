"""The toy-task models, the data spec check, and streaming a causal model chunk by chunk."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from medscale.errors import SpecError  # noqa: E402
from medscale.models import DataSpec, build_model, check_data_spec  # noqa: E402


def test_streaming_chunk_by_chunk_equals_one_causal_forward():
    """12 segments of 16 samples, streamed as chunks of 1, 4, 2 and 5 segments: the state
    (the convolution's left context and the GRU's hidden state) carries the past across."""
    torch.manual_seed(0)
    model = build_model("toy-event-net", in_channels=2, segment_samples=16).eval()
    x = torch.randn(3, 2, 12 * 16)
    with torch.no_grad():
        full = model(x)
        state, parts, start = None, [], 0
        for segments in (1, 4, 2, 5):
            stop = start + segments * 16
            logits, state = model.stream(x[..., start:stop], state)
            parts.append(logits)
            start = stop
        fresh, _ = model.stream(x[..., 16:32])  # the same chunk without its past differs
    assert full.shape == (3, 2, 12)
    torch.testing.assert_close(torch.cat(parts, dim=-1), full, rtol=1e-5, atol=1e-6)
    assert not torch.allclose(fresh, full[..., 1:2])


def test_the_event_model_is_causal():
    torch.manual_seed(0)
    model = build_model("toy-event-net", segment_samples=16).eval()
    x = torch.randn(1, 1, 8 * 16)
    with torch.no_grad():
        base = model(x)
        x[..., 5 * 16 :] += 5.0  # change segments 5..7
        moved = (model(x) - base).abs().amax(dim=1)[0]
    assert (moved[:5] == 0).all() and (moved[5:] > 0).all()
    assert model.data_spec == DataSpec("signals", 1, 2, segment_samples=16, causal=True)
    with pytest.raises(SpecError, match="a multiple of 16 samples"):
        model(torch.randn(1, 1, 20))


def test_the_image_model_takes_any_size_and_gives_one_logit_per_class():
    model = build_model("toy-image-net", in_channels=1, n_classes=3).eval()
    with torch.no_grad():
        assert model(torch.randn(4, 1, 32, 32)).shape == (4, 3)
        assert model(torch.randn(2, 1, 20, 28)).shape == (2, 3)
    assert model.data_spec.input_kind == "image" and model.data_spec.n_classes == 3
    with pytest.raises(SpecError, match=r"\(batch, 1, y, x\)"):
        model(torch.randn(4, 3, 32, 32))


def test_a_mismatch_names_every_differing_field_and_both_sides():
    model = build_model("usleep-small").data_spec
    data = DataSpec("signals", channels=3, n_classes=5, segment_samples=3000, sfreq_hz=100.0)
    with pytest.raises(SpecError) as info:
        check_data_spec(model, data, model_name="usleep-small", data_name="store s")
    message = str(info.value)
    assert message.startswith("model 'usleep-small' does not fit store s: ")
    assert "channels: model 2, data 3" in message
    assert "segment_samples: model 3840, data 3000" in message
    assert "n_classes" not in message and "sfreq_hz" not in message  # equal or unconstrained
    check_data_spec(model, DataSpec("signals", 2, 5, segment_samples=3840), model_name="m",
                    data_name="d")  # fmt: skip
