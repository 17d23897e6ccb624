from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from medscale.train import UnsafeCheckpointError, load_checkpoint, save_checkpoint  # noqa: E402


class _RunsCode:
    """Unpickling this calls open(marker, "w"): proof that loading ran code."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_a_checkpoint_round_trips_exactly(tmp_path):
    state = {"model": {"w": torch.arange(6.0).reshape(2, 3)}, "step": 7, "rng": [1, 2, 3]}
    path = save_checkpoint(state, tmp_path / "ckpt" / "last.pt")
    loaded = load_checkpoint(path)
    assert loaded["step"] == 7 and loaded["rng"] == [1, 2, 3]
    assert torch.equal(loaded["model"]["w"], state["model"]["w"])
    assert [p.name for p in path.parent.iterdir()] == ["last.pt"]  # no partial file left


def test_a_checkpoint_whose_pickle_runs_code_is_refused_and_the_code_never_runs(tmp_path):
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.pt"
    torch.save({"model": {}, "payload": _RunsCode(str(marker))}, evil)
    with pytest.raises(
        UnsafeCheckpointError, match=r"evil\.pt: refused to load.*arbitrary unpickling"
    ):
        load_checkpoint(evil)
    assert not marker.exists()


def test_random_bytes_are_refused_not_crashed_on(tmp_path):
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"\x80\x04not a pickle at all" * 10)
    with pytest.raises(UnsafeCheckpointError, match=r"junk\.pt"):
        load_checkpoint(junk)
