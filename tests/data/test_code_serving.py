"""int16 codes through the loader, scaled on the device: the float32 path's windows bit for
bit, for any worker count, augmentation included."""

from __future__ import annotations

import pytest
import torch

from medscale.data import AugmentConfig, DataConfig, ProcessingConfig, SamplingConfig
from medscale.data.torch_data import create_train_loader, scale_on_device
from medscale.errors import SpecError

CONFIG = DataConfig(
    seed=3,
    sampling=SamplingConfig(window_epochs=10, samples_per_epoch=16),
    processing=ProcessingConfig(augment=AugmentConfig(channel_dropout_p=0.4, erase_p=0.6)),
)


@pytest.mark.parametrize("workers", [0, 2])
def test_codes_scaled_on_the_device_equal_the_float32_windows(serving_store, workers):
    plain = create_train_loader(serving_store, CONFIG, batch_size=4)
    codes = create_train_loader(
        serving_store, CONFIG, batch_size=4, num_workers=workers, serve_codes=True
    )
    erased = dropped = 0
    for ours, theirs in zip(codes, plain, strict=True):
        assert ours["codes"].dtype == torch.int16 and "x" not in ours
        x = scale_on_device(ours, "cpu", CONFIG.processing.clip)
        assert x.numpy().tobytes() == theirs["x"].numpy().tobytes()  # +0.0, not -0.0, too
        assert torch.equal(ours["y"], theirs["y"])
        erased += int((ours["erase"][:, 1] > 0).sum())
        dropped += int((~ours["keep"]).sum())
    assert erased > 0 and dropped > 0  # both augmentations were exercised


def test_codes_cannot_be_served_for_processing_the_device_does_not_do(serving_store):
    config = CONFIG.model_copy(update={"processing": ProcessingConfig(bandpass_hz=(0.3, 30.0))})
    with pytest.raises(SpecError, match="band-pass"):
        create_train_loader(serving_store, config, serve_codes=True)
