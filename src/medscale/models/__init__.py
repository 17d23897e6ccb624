"""Sleep-staging models behind a name registry.

Every registered model follows one contract:

- ``data_spec``: a `DataSpec` (input kind, channels, classes, samples per segment or the
  spectrogram's shape, causal or not), checked against the data and task before training.
- ``n_classes``: 5 by default for the sleep models, the stages W, N1, N2, N3, REM as integer
  codes 0..4 in that order (the store's codes).
- ``forward(x)`` returns logits (no softmax) of shape ``(batch, n_classes, n_epochs)``.
- signal input: float32 ``(batch, n_channels, n_epochs * 30 * sfreq_hz)``, 128 Hz by default
  (what the data loader serves: ``(B, 2, 35 * 3840)`` for U-Sleep's defaults).
- spectrogram input: float32 ``(batch, n_channels, n_epochs, freqs, frames)``, exactly what
  ``WindowProcessor.spectrogram`` yields, batched; with the default ``SpectrogramConfig``
  (2-s window, 1-s hop, 128 Hz) ``freqs = 129`` and ``frames = 29`` (constructor arguments).
- a wrongly shaped input raises :class:`medscale.errors.SpecError`, as do bad constructor
  values.

Build one with ``build_model("usleep", in_channels=2)``; ``model_names()`` lists the names:
``usleep`` and ``usleep-small`` (signal), ``lseqsleepnet`` and ``lseqsleepnet-small``
(spectrogram), and the tiny ``toy-event-net`` (causal, with ``stream``) and
``toy-image-net`` for the SYNTHETIC toy tasks. The models need torch (the ``[torch]`` extra).
"""

from __future__ import annotations

from medscale.models import lseqsleepnet, toy, usleep  # noqa: F401  (registers the models)
from medscale.models.lseqsleepnet import LSeqSleepNet
from medscale.models.registry import build_model, model_arguments, model_names, register_model
from medscale.models.spec import DataSpec, check_data_spec
from medscale.models.toy import ToyEventNet, ToyImageNet
from medscale.models.usleep import USleep

__all__ = [
    "DataSpec",
    "LSeqSleepNet",
    "ToyEventNet",
    "ToyImageNet",
    "USleep",
    "build_model",
    "check_data_spec",
    "model_arguments",
    "model_names",
    "register_model",
]
