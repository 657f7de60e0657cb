"""Video backbones (C3D, R3D, R(2+1)D and torchvision's 18-layer ResNets), heads, FLOP counting.

Importing this package registers the built-in backbones; `build_backbone(name, ...)` builds one.
"""

from vidkd.models import c3d, r2plus1d, r3d  # noqa: F401  (registers the built-in backbones)
from vidkd.models.flops import count_flops, count_macs, count_parameters
from vidkd.models.heads import LinearClassifier, PretextHead, ProjectionHead
from vidkd.models.registry import VideoBackbone, build_backbone, list_backbones, register_backbone

__all__ = [
    "LinearClassifier",
    "PretextHead",
    "ProjectionHead",
    "VideoBackbone",
    "build_backbone",
    "count_flops",
    "count_macs",
    "count_parameters",
    "list_backbones",
    "register_backbone",
]
