"""Synchronised BatchNorm that also runs on CPU (gloo).

`torch.nn.SyncBatchNorm` refuses CPU tensors, so multi-process CPU runs (and the tests that
check 2 ranks x batch b == 1 rank x batch 2b) need their own. Batch statistics are summed
across ranks with a differentiable all-reduce, so gradients see the global batch too.
On CUDA the stock implementation is used.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.distributed.nn.functional as dist_fn
import torch.nn as nn


class CPUSyncBatchNorm(nn.modules.batchnorm._BatchNorm):
    def _check_input_dim(self, input: torch.Tensor) -> None:
        if input.dim() < 2:
            raise ValueError(f"expected at least 2D input (got {input.dim()}D input)")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        synced = self.training and dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1
        if not synced:
            return super().forward(x)
        dims = [0] + list(range(2, x.dim()))
        channels = x.shape[1]
        shape = [1, channels] + [1] * (x.dim() - 2)
        # two passes (mean, then squared deviations), like the single-process kernel, so that
        # 2 ranks x batch b match 1 rank x batch 2b to float rounding
        count = torch.tensor([x.numel() / channels], dtype=x.dtype, device=x.device)
        first = dist_fn.all_reduce(torch.cat([x.sum(dims), count]), op=dist.ReduceOp.SUM)
        total = first[-1]
        mean = first[:channels] / total
        centred = x - mean.view(shape)
        var = dist_fn.all_reduce((centred * centred).sum(dims), op=dist.ReduceOp.SUM) / total
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                unbiased = var * total / (total - 1).clamp(min=1)
                self.running_mean.mul_(1 - self.momentum).add_(self.momentum * mean)
                self.running_var.mul_(1 - self.momentum).add_(self.momentum * unbiased)
        out = centred * torch.rsqrt(var.view(shape) + self.eps)
        if self.affine:
            out = out * self.weight.view(shape) + self.bias.view(shape)
        return out


def convert_sync_batchnorm(module: nn.Module, device_type: str) -> nn.Module:
    """Swap every BatchNorm for a synchronised one (stock on CUDA, ours elsewhere)."""
    if device_type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(module)
    if isinstance(module, nn.modules.batchnorm._BatchNorm) and not isinstance(module, CPUSyncBatchNorm):
        synced = CPUSyncBatchNorm(module.num_features, module.eps, module.momentum, module.affine,
                                  module.track_running_stats)
        if module.affine:
            synced.weight = module.weight
            synced.bias = module.bias
        if module.track_running_stats:
            synced.running_mean = module.running_mean
            synced.running_var = module.running_var
            synced.num_batches_tracked = module.num_batches_tracked
        return synced
    for name, child in module.named_children():
        module.add_module(name, convert_sync_batchnorm(child, device_type))
    return module


__all__ = ["CPUSyncBatchNorm", "convert_sync_batchnorm"]
