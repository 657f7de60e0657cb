"""Backbones, heads and FLOP counting (vidkd.models). Forward passes run at width 0.25 on tiny clips."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from vidkd.errors import ConfigError
from vidkd.models import (
    LinearClassifier,
    PretextHead,
    ProjectionHead,
    VideoBackbone,
    build_backbone,
    count_flops,
    count_macs,
    count_parameters,
    list_backbones,
    register_backbone,
)
from vidkd.models import registry
from vidkd.models.r2plus1d import vcop_mid_channels

ALL = ["c3d", "r3d", "r21d", "r3d_18", "mc3_18", "r2plus1d_18"]
TORCHVISION = ["r3d_18", "mc3_18", "r2plus1d_18"]

# Published counts (VCOP/PCL code and torchvision, the latter with the 400-way fc).
PARAMS_AT_WIDTH_1 = {
    "c3d": 27_661_440,
    "r3d": 14_361_792,
    "r21d": 14_365_303,
    "r3d_18": 33_371_472,
    "mc3_18": 11_695_440,
    "r2plus1d_18": 31_505_325,
}

# Last feature map (C, T, H, W) at width 0.25 for a 3x8x32x32 clip: every net halves T three
# times except mc3_18 (time kept after layer1); C3D pools H, W by 16, the ResNets by 16 as well.
MAP_SHAPE_8x32x32 = {
    "c3d": (128, 1, 2, 2),
    "r3d": (128, 1, 2, 2),
    "r21d": (128, 1, 2, 2),
    "r3d_18": (128, 1, 2, 2),
    "mc3_18": (128, 8, 2, 2),
    "r2plus1d_18": (128, 1, 2, 2),
}

pytestmark = pytest.mark.usefixtures("single_thread")  # tiny tensors: threads cost more than they save


def test_registry_lists_the_six_backbones():
    assert set(ALL) <= set(list_backbones())
    assert list_backbones() == sorted(list_backbones())


@pytest.mark.parametrize("name", ALL)
def test_parameter_count_at_width_1_matches_the_reference(name):
    # the torchvision-style nets are counted with their Kinetics-400 fc, as torchvision reports them
    model = build_backbone(name, num_classes=400) if name in TORCHVISION else build_backbone(name)
    assert count_parameters(model) == PARAMS_AT_WIDTH_1[name]
    assert model.feature_dim == 512
    assert model.arch == name
    assert model.width == 1.0


@pytest.mark.parametrize("name", ALL)
def test_pooled_and_map_shapes_at_small_width(name):
    model = build_backbone(name, width=0.25)
    clips = torch.randn(2, 3, 8, 32, 32)
    pooled = model(clips)
    assert pooled.shape == (2, 128)
    pooled_again, feature_map = model(clips, return_map=True)
    assert feature_map.shape == (2, *MAP_SHAPE_8x32x32[name])
    # the pooled feature is the global average of the map (train-mode BN uses batch statistics,
    # so two calls on the same batch agree)
    torch.testing.assert_close(pooled_again, feature_map.mean(dim=(2, 3, 4)))
    torch.testing.assert_close(pooled_again, pooled)


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("clip_shape", [(3, 16, 56, 56), (3, 8, 56, 56), (3, 16, 64, 64)])
def test_any_input_that_survives_the_strides_works(name, clip_shape):
    model = build_backbone(name, width=0.125).eval()
    with torch.no_grad():
        assert model(torch.randn(1, *clip_shape)).shape == (1, model.feature_dim)


def test_one_full_width_forward_on_a_small_clip():
    model = build_backbone("r3d").eval()
    with torch.no_grad():
        pooled, feature_map = model(torch.randn(1, 3, 8, 56, 56), return_map=True)
    assert pooled.shape == (1, 512)
    assert feature_map.shape == (1, 512, 1, 4, 4)


@pytest.mark.parametrize("name", ALL)
def test_width_scales_channels_and_parameters(name):
    quarter = build_backbone(name, width=0.25)
    half = build_backbone(name, width=0.5)
    assert quarter.feature_dim == 128 and quarter.width == 0.25
    assert half.feature_dim == 256
    assert count_parameters(quarter) < count_parameters(half)
    # channels never drop below 8
    assert build_backbone(name, width=0.01).feature_dim == 8


@pytest.mark.parametrize("name", ALL)
def test_in_channels(name):
    model = build_backbone(name, width=0.125, in_channels=1)
    first_conv = next(m for m in model.modules() if isinstance(m, nn.Conv3d))
    assert first_conv.in_channels == 1
    assert model(torch.randn(1, 1, 8, 32, 32)).shape == (1, 64)


def test_r21d_mid_channels_follow_the_vcop_formula():
    model = build_backbone("r21d")
    # stem 3x7x7, 3 -> 64: floor(3*49*3*64 / (49*3 + 3*64)) = 83
    assert model.conv1.spatial_conv.out_channels == 83 == vcop_mid_channels(3, 64, (3, 7, 7))
    block = model.conv3.block1
    assert block.conv1.spatial_conv.out_channels == math.floor(27 * 64 * 128 / (9 * 64 + 3 * 128))
    # the 1x1x1 shortcut is factorised too: floor(64*128 / (64 + 128)) = 42
    assert block.downsampleconv.spatial_conv.weight.shape == (42, 64, 1, 1, 1)
    assert block.downsampleconv.temporal_conv.weight.shape == (128, 42, 1, 1, 1)
    # at a reduced width the formula runs on the scaled channels (16 -> 32 at width 0.25)
    narrow = build_backbone("r21d", width=0.25).conv3.block1
    assert narrow.conv1.spatial_conv.out_channels == (27 * 16 * 32) // (9 * 16 + 3 * 32)


def test_vcop_key_names():
    r3d_keys = set(build_backbone("r3d", width=0.125).state_dict())
    assert {
        "conv1.temporal_spatial_conv.weight",
        "bn1.running_var",
        "conv2.block1.conv1.temporal_spatial_conv.weight",
        "conv3.block1.downsampleconv.temporal_spatial_conv.weight",
        "conv5.block1.downsamplebn.weight",
        "conv5.block1.bn2.bias",
    } <= r3d_keys
    r21d_keys = set(build_backbone("r21d", width=0.125).state_dict())
    assert {
        "conv1.spatial_conv.weight",
        "conv1.bn.running_mean",
        "conv1.temporal_conv.weight",
        "conv4.block1.downsampleconv.spatial_conv.weight",
        "conv4.block1.downsamplebn.weight",
    } <= r21d_keys
    c3d_keys = set(build_backbone("c3d", width=0.125).state_dict())
    assert {"conv1.weight", "conv1.bias", "bn3a.weight", "conv5b.weight", "bn5b.running_mean"} <= c3d_keys
    assert not any(k.startswith(("fc6", "fc7", "fc8")) for k in c3d_keys)


def _bn_keys(prefix: str) -> list[str]:
    return [f"{prefix}.{s}" for s in ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")]


def _torchvision_keys(name: str, with_fc: bool) -> set[str]:
    """The state_dict keys torchvision's VideoResNet([2, 2, 2, 2]) has, written out from its structure."""
    factorised = name == "r2plus1d_18"
    if factorised:  # R2Plus1dStem: conv, BN, ReLU, conv, BN, ReLU
        keys = ["stem.0.weight", *_bn_keys("stem.1"), "stem.3.weight", *_bn_keys("stem.4")]
    else:  # BasicStem: conv, BN, ReLU
        keys = ["stem.0.weight", *_bn_keys("stem.1")]
    for layer in range(1, 5):
        for block in range(2):
            prefix = f"layer{layer}.{block}"
            for conv in ("conv1", "conv2"):
                if factorised:  # Sequential(Conv2Plus1D(conv, BN, ReLU, conv), BN[, ReLU])
                    keys += [f"{prefix}.{conv}.0.0.weight", *_bn_keys(f"{prefix}.{conv}.0.1")]
                    keys.append(f"{prefix}.{conv}.0.3.weight")
                else:
                    keys.append(f"{prefix}.{conv}.0.weight")
                keys += _bn_keys(f"{prefix}.{conv}.1")
            if layer > 1 and block == 0:
                keys += [f"{prefix}.downsample.0.weight", *_bn_keys(f"{prefix}.downsample.1")]
    if with_fc:
        keys += ["fc.weight", "fc.bias"]
    return set(keys)


@pytest.mark.parametrize("name", TORCHVISION)
def test_torchvision_state_dict_keys(name):
    with_fc = build_backbone(name, width=0.125, num_classes=400)
    assert set(with_fc.state_dict()) == _torchvision_keys(name, with_fc=True)
    without_fc = build_backbone(name, width=0.125, num_classes=0)
    assert set(without_fc.state_dict()) == _torchvision_keys(name, with_fc=False)
    assert without_fc.fc is None


def test_torchvision_weight_shapes():
    r3d = build_backbone("r3d_18", num_classes=400).state_dict()
    assert r3d["stem.0.weight"].shape == (64, 3, 3, 7, 7)
    assert r3d["layer2.0.conv1.0.weight"].shape == (128, 64, 3, 3, 3)
    assert r3d["layer2.0.downsample.0.weight"].shape == (128, 64, 1, 1, 1)
    assert r3d["fc.weight"].shape == (400, 512)
    mc3 = build_backbone("mc3_18").state_dict()
    assert mc3["layer1.0.conv1.0.weight"].shape == (64, 64, 3, 3, 3)
    assert mc3["layer3.1.conv2.0.weight"].shape == (256, 256, 1, 3, 3)
    r21 = build_backbone("r2plus1d_18").state_dict()
    assert r21["stem.0.weight"].shape == (45, 3, 1, 7, 7)
    assert r21["stem.3.weight"].shape == (64, 45, 3, 1, 1)
    # torchvision's midplanes (64*128*27)//(64*9 + 3*128) = 230 is used by both convs of the block
    assert r21["layer2.0.conv1.0.0.weight"].shape == (230, 64, 1, 3, 3)
    assert r21["layer2.0.conv1.0.3.weight"].shape == (128, 230, 3, 1, 1)
    assert r21["layer2.0.conv2.0.0.weight"].shape == (230, 128, 1, 3, 3)


def test_mc3_downsamples_only_in_space():
    model = build_backbone("mc3_18", width=0.125, num_classes=0)
    assert model.layer2[0].downsample[0].stride == (1, 2, 2)
    assert model.layer2[0].conv1[0].stride == (1, 2, 2)
    assert build_backbone("r3d_18", width=0.125).layer2[0].downsample[0].stride == (2, 2, 2)


@pytest.mark.parametrize("name", TORCHVISION)
def test_classify_applies_the_fc_and_forward_does_not(name):
    model = build_backbone(name, width=0.125, num_classes=10).eval()
    clips = torch.randn(2, 3, 8, 32, 32)
    with torch.no_grad():
        assert model(clips).shape == (2, 64)
        logits = model.classify(clips)
        assert logits.shape == (2, 10)
        torch.testing.assert_close(logits, model.fc(model(clips)))
    with pytest.raises(ConfigError, match="num_classes=0"):
        build_backbone(name, width=0.125, num_classes=0).classify(clips)


@pytest.mark.parametrize("name", ALL)
def test_state_dict_round_trip_strict(name):
    torch.manual_seed(0)
    source = build_backbone(name, width=0.125)
    source(torch.randn(2, 3, 8, 32, 32))  # move the BN running statistics away from their init
    source.eval()
    torch.manual_seed(1)
    target = build_backbone(name, width=0.125).eval()
    clips = torch.randn(1, 3, 8, 32, 32)
    with torch.no_grad():
        assert not torch.allclose(source(clips), target(clips))
        target.load_state_dict(source.state_dict(), strict=True)
        torch.testing.assert_close(source(clips), target(clips))


@pytest.mark.parametrize("name", ALL)
def test_gradients_reach_the_first_conv(name):
    model = build_backbone(name, width=0.125)
    model(torch.randn(2, 3, 8, 32, 32)).pow(2).sum().backward()
    first_conv = next(m for m in model.modules() if isinstance(m, nn.Conv3d))
    assert first_conv.weight.grad is not None
    assert first_conv.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("name", ALL)
def test_init_kaiming_convs_and_unit_batch_norm(name):
    torch.manual_seed(0)
    model = build_backbone(name)
    for module in model.modules():
        if isinstance(module, nn.BatchNorm3d):
            assert torch.all(module.weight == 1) and torch.all(module.bias == 0)
    # a big conv's std is close to kaiming fan_out: sqrt(2 / (out_channels * kernel volume))
    conv = max((m for m in model.modules() if isinstance(m, nn.Conv3d)), key=lambda m: m.weight.numel())
    expected = math.sqrt(2.0 / (conv.out_channels * math.prod(conv.kernel_size)))
    assert conv.weight.std().item() == pytest.approx(expected, rel=0.05)


def test_unknown_backbone_name():
    with pytest.raises(ConfigError, match=r"unknown backbone 'resnet9000'; choose one of: .*r3d"):
        build_backbone("resnet9000")


def test_unknown_option_and_bad_values():
    with pytest.raises(ConfigError, match="no option 'depth'"):
        build_backbone("r3d", depth=18)
    with pytest.raises(ConfigError, match="num_classes"):
        build_backbone("c3d", num_classes=10)  # only the torchvision-style nets have a fc
    with pytest.raises(ConfigError, match="width"):
        build_backbone("r3d", width=0)
    with pytest.raises(ConfigError, match="in_channels"):
        build_backbone("r3d", in_channels=0)
    with pytest.raises(ConfigError, match="num_classes"):
        build_backbone("r3d_18", num_classes=-1)
    with pytest.raises(ConfigError, match="layer_sizes"):
        build_backbone("r3d", layer_sizes=(1, 1, 1))


def test_layer_sizes_option_adds_blocks():
    deeper = build_backbone("r3d", width=0.125, layer_sizes=(2, 2, 2, 2))
    assert len(deeper.conv3.blocks) == 1
    assert count_parameters(deeper) > count_parameters(build_backbone("r3d", width=0.125))


def test_registering_a_new_backbone_is_one_decorator(monkeypatch):
    monkeypatch.setattr(registry, "_BACKBONES", dict(registry._BACKBONES))

    @register_backbone("tiny")
    class Tiny(VideoBackbone):
        def __init__(self, width: float = 1.0, in_channels: int = 3, kernel: int = 1):
            super().__init__()
            self.arch, self.width, self.feature_dim = "tiny", width, registry.scale_channels(32, width)
            self.conv = nn.Conv3d(in_channels, self.feature_dim, kernel)

        def forward_features(self, x):
            return self.conv(x)

    assert "tiny" in list_backbones()
    model = build_backbone("tiny", width=0.5, kernel=1)
    assert model(torch.randn(2, 3, 2, 4, 4)).shape == (2, 16)
    with pytest.raises(ValueError, match="registered twice"):
        register_backbone("tiny")(Tiny)


def test_forward_refuses_a_4d_tensor():
    with pytest.raises(ValueError, match=r"\(B, C, T, H, W\)"):
        build_backbone("r3d", width=0.125)(torch.randn(3, 8, 32, 32))


def test_pretext_head():
    head = PretextHead(feature_dim=16, tuple_len=3, num_classes=5)
    assert head.fc.in_features == 48
    features = torch.randn(4, 3, 16)
    logits = head(features)
    assert logits.shape == (4, 5)
    concatenated = torch.cat([features[:, 0], features[:, 1], features[:, 2]], dim=1)
    torch.testing.assert_close(logits, head.fc(concatenated))
    with pytest.raises(ValueError, match="PretextHead expects"):
        head(torch.randn(4, 2, 16))


def test_projection_head_is_unit_length():
    head = ProjectionHead(16, 32, out_dim=8)
    assert [type(m) for m in head.mlp] == [nn.Linear, nn.ReLU, nn.Linear]
    out = head(torch.randn(5, 16) * 10)
    assert out.shape == (5, 8)
    torch.testing.assert_close(out.norm(dim=1), torch.ones(5))


def test_linear_classifier():
    head = LinearClassifier(16, 7, dropout=0.5)
    assert head(torch.randn(3, 16)).shape == (3, 7)
    head.eval()
    x = torch.randn(3, 16)
    torch.testing.assert_close(head(x), head.fc(x))  # no dropout at eval


def test_flops_of_single_layers_by_hand():
    conv = nn.Conv3d(4, 8, kernel_size=3, padding=1, bias=False)
    # output 8 x (2 x 5 x 5) elements, each 4 * 27 MACs
    assert count_macs(conv, (4, 2, 5, 5)) == 8 * 2 * 5 * 5 * 4 * 27
    assert count_flops(conv, (3, 4, 2, 5, 5)) == 2 * 3 * 8 * 2 * 5 * 5 * 4 * 27
    stack = nn.Sequential(nn.BatchNorm1d(6), nn.Linear(6, 10))
    assert count_macs(stack, (2, 6)) == 2 * 6 + 2 * 6 * 10


def test_r3d_costs_about_40_gflop_per_clip_and_counting_leaves_the_model_alone():
    model = build_backbone("r3d")
    flops = count_flops(model, (3, 16, 112, 112))
    assert 38e9 < flops < 42e9  # DESIGN.md: R3D(1,1,1,1) ~40 GFLOP per 16x112x112 clip
    assert count_flops(model, (2, 3, 16, 112, 112)) == 2 * flops
    assert next(model.parameters()).device.type == "cpu"
    assert not model._forward_hooks and not model.conv1.temporal_spatial_conv._forward_hooks
    # a quarter width costs about 1/16
    quarter = count_flops(build_backbone("r3d", width=0.25), (3, 16, 112, 112))
    assert flops / 20 < quarter < flops / 10


# --- weight_init: kaiming (vidkd's default) | torch_default (the reference's) ------------------------------


def _build(name: str, seed: int = 0, **kw) -> VideoBackbone:
    torch.manual_seed(seed)
    return build_backbone(name, width=0.125, **({"num_classes": 10} if name in TORCHVISION else {}), **kw)


def _same(a: nn.Module, b: nn.Module) -> bool:
    a, b = a.state_dict(), b.state_dict()
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("name", ALL)
def test_torch_default_init_is_the_raw_layers_and_kaiming_is_unchanged(name, monkeypatch):
    kaiming, default = _build(name), _build(name, weight_init="torch_default")
    assert _same(_build(name, weight_init="kaiming"), kaiming)
    with monkeypatch.context() as patch:  # the layers as their constructors made them, same seed
        patch.setattr(VideoBackbone, "init_weights", lambda self: None)
        raw = _build(name)
    assert _same(default, raw)
    # kaiming = those raw layers, then init_weights: the same RNG stream, consumed in the same order
    VideoBackbone.init_weights(raw)
    assert _same(raw, kaiming)

    for module in default.modules():
        if isinstance(module, nn.Conv3d):  # PyTorch: U(-1/sqrt(fan_in), 1/sqrt(fan_in)); Kaiming would be normal
            assert module.weight.abs().max() <= 1 / math.sqrt(module.weight[0].numel()) + 1e-7
            if module.bias is not None:
                assert module.bias.abs().min() > 0
    if name in TORCHVISION:  # torchvision's (and vidkd's kaiming) fc is N(0, 0.01) with a zero bias
        assert default.fc.bias.abs().min() > 0 and not kaiming.fc.bias.any()


def test_kaiming_init_is_fan_out_normal_with_zero_bias():
    torch.manual_seed(0)
    conv = build_backbone("c3d", width=1.0).conv3a  # 128 -> 256, 3x3x3
    fan_out = conv.out_channels * 27
    assert conv.weight.std().item() == pytest.approx(math.sqrt(2.0 / fan_out), rel=0.02)
    assert not conv.bias.any()


def test_weight_init_is_checked_and_init_weights_still_works_afterwards():
    with pytest.raises(ConfigError, match="weight_init"):
        build_backbone("r3d", width=0.125, weight_init="xavier")
    net = build_backbone("c3d", width=0.125, weight_init="torch_default")
    assert net.conv1.bias.abs().min() > 0
    net.init_weights()  # outside build_backbone the method re-initialises as before
    assert not net.conv1.bias.any()
    assert not build_backbone("c3d", width=0.125).conv1.bias.any()
