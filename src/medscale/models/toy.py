"""Tiny models for the SYNTHETIC toy tasks (``toy_events``, ``toy_images``): they exist to run
the engine end to end beyond sleep in tests, in seconds, not to be good models.

``toy-event-net`` is causal and offers `ToyEventNet.stream`, which carries its state between
chunks of a long recording: streaming a recording chunk by chunk gives the logits of one
forward over all of it.
"""

from __future__ import annotations

import torch
from torch import nn

from medscale.errors import SpecError
from medscale.models.registry import register_model
from medscale.models.spec import DataSpec, check_positive

#: The state `ToyEventNet.stream` carries: the last ``kernel_size - 1`` input samples and the
#: GRU's hidden state (None before the first chunk).
StreamState = tuple[torch.Tensor, torch.Tensor]


@register_model("toy-event-net")
class ToyEventNet(nn.Module):
    """Signals in, per-segment event logits out, looking only backwards in time.

    A causal convolution over samples, its mean over each segment of ``segment_samples``,
    then a GRU over segments and a linear layer: ``(batch, in_channels, segments ×
    segment_samples)`` in, ``(batch, n_classes, segments)`` out.
    """

    def __init__(
        self,
        *,
        in_channels: int = 1,
        n_classes: int = 2,
        segment_samples: int = 128,
        hidden: int = 8,
        kernel_size: int = 9,
    ) -> None:
        super().__init__()
        check_positive(
            in_channels=in_channels,
            n_classes=n_classes,
            segment_samples=segment_samples,
            hidden=hidden,
            kernel_size=kernel_size,
        )
        self.in_channels, self.n_classes = in_channels, n_classes
        self.segment_samples, self.kernel_size = segment_samples, kernel_size
        self.conv = nn.Conv1d(in_channels, hidden, kernel_size)
        self.rnn = nn.GRU(hidden, hidden, batch_first=True)
        self.head = nn.Linear(hidden, n_classes)

    @property
    def data_spec(self) -> DataSpec:
        return DataSpec(
            input_kind="signals",
            channels=self.in_channels,
            n_classes=self.n_classes,
            segment_samples=self.segment_samples,
            causal=True,
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.stream(x)[0]

    def stream(
        self, x: torch.Tensor, state: StreamState | None = None
    ) -> tuple[torch.Tensor, StreamState]:
        """Logits of the whole segments in chunk ``x`` given the ``state`` the previous chunk
        left (None: the recording starts here, preceded by silence), and the state to pass
        with the next chunk."""
        batch, channels, n_samples = x.shape if x.dim() == 3 else (0, 0, 0)
        if x.dim() != 3 or channels != self.in_channels or n_samples % self.segment_samples:
            raise SpecError(
                f"ToyEventNet expects (batch, {self.in_channels}, a multiple of "
                f"{self.segment_samples} samples), got {tuple(x.shape)}"
            )
        if state is None:
            context = x.new_zeros(batch, channels, self.kernel_size - 1)
            hidden = None
        else:
            context, hidden = state
        full = torch.cat([context, x], dim=-1)
        z = torch.relu(self.conv(full))  # (B, H, n_samples): sample t sees t-k+1 .. t
        segments = n_samples // self.segment_samples
        z = z.reshape(batch, z.shape[1], segments, self.segment_samples).mean(dim=-1)
        out, hidden = self.rnn(z.transpose(1, 2), hidden)
        logits = self.head(out).transpose(1, 2)  # (B, n_classes, segments)
        return logits, (full[..., full.shape[-1] - (self.kernel_size - 1) :], hidden)


@register_model("toy-image-net")
class ToyImageNet(nn.Module):
    """Images of any size in, one logit per class out (multi-label): two 3×3 convolutions,
    global average pooling, a linear layer. ``(batch, in_channels, y, x)`` in,
    ``(batch, n_classes)`` out."""

    def __init__(self, *, in_channels: int = 1, n_classes: int = 3, width: int = 8) -> None:
        super().__init__()
        check_positive(in_channels=in_channels, n_classes=n_classes, width=width)
        self.in_channels, self.n_classes = in_channels, n_classes
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, width, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(width, 2 * width, 3, padding=1),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
        )
        self.head = nn.Linear(2 * width, n_classes)

    @property
    def data_spec(self) -> DataSpec:
        return DataSpec(
            input_kind="image", channels=self.in_channels, n_classes=self.n_classes, causal=False
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise SpecError(
                f"ToyImageNet expects (batch, {self.in_channels}, y, x), got {tuple(x.shape)}"
            )
        return self.head(self.features(x).flatten(1))
