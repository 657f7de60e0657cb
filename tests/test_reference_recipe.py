"""The reference recipe's remaining settings as named options (issue: per-position BatchNorm,
PIL-like resizing, default initialisation, the reference's video lists, TF32, the last batch)."""

from __future__ import annotations

import json

import pytest
import torch

from conftest import tuple_dataset, write_ucf_layout
from tiny_runs import make_tiny_dataset, tiny_config
from vidkd import runs
from vidkd.apps.pretrain import build_trainer, pretrain
from vidkd.cli import main
from vidkd.config import load_config
from vidkd.data.datasets import load_split
from vidkd.data.sampling import TupleSpec
from vidkd.data.transforms import ClipTransform
from vidkd.errors import DatasetError
from vidkd.utils.runtime import set_tf32

pytestmark = pytest.mark.usefixtures("single_thread")

REFERENCE_PRESETS = ["pcl_c3d_ucf101", "pcl_r3d_ucf101", "pcl_r21d_ucf101", "vcop_c3d_ucf101", "vcop_r3d_ucf101",
                     "vcop_r21d_ucf101"]


@pytest.mark.parametrize("preset", REFERENCE_PRESETS)
def test_the_reference_presets_carry_the_reference_values(preset):
    cfg = load_config(preset)
    assert (cfg.model.batchnorm, cfg.model.weight_init) == ("per_position", "torch_default")
    assert cfg.data.resize_antialias and cfg.data.min_video_frames == 64
    assert not cfg.train.tf32 and not cfg.train.drop_last and cfg.train.seed == 632
    assert cfg.data.jitter_style == ("pil" if preset.startswith("pcl") else "clip")  # VCOP jitters no colour


def test_the_defaults_stay_vidkds():
    cfg = load_config(None)
    assert (cfg.model.batchnorm, cfg.model.weight_init, cfg.data.jitter_style) == ("joint", "kaiming", "clip")
    assert not cfg.data.resize_antialias and cfg.data.min_video_frames == 0 and cfg.train.tf32 and cfg.train.drop_last


def test_min_video_frames_leaves_out_what_the_reference_lists_leave_out(tmp_path):
    """The reference lists keep videos of 64 frames or more; a tuple of 3 x 16 frames 8 apart can use
    48-63-frame videos with a shrunk interval, which vidkd keeps by default."""
    write_ucf_layout(tmp_path, {"Run": 1, "Jump": 2}, groups=3, clips=1, num_frames=56)
    write_ucf_layout(tmp_path / "long", {"Run": 1, "Jump": 2}, groups=3, clips=1, num_frames=70)
    for path in (tmp_path / "long" / "videos").rglob("*.avi"):  # two of the six videos long enough for the lists
        if "_g03_" in path.name:
            path.replace(tmp_path / "videos" / path.parent.name / path.name)
    split = load_split(tmp_path, "train")
    transform = ClipTransform(resize=None, crop=32)
    kept = tuple_dataset(split, TupleSpec(), transform, progress=False)
    listed = tuple_dataset(split, TupleSpec(), transform, progress=False, min_frames=64)
    assert len(kept) == 4 and len(listed) == 2 and all(r.num_frames >= 64 for r in listed.records)


def test_min_video_frames_reaches_pretraining(tmp_path):
    data = make_tiny_dataset(tmp_path / "data")  # 48-frame videos; a tuple of 3 x 8 frames 4 apart needs 32
    with pytest.raises(DatasetError, match="only 0 of 18 train videos .* are usable"):
        build_trainer(tiny_config(data, "data.min_video_frames=49"), tmp_path / "run")


@pytest.mark.parametrize("drop_last,steps", [(True, 4), (False, 5)])
def test_the_last_smaller_batch_is_kept_on_request(tmp_path, drop_last, steps):
    data = make_tiny_dataset(tmp_path / "data")  # 18 training videos, batches of 4
    trainer = build_trainer(tiny_config(data, "train.steps_per_epoch=0", f"train.drop_last={drop_last}",
                                        "train.epochs=1", "train.knn_every=0"), tmp_path / "run")
    try:
        assert trainer.steps_per_epoch == steps
        metrics = trainer.fit()
        assert metrics[-1]["epoch"] == 1
    finally:
        trainer.close()


def test_tf32_is_switched_as_the_run_says():
    before = (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32)
    try:
        set_tf32(False)
        assert not torch.backends.cudnn.allow_tf32 and not torch.backends.cuda.matmul.allow_tf32
        set_tf32(True)
        assert torch.backends.cudnn.allow_tf32 and torch.backends.cuda.matmul.allow_tf32
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = before


def test_evaluate_names_the_recipe_by_name(tmp_path, capsys):
    data = make_tiny_dataset(tmp_path / "data")
    pretrain(tiny_config(data, "train.epochs=1", "train.knn_every=0"), tmp_path / "run")
    assert main(["evaluate", str(tmp_path / "run"), "--protocol", "retrieval", "--recipe", "pcl"]) == 0
    record = json.loads(runs.result_path(runs.eval_dir(tmp_path / "run"), "retrieval", recipe="pcl").read_text())
    assert record["settings"]["recipe"] == "pcl"
    with pytest.raises(SystemExit):
        main(["evaluate", str(tmp_path / "run"), "--recipe", "other"])


def test_the_pcl_fine_tuning_recipe_says_when_no_reference_script_exists(tmp_path):
    """PCL's ft_classify.py builds only R3D: on C3D the recipe runs as R3D's and its record says so;
    the recipe keeps the last, smaller batch as the reference does."""
    data = make_tiny_dataset(tmp_path / "data")
    pretrain(tiny_config(data, "train.epochs=1", "train.knn_every=0", "model.arch=c3d"), tmp_path / "c3d")
    assert main(["evaluate", str(tmp_path / "c3d"), "--protocol", "finetune", "--recipe", "pcl", "--epochs", "1"]) == 0
    record = json.loads(runs.result_path(runs.eval_dir(tmp_path / "c3d"), "finetune", recipe="pcl").read_text())
    assert record["settings"]["reference"] == "ft_classify.py's R3D recipe applied to c3d (PCL has no script for it)"
    assert record["settings"]["drop_last"] is False
