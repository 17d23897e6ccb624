"""`medscale export RUN --format onnx`: ONNX Runtime gives PyTorch's probabilities, predict
takes the .onnx file, and a file it cannot trust is refused with a clear error."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from medscale.cli.main import main
from medscale.errors import SpecError
from medscale.predict import load_staging_model, predict_recording
from medscale.predict.night import night_inputs, read_night

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")
pytestmark = pytest.mark.slow  # trains a tiny run and exports it

# float32 graphs: ONNX Runtime and PyTorch pick different kernels and summation orders
MAX_ABS_DIFFERENCE = 1e-5


@pytest.fixture(scope="module")
def exported(trained_run, tmp_path_factory) -> Path:
    run, _, _ = trained_run
    out = tmp_path_factory.mktemp("onnx") / "model.onnx"
    assert main(["export", str(run), "--format", "onnx", "--out", str(out)]) == 0
    return out


def test_onnx_probabilities_match_pytorch(trained_run, exported):
    run, _, nights = trained_run
    torch_model = load_staging_model(run)
    onnx_model = load_staging_model(exported, threads=1)
    assert onnx_model.data == torch_model.data  # the run's processing travels in the sidecar
    night = read_night(
        sorted(nights.glob("*-PSG.edf"))[0], torch_model.data.sampling.channel_groups
    )
    chunks = [item.x for item in night_inputs(night, torch_model.data)][:2]  # 35 and 25 epochs
    assert chunks[0].shape != chunks[1].shape  # the dynamic epoch axis is exercised
    worst = 0.0
    for x in ([chunks[0], chunks[0]], [chunks[1]]):  # a batch of 2, then the short last chunk
        batch = np.stack(x)
        ours, theirs = onnx_model.probabilities(batch), torch_model.probabilities(batch)
        assert ours.shape == theirs.shape == (len(x), batch.shape[-1] // 3840, 5)
        worst = max(worst, float(np.abs(ours - theirs).max()))
    assert worst < MAX_ABS_DIFFERENCE, worst


def test_predict_with_the_onnx_file_gives_the_runs_stages(trained_run, exported, tmp_path):
    run, _, nights = trained_run
    edf = sorted(nights.glob("*-PSG.edf"))[1]
    via_onnx = predict_recording(edf, exported, tmp_path / "onnx")
    via_torch = predict_recording(edf, run, tmp_path / "torch")
    np.testing.assert_array_equal(via_onnx.stages, via_torch.stages)
    args = ["predict", str(edf), "--model", str(exported), "--out", str(tmp_path / "cli"), "-q"]
    assert main(args) == 0


def test_an_export_of_another_version_or_without_its_sidecar_is_refused(exported, tmp_path):
    import onnx

    copy = tmp_path / "copy.onnx"
    shutil.copy(exported, copy)
    with pytest.raises(SpecError, match=r"sidecar copy\.onnx\.json is missing"):
        load_staging_model(copy)

    record = json.loads(Path(f"{exported}.json").read_text())
    Path(f"{copy}.json").write_text(json.dumps(record | {"format_version": 99}))
    with pytest.raises(SpecError, match=r"version 99.*export the run again"):
        load_staging_model(copy)

    # a graph from a newer toolchain: an opset this ONNX Runtime does not know
    graph = onnx.load(str(exported))
    graph.opset_import[0].version = 999
    onnx.save(graph, str(copy))
    Path(f"{copy}.json").write_text(json.dumps(record))
    with pytest.raises(SpecError, match="describes another ONNX file"):
        load_staging_model(copy)
    from medscale.predict.model import file_sha256

    Path(f"{copy}.json").write_text(json.dumps(record | {"onnx_sha256": file_sha256(copy)}))
    with pytest.raises(SpecError, match="cannot load it"):
        load_staging_model(copy)
