"""What the README lists under `medscale.io` imports from there."""

from __future__ import annotations

import medscale.io


def test_the_readme_names_import_from_medscale_io():
    from medscale.io import Hypnogram, Recording, read_hypnogram, read_signals

    assert Recording.__module__ == "medscale.io.recording"
    assert Hypnogram.__module__ == "medscale.io.recording"
    assert callable(read_signals) and callable(read_hypnogram)
    assert sorted(medscale.io.__all__) == sorted(
        name for name in medscale.io.__all__ if hasattr(medscale.io, name)
    )
