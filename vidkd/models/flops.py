"""Parameter and FLOP counts by forward hooks (no external package).

Convention: one multiply-accumulate (MAC) = 2 FLOPs. Counted layers: convolutions
(out_elements x Cin/groups x kernel volume MACs; bias ignored), linear layers
(out_elements x in_features) and batch norm (one MAC per element, its inference-time
scale-and-shift). ReLU, pooling and additions are not counted (they are a few percent at most).
The forward runs on PyTorch's "meta" device on a copy of the model, so counting the FLOPs of a
full-size network costs no compute and leaves the model untouched.
"""

from __future__ import annotations

import copy
import math
from typing import Sequence

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.modules.conv import _ConvNd


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters (all of them, or only those with requires_grad)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def count_macs(model: nn.Module, input_shape: Sequence[int]) -> int:
    """Multiply-accumulates of one `model(x)` call for `x` of `input_shape`.

    `input_shape` is (C, T, H, W) for one clip, or (B, C, T, H, W) for a batch of B; a shape of any
    other rank is used as given (e.g. (B, features) for a head).
    """
    shape = tuple(int(s) for s in input_shape)
    if len(shape) == 4:
        shape = (1, *shape)
    meta_model = copy.deepcopy(model).to("meta").eval()
    total = 0

    def on_conv(module: _ConvNd, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        nonlocal total
        total += output.numel() * (module.in_channels // module.groups) * math.prod(module.kernel_size)

    def on_linear(module: nn.Linear, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        nonlocal total
        total += output.numel() * module.in_features

    def on_norm(module: _BatchNorm, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        nonlocal total
        total += output.numel()

    for module in meta_model.modules():
        if isinstance(module, _ConvNd):
            module.register_forward_hook(on_conv)
        elif isinstance(module, nn.Linear):
            module.register_forward_hook(on_linear)
        elif isinstance(module, _BatchNorm):
            module.register_forward_hook(on_norm)
    with torch.no_grad():
        meta_model(torch.empty(shape, device="meta"))
    return total


def count_flops(model: nn.Module, input_shape: Sequence[int]) -> int:
    """FLOPs (= 2 x MACs) of one `model(x)` call; see `count_macs`."""
    return 2 * count_macs(model, input_shape)
