"""C3D with BatchNorm, as the self-supervised video literature uses it (VCOP, PCL).

Eight 3x3x3 convs (64 | 128 | 256,256 | 512,512 | 512,512), each with BN + ReLU; max pools
(1,2,2) after conv1 and (2,2,2) after conv2, conv3b and conv4b; then the global average pool
(VCOP's `pool5 = AdaptiveAvgPool3d(1)`), no fc6/fc7. 27,661,440 parameters at width 1.
Its five stages (`forward_intermediates`) are the conv blocks, each ending after its max pool:
conv1+pool1, conv2+pool2, conv3a-b+pool3, conv4a-b+pool4, conv5a-b (no stem).
Module names follow VCOP (`conv1`, `bn1`, ..., `conv5b`, `bn5b`) so its state_dicts load as is.
"""

from __future__ import annotations

import torch
from torch import nn

from vidkd.models.batchnorm import BatchNorm3d
from vidkd.models.registry import VideoBackbone, register_backbone, scale_channels

# (layer suffix, output channels, max-pool kernel applied after it or None)
C3D_LAYERS: list[tuple[str, int, tuple[int, int, int] | None]] = [
    ("1", 64, (1, 2, 2)),  # keep time resolution early, as C3D does
    ("2", 128, (2, 2, 2)),
    ("3a", 256, None),
    ("3b", 256, (2, 2, 2)),
    ("4a", 512, None),
    ("4b", 512, (2, 2, 2)),
    ("5a", 512, None),
    ("5b", 512, None),
]


@register_backbone("c3d")
class C3D(VideoBackbone):
    """C3D backbone. Input (B, C, T, H, W) with T >= 8 and H, W >= 16; output (B, feature_dim)."""

    def __init__(self, width: float = 1.0, in_channels: int = 3) -> None:
        super().__init__()
        self.arch = "c3d"
        self.width = width
        channels = in_channels
        # Registered in forward order, so forward_features just runs the children in turn.
        for suffix, out_channels, pool in C3D_LAYERS:
            out_channels = scale_channels(out_channels, width)
            self.add_module(f"conv{suffix}", nn.Conv3d(channels, out_channels, kernel_size=3, padding=1))
            self.add_module(f"bn{suffix}", BatchNorm3d(out_channels))
            self.add_module(f"relu{suffix}", nn.ReLU(inplace=True))
            if pool is not None:
                self.add_module(f"pool{suffix[0]}", nn.MaxPool3d(kernel_size=pool, stride=pool))
            channels = out_channels
        self.feature_dim = channels
        self.init_weights()

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.children():
            x = layer(x)
        return x

    def feature_stages(self) -> tuple[list[nn.Module], list[list[nn.Module]]]:
        """No stem; five stages, the conv blocks 1, 2, 3, 4 (each up to its max pool) and 5."""
        stages: list[list[nn.Module]] = [[]]
        for name, layer in self.named_children():
            stages[-1].append(layer)
            if name.startswith("pool"):
                stages.append([])
        return [], stages
