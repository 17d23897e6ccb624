"""Synthetic PSG nights, always labelled as synthetic, for scale tests, benchmarks and demos.

`synthesize_nights` writes EDF+ nights whose hypnograms come from a Markov model fitted to real
scorings (`sample_hypnogram`) and whose signals follow the stages (`synthesize_psg`).
`medscale.synth.toy` writes toy stores for tasks beyond sleep (events, images, volumes).
"""

from medscale.synth.hypnogram_model import (
    TransitionModel,
    load_transition_model,
    sample_hypnogram,
)
from medscale.synth.nights import MANIFEST_NAME, SynthNight, subject_id, synthesize_nights
from medscale.synth.signals import ChannelSpec, channel_specs, synthesize_psg
from medscale.synth.toy import write_toy_event_store, write_toy_image_store, write_toy_volume_store

__all__ = [
    "MANIFEST_NAME",
    "ChannelSpec",
    "SynthNight",
    "TransitionModel",
    "channel_specs",
    "load_transition_model",
    "sample_hypnogram",
    "subject_id",
    "synthesize_nights",
    "synthesize_psg",
    "write_toy_event_store",
    "write_toy_image_store",
    "write_toy_volume_store",
]
