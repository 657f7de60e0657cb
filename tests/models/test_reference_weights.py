"""Checkpoints of the reference PCL code (BestJuly/Pretext-Contrastive-Learning) load with every
tensor placed, with the architecture read off their keys, and give the reference network's outputs.

The reference `PCLNet` saves `base_network.*` (the VCOP C3D / R3DNet / R2Plus1DNet), `fc.*`
(Linear(3·d, 5)) and `projector.mlp.{0,2}.*` (MoCoHead: Linear-ReLU-Linear, then x / ||x||_2).
Its forward runs the base network on each clip, `fc(cat(f1, f2, f3))` gives the pretext logits,
and the projector is applied to clips 0 and 2 only (pcl_net.py:91-109; the residual `diff` it
applies inside the model is a data transform in vidkd, so both sides here see the same clips).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn as nn

from vidkd.config import load_config
from vidkd.distill.teacher import load_teacher
from vidkd.errors import CheckpointError
from vidkd.methods.loading import load_model
from vidkd.methods.pcl import PCLModel, pcl_meta
from vidkd.models import build_backbone
from vidkd.models.loading import load_backbone, read_weights, resolve_arch

ARCHS = ["c3d", "r3d", "r21d"]
WIDTH = 0.125
CLIPS = (2, 3, 3, 8, 32, 32)  # (B, tuple_len, C, T, H, W)


def _randomised(model: nn.Module, seed: int) -> nn.Module:
    """BatchNorm statistics and affines and the head Linears away from their initial values, so
    that a misplaced tensor shows in the outputs."""
    generator = torch.Generator().manual_seed(seed)

    def draw(tensor: torch.Tensor, scale: float = 1.0, shift: float = 0.0) -> None:
        tensor.copy_(scale * torch.rand(tensor.shape, generator=generator) + shift)

    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                draw(module.weight, 1.0, 0.5)
                draw(module.bias, 0.2, -0.1)
                draw(module.running_mean, 0.2, -0.1)
                draw(module.running_var, 1.0, 0.5)
            elif isinstance(module, nn.Linear):
                bound = module.in_features ** -0.5
                draw(module.weight, 2 * bound, -bound)
                draw(module.bias, 2 * bound, -bound)
    return model


def _vidkd_model(arch: str, seed: int = 0) -> PCLModel:
    torch.manual_seed(seed)
    model = PCLModel(build_backbone(arch, width=WIDTH), tuple_len=3, pretext_classes=5, proj_dim=16)
    return _randomised(model, seed).eval()


def _reference_state(model: PCLModel, projector: str = "projector.mlp.") -> dict[str, torch.Tensor]:
    """The model's tensors under the reference PCLNet's names."""
    state = {}
    for key, value in model.state_dict().items():
        if key.startswith("backbone."):
            state["base_network." + key[len("backbone."):]] = value.clone()
        elif key.startswith("pretext_head.fc."):
            state["fc." + key[len("pretext_head.fc."):]] = value.clone()
        elif key.startswith("projection.mlp."):
            state[projector + key[len("projection.mlp."):]] = value.clone()
        else:
            raise AssertionError(f"unexpected tensor {key}")
    return state


def _save(state: dict[str, torch.Tensor], path: Path, nested: bool = False, ddp: bool = False) -> Path:
    if ddp:
        state = {"module." + key: value for key, value in state.items()}
    torch.save({"state_dict": state, "epoch": 200} if nested else state, path)
    return path


class ReferencePCL(nn.Module):
    """PCLNet's forward (pcl_net.py) with its own layers, loaded from the reference tensors."""

    def __init__(self, arch: str, state: dict[str, torch.Tensor]) -> None:
        super().__init__()
        self.base_network = build_backbone(arch, width=WIDTH)
        self.base_network.load_state_dict(
            {k[len("base_network."):]: v for k, v in state.items() if k.startswith("base_network.")}, strict=True)
        fc_w = state["fc.weight"]
        self.fc = nn.Linear(fc_w.shape[1], fc_w.shape[0])
        self.fc.load_state_dict({"weight": fc_w, "bias": state["fc.bias"]})
        w0, w2 = state["projector.mlp.0.weight"], state["projector.mlp.2.weight"]
        self.proj0, self.proj2 = nn.Linear(w0.shape[1], w0.shape[0]), nn.Linear(w2.shape[1], w2.shape[0])
        self.proj0.load_state_dict({"weight": w0, "bias": state["projector.mlp.0.bias"]})
        self.proj2.load_state_dict({"weight": w2, "bias": state["projector.mlp.2.bias"]})

    def project(self, x: torch.Tensor) -> torch.Tensor:
        x = self.proj2(torch.relu(self.proj0(x)))
        return x / x.pow(2).sum(1, keepdim=True).pow(0.5)

    def forward(self, tuples: torch.Tensor):
        batch = tuples.shape[0]
        f1, f2, f3 = (self.base_network(tuples[:, i]).view(batch, -1) for i in range(3))
        h = self.fc(torch.cat((f1, f2, f3), dim=1))
        return h, torch.stack((f1, f2, f3), 1), self.project(f1), self.project(f3)


def _assert_same_outputs(model: nn.Module, reference: ReferencePCL) -> None:
    clips = torch.randn(*CLIPS, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        out = model.eval()(clips)
        logits, features, p1, p3 = reference.eval()(clips)
    assert torch.allclose(out.pretext_logits, logits, atol=1e-5)
    assert torch.allclose(out.features, features, atol=1e-5)
    assert torch.allclose(out.embeddings[:, 0], p1, atol=1e-5)
    assert torch.allclose(out.embeddings[:, 1], p3, atol=1e-5)
    assert logits.abs().max() > 1e-3 and torch.allclose(p1.norm(dim=1), torch.ones(CLIPS[0]))


@pytest.mark.parametrize("arch,nested,ddp,projector", [
    ("c3d", False, False, "projector.mlp."),
    ("r3d", True, True, "projector.mlp."),
    ("r21d", True, False, "projector."),
])
def test_a_reference_checkpoint_loads_every_tensor_and_gives_the_reference_outputs(arch, nested, ddp, projector,
                                                                                     tmp_path):
    ours = _vidkd_model(arch)
    state = _reference_state(ours, projector)
    path = _save(state, tmp_path / f"pcl_{arch}.pth", nested=nested, ddp=ddp)

    model, report, weights = load_model(path)  # no architecture given
    assert weights.format == "pcl" and report.arch == arch and report.width == WIDTH
    assert not report.missing and not report.unexpected and not report.dropped, report.summary
    assert len(report.loaded) == len(state)
    for key, value in model.state_dict().items():
        assert torch.equal(value, ours.state_dict()[key]), key

    reference_names = state if projector == "projector.mlp." else \
        {k.replace("projector.", "projector.mlp.", 1): v for k, v in state.items()}
    _assert_same_outputs(model, ReferencePCL(arch, reference_names))


@pytest.mark.parametrize("arch", ARCHS)
def test_the_architecture_and_width_of_a_reference_checkpoint_are_read_off_its_keys(arch, tmp_path):
    path = _save(_reference_state(_vidkd_model(arch)), tmp_path / "pcl.pth")
    weights = read_weights(path)
    assert weights.meta["arch"] == arch
    assert resolve_arch(weights, None, None) == (arch, WIDTH)
    backbone, info = load_backbone(path)  # evaluation's path: the backbone alone
    assert info["arch"] == arch and info["width"] == WIDTH and backbone.arch == arch


def test_a_tensor_with_no_place_is_refused_unless_partial_loads_are_allowed(tmp_path):
    ours = _vidkd_model("r3d")
    state = {**_reference_state(ours), "memory.bank": torch.randn(10, 16)}
    path = _save(state, tmp_path / "with_bank.pth")
    for load in (lambda: load_model(path), lambda: load_backbone(path)):
        with pytest.raises(CheckpointError, match=r"memory\.bank.*allow_partial") as caught:
            load()
        assert "\n" not in str(caught.value)
    model, report, _ = load_model(path, allow_partial=True)
    assert report.unexpected == ["memory.bank"] and not report.missing and not report.dropped
    _assert_same_outputs(model, ReferencePCL("r3d", _reference_state(ours)))


def test_a_projector_of_another_shape_is_refused_not_guessed(tmp_path):
    state = _reference_state(_vidkd_model("c3d"))
    state["projector.mlp.4.weight"] = torch.randn(16, 16)  # a third Linear: no place in Linear-ReLU-Linear
    path = _save(state, tmp_path / "three_layers.pth")
    with pytest.raises(CheckpointError, match=r"projector\.mlp\..*allow_partial"):
        load_model(path)


def test_a_reference_checkpoint_serves_as_a_teacher_without_naming_its_architecture(tmp_path):
    path = _save(_reference_state(_vidkd_model("r21d")), tmp_path / "pcl_r21d.pth", nested=True)
    cfg = load_config(None, ["model.arch=r3d", "model.width=0.25", f"teacher.path={path}"])
    teacher, info = load_teacher(cfg.teacher, pcl_meta(cfg))
    assert info["arch"] == "r21d" and info["width"] == WIDTH and info["format"] == "pcl"
    assert not info["report"]["missing"] and not info["report"]["unexpected"] and not info["report"]["dropped"]


def test_the_reference_r18_sequential_maps_to_torchvision_names(tmp_path):
    """PCL's `r18` base network is Sequential(torchvision r3d_18 children[:-1]): `base_network.0` is the stem."""
    net = build_backbone("r3d_18", width=WIDTH)
    names = {"stem": "0", "layer1": "1", "layer2": "2", "layer3": "3", "layer4": "4"}
    state = {}
    for key, value in net.state_dict().items():
        child, rest = key.split(".", 1)
        state[f"base_network.{names[child]}.{rest}"] = value
    path = _save(state, tmp_path / "pcl_r18.pth")
    backbone, info = load_backbone(path)
    assert info["arch"] == "r3d_18" and info["width"] == WIDTH
    assert not info["report"]["missing"] and not info["report"]["unexpected"]
    for key, value in backbone.state_dict().items():
        assert torch.equal(value, net.state_dict()[key]), key
