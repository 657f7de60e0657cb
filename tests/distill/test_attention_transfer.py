"""Attention transfer (Zagoruyko & Komodakis, 2017): stage maps from every backbone, the attention
map and loss against direct computations, and real distillation runs across architectures."""

from __future__ import annotations

import copy
import math

import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import default_collate

from tiny_runs import checkpoint_meta, tiny_config
from vidkd.apps import grid
from vidkd.apps.pretrain import build_trainer
from vidkd.config import load_config, load_experiment
from vidkd.distill.losses import KDLoss, attention_map, attention_transfer_loss, relational_kd_loss
from vidkd.errors import ConfigError
from vidkd.methods.pcl import PCLModel, pcl_model
from vidkd.methods.vcop import VCOPModel
from vidkd.models import build_backbone, list_backbones
from vidkd.options import TeacherConfig
from vidkd.runs import read_metrics
from vidkd.utils.checkpoint import save_checkpoint

STAGES = {"c3d": 5, "r3d": 4, "r21d": 4, "r3d_18": 4, "mc3_18": 4, "r2plus1d_18": 4}


def _direct_attention(stage_map: torch.Tensor) -> torch.Tensor:
    n, c = stage_map.shape[:2]
    rows = []
    for sample in stage_map.double():
        attention = sum(sample[k] ** 2 for k in range(c)) / c  # mean over channels of A_c^2
        flat = attention.flatten()
        rows.append(flat / math.sqrt(float((flat**2).sum())))
    return torch.stack(rows)


def test_attention_map_matches_a_direct_computation():
    gen = torch.Generator().manual_seed(0)
    stage_map = torch.randn(3, 5, 2, 4, 3, generator=gen)
    got = attention_map(stage_map)
    assert got.shape == (3, 2 * 4 * 3)
    torch.testing.assert_close(got.double(), _direct_attention(stage_map), rtol=1e-5, atol=1e-6)
    assert torch.allclose(got.norm(dim=1), torch.ones(3))


def test_attention_loss_is_zero_for_identical_maps_and_reaches_the_student_only():
    gen = torch.Generator().manual_seed(1)
    teacher = [torch.randn(4, 8, 2, 4, 4, generator=gen, requires_grad=True),
               torch.randn(4, 16, 1, 2, 2, generator=gen, requires_grad=True)]
    same = [m.detach().clone() for m in teacher]
    assert attention_transfer_loss(same, teacher).item() == pytest.approx(0.0, abs=1e-7)
    # channel counts need not match: a scaled copy with more channels has the same attention map
    assert attention_transfer_loss([torch.cat([2 * m, 2 * m], 1) for m in same], teacher).item() == \
        pytest.approx(0.0, abs=1e-7)
    student = [torch.randn(4, 3, 2, 4, 4, generator=gen, requires_grad=True),
               torch.randn(4, 5, 1, 2, 2, generator=gen, requires_grad=True)]
    loss = attention_transfer_loss(student, teacher)
    expected = sum(((_direct_attention(s.detach()) - _direct_attention(t.detach())) ** 2).mean()
                   for s, t in zip(student, teacher))
    assert loss.item() == pytest.approx(float(expected), rel=1e-5)
    loss.backward()
    assert all(s.grad.abs().sum() > 0 for s in student) and all(t.grad is None for t in teacher)


def test_attention_loss_resizes_the_teachers_map_to_the_students_size():
    gen = torch.Generator().manual_seed(2)
    student = torch.randn(2, 8, 2, 4, 4, generator=gen)
    teacher = torch.randn(2, 32, 4, 8, 8, generator=gen)
    loss = attention_transfer_loss([student], [teacher])
    resized = F.interpolate(teacher.pow(2).mean(1, keepdim=True), size=(2, 4, 4), mode="trilinear",
                            align_corners=False)
    expected = (attention_map(student) - F.normalize(resized.flatten(1), dim=1)).pow(2).mean()
    assert torch.isfinite(loss) and loss.item() == pytest.approx(expected.item(), rel=1e-6)
    # a smaller teacher map is upsampled the same way
    assert torch.isfinite(attention_transfer_loss([teacher], [student]))
    with pytest.raises(ValueError, match="pairs stage maps"):
        attention_transfer_loss([student], [teacher, teacher])


@pytest.mark.parametrize("arch", list_backbones())
@pytest.mark.parametrize("train", [False, True])
def test_forward_intermediates_matches_the_plain_forward_bit_for_bit(arch, train):
    torch.manual_seed(0)
    backbone = build_backbone(arch, width=0.125).train(train)
    twin = copy.deepcopy(backbone)  # train mode updates BatchNorm statistics: each pass gets its own copy
    clips = torch.randn(2, 3, 8, 32, 32)
    with torch.no_grad():
        plain = backbone(clips)
        pooled, maps = twin.forward_intermediates(clips, indices=range(-STAGES[arch], 0))
    assert torch.equal(pooled, plain)
    assert backbone.num_stages == STAGES[arch] and len(maps) == STAGES[arch]
    assert maps[-1].shape[:2] == (2, backbone.feature_dim)
    assert torch.equal(maps[-1].mean(dim=(2, 3, 4)), plain)
    # indices in the order given, negative from the last
    _, picked = twin.eval().forward_intermediates(clips, indices=[-1, 0])
    assert picked[0].shape == maps[-1].shape and picked[1].shape == maps[0].shape
    with pytest.raises(ValueError, match="out of range"):
        twin.forward_intermediates(clips, indices=[STAGES[arch]])


@pytest.mark.parametrize("batchnorm", ["joint", "per_position"])
@pytest.mark.parametrize("model_cls", [PCLModel, VCOPModel])
def test_models_return_stage_maps_only_when_asked(model_cls, batchnorm):
    torch.manual_seed(0)
    model = model_cls(build_backbone("r3d", width=0.125), tuple_len=3, batchnorm=batchnorm).eval()
    clips = torch.randn(2, 3, 3, 8, 32, 32)
    with torch.no_grad():
        plain = model(clips)
        asked = model(clips, maps=(-2, -1))
    assert plain.maps is None
    assert torch.equal(asked.features, plain.features) and torch.equal(asked.pretext_logits, plain.pretext_logits)
    assert [tuple(m.shape) for m in asked.maps] == [(2, 3, 32, 2, 4, 4), (2, 3, 64, 1, 2, 2)]
    _, single = model.backbone.forward_intermediates(clips[:, 1], (-1,))
    torch.testing.assert_close(asked.maps[1][:, 1], single[0])


def test_kd_loss_asks_for_maps_only_when_attention_transfer_is_on():
    assert KDLoss(TeacherConfig(), 8, 8).map_stages is None
    assert KDLoss(TeacherConfig(relational_weight=1.0), 8, 8).map_stages is None
    assert KDLoss(TeacherConfig(attention_weight=1.0), 8, 8).map_stages == (-3, -2, -1)


@pytest.fixture(scope="module")
def c3d_teacher(tmp_path_factory):
    """A (randomly initialised) C3D PCL checkpoint as the teacher of R3D students."""
    torch.manual_seed(0)
    cfg = tiny_config(tmp_path_factory.mktemp("unused"), "model.arch=c3d")
    ckpt = tmp_path_factory.mktemp("teacher") / "c3d"
    save_checkpoint(ckpt, pcl_model(cfg).state_dict(), checkpoint_meta(cfg, 1, {}))
    return ckpt


def _batch(method, size=4):
    data = method.train_dataset()
    return default_collate([data[i] for i in range(size)])


def test_without_attention_the_kd_step_is_the_relational_loss_and_no_maps_are_made(data_root, c3d_teacher, tmp_path):
    # in-batch negatives: a memory bank would change between the two computations of the loss
    cfg = tiny_config(data_root, f"teacher.path={c3d_teacher}", "teacher.alpha=0", "teacher.relational_weight=1",
                      "train.knn_every=0", "ssl.contrastive=in_batch")
    trainer = build_trainer(cfg, tmp_path / "run")
    try:
        method = trainer.method
        assert method.map_stages is None
        batch = _batch(method)
        torch.manual_seed(0)
        loss, parts = method.training_step(method.model, batch)
        assert "kd_attention" not in parts
        torch.manual_seed(0)
        inputs = method.inputs(batch)
        student, teacher = method.model(inputs), method.teacher(inputs)
        assert student.maps is None and teacher.maps is None
        own, _ = method.student.loss(student, batch)
        expected = own + relational_kd_loss(student.features.flatten(0, 1), teacher.features.flatten(0, 1),
                                            cfg.teacher.relational_temperature)
        assert torch.equal(loss, expected)
    finally:
        trainer.close()


def test_attention_transfer_trains_an_r3d_student_from_a_c3d_teacher(data_root, c3d_teacher, tmp_path):
    torch.set_num_threads(1)
    cfg = tiny_config(data_root, f"teacher.path={c3d_teacher}", "teacher.alpha=0", "teacher.attention_weight=1",
                      "train.knn_every=0", "train.epochs=1")
    trainer = build_trainer(cfg, tmp_path / "student")
    try:
        method = trainer.method
        assert method.map_stages == (-3, -2, -1)
        batch = _batch(method)
        with torch.no_grad():
            inputs = method.inputs(batch)
            student, teacher = method.model(inputs, maps=(-3, -2, -1)), method.teacher(inputs, maps=(-3, -2, -1))
        # R3D's last 3 stages (4x8x8, 2x4x4, 1x2x2 at 8x32x32 input) against C3D's (2x4x4, 1x2x2, 1x2x2)
        assert [m.shape[3:] for m in student.maps] == [(4, 8, 8), (2, 4, 4), (1, 2, 2)]
        assert [m.shape[3:] for m in teacher.maps] == [(2, 4, 4), (1, 2, 2), (1, 2, 2)]
        before = {k: v.clone() for k, v in method.model.state_dict().items()}
        trainer.fit()
    finally:
        trainer.close()
    metrics = read_metrics(tmp_path / "student")
    value = metrics[-1]["train_kd_attention"]
    assert value is not None and math.isfinite(value) and value > 0
    assert metrics[-1]["train_kd_loss"] == pytest.approx(value, rel=1e-5)
    changed = [k for k, v in method.model.state_dict().items()
               if v.is_floating_point() and not torch.equal(v, before[k])]
    assert any(k.startswith("backbone.") for k in changed)


def test_a_stage_one_backbone_lacks_is_refused_in_one_line_before_training(data_root, c3d_teacher, tmp_path):
    """C3D has 5 stages and R3D 4: -5 is C3D's first, and no stage of the R3D student."""
    cfg = tiny_config(data_root, f"teacher.path={c3d_teacher}", "teacher.alpha=0", "teacher.attention_weight=1",
                      "teacher.attention_stages=[-5, -1]", "train.knn_every=0")
    with pytest.raises(ConfigError, match=r"teacher.attention_stages \[-5, -1\]: stage index -5 is out of range: "
                                          "the student's r3d has 4 stages"):
        build_trainer(cfg, tmp_path / "student")
    assert not (tmp_path / "student").exists()


def test_a_grid_refuses_a_stage_a_student_or_teacher_lacks_before_it_trains(tmp_path, monkeypatch):
    """The baselines train first: a student's missing stage must not wait for them."""
    monkeypatch.setattr(grid, "_refuse_changed_runs", lambda *args: pytest.fail("the check came too late"))
    exp = load_experiment("kd_study_synthetic", ["teacher.attention_weight=1", "teacher.attention_stages=[4]"])
    with pytest.raises(ConfigError, match=r"teacher.attention_stages \[4\]: stage index 4 is out of range"):
        grid._run_grid(exp, tmp_path / "grid")
