"""BatchNorm3d with a faster CPU path for channels-last inputs whose channel count is not a
multiple of 16.

PyTorch's CPU batch-norm kernel for channels-last tensors vectorises over the channels, one row
(one voxel) at a time; with C = 36 (R(2+1)D x0.25's mid-channels) a row is two vectors and a
scalar tail, and forward and backward run 2.5-3x slower per byte than with C = 32 or 48. Viewing
k consecutive rows as one row of k*C channels (free in channels-last memory; k*C a multiple of
16) gives the kernel long rows. Per-channel statistics are folded back from the k copies, so the
result is nn.BatchNorm3d's, to float rounding: same parameters, buffers, running-stat updates
and gradients (docs/benchmarks.md has the timings).
"""

from __future__ import annotations

import math

import torch
from torch import nn

VECTOR_FLOATS = 16  # float32 lanes of an AVX-512 register: rows of a multiple of this stay on the fast path


def fold_factor(x: torch.Tensor, channels: int) -> int:
    """k for the folded view of `x`, or 1 where the stock kernel is used (not a channels-last CPU
    5-D tensor, channels already a multiple of 16, or voxels not divisible by k)."""
    if (x.dim() != 5 or x.device.type != "cpu" or channels % VECTOR_FLOATS == 0
            or not x.is_contiguous(memory_format=torch.channels_last_3d)):
        return 1
    k = VECTOR_FLOATS // math.gcd(channels, VECTOR_FLOATS)
    return k if (x.numel() // channels) % k == 0 else 1


def _fold(x: torch.Tensor, k: int) -> torch.Tensor:
    """(N, C, T, H, W) channels-last -> (N*T*H*W / k, k*C, 1, 1) channels-last, sharing memory."""
    channels = x.shape[1]
    return x.permute(0, 2, 3, 4, 1).reshape(-1, 1, 1, k * channels).permute(0, 3, 1, 2)


def _affine(x: torch.Tensor, k: int, mean: torch.Tensor, var: torch.Tensor, weight: torch.Tensor,
            bias: torch.Tensor, eps: float) -> torch.Tensor:
    """(x - mean) / sqrt(var + eps) * weight + bias per channel, computed on the folded view (the
    kernel's eval mode) into a new tensor laid out as `x`."""
    out = torch.empty_like(x, memory_format=torch.channels_last_3d)
    torch.ops.aten.native_batch_norm.out(
        _fold(x, k), weight.repeat(k), bias.repeat(k), mean.repeat(k), var.repeat(k), False, 0.0, eps,
        out=_fold(out, k), save_mean=x.new_empty(0), save_invstd=x.new_empty(0))
    return out


class _FoldedTrainingNorm(torch.autograd.Function):
    """Training-mode batch norm through the folded view; returns (y, batch mean, biased batch
    variance). Inputs and outputs are whole (N, C, T, H, W) tensors, so in-place ops after it
    (ReLU) are ordinary ones."""

    @staticmethod
    def forward(ctx, x, weight, bias, k, eps):
        channels = x.shape[1]
        # per-column statistics (the kernel's output is not used), combined per channel: the k
        # columns of a channel hold equally many values
        _, column_mean, column_invstd = torch.native_batch_norm(_fold(x, k), None, None, None, None, True, 0.0, eps)
        column_mean = column_mean.view(k, channels)
        column_var = (column_invstd.pow(-2) - eps).view(k, channels)
        mean = column_mean.mean(0)
        var = column_var.mean(0) + (column_mean - mean).pow(2).mean(0)
        ctx.save_for_backward(x, weight, mean, var)
        ctx.k, ctx.eps = k, eps
        ctx.mark_non_differentiable(mean, var)
        return _affine(x, k, mean, var, weight, bias, eps), mean, var

    @staticmethod
    def backward(ctx, grad_y, _grad_mean, _grad_var):
        x, weight, mean, var = ctx.saved_tensors
        k, eps = ctx.k, ctx.eps
        channels = x.shape[1]
        count = x.numel() // channels
        grad_y = grad_y.contiguous(memory_format=torch.channels_last_3d)
        # eval-mode backward: dy * weight * invstd, and per column sum(dy * xhat) and sum(dy)
        grad_x = torch.empty_like(x, memory_format=torch.channels_last_3d)
        column_grad_weight, column_grad_bias = weight.new_empty(k * channels), weight.new_empty(k * channels)
        torch.ops.aten.native_batch_norm_backward.out(
            _fold(grad_y, k), _fold(x, k), weight.repeat(k), mean.repeat(k), var.repeat(k), None, None, False, eps,
            [True, True, True], out0=_fold(grad_x, k), out1=column_grad_weight, out2=column_grad_bias)
        grad_weight = column_grad_weight.view(k, channels).sum(0)
        grad_bias = column_grad_bias.view(k, channels).sum(0)
        # training mode also subtracts weight * invstd * (sum(dy) + xhat * sum(dy * xhat)) / count
        scale = weight * (var + eps).rsqrt() / count
        grad_x.add_(_affine(x, k, mean, var, -scale * grad_weight, -scale * grad_bias, eps))
        return grad_x, grad_weight, grad_bias, None, None


class BatchNorm3d(nn.BatchNorm3d):
    """nn.BatchNorm3d, faster on channels-last CPU inputs with a channel count not a multiple of 16."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        k = fold_factor(x, self.num_features)
        if k == 1 or not self.affine or not self.track_running_stats or self.momentum is None:
            return super().forward(x)
        if not self.training:  # (fold_factor > 1 implies a 5-D input, what _check_input_dim asks)
            if torch.is_grad_enabled() and (x.requires_grad or self.weight.requires_grad):
                return super().forward(x)  # frozen statistics but gradients wanted: the stock op has them
            return _affine(x, k, self.running_mean, self.running_var, self.weight, self.bias, self.eps)
        y, mean, var = _FoldedTrainingNorm.apply(x, self.weight, self.bias, k, self.eps)
        with torch.no_grad():  # as the stock kernel: the running variance is the unbiased one
            count = x.numel() // self.num_features
            self.num_batches_tracked.add_(1)
            self.running_mean.lerp_(mean, self.momentum)
            self.running_var.lerp_(var * count / max(count - 1, 1), self.momentum)
        return y


__all__ = ["BatchNorm3d", "fold_factor"]
