"""Seeding, device, memory format, mixed precision and malloc: the runtime decisions every command shares."""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import random
import sys

import numpy as np
import torch

from vidkd.errors import ConfigError

AMP_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


# glibc mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
KEEP_FREED_BYTES = 2**30  # free memory at the top of the heap kept for reuse, not returned to the OS
LARGEST_HEAP_BLOCK = 32 * 2**20  # glibc's ceiling: bigger blocks are always mmapped


def keep_freed_memory() -> bool:
    """Make glibc's malloc keep freed memory for the next step instead of returning it to the OS.

    By default it trims the heap top and serves blocks above a moving threshold with fresh mmaps,
    so each training step page-faults its activations in again: 26,500 faults per R(2+1)D step
    here, and the demo spent 6% of its CPU time in the kernel (docs/benchmarks.md). Process-wide,
    so only applications call it (the CLI, the benchmarks). False where there is no glibc.
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl and others have no mallopt
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(_M_TRIM_THRESHOLD, KEEP_FREED_BYTES)) and bool(mallopt(_M_MMAP_THRESHOLD, LARGEST_HEAP_BLOCK))


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
