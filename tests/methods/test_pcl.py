"""PCL model wrapper and loss with a tiny stand-in backbone."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from vidkd.config import Config
from vidkd.options import SSLConfig
from vidkd.methods.contrastive import InBatchInfoNCE, MemoryBankNCE
from vidkd.methods.base import ModelOutput as PCLOutput
from vidkd.methods.pcl import PCLLoss, PCLModel, pcl_model
from vidkd.models import VideoBackbone, build_backbone


class TinyBackbone(nn.Module):
    """Conv3d + global pooling; counts its forward calls."""

    def __init__(self, feature_dim: int = 8) -> None:
        super().__init__()
        self.feature_dim = feature_dim
        self.conv = nn.Conv3d(3, feature_dim, kernel_size=3, padding=1)
        self.calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return F.relu(self.conv(x)).mean(dim=(2, 3, 4))


def _clips(batch=2, tuple_len=3, seed=0):
    return torch.randn(batch, tuple_len, 3, 4, 8, 8, generator=torch.Generator().manual_seed(seed))


def test_pcl_model_shapes_and_one_backbone_pass():
    torch.manual_seed(0)
    backbone = TinyBackbone(8)
    model = PCLModel(backbone, tuple_len=3, pretext_classes=5, proj_dim=6)
    assert model.backbone is backbone
    clips = _clips()
    out = model(clips)
    assert isinstance(out, PCLOutput)
    assert backbone.calls == 1
    assert out.pretext_logits.shape == (2, 5)
    assert out.features.shape == (2, 3, 8)
    assert out.embeddings.shape == (2, 2, 6)
    assert torch.allclose(out.embeddings.norm(dim=-1), torch.ones(2, 2), atol=1e-5)
    # Features are per clip in order, and the embeddings come from the first and last clips.
    for k in range(3):
        assert torch.allclose(out.features[:, k], backbone(clips[:, k]), atol=1e-5)
    assert torch.allclose(out.embeddings[:, 0], model.projection(backbone(clips[:, 0])), atol=1e-5)
    assert torch.allclose(out.embeddings[:, 1], model.projection(backbone(clips[:, 2])), atol=1e-5)
    assert torch.allclose(out.pretext_logits, model.pretext_head(out.features), atol=1e-5)


def test_pcl_model_from_config_switches_heads():
    cfg = Config()
    cfg.ssl.pretext, cfg.ssl.proj_dim = "none", 4
    model = PCLModel.from_config(TinyBackbone(8), cfg)
    out = model(_clips())
    assert model.pretext_head is None and out.pretext_logits is None and out.embeddings.shape == (2, 2, 4)

    cfg = Config()
    cfg.ssl.contrastive = "none"
    cfg.data.tuple_len = 4
    model = PCLModel.from_config(TinyBackbone(8), cfg)
    out = model(_clips(tuple_len=4))
    assert model.projection is None and out.embeddings is None and out.pretext_logits.shape == (2, 5)
    with pytest.raises(ValueError, match="B, 4"):
        model(_clips(tuple_len=3))


def _fake_output(batch=4, classes=5, proj=4, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return PCLOutput(
        pretext_logits=torch.randn(batch, classes, generator=gen, requires_grad=True),
        features=torch.randn(batch, 3, 8, generator=gen),
        embeddings=F.normalize(torch.randn(batch, 2, proj, generator=gen), dim=-1).requires_grad_(),
    )


def test_pcl_loss_memory_bank_combines_parts_with_lambda():
    cfg = SSLConfig(nce_weight=0.3, nce_negatives=7, proj_dim=4, nce_temperature=0.1)
    loss_fn = PCLLoss(cfg, num_train_videos=20, seed=5)
    reference = MemoryBankNCE(20, dim=4, num_negatives=7, temperature=0.1, momentum=0.5, seed=5)
    out = _fake_output()
    labels, idx = torch.tensor([0, 1, 2, 3]), torch.tensor([3, 9, 11, 0])
    loss, parts = loss_fn(out, labels, idx)
    ce = F.cross_entropy(out.pretext_logits, labels)
    n1, n2 = reference(out.embeddings[:, 0], out.embeddings[:, 1], idx)
    assert parts["pretext_ce"].item() == pytest.approx(ce.item())
    assert parts["nce"].item() == pytest.approx((n1 + n2).item(), rel=1e-5)
    assert loss.item() == pytest.approx((ce + 0.3 * (n1 + n2)).item(), rel=1e-5)
    assert torch.equal(loss_fn.nce.bank1, reference.bank1)  # the loss updated its banks
    loss.backward()
    assert out.embeddings.grad.abs().sum() > 0 and out.pretext_logits.grad.abs().sum() > 0


def test_pcl_loss_in_batch_and_single_terms():
    out = _fake_output()
    labels = torch.tensor([4, 1, 2, 0])
    loss, parts = PCLLoss(SSLConfig(contrastive="in_batch", nce_weight=0.5, proj_dim=4), 10)(out, labels)
    n1, n2 = InBatchInfoNCE(0.07)(out.embeddings[:, 0], out.embeddings[:, 1])
    ce = F.cross_entropy(out.pretext_logits, labels)
    assert loss.item() == pytest.approx((ce + 0.5 * (n1 + n2)).item(), rel=1e-5)

    loss, parts = PCLLoss(SSLConfig(contrastive="none"), 10)(out, labels)
    assert loss.item() == pytest.approx(ce.item()) and parts["nce"].item() == 0

    loss, parts = PCLLoss(SSLConfig(pretext="none", contrastive="in_batch", nce_weight=2.0), 10)(out)
    assert loss.item() == pytest.approx(2.0 * (n1 + n2).item(), rel=1e-5)
    assert "pretext_acc" not in parts and parts["pretext_ce"].item() == 0

    with pytest.raises(ValueError, match="nothing to learn"):
        PCLLoss(SSLConfig(pretext="none", contrastive="none"), 10)


def test_pretext_accuracy_is_a_fraction():
    logits = torch.tensor([[5.0, 0, 0, 0, 0], [0, 5.0, 0, 0, 0], [0, 0, 5.0, 0, 0], [0, 0, 0, 0, 5.0]])
    out = _fake_output()._replace(pretext_logits=logits)
    _, parts = PCLLoss(SSLConfig(contrastive="none"), 4)(out, torch.tensor([0, 1, 3, 3]))
    assert parts["pretext_acc"].item() == pytest.approx(0.5)


def test_memory_bank_term_is_skipped_without_indices():
    loss_fn = PCLLoss(SSLConfig(proj_dim=4, nce_negatives=3), 5).eval()
    out = _fake_output()
    loss, parts = loss_fn(out, torch.zeros(4, dtype=torch.long))
    assert parts["nce"].item() == 0 and loss.item() == pytest.approx(parts["pretext_ce"].item())


def test_training_step_reaches_every_part():
    torch.manual_seed(1)
    model = PCLModel(TinyBackbone(8), tuple_len=3, pretext_classes=5, proj_dim=4)
    loss_fn = PCLLoss(SSLConfig(proj_dim=4, nce_negatives=5), num_train_videos=6)
    loss, _ = loss_fn(model(_clips(batch=3)), torch.tensor([0, 3, 4]), torch.tensor([0, 1, 2]))
    loss.backward()
    for name, param in model.named_parameters():
        assert param.grad is not None and param.grad.abs().sum() > 0, name


# --- model.batchnorm: joint | per_position ----------------------------------------------------------------


def _bn_buffers(module: nn.Module) -> dict[str, torch.Tensor]:
    return {name: value.clone() for name, value in module.named_buffers()}


def test_per_position_batchnorm_is_a_loop_over_positions_as_the_reference():
    """Train mode: one backbone call per tuple position (as the reference PCLNet/VCPN), so each position is
    normalised with its own batch statistics and the running statistics move tuple_len times per step."""
    torch.manual_seed(0)
    model = PCLModel(build_backbone("r3d", width=0.125), tuple_len=3, pretext_classes=5, proj_dim=6,
                     batchnorm="per_position").train()
    reference = copy.deepcopy(model)
    joint = copy.deepcopy(model)
    joint.batchnorm = "joint"
    clips = torch.randn(4, 3, 3, 4, 16, 16, generator=torch.Generator().manual_seed(1))
    seen = []  # bn1's input per call: the running mean after the forward is momentum applied 3 times
    model.backbone.bn1.register_forward_pre_hook(lambda _, args: seen.append(args[0].detach().clone()))

    out = model(clips)
    features = torch.stack([reference.backbone(clips[:, i]) for i in range(3)], dim=1)
    assert torch.equal(out.features, features)
    torch.testing.assert_close(out.pretext_logits, reference.pretext_head(features), rtol=0, atol=1e-6)
    torch.testing.assert_close(out.embeddings[:, 0], reference.projection(features[:, 0]), rtol=0, atol=1e-6)
    torch.testing.assert_close(out.embeddings[:, 1], reference.projection(features[:, 2]), rtol=0, atol=1e-6)
    after, looped = _bn_buffers(model.backbone), _bn_buffers(reference.backbone)
    assert after.keys() == looped.keys() and all(torch.equal(after[k], looped[k]) for k in after)
    assert int(model.backbone.bn1.num_batches_tracked) == 3
    assert len(seen) == 3 and all(x.shape[0] == 4 for x in seen)
    expected = torch.zeros_like(model.backbone.bn1.running_mean)
    for x in seen:  # running = (1 - m) * running + m * batch mean, m = 0.1, once per position
        expected = 0.9 * expected + 0.1 * x.mean(dim=(0, 2, 3, 4))
    torch.testing.assert_close(model.backbone.bn1.running_mean, expected, rtol=0, atol=1e-6)

    joint_out = joint(clips)  # one call over all 12 clips: other statistics, one running update
    assert not torch.allclose(joint_out.features, out.features, atol=1e-4)
    assert int(joint.backbone.bn1.num_batches_tracked) == 1

    # eval mode (validation, a loaded teacher): running statistics, so both give the same output
    joint.load_state_dict(model.state_dict())
    model.eval(), joint.eval()
    with torch.no_grad():
        a, b = model(clips), joint(clips)
    for x, y in zip((a.features, a.pretext_logits, a.embeddings), (b.features, b.pretext_logits, b.embeddings)):
        torch.testing.assert_close(x, y, rtol=0, atol=1e-6)


def test_batchnorm_mode_comes_from_the_config_and_is_checked():
    cfg = Config()
    assert PCLModel.from_config(TinyBackbone(8), cfg).batchnorm == "joint"
    cfg.model.batchnorm = "per_position"
    backbone = TinyBackbone(8)
    model = PCLModel.from_config(backbone, cfg)
    assert model.batchnorm == "per_position"
    model(_clips())
    assert backbone.calls == 3
    cfg.model.width = 0.125
    assert pcl_model(cfg).batchnorm == "per_position"
    with pytest.raises(ValueError, match="batchnorm"):
        PCLModel(TinyBackbone(8), batchnorm="per_clip")


# --- model.weight_init: kaiming | torch_default -----------------------------------------------------------


def test_torch_default_init_leaves_backbone_and_heads_as_pytorch_builds_them(monkeypatch):
    cfg = Config()
    cfg.model.arch, cfg.model.width = "c3d", 0.125
    torch.manual_seed(0)
    kaiming = pcl_model(cfg).state_dict()
    cfg.model.weight_init = "torch_default"
    torch.manual_seed(0)
    default = pcl_model(cfg).state_dict()
    with monkeypatch.context() as patch:  # the same model with vidkd's re-initialisation patched out
        patch.setattr(VideoBackbone, "init_weights", lambda self: None)
        torch.manual_seed(0)
        raw = pcl_model(Config(model=cfg.model)).state_dict()
    assert default.keys() == raw.keys() and all(torch.equal(default[k], raw[k]) for k in raw)
    assert not torch.equal(default["backbone.conv1.weight"], kaiming["backbone.conv1.weight"])
    assert default["backbone.conv1.bias"].abs().min() > 0 and not kaiming["backbone.conv1.bias"].any()
