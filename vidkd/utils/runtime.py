"""Seeding, device and memory-format choice, and mixed precision: the few runtime decisions every command shares."""

from __future__ import annotations

import contextlib
import random

import numpy as np
import torch

from vidkd.errors import ConfigError

AMP_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def resolve_device(want: str = "auto", local_rank: int = 0) -> torch.device:
    """`auto` takes this process's CUDA device when there is one, else the CPU."""
    if want == "cuda" or (want == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            raise ConfigError("train.device=cuda but no CUDA device is visible; use train.device=cpu")
        return torch.device("cuda", local_rank)
    return torch.device("cpu")


def resolve_memory_format(want: str, device: torch.device) -> torch.memory_format:
    """`auto` is channels-last on the CPU, where oneDNN's 3D convolutions on (N, T, H, W, C) weights and
    activations made training steps 5-29% faster (docs/benchmarks.md); CUDA stays contiguous (not measured)."""
    if want == "channels_last" or (want == "auto" and device.type == "cpu"):
        return torch.channels_last_3d
    return torch.contiguous_format


def autocast_context(device: torch.device, amp: str = "none") -> contextlib.AbstractContextManager:
    """bf16/fp16 autocast on CUDA; nothing elsewhere (CPU autocast is slower for 3D convs)."""
    if device.type != "cuda" or amp not in AMP_DTYPES:
        return contextlib.nullcontext()
    return torch.autocast("cuda", dtype=AMP_DTYPES[amp])
