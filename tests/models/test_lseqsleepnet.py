"""L-SeqSleepNet: folding of the long sequence, shapes, the filterbank, and that it learns."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from medscale.errors import SpecError  # noqa: E402
from medscale.models import LSeqSleepNet, build_model  # noqa: E402
from medscale.models.lseqsleepnet import triangular_filterbank  # noqa: E402

from .conftest import spectrogram_processor, synthetic_spectrograms, train_steps  # noqa: E402


def test_the_default_takes_200_epochs_of_the_pipelines_spectrogram():
    rng = np.random.default_rng(0)
    # The real processor fixes the input shape: 129 freqs × 29 frames per 30-s epoch.
    probe = spectrogram_processor().spectrogram(np.zeros((2, 3840), np.float32), 1)
    assert probe.shape == (2, 1, 129, 29)
    model = build_model("lseqsleepnet").eval()
    assert model.seq_len == 200 and model.subseq_len == 10
    x = torch.from_numpy(rng.standard_normal((2, 2, 200, 129, 29)).astype(np.float32))
    with torch.no_grad():
        assert model(x).shape == (2, 5, 200)


def test_the_sequence_is_folded_into_subsequences_and_across_them():
    """200 epochs = 20 subsequences of 10: the within-subsequence BiLSTM sees runs of 10
    consecutive epoch vectors, the across-subsequence one sees runs of 20 (one per
    subsequence, same position)."""
    model = build_model("lseqsleepnet").eval()
    seen = {}

    def keep(name):
        return lambda module, args, out: seen.__setitem__(name, (args[0], out))

    model.attention.register_forward_hook(keep("epochs"))
    model.intra[0].rnn.register_forward_hook(keep("intra"))
    model.inter[0].rnn.register_forward_hook(keep("inter"))
    with torch.no_grad():
        model(torch.randn(2, 2, 200, 129, 29))
    epochs = seen["epochs"][1]  # (2 · 200, 128) one vector per epoch
    intra_in, inter_in = seen["intra"][0], seen["inter"][0]
    assert epochs.shape == (400, 128)
    assert intra_in.shape == (2 * 20, 10, 128) and inter_in.shape == (2 * 10, 20, 128)
    assert torch.equal(intra_in, epochs.reshape(40, 10, 128))  # consecutive epochs


def test_an_epoch_influences_epochs_in_other_subsequences():
    torch.manual_seed(0)
    model = build_model("lseqsleepnet-small").eval()  # L = 20 = 4 × 5
    x = torch.randn(1, 2, 20, 129, 29)
    with torch.no_grad():
        base = model(x)
        x[:, :, 0] += 3.0
        moved = (model(x) - base).abs().amax(dim=1)[0]
    assert (moved[15:] > 1e-6).all()  # the last subsequence felt epoch 0


def test_small_l_and_the_divisibility_rule():
    model = build_model("lseqsleepnet-small").eval()
    assert model.seq_len == 20 and model.subseq_len == 5
    with torch.no_grad():
        assert model(torch.randn(3, 2, 20, 129, 29)).shape == (3, 5, 20)
        assert model(torch.randn(1, 2, 5, 129, 29)).shape == (1, 5, 5)  # one subsequence
        assert model(torch.randn(2, 2, 23, 129, 29)).shape == (2, 5, 23)  # a padded tail
    with pytest.raises(SpecError, match="subseq_len=15 must divide seq_len=200"):
        build_model("lseqsleepnet", subseq_len=15)


def _tiny(subseq_len: int, n_blocks: int = 1) -> LSeqSleepNet:
    torch.manual_seed(0)
    return LSeqSleepNet(
        in_channels=1, freqs=9, frames=3, n_filters=4, epoch_hidden=4, attention_size=4,
        seq_hidden=4, fc_size=8, n_blocks=n_blocks, seq_len=subseq_len * 4,
        subseq_len=subseq_len,
    ).eval()  # fmt: skip


def _ragged_reference(model: LSeqSleepNet, x: torch.Tensor) -> torch.Tensor:
    """The long-sequence part run one true-length sequence at a time, no padding at all: each
    subsequence of consecutive epochs (the last one short), then each position's run across
    subsequences (shorter past the tail)."""
    batch, _, n_epochs = x.shape[:3]
    seen = {}
    hook = model.attention.register_forward_hook(lambda m, a, out: seen.update(h=out))
    model(x)
    hook.remove()
    sub = model.subseq_len
    h = seen["h"].reshape(batch, n_epochs, -1)
    for intra, inter in zip(model.intra, model.inter, strict=True):
        h = torch.cat([intra(h[:, s : s + sub]) for s in range(0, n_epochs, sub)], dim=1)
        across = h.clone()
        for p in range(min(sub, n_epochs)):
            across[:, p::sub] = inter(h[:, p::sub])
        h = across
    return model.classifier(h).transpose(1, 2)


@pytest.mark.parametrize("n_epochs", [1, 3, 7, 12, 13])
@pytest.mark.parametrize("n_blocks", [1, 2])
def test_a_length_subseq_len_does_not_divide_is_padded_and_masked(n_epochs, n_blocks):
    """5 epochs per subsequence: 7 = 5 + 2, 12 = 2 × 5 + 2, and nights shorter than one
    subsequence. Every real epoch's logits equal those of the model run on the ragged
    sequences themselves, so the padding reaches no real epoch."""
    model = _tiny(5, n_blocks)
    x = torch.randn(2, 1, n_epochs, 9, 3)
    with torch.no_grad():
        padded, reference = model(x), _ragged_reference(model, x)
    assert padded.shape == (2, 5, n_epochs)
    torch.testing.assert_close(padded, reference, rtol=1e-5, atol=1e-6)


def test_a_night_shorter_than_a_subsequence_equals_one_subsequence_of_its_length():
    """subseq_len changes no weight: 3 epochs padded to 5 give what a 3-epoch fold gives."""
    five, three = _tiny(5), _tiny(3)
    three.load_state_dict(five.state_dict())
    x = torch.randn(1, 1, 3, 9, 3)
    with torch.no_grad():
        torch.testing.assert_close(five(x), three(x), rtol=1e-5, atol=1e-6)


def test_a_multiple_of_subseq_len_takes_the_unpadded_path():
    model = _tiny(5)
    calls = []
    model.intra[0].register_forward_hook(lambda m, args, out: calls.append(args[1]))
    with torch.no_grad():
        model(torch.randn(1, 1, 10, 9, 3))
        model(torch.randn(1, 1, 11, 9, 3))
    assert calls[0] is None and calls[1].tolist() == [5, 5, 1]


def test_freqs_and_frames_follow_the_spectrogram_settings():
    model = LSeqSleepNet(in_channels=1, freqs=65, frames=15, seq_len=4, subseq_len=2).eval()
    with torch.no_grad():
        assert model(torch.randn(2, 1, 4, 65, 15)).shape == (2, 5, 4)
    with pytest.raises(SpecError, match="65, 15"):
        model(torch.randn(2, 1, 4, 129, 29))
    raw = LSeqSleepNet(input_norm=False, seq_len=10)
    assert sum(b.numel() for b in raw.buffers()) == 129 * 32  # only the filterbank shape


def test_the_filterbank_is_even_triangles_that_sum_to_one_between_the_end_peaks():
    bank = triangular_filterbank(129, 32)
    assert bank.shape == (129, 32) and (bank >= 0).all()
    spacing = 128 / 33  # bins between neighbouring peaks
    # A peak falls between bins: the nearest bin is at most half a bin off the apex.
    assert (bank.max(axis=0) >= 1 - 0.5 / spacing - 1e-6).all()
    peaks = bank.argmax(axis=0)
    assert np.allclose(peaks, np.arange(1, 33) * spacing, atol=0.5 + 1e-9)
    assert (np.diff(peaks) > 0).all()
    inner = bank[peaks[0] : peaks[-1] + 1].sum(axis=1)
    assert np.allclose(inner, 1.0, atol=1e-5)
    per_channel = 129 * 32
    model = build_model("lseqsleepnet", in_channels=3)
    assert model.filter_weight.numel() == 3 * per_channel


def test_lseqsleepnet_small_learns_a_frequency_coded_staging_task(one_thread):
    """Raw log power from the pipeline's STFT of 5 frequency-coded classes in noise, sequences
    of 20 epochs. Cross-entropy starts near ln 5 = 1.61 and must fall well below it; held-out
    sequences (eval mode: running input statistics, no dropout) must then be mostly right
    (seeds 0-2: 0.25-0.27 after 30 steps, 89-94 % held-out accuracy)."""
    torch.manual_seed(0)
    x, y = synthetic_spectrograms(np.random.default_rng(0), 24, 20)
    x, y = torch.from_numpy(x), torch.from_numpy(y)
    model = build_model("lseqsleepnet-small", in_channels=1)
    losses = train_steps(model, x, y)
    first, last = np.mean(losses[:3]), np.mean(losses[-3:])
    assert first > 1.3
    assert last < 0.6 and last < 0.4 * first, losses
    held_x, held_y = synthetic_spectrograms(np.random.default_rng(1), 4, 20)
    with torch.no_grad():
        predicted = model.eval()(torch.from_numpy(held_x)).argmax(dim=1).numpy()
    assert (predicted == held_y).mean() > 0.75
