"""L-SeqSleepNet (Phan et al. 2023, IEEE JBHI 27(10)), in PyTorch.

Whole-cycle sequence modelling over time–frequency input. Written from the paper's
description and the published configuration; see ``docs/design/models.md`` for what follows
the original exactly and what does not.

Input: what ``WindowProcessor.spectrogram`` yields, batched:
``(batch, channels, epochs, freqs, frames)`` log power (defaults: 129 freqs, 29 frames, i.e. a
2-s Hann window with a 1-s hop over a 30-s epoch at 128 Hz). Output:
``(batch, n_classes, epochs)`` logits.

Architecture (defaults in brackets):

- input normalisation [on]: each (channel, frequency bin) z-scored with running statistics
  (a batch norm without affine parameters). The original z-scores the bins with training-set
  statistics before the network; this does it inside, so raw log power can be fed.
- filterbank: per channel, a learnable non-negative weight ``sigmoid(W)`` (freqs × ``n_filters``
  [32]) times a fixed bank of linearly spaced triangles over the frequency bins, applied to
  every frame; the channels' filter outputs are concatenated.
- epoch encoder: a bidirectional LSTM [64 units each way] over the frames of one epoch, then
  additive attention [size 64] pooling the frames into one vector per epoch.
- long-sequence modelling: the ``L`` epochs are folded into ``L / subseq_len`` subsequences of
  ``subseq_len`` [10] epochs (L = 200 = 20 × 10 by default). A block is a residual BiLSTM run
  within each subsequence followed by one run across subsequences (over the epochs at the same
  position in each); each residual BiLSTM is LSTM → linear back to the input width → layer norm
  → plus its input. ``n_blocks`` [1] blocks.
- classifier per epoch: two ReLU layers [512 units] and a linear output, dropout before each.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from medscale.errors import SpecError
from medscale.models.registry import register_model, with_defaults
from medscale.models.spec import DataSpec


def triangular_filterbank(n_bins: int, n_filters: int) -> np.ndarray:
    """``(n_bins, n_filters)`` triangles with peaks evenly spaced over bins 0 .. n_bins-1.

    Filter ``m`` rises from 0 at edge ``m`` to 1 at edge ``m+1`` and falls back to 0 at edge
    ``m+2``, the ``n_filters + 2`` edges splitting the bin range evenly (a linear-frequency
    filterbank from 0 Hz to Nyquist).
    """
    edges = np.linspace(0.0, n_bins - 1, n_filters + 2)
    bins = np.arange(n_bins, dtype=np.float64)[:, None]
    low, peak, high = edges[None, :-2], edges[None, 1:-1], edges[None, 2:]
    rising = (bins - low) / (peak - low)
    falling = (high - bins) / (high - peak)
    return np.clip(np.minimum(rising, falling), 0.0, None).astype(np.float32)


class _Attention(nn.Module):
    """Additive attention over time: ``softmax_t(u · tanh(W h_t + b))``-weighted sum of ``h_t``."""

    def __init__(self, dim: int, size: int) -> None:
        super().__init__()
        self.proj = nn.Linear(dim, size)
        self.context = nn.Parameter(torch.empty(size))
        nn.init.normal_(self.proj.weight, std=0.1)
        nn.init.normal_(self.proj.bias, std=0.1)
        nn.init.normal_(self.context, std=0.1)

    def forward(self, h: torch.Tensor) -> torch.Tensor:  # (N, T, D) -> (N, D)
        weights = torch.softmax(torch.tanh(self.proj(h)) @ self.context, dim=1)
        return (h * weights.unsqueeze(-1)).sum(dim=1)


class _ResidualBiLSTM(nn.Module):
    """BiLSTM → linear back to the input width → layer norm → plus the input."""

    def __init__(self, dim: int, hidden: int, dropout_in: float, dropout_out: float) -> None:
        super().__init__()
        self.rnn = nn.LSTM(dim, hidden, batch_first=True, bidirectional=True)
        self.proj = nn.Linear(2 * hidden, dim)
        self.norm = nn.LayerNorm(dim)
        self.dropout_in = nn.Dropout(dropout_in)
        self.dropout_out = nn.Dropout(dropout_out)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """(N, T, D) -> (N, T, D). With ``lengths`` (N,), sequence ``n`` is its first
        ``lengths[n]`` steps: the LSTM never sees the rest (whose outputs are meaningless)."""
        h = self.dropout_in(x)
        if lengths is None:
            h, _ = self.rnn(h)
        else:
            packed = pack_padded_sequence(h, lengths, batch_first=True, enforce_sorted=False)
            h, _ = pad_packed_sequence(
                self.rnn(packed)[0], batch_first=True, total_length=x.shape[1]
            )
        return self.norm(self.proj(self.dropout_out(h))) + x


@register_model("lseqsleepnet")
class LSeqSleepNet(nn.Module):
    """L-SeqSleepNet: spectrogram sequence in, per-epoch logits out.

    ``seq_len`` is the training sequence length L (200 in the paper); ``forward`` accepts any
    number of epochs. When ``subseq_len`` does not divide it (the last chunk of a night), the
    last subsequence is short: the sequence is padded to a multiple and the BiLSTMs run on
    packed sequences of the true lengths, so padding never reaches a real epoch.
    """

    def __init__(
        self,
        *,
        in_channels: int = 2,
        n_classes: int = 5,
        freqs: int = 129,
        frames: int = 29,
        n_filters: int = 32,
        epoch_hidden: int = 64,
        attention_size: int = 64,
        seq_hidden: int = 64,
        n_blocks: int = 1,
        seq_len: int = 200,
        subseq_len: int = 10,
        fc_size: int = 512,
        dropout: float = 0.25,
        input_norm: bool = True,
    ) -> None:
        super().__init__()
        for name, value in {
            "in_channels": in_channels,
            "n_classes": n_classes,
            "freqs": freqs,
            "frames": frames,
            "n_filters": n_filters,
            "epoch_hidden": epoch_hidden,
            "attention_size": attention_size,
            "seq_hidden": seq_hidden,
            "n_blocks": n_blocks,
            "seq_len": seq_len,
            "subseq_len": subseq_len,
            "fc_size": fc_size,
        }.items():
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise SpecError(f"{name} must be a positive integer, got {value!r}")
        if not 0.0 <= dropout < 1.0:
            raise SpecError(f"dropout must be in [0, 1), got {dropout}")
        if seq_len % subseq_len:
            raise SpecError(
                f"subseq_len={subseq_len} must divide seq_len={seq_len} "
                f"(L is folded into L / subseq_len subsequences)"
            )
        self.in_channels = in_channels
        self.n_classes = n_classes
        self.freqs = freqs
        self.frames = frames
        self.seq_len = seq_len
        self.subseq_len = subseq_len

        # The original z-scores every frequency bin with training-set statistics before the
        # network; here a batch norm without affine parameters keeps running estimates of the
        # same statistics, so raw log power from WindowProcessor.spectrogram can go straight in.
        self.input_norm = nn.BatchNorm1d(in_channels * freqs, affine=False) if input_norm else None
        self.filter_weight = nn.Parameter(torch.randn(in_channels, freqs, n_filters))
        self.register_buffer(
            "filter_shape", torch.from_numpy(triangular_filterbank(freqs, n_filters))
        )
        self.epoch_rnn = nn.LSTM(
            in_channels * n_filters, epoch_hidden, batch_first=True, bidirectional=True
        )
        self.epoch_dropout_in = nn.Dropout(dropout)
        self.epoch_dropout_out = nn.Dropout(dropout)
        self.attention = _Attention(2 * epoch_hidden, attention_size)
        dim = 2 * epoch_hidden
        self.intra = nn.ModuleList()
        self.inter = nn.ModuleList()
        for block in range(n_blocks):
            self.intra.append(_ResidualBiLSTM(dim, seq_hidden, dropout if block else 0.0, dropout))
            self.inter.append(_ResidualBiLSTM(dim, seq_hidden, dropout, dropout))
        self.classifier = nn.Sequential(
            nn.Dropout(dropout),
            nn.Linear(dim, fc_size),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(fc_size, fc_size),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(fc_size, n_classes),
        )
        for module in [*self.intra, *self.inter, *self.classifier]:
            for sub in module.modules():
                if isinstance(sub, nn.Linear):
                    nn.init.xavier_uniform_(sub.weight)
                    nn.init.zeros_(sub.bias)

    @property
    def data_spec(self) -> DataSpec:
        """Spectrograms of ``in_channels`` channels, ``(freqs, frames)`` per segment."""
        return DataSpec(
            input_kind="spectrogram",
            channels=self.in_channels,
            n_classes=self.n_classes,
            segment_shape=(self.freqs, self.frames),
            causal=False,
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        expected = (self.in_channels, self.freqs, self.frames)
        if x.dim() != 5 or (x.shape[1], x.shape[3], x.shape[4]) != expected:
            raise SpecError(
                f"LSeqSleepNet expects (batch, {self.in_channels}, epochs, {self.freqs}, "
                f"{self.frames}), got {tuple(x.shape)}"
            )
        batch, _, n_epochs, _, frames = x.shape
        if self.input_norm is not None:  # per (channel, freq) over batch, epochs and frames
            z = x.transpose(2, 3).reshape(batch, -1, n_epochs * frames)
            z = self.input_norm(z).reshape(batch, -1, self.freqs, n_epochs, frames)
            x = z.transpose(2, 3)
        bank = torch.sigmoid(self.filter_weight) * self.filter_shape  # (C, F, K)
        h = torch.einsum("bceft,cfk->betck", x, bank)  # filter every frame
        h = h.reshape(batch * n_epochs, frames, -1)  # (B·E, T, C·K)
        h, _ = self.epoch_rnn(self.epoch_dropout_in(h))
        h = self.attention(self.epoch_dropout_out(h))  # (B·E, D)

        sub = self.subseq_len
        n_sub = -(-n_epochs // sub)
        dim = h.shape[-1]
        intra_lengths, inter_lengths = self._fold_lengths(batch, n_epochs)
        if intra_lengths is not None:  # pad the last subsequence; the lengths mask it
            h = nn.functional.pad(
                h.reshape(batch, n_epochs, dim), (0, 0, 0, n_sub * sub - n_epochs)
            )
        for intra, inter in zip(self.intra, self.inter, strict=True):
            h = intra(h.reshape(batch * n_sub, sub, dim), intra_lengths)
            h = h.reshape(batch, n_sub, sub, dim).transpose(1, 2).reshape(batch * sub, n_sub, dim)
            h = inter(h, inter_lengths)
            h = h.reshape(batch, sub, n_sub, dim).transpose(1, 2)
        logits = self.classifier(h.reshape(batch, n_sub * sub, dim)[:, :n_epochs])
        return logits.transpose(1, 2)  # (B, n_classes, E)

    def _fold_lengths(
        self, batch: int, n_epochs: int
    ) -> tuple[torch.Tensor, torch.Tensor] | tuple[None, None]:
        """The true lengths of the within- and across-subsequence runs when ``subseq_len``
        does not divide ``n_epochs`` (None, None when it does). The last subsequence holds
        ``tail`` epochs; positions at or past ``tail`` have one subsequence fewer across.
        A run of no real epoch (a night shorter than ``subseq_len``) gets length 1: it holds
        only padding, so what it computes is dropped with the padding."""
        sub = self.subseq_len
        n_sub = -(-n_epochs // sub)
        tail = n_epochs - (n_sub - 1) * sub
        if tail == sub:
            return None, None
        intra = torch.full((batch, n_sub), sub, dtype=torch.int64)
        intra[:, -1] = tail
        inter = torch.full((batch, sub), n_sub, dtype=torch.int64)
        inter[:, tail:] = max(1, n_sub - 1)
        return intra.reshape(-1), inter.reshape(-1)


# A CPU-sized L-SeqSleepNet for tests and smoke runs: L = 20 = 4 × 5, small widths.
register_model("lseqsleepnet-small")(
    with_defaults(
        LSeqSleepNet,
        n_filters=16,
        epoch_hidden=16,
        attention_size=16,
        seq_hidden=16,
        seq_len=20,
        subseq_len=5,
        fc_size=64,
    )
)

__all__ = ["LSeqSleepNet", "triangular_filterbank"]
