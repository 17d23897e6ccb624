"""U-Sleep (Perslev et al. 2021, npj Digital Medicine 4:72), in PyTorch.

A fully convolutional encoder–decoder over raw 128 Hz signals, followed by a segment
classifier that mean-pools the per-sample output over each output period. Written from the
paper's description and the published hyperparameters; see ``docs/design/models.md`` for what
follows the original exactly and what does not.

Architecture (defaults in brackets):

- widths: level ``i`` of the encoder has ``int(f_i * sqrt(complexity_factor))`` channels,
  with ``f_0 = init_filters`` [5] and ``f_{i+1} = int(f_i * sqrt(2))``; the bottom uses the
  next ``f``. The decoder walks back with ``f = ceil(f / sqrt(2))`` per level.
  ``complexity_factor`` [1.67] is the published "CF"; widths grow by its square root.
- encoder level: conv (``kernel_size`` [9], "same" padding) → ELU → batch norm; a one-sample
  zero pad at the start when the length is odd (so every level halves cleanly whatever the
  input length); this is the skip connection; max-pool 2. ``depth`` [12] levels.
- bottom: conv → ELU → batch norm.
- decoder level: nearest-neighbour upsampling ×2 → conv (kernel 2, "same" padding as in
  Keras: the extra zero on the right) → ELU → batch norm → centre-crop to the skip's length
  (the level below may have been padded) → concatenate [skip, upsampled] →
  conv (``kernel_size``) → ELU → batch norm.
- segment classifier: 1×1 conv to ``int(n_classes * sqrt(CF))`` channels with tanh →
  mean over each output period → 1×1 conv to ``n_classes`` → ELU → 1×1 conv to
  ``n_classes``. The original ends in a softmax; this returns the logits.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from medscale.errors import SpecError
from medscale.models.registry import register_model, with_defaults
from medscale.models.spec import DataSpec, check_positive


def usleep_widths(
    depth: int, init_filters: int, complexity_factor: float
) -> tuple[list[int], int, list[int]]:
    """Channel counts ``(encoder levels, bottom, decoder levels)`` of the published schedule."""
    cf = math.sqrt(complexity_factor)
    filters = init_filters
    encoder = []
    for _ in range(depth):
        encoder.append(int(filters * cf))
        filters = int(filters * math.sqrt(2))
    bottom = int(filters * cf)
    decoder = []
    for _ in range(depth):
        filters = math.ceil(filters / math.sqrt(2))
        decoder.append(int(filters * cf))
    return encoder, bottom, decoder


class _ConvELUBN(nn.Module):
    """Conv1d with Keras-style "same" padding (extra zero on the right), ELU, batch norm."""

    def __init__(
        self, in_channels: int, out_channels: int, kernel_size: int, bn_momentum: float
    ) -> None:
        super().__init__()
        left = (kernel_size - 1) // 2
        self.pad = (left, kernel_size - 1 - left)
        self.conv = nn.Conv1d(in_channels, out_channels, kernel_size)
        self.bn = nn.BatchNorm1d(out_channels, eps=1e-3, momentum=bn_momentum)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(F.elu(self.conv(F.pad(x, self.pad))))


@register_model("usleep")
class USleep(nn.Module):
    """U-Sleep: signal in, per-period logits out.

    Input ``(batch, in_channels, samples)`` float32 at 128 Hz, ``samples`` a multiple of the
    output period. Output ``(batch, n_classes, samples // samples_per_prediction)`` logits.
    ``epoch_samples`` is the scoring epoch (30 s × 128 Hz); ``samples_per_prediction``
    (constructor default, or per call in :meth:`forward`) is the output period, e.g. 128 for
    one prediction per second (hypnodensity). It defaults to ``epoch_samples``.
    ``bn_momentum`` 0.01 is Keras' 0.99, the original's (torch counts the other way).
    """

    def __init__(
        self,
        *,
        in_channels: int = 2,
        n_classes: int = 5,
        depth: int = 12,
        init_filters: int = 5,
        complexity_factor: float = 1.67,
        kernel_size: int = 9,
        epoch_samples: int = 30 * 128,
        samples_per_prediction: int | None = None,
        bn_momentum: float = 0.01,
    ) -> None:
        super().__init__()
        if not 0 < bn_momentum <= 1:
            raise SpecError(f"bn_momentum must be in (0, 1], got {bn_momentum}")
        check_positive(
            in_channels=in_channels,
            n_classes=n_classes,
            depth=depth,
            init_filters=init_filters,
            kernel_size=kernel_size,
            epoch_samples=epoch_samples,
        )
        if not complexity_factor > 0:
            raise SpecError(f"complexity_factor must be > 0, got {complexity_factor}")
        if samples_per_prediction is not None:
            check_positive(samples_per_prediction=samples_per_prediction)
        self.in_channels = in_channels
        self.n_classes = n_classes
        self.depth = depth
        self.epoch_samples = epoch_samples
        self.samples_per_prediction = samples_per_prediction or epoch_samples

        enc, bottom, dec = usleep_widths(depth, init_filters, complexity_factor)
        if min(enc + dec + [bottom]) < 1:
            raise SpecError(
                f"init_filters={init_filters} with complexity_factor={complexity_factor} "
                "gives a layer with no channels"
            )
        self.widths = {"encoder": enc, "bottom": bottom, "decoder": dec}

        self.encoder = nn.ModuleList()
        channels = in_channels
        for width in enc:
            self.encoder.append(_ConvELUBN(channels, width, kernel_size, bn_momentum))
            channels = width
        self.bottom = _ConvELUBN(channels, bottom, kernel_size, bn_momentum)
        channels = bottom
        self.upsample = nn.ModuleList()
        self.merge = nn.ModuleList()
        for width, skip in zip(dec, reversed(enc), strict=True):
            self.upsample.append(_ConvELUBN(channels, width, 2, bn_momentum))
            self.merge.append(_ConvELUBN(skip + width, width, kernel_size, bn_momentum))
            channels = width

        dense = int(n_classes * math.sqrt(complexity_factor))
        self.dense = nn.Conv1d(channels, dense, 1)
        self.segment_conv1 = nn.Conv1d(dense, n_classes, 1)
        self.segment_conv2 = nn.Conv1d(n_classes, n_classes, 1)
        self._init_like_keras()

    def _init_like_keras(self) -> None:
        """Glorot-uniform kernels and zero biases, the Keras defaults the original trained with."""
        for module in self.modules():
            if isinstance(module, nn.Conv1d):
                nn.init.xavier_uniform_(module.weight)
                nn.init.zeros_(module.bias)

    @property
    def data_spec(self) -> DataSpec:
        """Signals of ``in_channels`` channels, ``epoch_samples`` per scored segment."""
        return DataSpec(
            input_kind="signals",
            channels=self.in_channels,
            n_classes=self.n_classes,
            segment_samples=self.epoch_samples,
            causal=False,
        )

    def forward(self, x: torch.Tensor, samples_per_prediction: int | None = None) -> torch.Tensor:
        if samples_per_prediction is not None:
            check_positive(samples_per_prediction=samples_per_prediction)
        period = samples_per_prediction or self.samples_per_prediction
        if x.dim() != 3 or x.shape[1] != self.in_channels:
            raise SpecError(
                f"USleep expects (batch, {self.in_channels}, samples), got {tuple(x.shape)}"
            )
        n_samples = x.shape[-1]
        if n_samples == 0 or n_samples % period:
            raise SpecError(
                f"input length {n_samples} is not a positive multiple of the output period "
                f"{period} samples"
            )
        skips = []
        for block in self.encoder:
            x = block(x)
            # Pad the start of an odd length so that pooling loses nothing. An export pads by
            # the symbolic remainder, so a graph with a dynamic length keeps the rule rather
            # than the example's branch (eager skips the no-op pad: same numbers as always).
            if torch.compiler.is_exporting() or x.shape[-1] % 2:
                x = F.pad(x, (x.shape[-1] % 2, 0))
            skips.append(x)
            x = F.max_pool1d(x, 2)
        x = self.bottom(x)
        for up, merge, skip in zip(self.upsample, self.merge, reversed(skips), strict=True):
            x = up(torch.repeat_interleave(x, 2, dim=-1))
            # The level below may have been padded at its start, making x up to 2 samples
            # longer than the skip: crop it to the skip, centred (the extra sample at the start).
            extra = x.shape[-1] - skip.shape[-1]
            start = extra // 2 + extra % 2
            x = merge(torch.cat([skip, x[..., start : start + skip.shape[-1]]], dim=1))
        x = x[..., x.shape[-1] - n_samples :]  # drop the start padding of an odd input
        x = torch.tanh(self.dense(x))
        x = x.reshape(x.shape[0], x.shape[1], n_samples // period, period).mean(dim=-1)
        return self.segment_conv2(F.elu(self.segment_conv1(x)))


# A CPU-sized U-Sleep for tests and smoke runs: 5 levels, widths 8..29 (bottom 41).
register_model("usleep-small")(
    # bn_momentum 0.1 (torch's default): the paper's Keras value (0.01 here) leaves the running
    # statistics far from settled after the few hundred steps a CPU run takes.
    with_defaults(USleep, depth=5, init_filters=8, complexity_factor=1.0, bn_momentum=0.1)
)
