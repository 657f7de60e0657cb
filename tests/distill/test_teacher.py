"""Teachers: every checkpoint layout loads, partial loads are refused, misfits are named, the
teacher never changes, and every teacher/student pair trains."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
import torch

from tiny_runs import tiny_config
from vidkd.config import load_config
from vidkd.distill.losses import KDLoss
from vidkd.distill.teacher import load_teacher
from vidkd.utils.io import load_weights
from vidkd.utils.checkpoint import save_checkpoint
from tiny_runs import checkpoint_meta as model_meta
from vidkd.apps.pretrain import build_trainer, pretrain
from vidkd.methods.pcl import pcl_meta, pcl_model as build_pcl_model
from vidkd.runs import read_metrics
from vidkd.errors import CheckpointError
from vidkd.models import build_backbone
from vidkd.methods.loading import load_model as load_pcl_model
from vidkd.models.loading import load_backbone

ARCHS = ["c3d", "r3d", "r21d"]


@pytest.fixture(scope="module")
def teacher_run(data_root, tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("teacher") / "run"
    torch.set_num_threads(1)
    pretrain(tiny_config(data_root, "train.epochs=1", "train.knn_every=0"), run)
    return run


def _student_cfg(data_root, teacher, *extra):
    return tiny_config(data_root, f"teacher.path={teacher}", "train.knn_every=0", *extra)


def _pcl_state(arch: str, cfg=None):
    cfg = cfg or load_config(None, [f"model.arch={arch}", "model.width=0.125"])
    return build_pcl_model(cfg).state_dict()


def test_a_vidkd_run_and_its_checkpoint_dir_load(teacher_run):
    for source in (teacher_run, teacher_run / "checkpoints" / "last",
                   teacher_run / "checkpoints" / "last" / "model.safetensors"):
        model, report, _ = load_pcl_model(source)
        assert report.arch == "r3d" and report.width == 0.125 and not report.missing
        saved = load_weights(teacher_run / "checkpoints" / "best" / "model.safetensors")
        if source == teacher_run:  # a run directory serves its best checkpoint
            assert torch.equal(model.state_dict()["pretext_head.fc.weight"], saved["pretext_head.fc.weight"])


def test_a_published_pcl_checkpoint_loads(tmp_path):
    ours = _pcl_state("r21d")
    pcl = {}
    for key, value in ours.items():
        if key.startswith("backbone."):
            pcl["base_network." + key[len("backbone."):]] = value
        elif key.startswith("pretext_head."):
            pcl[key[len("pretext_head."):]] = value
        elif key.startswith("projection.mlp."):
            pcl["projector." + key[len("projection.mlp."):]] = value
    path = tmp_path / "pcl_r21d.pth"
    torch.save({"model": pcl, "epoch": 100}, path)
    model, report, weights = load_pcl_model(path, arch="r21d")
    assert weights.format == "pcl" and not report.missing and not report.unexpected
    for key, value in model.state_dict().items():
        assert torch.equal(value, ours[key]), key


def test_a_torchvision_state_dict_loads_and_drops_its_fc(tmp_path):
    net = build_backbone("r2plus1d_18", width=0.125, num_classes=400)
    path = tmp_path / "r2plus1d_18_kinetics.pth"
    torch.save(net.state_dict(), path)
    backbone, info = load_backbone(path)  # architecture and width read off the tensors
    assert info["arch"] == "r2plus1d_18" and info["width"] == 0.125
    assert info["report"]["dropped"] == ["fc.weight", "fc.bias"]
    clip = torch.randn(1, 3, 8, 32, 32)
    assert torch.allclose(backbone.eval()(clip), net.eval()(clip), atol=1e-6)


def test_a_partial_load_is_refused_unless_asked_for(tmp_path):
    state = _pcl_state("r3d")
    del state["backbone.conv5.block1.conv2.temporal_spatial_conv.weight"]
    path = tmp_path / "partial.pth"
    torch.save(state, path)
    with pytest.raises(CheckpointError, match="loads only partly.*allow_partial"):
        load_pcl_model(path, arch="r3d")
    _, report, _ = load_pcl_model(path, arch="r3d", allow_partial=True)
    assert report.missing == ["backbone.conv5.block1.conv2.temporal_spatial_conv.weight"]


def test_weights_of_another_architecture_are_named_as_a_misfit(tmp_path):
    path = tmp_path / "c3d.pth"
    torch.save(_pcl_state("c3d"), path)
    with pytest.raises(CheckpointError, match="r3d"):
        load_pcl_model(path, arch="r3d")
    wide = tmp_path / "wide.pth"
    torch.save(_pcl_state("r3d", load_config(None, ["model.arch=r3d", "model.width=0.25"])), wide)
    with pytest.raises(CheckpointError, match="does not fit r3d"):
        load_pcl_model(wide, arch="r3d", width=0.125)


class _Payload:
    def __reduce__(self):
        return (print, ("this must never run",))


def test_a_malicious_pickle_is_refused(tmp_path, capsys):
    path = tmp_path / "evil.pth"
    path.write_bytes(pickle.dumps({"model": _Payload()}))
    with pytest.raises(CheckpointError, match="never runs code"):
        load_pcl_model(path, arch="r3d")
    assert "must never run" not in capsys.readouterr().out


def test_teacher_misfits_stop_before_training(data_root, teacher_run, tmp_path):
    tv = tmp_path / "kinetics.pth"
    torch.save(build_backbone("r3d_18", width=0.125).state_dict(), tv)
    with pytest.raises(CheckpointError, match="no pretext head.*adapt-teacher"):
        load_teacher(_student_cfg(data_root, tv).teacher, pcl_meta(_student_cfg(data_root, tv)))
    vcop_student = {**pcl_meta(_student_cfg(data_root, teacher_run)), "method": "vcop", "pretext_classes": 6}
    with pytest.raises(CheckpointError, match="do not share a pretext task.*teacher.alpha=0"):
        load_teacher(_student_cfg(data_root, teacher_run).teacher, vcop_student)
    for extra, pattern in (("data.clip_len=16", "clip_len"), ("data.crop=28", "crop"),
                           ("data.modality=residual", "modality"), ("data.tuple_len=4", "tuple")):
        cfg = _student_cfg(data_root, teacher_run, extra)
        with pytest.raises(CheckpointError, match=pattern):
            load_teacher(cfg.teacher, pcl_meta(cfg))


@pytest.mark.parametrize("teacher_arch,student_arch", [(t, s) for t in ARCHS for s in ARCHS])
def test_every_pair_trains_one_step_and_the_teacher_never_changes(teacher_arch, student_arch, tmp_path):
    torch.manual_seed(0)
    ckpt = tmp_path / "teacher"
    teacher_cfg = load_config(None, [f"model.arch={teacher_arch}", "model.width=0.125", "data.clip_len=8",
                                     "data.crop=32"])
    save_checkpoint(ckpt, build_pcl_model(teacher_cfg).state_dict(), model_meta(teacher_cfg, 1, {}))
    # different widths: feature sizes differ, every KD term must still work
    cfg = load_config(None, [f"model.arch={student_arch}", "model.width=0.25", "data.clip_len=8", "data.crop=32",
                             f"teacher.path={ckpt}", "teacher.relational_weight=1.0", "teacher.feature_weight=1.0"])
    teacher, _ = load_teacher(cfg.teacher, pcl_meta(cfg))
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    student = build_pcl_model(cfg)
    kd = KDLoss(cfg.teacher, student_dim=student.backbone.feature_dim, teacher_dim=teacher.backbone.feature_dim)
    params = list(student.parameters()) + list(kd.parameters())
    optimizer = torch.optim.SGD(params, lr=0.1)
    clips = torch.randn(2, 3, 3, 8, 32, 32)
    with torch.no_grad():
        teacher_out = teacher(clips)
    loss, parts = kd(student(clips), teacher_out)
    assert torch.isfinite(loss) and set(parts) >= {"kd_logit", "kd_relational", "kd_feature"}
    optimizer.zero_grad()
    loss.backward()
    assert student.pretext_head.fc.weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in teacher.parameters())
    optimizer.step()
    for key, value in teacher.state_dict().items():
        assert torch.equal(value, before[key]), key
    assert not teacher.training


def test_kd_run_logs_kd_loss_and_leaves_the_teacher_untouched(data_root, teacher_run, tmp_path):
    cfg = _student_cfg(data_root, teacher_run, "model.arch=c3d", "train.epochs=1")
    trainer = build_trainer(cfg, tmp_path / "student")
    try:
        trainer.fit()
    finally:
        trainer.close()
    metrics = read_metrics(tmp_path / "student")
    assert metrics[-1]["train_kd_loss"] is not None and metrics[-1]["train_kd_loss"] >= 0
    saved = load_weights(teacher_run / "checkpoints" / "best" / "model.safetensors")
    for key, value in trainer.method.teacher.state_dict().items():
        assert torch.equal(value, saved[key]), key


def test_adapt_teacher_gives_a_torchvision_backbone_a_head(data_root, tmp_path):
    from vidkd.apps.adapt import adapt_teacher

    tv = tmp_path / "r3d_18.pth"
    net = build_backbone("r3d_18", width=0.125, num_classes=400)
    torch.save(net.state_dict(), tv)
    settings = [f"data.root={data_root}", "data.clip_len=8", "data.interval=4", "data.resize=[32, 43]",
                "data.crop=32", "data.num_workers=0", "train.batch_size=4", "train.steps_per_epoch=2",
                "train.knn_every=0", "ssl.nce_negatives=16"]
    out = adapt_teacher(str(tv), "r3d_18", tmp_path / "adapted", overrides=settings, epochs=1)
    adapted = load_weights(out / "checkpoints" / "last" / "model.safetensors")
    for key, value in net.state_dict().items():  # the backbone stayed frozen, BatchNorm statistics too
        if not key.startswith("fc."):
            assert torch.equal(adapted["backbone." + key], value), key
    cfg = tiny_config(data_root, f"teacher.path={out}", "model.arch=r3d")
    teacher, info = load_teacher(cfg.teacher, pcl_meta(cfg))
    assert info["arch"] == "r3d_18" and teacher.pretext_head is not None
