"""Synthetic, trivially learnable staging data for the model tests (numpy only).

Each epoch is a sinusoid at its class's frequency (random phase) in white noise, so the class is
the dominant frequency band of the epoch. Spectrograms come from the real
``WindowProcessor.spectrogram``, so the models are fed exactly what the data pipeline yields.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from medscale.data.config import ProcessingConfig, SpectrogramConfig
from medscale.data.processing import WindowProcessor

SFREQ_HZ = 128
EPOCH_SAMPLES = 30 * SFREQ_HZ
CLASS_FREQS_HZ = (2.0, 5.0, 9.0, 16.0, 28.0)  # W, N1, N2, N3, REM in these tests


def synthetic_signal(
    rng: np.random.Generator,
    n_items: int,
    n_epochs: int,
    epoch_samples: int,
    n_channels: int = 1,
    noise: float = 0.5,
) -> tuple[np.ndarray, np.ndarray]:
    """float32 ``(n_items, n_channels, n_epochs * epoch_samples)`` and int64 labels
    ``(n_items, n_epochs)``."""
    labels = rng.integers(0, len(CLASS_FREQS_HZ), size=(n_items, n_epochs))
    t = np.arange(epoch_samples) / SFREQ_HZ
    freq = np.asarray(CLASS_FREQS_HZ)[labels][:, None, :, None]
    phase = rng.uniform(0, 2 * np.pi, size=(n_items, n_channels, n_epochs, 1))
    x = np.sin(2 * np.pi * freq * t + phase)
    x += noise * rng.standard_normal(x.shape)
    return x.reshape(n_items, n_channels, -1).astype(np.float32), labels.astype(np.int64)


def spectrogram_processor() -> WindowProcessor:
    """The pipeline's processor with the default STFT front end, on a 128 Hz stand-in index."""
    index = SimpleNamespace(sfreq_hz=SFREQ_HZ, samples_per_segment=EPOCH_SAMPLES)
    return WindowProcessor(index, ProcessingConfig(spectrogram=SpectrogramConfig()))  # type: ignore[arg-type]


def synthetic_spectrograms(
    rng: np.random.Generator, n_items: int, n_epochs: int, n_channels: int = 1
) -> tuple[np.ndarray, np.ndarray]:
    """float32 ``(n_items, n_channels, n_epochs, freqs, frames)`` and labels."""
    signal, labels = synthetic_signal(rng, n_items, n_epochs, EPOCH_SAMPLES, n_channels)
    processor = spectrogram_processor()
    spec = np.stack([processor.spectrogram(item, n_epochs) for item in signal])
    return spec, labels


def train_steps(model, x, y, steps: int = 30, lr: float = 1e-2, batch: int = 8) -> list[float]:
    """Adam on random batches of (x, y) tensors with a seeded order; the loss of each step."""
    import torch

    optimiser = torch.optim.Adam(model.parameters(), lr=lr)
    order = torch.Generator().manual_seed(0)
    losses = []
    for _ in range(steps):
        idx = torch.randint(0, len(x), (batch,), generator=order)
        loss = torch.nn.functional.cross_entropy(model(x[idx]), y[idx])
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        losses.append(loss.item())
    return losses


@pytest.fixture
def one_thread():
    """Run a training test on one intra-op thread: on a shared 2-core machine two threads
    contend badly (timings swing tenfold), and these small models gain little from a second."""
    torch = pytest.importorskip("torch")
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
