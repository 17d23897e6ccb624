"""`DataSpec`: what a model takes and gives, and what the data and task serve, in one form, so
that a mismatch is a clear error before training instead of a shape error inside torch.

Every registered model has a ``data_spec`` property (it depends on constructor arguments);
the trainer builds the data side's spec from the store, the data config and the task, and
`check_data_spec` compares them. A field left ``None`` on either side is not constrained.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Literal

from medscale.errors import SpecError

ModelInput = Literal["signals", "spectrogram", "image", "volume"]


@dataclass(frozen=True)
class DataSpec:
    """One side of the model/data contract.

    ``input_kind``: ``signals`` (channel, time), ``spectrogram`` (channel, segment, freq,
    frame), ``image`` (channel, y, x) or ``volume`` (channel, z, y, x). ``channels``: input
    channels (channel groups for signals). ``n_classes``: outputs per prediction unit.
    ``sfreq_hz``: sampling rate of signals; ``segment_samples``: samples per scored segment
    (30 s × rate for sleep); ``segment_shape``: the per-segment shape of a spectrogram
    (freqs, frames) or the spatial shape of an image/volume, where the model fixes it;
    ``spacing_mm``: voxel or pixel spacing, where it matters. ``causal``: the output at a time
    depends on no later input (such a model offers ``stream``).
    """

    input_kind: ModelInput
    channels: int | None = None
    n_classes: int | None = None
    sfreq_hz: float | None = None
    segment_samples: int | None = None
    segment_shape: tuple[int, ...] | None = None
    spacing_mm: tuple[float, ...] | None = None
    causal: bool | None = None


def check_data_spec(model: DataSpec, data: DataSpec, *, model_name: str, data_name: str) -> None:
    """Refuse a model whose spec differs from the data's, naming every differing field with
    both sides' values (``causal`` is the model's property only and never compared)."""
    differences = []
    for f in fields(DataSpec):
        if f.name == "causal":
            continue
        ours, theirs = getattr(model, f.name), getattr(data, f.name)
        if ours is not None and theirs is not None and ours != theirs:
            differences.append(f"{f.name}: model {ours!r}, data {theirs!r}")
    if differences:
        raise SpecError(f"model {model_name!r} does not fit {data_name}: " + "; ".join(differences))


def check_positive(**values: int) -> None:
    """Refuse a constructor argument that is not a positive integer, naming it."""
    for name, value in values.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise SpecError(f"{name} must be a positive integer, got {value!r}")
