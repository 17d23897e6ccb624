"""Training: checkpoints today; the loop, distributed setup and metric logging come next."""

from medscale.train.checkpoint import UnsafeCheckpointError, load_checkpoint, save_checkpoint

__all__ = ["UnsafeCheckpointError", "load_checkpoint", "save_checkpoint"]
