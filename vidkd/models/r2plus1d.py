"""R(2+1)D: VCOP/PCL's `R2Plus1DNet` ("r21d") and torchvision's `r2plus1d_18`.

Every t x k x k conv is factorised into a spatial (1,k,k) conv -> BN -> ReLU -> temporal (t,1,1)
conv. The two references pick the mid-channels differently:

- VCOP: per conv, M = floor(t*k*k*Cin*Cout / (k*k*Cin + t*Cout)); the stem (3x7x7) and the 1x1x1
  downsample shortcuts are factorised too. 14,365,303 parameters with layer_sizes (1,1,1,1).
- torchvision: M = (Cin*Cout*27) // (Cin*9 + 3*Cout) once per block (used by both of its convs);
  the stem is a fixed 3->45 (1,7,7) then 45->64 (3,1,1); shortcuts are plain 1x1x1 convs.
  31,505,325 parameters with the 400-way fc.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from vidkd.models.batchnorm import BatchNorm3d
from vidkd.models.r3d import Triple, VCOPResNet, VideoResNet
from vidkd.models.registry import register_backbone, scale_channels


def vcop_mid_channels(in_channels: int, out_channels: int, kernel: Triple) -> int:
    """Mid-channels that give the factorised conv the parameters of the full one (R(2+1)D paper, 3.5)."""
    t, kh, kw = kernel
    return (t * kh * kw * in_channels * out_channels) // (kh * kw * in_channels + t * out_channels)


class SpatioTemporalConv(nn.Module):
    """VCOP's (2+1)D conv, keys `spatial_conv`, `bn`, `temporal_conv`; BN + ReLU after it live outside."""

    def __init__(self, in_channels: int, out_channels: int, kernel: Triple, stride: Triple, padding: Triple):
        super().__init__()
        mid_channels = vcop_mid_channels(in_channels, out_channels, kernel)
        self.spatial_conv = nn.Conv3d(
            in_channels,
            mid_channels,
            kernel_size=(1, kernel[1], kernel[2]),
            stride=(1, stride[1], stride[2]),
            padding=(0, padding[1], padding[2]),
            bias=False,
        )
        self.bn = BatchNorm3d(mid_channels)
        self.relu = nn.ReLU(inplace=True)
        self.temporal_conv = nn.Conv3d(
            mid_channels,
            out_channels,
            kernel_size=(kernel[0], 1, 1),
            stride=(stride[0], 1, 1),
            padding=(padding[0], 0, 0),
            bias=False,
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.temporal_conv(self.relu(self.bn(self.spatial_conv(x))))


@register_backbone("r21d")
class R2Plus1DNet(VCOPResNet):
    """R(2+1)D as in VCOP/PCL (default one block per stage): 14,365,303 parameters at width 1."""

    def __init__(self, width: float = 1.0, in_channels: int = 3, layer_sizes: Sequence[int] = (1, 1, 1, 1)):
        super().__init__("r21d", SpatioTemporalConv, width, in_channels, layer_sizes)


class Conv2Plus1D(nn.Sequential):
    """torchvision's block conv: [(1,3,3) conv, BN, ReLU, (3,1,1) conv] with the block's midplanes."""

    def __init__(self, in_planes: int, out_planes: int, midplanes: int, stride: int = 1):
        super().__init__(
            nn.Conv3d(
                in_planes, midplanes, (1, 3, 3), stride=(1, stride, stride), padding=(0, 1, 1), bias=False
            ),
            BatchNorm3d(midplanes),
            nn.ReLU(inplace=True),
            nn.Conv3d(midplanes, out_planes, (3, 1, 1), stride=(stride, 1, 1), padding=(1, 0, 0), bias=False),
        )

    @staticmethod
    def downsample_stride(stride: int) -> Triple:
        return (stride, stride, stride)


def r2plus1d_stem(in_channels: int, mid_channels: int, out_channels: int) -> nn.Sequential:
    """torchvision's `R2Plus1dStem`: (1,7,7) conv stride (1,2,2), BN, ReLU, (3,1,1) conv, BN, ReLU."""
    return nn.Sequential(
        nn.Conv3d(in_channels, mid_channels, (1, 7, 7), stride=(1, 2, 2), padding=(0, 3, 3), bias=False),
        BatchNorm3d(mid_channels),
        nn.ReLU(inplace=True),
        nn.Conv3d(mid_channels, out_channels, (3, 1, 1), stride=(1, 1, 1), padding=(1, 0, 0), bias=False),
        BatchNorm3d(out_channels),
        nn.ReLU(inplace=True),
    )


@register_backbone("r2plus1d_18")
def r2plus1d_18(width: float = 1.0, in_channels: int = 3, num_classes: int = 0) -> VideoResNet:
    """torchvision `r2plus1d_18`: 31,505,325 parameters with the 400-way fc."""
    stem = r2plus1d_stem(in_channels, scale_channels(45, width), scale_channels(64, width))
    return VideoResNet("r2plus1d_18", stem, [Conv2Plus1D] * 4, width, num_classes=num_classes)
