"""`DataConfig`: everything that decides which windows a model sees and how they are processed.

A config is frozen, refuses unknown keys, and its `DataConfig.to_dict` goes into the run
manifest, so a run records exactly what its data layer did.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from medscale.errors import SpecError, describe_validation_error


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ChannelGroup(_Frozen):
    """A set of interchangeable channels: any stored channel whose type is in ``types`` or
    whose canonical name is in ``names``. Training draws one per group; evaluation uses each."""

    name: str
    types: tuple[str, ...] = ()
    names: tuple[str, ...] = ()
    #: canonical channel names never drawn for this group (a leave-one-channel-out arm)
    exclude: tuple[str, ...] = ()

    def matches(self, name: str, channel_type: str) -> bool:
        """Whether a channel of this canonical name and type belongs to the group."""
        return name not in self.exclude and (channel_type in self.types or name in self.names)

    @model_validator(mode="after")
    def _not_empty(self) -> ChannelGroup:
        if not self.types and not self.names:
            raise ValueError(f"channel group {self.name!r} needs 'types' or 'names'")
        return self


class SamplingConfig(_Frozen):
    """The U-Sleep recipe: dataset, recording, class, segment of that class, random shift.

    ``alpha`` weighs datasets by their share of recordings against uniform. A recording that
    lacks a channel group is left out of sampling (``missing_group="skip"``, the default) or
    gets an all-zero channel for that group (``"zeros"``). A recording shorter than
    ``window_epochs`` segments raises (``short_recordings="raise"``) or is left out
    (``"skip"``). ``samples_per_epoch`` is the number of samples of one training pass.

    Per task kind (`medscale.data.samplers`): segment classes draw a class uniformly among
    those present (stage balancing); time events anchor a window on an event segment with
    probability ``event_ratio``, on background otherwise; volumes cut ``patch_size`` (z, y, x)
    patches centred on a foreground voxel with probability ``foreground_ratio``.
    """

    window_epochs: int = Field(35, ge=1)
    alpha: float = Field(0.5, ge=0.0, le=1.0)
    channel_groups: tuple[ChannelGroup, ...] = (
        ChannelGroup(name="eeg", types=("EEG",)),
        ChannelGroup(name="eog", types=("EOG",)),
    )
    missing_group: Literal["skip", "zeros"] = "skip"
    short_recordings: Literal["raise", "skip"] = "raise"
    samples_per_epoch: int = Field(10_000, ge=1)
    event_ratio: float = Field(0.5, ge=0.0, le=1.0)
    patch_size: tuple[int, int, int] = (32, 32, 32)
    foreground_ratio: float = Field(0.33, ge=0.0, le=1.0)

    @model_validator(mode="after")
    def _unique_groups(self) -> SamplingConfig:
        names = [g.name for g in self.channel_groups]
        if not names or len(set(names)) != len(names):
            raise ValueError(f"channel group names must be non-empty and unique, got {names}")
        if min(self.patch_size) < 1:
            raise ValueError(f"patch_size must be positive, got {self.patch_size}")
        return self


class AugmentConfig(_Frozen):
    """Training-only augmentation, drawn from each sample's own random stream.

    ``channel_dropout_p``: each channel is zeroed with this probability (never all of them).
    ``erase_p``: with this probability one region of up to ``erase_max_fraction`` of the
    window is set to zero in every channel (U-Sleep's regional erase).
    """

    channel_dropout_p: float = Field(0.0, ge=0.0, lt=1.0)
    erase_p: float = Field(0.0, ge=0.0, le=1.0)
    erase_max_fraction: float = Field(0.33, gt=0.0, le=1.0)


class SpectrogramConfig(_Frozen):
    """An STFT front end: log power per channel, (channels, freqs, frames) per 30-s epoch."""

    window_s: float = Field(2.0, gt=0.0)
    hop_s: float = Field(1.0, gt=0.0)
    log_eps: float = Field(1e-6, gt=0.0)


class ProcessingConfig(_Frozen):
    """Load-time processing, in this order: band-pass, robust scaling, clipping."""

    scaling: Literal["robust", "none"] = "robust"
    clip: float | None = Field(20.0, gt=0.0)
    bandpass_hz: tuple[float, float] | None = None
    bandpass_order: int = Field(4, ge=1, le=10)
    augment: AugmentConfig = AugmentConfig()
    spectrogram: SpectrogramConfig | None = None

    @model_validator(mode="after")
    def _band(self) -> ProcessingConfig:
        if self.bandpass_hz is not None and not 0 < self.bandpass_hz[0] < self.bandpass_hz[1]:
            raise ValueError(
                f"bandpass_hz must be (low, high) with 0 < low < high, got {self.bandpass_hz}"
            )
        return self


class DataConfig(_Frozen):
    """The whole data layer's configuration (see ``docs/design/serving.md``)."""

    seed: int = Field(0, ge=0)
    sampling: SamplingConfig = SamplingConfig()
    processing: ProcessingConfig = ProcessingConfig()
    eval_chunk_epochs: int = Field(35, ge=1)
    cache_bytes: int = Field(0, ge=0)
    max_open_recordings: int = Field(256, ge=1)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict for the run manifest; `from_dict` reads it back."""
        return self.model_dump(mode="json")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DataConfig:
        """Parse a config dict; bad keys or values raise `SpecError` naming the field."""
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            raise SpecError(f"data config: {describe_validation_error(exc)}") from None
