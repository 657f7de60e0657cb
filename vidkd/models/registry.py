"""The backbone registry and what every backbone shares.

A backbone is a `VideoBackbone`: it maps a clip batch `(B, C, T, H, W)` to its last feature map
and pools it globally. Registering one is a decorator line on its builder:

    @register_backbone("my_net")
    class MyNet(VideoBackbone): ...

`build_backbone("my_net", width=0.5)` then builds it, with typed errors for a wrong name or option.
"""

from __future__ import annotations

import contextvars
import inspect
from typing import Any, Callable, Sequence, TypeVar

import torch
from torch import nn

from vidkd.errors import ConfigError

BackboneBuilder = Callable[..., "VideoBackbone"]
_Builder = TypeVar("_Builder", bound=Callable[..., Any])

_BACKBONES: dict[str, BackboneBuilder] = {}

WEIGHT_INITS = ("kaiming", "torch_default")
# set by `build_backbone(..., weight_init="torch_default")` while the builder runs: `init_weights` then
# leaves every layer as its constructor made it
_SKIP_INIT: contextvars.ContextVar[bool] = contextvars.ContextVar("vidkd_skip_backbone_init", default=False)


def register_backbone(name: str) -> Callable[[_Builder], _Builder]:
    """Class/function decorator: make `build_backbone(name, ...)` call the decorated builder.

    The builder takes `width` and `in_channels` (and any options of its own as keyword arguments)
    and returns a `VideoBackbone`.
    """

    def decorator(builder: _Builder) -> _Builder:
        if name in _BACKBONES:
            raise ValueError(f"backbone {name!r} is registered twice")
        _BACKBONES[name] = builder
        return builder

    return decorator


def list_backbones() -> list[str]:
    """Names accepted by `build_backbone`, sorted."""
    return sorted(_BACKBONES)


def build_backbone(
    name: str, width: float = 1.0, in_channels: int = 3, weight_init: str = "kaiming", **kw: Any
) -> "VideoBackbone":
    """Build the backbone registered as `name`.

    Args:
        name: one of `list_backbones()` (c3d, r3d, r21d, r3d_18, mc3_18, r2plus1d_18).
        width: channel multiplier; every channel count c becomes max(8, round(c * width)).
        in_channels: input channels (3 for RGB and for the RGB frame-difference "residual").
        weight_init: "kaiming" (`VideoBackbone.init_weights`, what the builders run) or
            "torch_default" (that re-initialisation skipped: every layer keeps PyTorch's own
            initialisation, as the reference PCL/VCOP networks, which never call theirs).
        **kw: options of that backbone (e.g. `num_classes` for the torchvision-style ones).

    Raises:
        ConfigError: unknown name, unknown option or weight_init, or a non-positive width / channel count.
    """
    if weight_init not in WEIGHT_INITS:
        raise ConfigError(f"unknown weight_init {weight_init!r}; choose one of: {', '.join(WEIGHT_INITS)}")
    if name not in _BACKBONES:
        raise ConfigError(f"unknown backbone {name!r}; choose one of: {', '.join(list_backbones())}")
    if not width > 0:
        raise ConfigError(f"backbone width must be positive; got {width}")
    if int(in_channels) != in_channels or in_channels < 1:
        raise ConfigError(f"backbone in_channels must be a positive integer; got {in_channels}")
    builder = _BACKBONES[name]
    options = [p for p in inspect.signature(builder).parameters if p not in ("width", "in_channels")]
    unknown = sorted(set(kw) - set(options))
    if unknown:
        accepted = ", ".join(options) if options else "none besides width and in_channels"
        raise ConfigError(
            f"backbone {name!r} has no option {', '.join(map(repr, unknown))}; its options: {accepted}"
        )
    token = _SKIP_INIT.set(weight_init == "torch_default")
    try:
        return builder(width=float(width), in_channels=int(in_channels), **kw)
    finally:
        _SKIP_INIT.reset(token)


def resolve_stage(index: int, num_stages: int, arch: str = "the backbone") -> int:
    """A stage index (negative counts from the last) as 0..num_stages-1; ValueError out of range."""
    if isinstance(index, bool) or not isinstance(index, int) or not -num_stages <= index < num_stages:
        raise ValueError(f"stage index {index!r} is out of range: {arch} has {num_stages} stages "
                         f"(0..{num_stages - 1}, or -{num_stages}..-1 from the last)")
    return index % num_stages


def scale_channels(channels: int, width: float) -> int:
    """Channel count under a width multiplier (never below 8, so BN statistics stay sane)."""
    return max(8, int(round(channels * width)))


class VideoBackbone(nn.Module):
    """Base class: subclasses build their layers and implement `forward_features`.

    Attributes:
        arch: the registry name.
        width: the channel multiplier it was built with.
        feature_dim: channels of the last stage = size of the pooled feature.
    """

    arch: str
    width: float
    feature_dim: int

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, T, H, W) -> last feature map (B, feature_dim, T', H', W')."""
        raise NotImplementedError

    def feature_stages(self) -> tuple[list[nn.Module], list[list[nn.Module]]]:
        """The modules of `forward_features` in order, as (stem, [stage 1, ..., stage n]): running the stem
        and then every stage gives exactly the last feature map. What a stage is, is the backbone's to say
        (the residual stages of a ResNet, the conv blocks of C3D)."""
        raise NotImplementedError(f"{self.arch} does not say what its stages are (feature_stages)")

    @property
    def num_stages(self) -> int:
        return len(self.feature_stages()[1])

    def forward_intermediates(
        self, x: torch.Tensor, indices: Sequence[int] = (-3, -2, -1)
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Pooled feature (B, feature_dim), bit-identical to `forward`, and the output maps
        (B, C_i, T_i, H_i, W_i) of the stages `indices` names (0-based, negative from the last; in the
        order given). The plain `forward` never runs this."""
        if x.dim() != 5:
            raise ValueError(f"{self.arch} expects a (B, C, T, H, W) clip batch; got shape {tuple(x.shape)}")
        stem, stages = self.feature_stages()
        wanted = [resolve_stage(index, len(stages), self.arch) for index in indices]
        for module in stem:
            x = module(x)
        outputs = []
        for stage in stages:
            for module in stage:
                x = module(x)
            outputs.append(x)
        return x.mean(dim=(2, 3, 4)), [outputs[i] for i in wanted]

    def forward(
        self, x: torch.Tensor, return_map: bool = False
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Pooled feature (B, feature_dim); with `return_map=True` also the last feature map."""
        if x.dim() != 5:
            raise ValueError(f"{self.arch} expects a (B, C, T, H, W) clip batch; got shape {tuple(x.shape)}")
        feature_map = self.forward_features(x)
        pooled = feature_map.mean(dim=(2, 3, 4))  # global average pool (AdaptiveAvgPool3d(1))
        if return_map:
            return pooled, feature_map
        return pooled

    def init_weights(self) -> None:
        """torchvision's VideoResNet initialisation: every Conv3d weight Kaiming-normal (fan_out, ReLU gain:
        N(0, 2 / (out_channels * kernel volume))) and its bias 0; BatchNorm weight 1 / bias 0; Linear
        (the torchvision nets' `fc`) weight N(0, 0.01^2), bias 0.

        Builders call it at the end of `__init__`; inside `build_backbone(..., weight_init="torch_default")`
        it does nothing (the layers keep PyTorch's defaults).
        """
        if _SKIP_INIT.get():
            return
        for module in self.modules():
            if isinstance(module, nn.Conv3d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.BatchNorm3d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
            elif isinstance(module, nn.Linear):
                nn.init.normal_(module.weight, 0.0, 0.01)
                nn.init.zeros_(module.bias)

    def extra_repr(self) -> str:
        return f"arch={self.arch!r}, width={self.width}, feature_dim={self.feature_dim}"
