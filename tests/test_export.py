"""`vidkd export`: a real tiny run directory is exported to ONNX and checked with onnxruntime."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import write_ucf_layout
from vidkd.cli import main as cli_main
from vidkd.config import Config
from vidkd.utils.checkpoint import save_checkpoint
from tiny_runs import checkpoint_meta as model_meta
from vidkd.methods.pcl import pcl_model as build_pcl_model
from vidkd.errors import CheckpointError, VidkdError
from vidkd.apps.export import export_onnx

ort = pytest.importorskip("onnxruntime")


def make_run(run_dir: Path, data_root: Path, arch: str = "r3d") -> Config:
    """A run directory with a real PCL checkpoint (random weights) of a tiny network."""
    cfg = Config()
    cfg.model.arch, cfg.model.width = arch, 0.125
    cfg.data.root, cfg.data.layout = str(data_root), "ucf101"
    cfg.data.clip_len, cfg.data.resize, cfg.data.crop = 8, [32, 42], 32
    torch.manual_seed(0)
    model = build_pcl_model(cfg)
    for module in model.modules():  # non-trivial BN statistics, so a folding mistake would show
        if isinstance(module, torch.nn.BatchNorm3d):
            module.running_mean.uniform_(-0.2, 0.2)
            module.running_var.uniform_(0.5, 1.5)
    save_checkpoint(run_dir / "checkpoints" / "last", model.state_dict(), model_meta(cfg, 3, {"val_pretext_acc": 0.4}))
    return cfg


@pytest.fixture(scope="module")
def tiny_dataset(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("ucf")
    write_ucf_layout(root, {"Jump": 1, "Run": 2}, groups=2, clips=1, num_frames=24)
    return root


def test_export_checks_a_real_clip(tmp_path, tiny_dataset, capsys):
    run_dir = tmp_path / "run"
    make_run(run_dir, tiny_dataset)
    assert cli_main(["export", str(run_dir)]) == 0
    printed = capsys.readouterr().out
    assert "max |onnxruntime - torch|" in printed

    onnx_path = run_dir / "export" / "backbone.onnx"
    record = json.loads((run_dir / "export" / "export.json").read_text())
    assert record["bytes"] == onnx_path.stat().st_size > 0
    assert record["check"]["clip"].endswith(".avi")  # a decoded test video, not a random tensor
    assert record["check"]["max_abs_diff"] < 1e-4
    assert record["check"]["batch_axis"] == "batch"
    assert record["input"]["shape"] == ["batch", 3, 8, 32, 32]

    # the file loads on its own and serves any batch size, matching the PyTorch backbone
    from vidkd.apps.export import load_backbone

    backbone, _ = load_backbone(run_dir / "checkpoints" / "last")
    clips = torch.randn(3, 3, 8, 32, 32)
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    got = session.run(None, {"clip": clips.numpy()})[0]
    with torch.no_grad():
        expected = backbone(clips).numpy()
    assert got.shape == (3, backbone.feature_dim)
    assert np.abs(got - expected).max() < 1e-4
    meta = session.get_modelmeta().custom_metadata_map
    assert meta["arch"] == "r3d" and json.loads(meta["input"])["crop"] == 32


def test_export_without_dataset_uses_a_random_clip(tmp_path):
    run_dir = tmp_path / "run"
    make_run(run_dir, tmp_path / "no_such_dataset", arch="c3d")
    out = tmp_path / "elsewhere" / "c3d.onnx"
    record = export_onnx(run_dir, out)
    assert out.is_file() and (out.parent / "export.json").is_file()
    assert record["check"]["clip"].startswith("random clip (dataset unavailable")
    assert record["check"]["max_abs_diff"] < 1e-4


def test_export_refuses_a_checkpoint_that_does_not_fit(tmp_path):
    run_dir = tmp_path / "run"
    make_run(run_dir, tmp_path / "none")
    meta_path = run_dir / "checkpoints" / "last" / "meta.json"
    meta = json.loads(meta_path.read_text())
    meta["width"] = 0.25
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="does not fit r3d at width 0.25") as info:
        export_onnx(run_dir)
    assert "\n" not in str(info.value)
    with pytest.raises(CheckpointError, match="no checkpoint"):
        export_onnx(tmp_path / "empty")


def test_export_without_onnxruntime_says_what_to_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # makes `import onnxruntime` fail
    with pytest.raises(VidkdError, match=r"pip install 'vidkd\[export\]'"):
        export_onnx(tmp_path)
