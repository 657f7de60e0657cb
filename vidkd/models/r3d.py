"""3D ResNets: VCOP/PCL's `R3DNet` ("r3d") and torchvision's 18-layer `r3d_18` / `mc3_18`.

Two families share this file because they share the residual layout; they differ in naming
(each keeps its reference `state_dict` keys so published weights load with strict=True):

- VCOP style (`conv1`, `bn1`, `conv2.block1.conv1.temporal_spatial_conv.weight`, ...):
  stem 3x7x7 stride (1,2,2), then four stages (64/128/256/512) of `layer_sizes` basic blocks;
  stages 2-4 downsample with stride 2 and a 1x1x1 stride-2 conv + BN shortcut.
  R3D with layer_sizes (1,1,1,1): 14,361,792 parameters. `r2plus1d.py` reuses this skeleton.
- torchvision style (`stem.0.weight`, `layer1.0.conv1.0.weight`, `layer2.0.downsample.0.weight`,
  `fc.weight`): `VideoResNet` with [2,2,2,2] blocks. r3d_18 33,371,472 and mc3_18 11,695,440
  parameters with the 400-way fc.
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch
from torch import nn

from vidkd.errors import ConfigError
from vidkd.models.batchnorm import BatchNorm3d
from vidkd.models.registry import VideoBackbone, register_backbone, scale_channels

Triple = tuple[int, int, int]

STAGE_CHANNELS = (64, 128, 256, 512)


# --------------------------------------------------------------------------------------------
# VCOP / PCL style
# --------------------------------------------------------------------------------------------

# (in_channels, out_channels, kernel, stride, padding) -> a module acting like one Conv3d
VCOPConvBuilder = Callable[[int, int, Triple, Triple, Triple], nn.Module]


class FullConv3d(nn.Module):
    """VCOP's R3D `SpatioTemporalConv`: one plain t x k x k conv (no bias; BN follows outside).

    The wrapper exists only to keep VCOP's key names (`...temporal_spatial_conv.weight`).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel: Triple, stride: Triple, padding: Triple):
        super().__init__()
        self.temporal_spatial_conv = nn.Conv3d(
            in_channels, out_channels, kernel, stride=stride, padding=padding, bias=False
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.temporal_spatial_conv(x)


class VCOPResBlock(nn.Module):
    """conv-BN-ReLU-conv-BN plus shortcut, then ReLU; `downsample` halves T, H and W."""

    def __init__(self, in_channels: int, out_channels: int, conv: VCOPConvBuilder, downsample: bool = False):
        super().__init__()
        self.downsample = downsample
        stride = (2, 2, 2) if downsample else (1, 1, 1)
        if downsample:
            self.downsampleconv = conv(in_channels, out_channels, (1, 1, 1), (2, 2, 2), (0, 0, 0))
            self.downsamplebn = BatchNorm3d(out_channels)
        self.conv1 = conv(in_channels, out_channels, (3, 3, 3), stride, (1, 1, 1))
        self.bn1 = BatchNorm3d(out_channels)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv2 = conv(out_channels, out_channels, (3, 3, 3), (1, 1, 1), (1, 1, 1))
        self.bn2 = BatchNorm3d(out_channels)
        self.outrelu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        residual = self.relu1(self.bn1(self.conv1(x)))
        residual = self.bn2(self.conv2(residual))
        shortcut = self.downsamplebn(self.downsampleconv(x)) if self.downsample else x
        return self.outrelu(shortcut + residual)


class VCOPResLayer(nn.Module):
    """One stage: `block1` (maybe downsampling) then `blocks` (layer_size - 1 more)."""

    def __init__(
        self, in_channels: int, out_channels: int, conv: VCOPConvBuilder, layer_size: int, downsample: bool
    ) -> None:
        super().__init__()
        self.block1 = VCOPResBlock(in_channels, out_channels, conv, downsample)
        self.blocks = nn.ModuleList(
            VCOPResBlock(out_channels, out_channels, conv) for _ in range(layer_size - 1)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.block1(x)
        for block in self.blocks:
            x = block(x)
        return x


class VCOPResNet(VideoBackbone):
    """VCOP's R3DNet / R2Plus1DNet skeleton; `conv` decides plain 3D or (2+1)D convolutions."""

    def __init__(
        self,
        arch: str,
        conv: VCOPConvBuilder,
        width: float = 1.0,
        in_channels: int = 3,
        layer_sizes: Sequence[int] = (1, 1, 1, 1),
    ) -> None:
        super().__init__()
        layer_sizes = _check_layer_sizes(layer_sizes)
        self.arch = arch
        self.width = width
        c1, c2, c3, c4 = (scale_channels(c, width) for c in STAGE_CHANNELS)
        self.conv1 = conv(in_channels, c1, (3, 7, 7), (1, 2, 2), (1, 3, 3))
        self.bn1 = BatchNorm3d(c1)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv2 = VCOPResLayer(c1, c1, conv, layer_sizes[0], downsample=False)
        self.conv3 = VCOPResLayer(c1, c2, conv, layer_sizes[1], downsample=True)
        self.conv4 = VCOPResLayer(c2, c3, conv, layer_sizes[2], downsample=True)
        self.conv5 = VCOPResLayer(c3, c4, conv, layer_sizes[3], downsample=True)
        self.feature_dim = c4
        self.init_weights()

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu1(self.bn1(self.conv1(x)))
        return self.conv5(self.conv4(self.conv3(self.conv2(x))))

    def feature_stages(self) -> tuple[list[nn.Module], list[list[nn.Module]]]:
        """Stem conv1-bn1-relu1; four stages, the residual layers conv2..conv5."""
        return [self.conv1, self.bn1, self.relu1], [[self.conv2], [self.conv3], [self.conv4], [self.conv5]]


@register_backbone("r3d")
class R3DNet(VCOPResNet):
    """R3D as in VCOP/PCL (default one block per stage): 14,361,792 parameters at width 1."""

    def __init__(self, width: float = 1.0, in_channels: int = 3, layer_sizes: Sequence[int] = (1, 1, 1, 1)):
        super().__init__("r3d", FullConv3d, width, in_channels, layer_sizes)


def _check_layer_sizes(layer_sizes: Sequence[int]) -> tuple[int, int, int, int]:
    sizes = tuple(layer_sizes)
    if len(sizes) != 4 or any(isinstance(n, bool) or not isinstance(n, int) or n < 1 for n in sizes):
        raise ConfigError(f"layer_sizes must be 4 positive integers (blocks per stage); got {list(sizes)}")
    return sizes  # type: ignore[return-value]


# --------------------------------------------------------------------------------------------
# torchvision style (VideoResNet)
# --------------------------------------------------------------------------------------------


class Conv3DSimple(nn.Conv3d):
    """Full 3x3x3 conv of a torchvision block (r3d_18; mc3_18's layer1)."""

    def __init__(self, in_planes: int, out_planes: int, midplanes: int | None = None, stride: int = 1):
        super().__init__(in_planes, out_planes, kernel_size=3, stride=stride, padding=1, bias=False)

    @staticmethod
    def downsample_stride(stride: int) -> Triple:
        return (stride, stride, stride)


class Conv3DNoTemporal(nn.Conv3d):
    """1x3x3 conv (mc3_18's layers 2-4): spatial only, so time is never downsampled."""

    def __init__(self, in_planes: int, out_planes: int, midplanes: int | None = None, stride: int = 1):
        super().__init__(
            in_planes,
            out_planes,
            kernel_size=(1, 3, 3),
            stride=(1, stride, stride),
            padding=(0, 1, 1),
            bias=False,
        )

    @staticmethod
    def downsample_stride(stride: int) -> Triple:
        return (1, stride, stride)


class TorchvisionBasicBlock(nn.Module):
    """torchvision's video `BasicBlock`: conv1 = [conv, BN, ReLU], conv2 = [conv, BN], shortcut."""

    def __init__(self, inplanes: int, planes: int, conv_builder: type[nn.Module], stride: int = 1):
        super().__init__()
        # torchvision computes the (2+1)D mid-channels once per block and uses it for both convs.
        midplanes = (inplanes * planes * 3 * 3 * 3) // (inplanes * 3 * 3 + 3 * planes)
        self.conv1 = nn.Sequential(
            conv_builder(inplanes, planes, midplanes, stride), BatchNorm3d(planes), nn.ReLU(inplace=True)
        )
        self.conv2 = nn.Sequential(conv_builder(planes, planes, midplanes), BatchNorm3d(planes))
        self.relu = nn.ReLU(inplace=True)
        self.downsample: nn.Module | None = None
        if stride != 1 or inplanes != planes:
            self.downsample = nn.Sequential(
                nn.Conv3d(
                    inplanes, planes, kernel_size=1, stride=conv_builder.downsample_stride(stride), bias=False
                ),
                BatchNorm3d(planes),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        return self.relu(self.conv2(self.conv1(x)) + shortcut)


def basic_stem(in_channels: int, out_channels: int) -> nn.Sequential:
    """torchvision's `BasicStem`: 3x7x7 conv stride (1,2,2), BN, ReLU."""
    return nn.Sequential(
        nn.Conv3d(in_channels, out_channels, (3, 7, 7), stride=(1, 2, 2), padding=(1, 3, 3), bias=False),
        BatchNorm3d(out_channels),
        nn.ReLU(inplace=True),
    )


class VideoResNet(VideoBackbone):
    """torchvision-compatible `VideoResNet`; same `state_dict` keys, so Kinetics weights load.

    `forward` returns the pooled feature like every backbone; `classify` adds the `fc` layer.
    """

    def __init__(
        self,
        arch: str,
        stem: nn.Module,
        conv_builders: Sequence[type[nn.Module]],
        width: float = 1.0,
        layers: Sequence[int] = (2, 2, 2, 2),
        num_classes: int = 0,
    ) -> None:
        super().__init__()
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 0:
            raise ConfigError(f"num_classes must be a non-negative integer (0 = no fc); got {num_classes}")
        self.arch = arch
        self.width = width
        self.num_classes = int(num_classes)
        self.stem = stem
        inplanes = _stem_out_channels(stem)
        for index, (channels, conv_builder, blocks) in enumerate(zip(STAGE_CHANNELS, conv_builders, layers)):
            planes = scale_channels(channels, width)
            stride = 1 if index == 0 else 2
            stage = [TorchvisionBasicBlock(inplanes, planes, conv_builder, stride)]
            stage += [TorchvisionBasicBlock(planes, planes, conv_builder) for _ in range(blocks - 1)]
            self.add_module(f"layer{index + 1}", nn.Sequential(*stage))
            inplanes = planes
        self.feature_dim = inplanes
        self.fc = nn.Linear(inplanes, self.num_classes) if self.num_classes > 0 else None
        self.init_weights()

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))

    def feature_stages(self) -> tuple[list[nn.Module], list[list[nn.Module]]]:
        """Stem `stem`; four stages, the residual layers layer1..layer4."""
        return [self.stem], [[self.layer1], [self.layer2], [self.layer3], [self.layer4]]

    def classify(self, x: torch.Tensor) -> torch.Tensor:
        """Class logits (B, num_classes) of torchvision's head on the pooled feature."""
        if self.fc is None:
            raise ConfigError(
                f"{self.arch} was built with num_classes=0, so it has no fc; build it with num_classes > 0"
            )
        return self.fc(self.forward(x))


def _stem_out_channels(stem: nn.Module) -> int:
    convs = [m for m in stem.modules() if isinstance(m, nn.Conv3d)]
    return convs[-1].out_channels


@register_backbone("r3d_18")
def r3d_18(width: float = 1.0, in_channels: int = 3, num_classes: int = 0) -> VideoResNet:
    """torchvision `r3d_18`: 3x3x3 convs everywhere; 33,371,472 parameters with the 400-way fc."""
    stem = basic_stem(in_channels, scale_channels(64, width))
    return VideoResNet("r3d_18", stem, [Conv3DSimple] * 4, width, num_classes=num_classes)


@register_backbone("mc3_18")
def mc3_18(width: float = 1.0, in_channels: int = 3, num_classes: int = 0) -> VideoResNet:
    """torchvision `mc3_18`: 3D convs in layer1, spatial-only in layers 2-4; 11,695,440 parameters."""
    stem = basic_stem(in_channels, scale_channels(64, width))
    builders = [Conv3DSimple] + [Conv3DNoTemporal] * 3
    return VideoResNet("mc3_18", stem, builders, width, num_classes=num_classes)
