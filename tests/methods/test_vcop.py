"""VCOP as a second method: the order head, a real run, and distillation across methods."""

from __future__ import annotations

import copy
import math
from pathlib import Path

import pytest
import torch

from tiny_runs import tiny_config
from vidkd.apps.pretrain import pretrain
from vidkd.config import load_config
from vidkd.errors import CheckpointError
from vidkd.methods import method_of
from vidkd.methods import vcop as vcop_module
from vidkd.methods.common import tuple_spec
from vidkd.methods.loading import load_model
from vidkd.methods.vcop import OrderHead, VCOPModel
from vidkd.models import build_backbone
from vidkd.runs import read_metrics
from vidkd.synthetic import SyntheticSpec

pytestmark = pytest.mark.usefixtures("single_thread")


def test_order_head_pairs_every_two_slots_in_order():
    head = OrderHead(feature_dim=4, tuple_len=3, hidden=5, dropout=0.0)
    assert head.pairs == [(0, 1), (0, 2), (1, 2)]
    assert head.fc7.in_features == 8 and head.fc8.in_features == 15 and head.fc8.out_features == 6
    features = torch.randn(2, 3, 4)
    expected = head.fc8(torch.cat([torch.relu(head.fc7(torch.cat([features[:, i], features[:, j]], 1)))
                                   for i, j in ((0, 1), (0, 2), (1, 2))], 1))
    assert torch.allclose(head(features), expected)
    # the order of the input slots matters: swapping two clips changes the logits
    assert not torch.allclose(head(features[:, [1, 0, 2]]), head(features))


@pytest.mark.parametrize("tuple_len", [2, 3, 4])
def test_vcop_model_shapes(tuple_len):
    model = VCOPModel(build_backbone("r3d", width=0.125), tuple_len=tuple_len)
    out = model(torch.randn(2, tuple_len, 3, 8, 32, 32))
    assert out.pretext_logits.shape == (2, math.factorial(tuple_len))
    assert out.features.shape == (2, tuple_len, model.backbone.feature_dim) and out.embeddings is None


def test_vcop_trains_and_teaches_a_pcl_student_with_relational_kd(data_root, tmp_path):
    teacher = tmp_path / "vcop"
    metrics = pretrain(tiny_config(data_root, "method=vcop"), teacher)
    assert [m["epoch"] for m in metrics] == [0, 1, 2]
    assert all(0 <= m["val_pretext_acc"] <= 1 for m in metrics) and "train_pretext_acc" in metrics[-1]
    model, report, weights = load_model(teacher)
    assert isinstance(model, VCOPModel) and method_of(weights.state, weights.meta) == "vcop"
    assert not report.missing and not report.unexpected

    # logit KD needs a shared pretext task: refused before anything is trained
    with pytest.raises(CheckpointError, match="do not share a pretext task"):
        pretrain(tiny_config(data_root, f"teacher.path={teacher}"), tmp_path / "refused")
    assert not (tmp_path / "refused" / "config.yaml").exists()

    student = tmp_path / "pcl_student"
    metrics = pretrain(tiny_config(data_root, f"teacher.path={teacher}", "teacher.alpha=0",
                                   "teacher.relational_weight=1"), student)
    last = metrics[-1]
    assert last["train_kd_relational"] > 0 and last["train_kd_loss"] == pytest.approx(last["train_kd_relational"])
    assert "train_kd_logit" not in last
    # and back: a PCL teacher distils into a VCOP student through the features
    back = pretrain(tiny_config(data_root, "method=vcop", f"teacher.path={student}", "teacher.alpha=0",
                                "teacher.feature_weight=1"), tmp_path / "vcop_student")
    assert back[-1]["train_kd_feature"] > 0
    assert read_metrics(tmp_path / "vcop_student")[-1]["epoch"] == 2


def test_vcop_learns_the_order_when_time_is_visible():
    """Clips whose brightness grows with time: the order is in the pixels, and VCOP finds it."""
    from vidkd.methods.vcop import clip_orders

    torch.manual_seed(0)
    model = VCOPModel(build_backbone("r3d", width=0.125), tuple_len=3, hidden=64, dropout=0.0)
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3)
    orders = torch.tensor(clip_orders(3))

    def batch(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        labels = torch.randint(len(orders), (n,))
        base = torch.randn(n, 1, 3, 4, 16, 16)
        time = torch.arange(3.0).view(1, 3, 1, 1, 1, 1)
        clips = base + 0.8 * time + 0.3 * torch.randn(n, 3, 3, 4, 16, 16)
        return clips[torch.arange(n)[:, None], orders[labels]], labels

    for _ in range(60):
        clips, labels = batch(16)
        loss = torch.nn.functional.cross_entropy(model(clips).pretext_logits, labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    clips, labels = batch(96)
    with torch.no_grad():
        accuracy = (model(clips).pretext_logits.argmax(1) == labels).float().mean().item()
    assert accuracy > 0.6  # chance is 1/6


def test_per_position_batchnorm_is_a_loop_over_positions_as_the_reference_vcopn():
    """model.batchnorm=per_position: VCOPN's `for i in range(tuple_len): f.append(base_network(tuple[:, i]))`."""
    torch.manual_seed(0)
    model = VCOPModel(build_backbone("r3d", width=0.125), tuple_len=3, hidden=16, dropout=0.0,
                      batchnorm="per_position").train()
    reference, joint = copy.deepcopy(model), copy.deepcopy(model)
    joint.batchnorm = "joint"
    clips = torch.randn(4, 3, 3, 4, 16, 16, generator=torch.Generator().manual_seed(1))
    out = model(clips)
    features = torch.stack([reference.backbone(clips[:, i]) for i in range(3)], dim=1)
    assert torch.equal(out.features, features)
    torch.testing.assert_close(out.pretext_logits, reference.order_head(features), rtol=0, atol=1e-6)
    after, looped = dict(model.backbone.named_buffers()), dict(reference.backbone.named_buffers())
    assert all(torch.equal(after[k], looped[k]) for k in looped)
    assert int(model.backbone.bn1.num_batches_tracked) == 3  # momentum applied once per position

    assert not torch.allclose(joint(clips).features, out.features, atol=1e-4)
    assert int(joint.backbone.bn1.num_batches_tracked) == 1
    joint.load_state_dict(model.state_dict())
    model.eval(), joint.eval()
    with torch.no_grad():
        a, b = model(clips), joint(clips)
    torch.testing.assert_close(a.features, b.features, rtol=0, atol=1e-6)
    torch.testing.assert_close(a.pretext_logits, b.pretext_logits, rtol=0, atol=1e-6)


def test_vcop_method_takes_batchnorm_and_weight_init_from_the_config(monkeypatch):
    monkeypatch.setattr(vcop_module, "tuple_datasets", lambda cfg, splits, sampler: ([], []))
    cfg = tiny_config(Path("unused"), "method=vcop", "model.batchnorm=per_position", "model.arch=c3d",
                      "model.weight_init=torch_default")
    model = vcop_module.VCOP(cfg, splits=None).model
    assert model.batchnorm == "per_position"
    assert model.backbone.conv1.bias.abs().min() > 0  # PyTorch's default conv bias, not vidkd's zeros
    with pytest.raises(ValueError, match="batchnorm"):
        VCOPModel(build_backbone("r3d", width=0.125), batchnorm="per_clip")


def test_the_directed_preset_spans_the_whole_directed_video():
    """vcop_r3d_directed differs from vcop_r3d_synthetic only in the interval, which makes a tuple
    cover a default synthetic video (`vidkd synth` writes 96 frames): start, movement and end."""
    directed, cyclic = load_config("vcop_r3d_directed"), load_config("vcop_r3d_synthetic")
    frames = SyntheticSpec().frames
    assert tuple_spec(directed).span == frames > tuple_spec(cyclic).span
    assert directed.to_dict()["data"] | {"interval": 0, "root": ""} == cyclic.to_dict()["data"] | {"interval": 0,
                                                                                                  "root": ""}
    assert {k: v for k, v in directed.to_dict().items() if k not in ("data", "name")} == \
        {k: v for k, v in cyclic.to_dict().items() if k not in ("data", "name")}
