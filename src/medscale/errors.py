"""Every error medscale raises on purpose, in one place.

Each one subclasses the built-in error that fits, so callers can catch either.
Messages name the file or field, what was wrong and what was expected.
"""

from __future__ import annotations


class MedscaleError(Exception):
    """Base class of all medscale errors."""


class SpecError(MedscaleError, ValueError):
    """A dataset spec (or other config) is malformed: unknown key, wrong type, bad value."""


class RecordingReadError(MedscaleError, OSError):
    """A signal file cannot be read (truncated, corrupt, unsupported)."""


class AnnotationReadError(MedscaleError, ValueError):
    """An annotation or hypnogram file cannot be read or holds an unknown label."""


class ChannelError(MedscaleError, KeyError):
    """Required channels are missing from a recording."""

    def __str__(self) -> str:  # KeyError quotes its message; we want it plain
        return str(self.args[0]) if self.args else ""


class AlignmentError(MedscaleError, ValueError):
    """Signal and hypnogram cannot be aligned under the declared rule."""


class StoreError(MedscaleError, OSError):
    """The store is missing, foreign, corrupt or of an unknown layout version."""


class StoreVersionError(StoreError):
    """The store's layout version is not one this medscale can read."""


class UnsupportedLayoutError(StoreError):
    """An array's zarr.json describes a layout the fast shard reader does not handle."""


class SplitMismatchError(MedscaleError, ValueError):
    """A split file does not belong to this store (content hash) or is of an unknown format."""


class UnsafeCheckpointError(MedscaleError, ValueError):
    """A checkpoint needs arbitrary unpickling to load, or is not a checkpoint at all."""


class CheckpointMismatchError(MedscaleError, ValueError):
    """A checkpoint belongs to another model, config or run: refused before anything loads."""


def describe_validation_error(exc: Exception) -> str:
    """``path.to.field: message; ...`` for a pydantic ``ValidationError`` (duck-typed, so this
    module imports nothing)."""
    return "; ".join(
        f"{'.'.join(str(p) for p in e['loc']) or '<root>'}: {e['msg']}"
        for e in exc.errors()  # type: ignore[attr-defined]
    )


class LaunchError(MedscaleError, RuntimeError):
    """Processes could not be started where asked: no ``sbatch``/``torchrun``, a Ray address
    that does not answer, a job that failed."""


class RendezvousError(LaunchError):
    """The ranks of a distributed run cannot meet: a localhost address for several nodes,
    ranks or world sizes that disagree, an unexpanded variable, nobody listening."""
