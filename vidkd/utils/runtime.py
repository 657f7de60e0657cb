"""Seeding, device, memory format, mixed precision, malloc and CPU threads: the runtime decisions every command shares."""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import math
import multiprocessing
import os
import random
import sys
from dataclasses import dataclass
from pathlib import Path

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


# ----------------------------------------------------------------------------- CPU threads
CGROUP_ROOT = Path("/sys/fs/cgroup")


@dataclass(frozen=True)
class ThreadPlan:
    """How a process shares its CPUs: `intra_op` torch threads for the model, `workers` DataLoader workers."""

    cpus: int  # usable_cpus()
    intra_op: int  # torch.get_num_threads() after configure_threads
    workers: int  # DataLoader worker processes (data.num_workers)
    affinity: int | None = None  # CPUs in the affinity mask (None: not available on this OS)
    quota: float | None = None  # the cgroup CPU quota in CPUs (None: no quota)
    from_env: bool = False  # OMP_NUM_THREADS was set: torch's thread count was left alone

    def describe(self) -> str:
        quota = "none" if self.quota is None else f"{self.quota:g}"
        affinity = "n/a" if self.affinity is None else str(self.affinity)
        threads = f"{self.intra_op} intra-op thread{'s' if self.intra_op != 1 else ''}"
        if self.from_env:
            threads += " (OMP_NUM_THREADS)"
        return (f"vidkd: using {self.cpus} CPU{'s' if self.cpus != 1 else ''} (affinity {affinity}, cgroup quota "
                f"{quota}): {threads}, {self.workers} data worker{'s' if self.workers != 1 else ''}")


def _affinity_cpus() -> int | None:
    if not hasattr(os, "sched_getaffinity"):
        return None
    try:
        return len(os.sched_getaffinity(0))
    except OSError:
        return None


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except (OSError, UnicodeDecodeError):
        return None


def _quota_v2(directory: Path) -> float | None:
    """CPUs allowed by `cpu.max` ("max 100000" or "200000 100000") in one cgroup v2 directory."""
    text = _read(directory / "cpu.max")
    if not text:
        return None
    fields = text.split()
    try:
        if fields[0] == "max":
            return None
        period = int(fields[1]) if len(fields) > 1 else 100_000
        quota = int(fields[0])
    except (ValueError, IndexError):
        return None
    return quota / period if quota > 0 and period > 0 else None


def _quota_v1(directory: Path) -> float | None:
    """CPUs allowed by `cpu.cfs_quota_us` / `cpu.cfs_period_us` (quota -1: none) in one cgroup v1 directory."""
    quota, period = _read(directory / "cpu.cfs_quota_us"), _read(directory / "cpu.cfs_period_us")
    try:
        quota_us, period_us = int(quota), int(period)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return quota_us / period_us if quota_us > 0 and period_us > 0 else None


def _own_cgroups(proc_cgroup: Path) -> tuple[str | None, str | None]:
    """This process's cgroup path in the v2 hierarchy and in v1's `cpu` controller (from /proc/self/cgroup)."""
    v2 = v1 = None
    for line in (_read(proc_cgroup) or "").splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        if parts[0] == "0" and parts[1] == "":
            v2 = parts[2]
        elif "cpu" in parts[1].split(","):
            v1 = parts[2]
    return v2, v1


def _ancestors(root: Path, relative: str | None) -> list[Path]:
    """`root/relative` and every directory above it up to `root` (a quota anywhere above applies too)."""
    dirs = [root]
    current = root
    for part in (relative or "").strip("/").split("/"):
        if part:
            current = current / part
            dirs.append(current)
    return dirs


def cgroup_cpu_quota(root: Path | str = CGROUP_ROOT, proc_cgroup: Path | str = "/proc/self/cgroup") -> float | None:
    """The CPU quota of this process's cgroup in CPUs (e.g. 2.5), the smallest on its path; None without one.

    cgroup v2: `cpu.max`; v1: `cpu.cfs_quota_us` / `cpu.cfs_period_us` under `cpu/` (or `cpu,cpuacct/`).
    In a container the cgroup root is usually the container's own cgroup, which is read as well.
    """
    root, proc_cgroup = Path(root), Path(proc_cgroup)
    v2, v1 = _own_cgroups(proc_cgroup)
    quotas = [_quota_v2(d) for d in _ancestors(root, v2)]
    for controller in ("cpu", "cpu,cpuacct", "cpuacct,cpu"):
        if (root / controller).is_dir():
            quotas += [_quota_v1(d) for d in _ancestors(root / controller, v1)]
    quotas = [q for q in quotas if q is not None]
    return min(quotas) if quotas else None


def usable_cpus(root: Path | str = CGROUP_ROOT, proc_cgroup: Path | str = "/proc/self/cgroup") -> int:
    """CPUs this process may really use: the smallest of its affinity mask, its cgroup quota (rounded up)
    and `os.cpu_count()`. Torch's default thread count follows the affinity mask set before it was
    imported, but neither a cgroup quota (cluster jobs, containers) nor a mask set afterwards."""
    counts = [os.cpu_count() or 1]
    affinity = _affinity_cpus()
    if affinity:
        counts.append(affinity)
    quota = cgroup_cpu_quota(root, proc_cgroup)
    if quota is not None:
        counts.append(max(1, math.ceil(quota - 1e-9)))
    return max(1, min(counts))


def configure_threads(workers: int = 0, *, root: Path | str = CGROUP_ROOT,
                      proc_cgroup: Path | str = "/proc/self/cgroup") -> ThreadPlan:
    """Size torch's intra-op thread pool to the CPUs this process may use and return the plan.

    With `OMP_NUM_THREADS` set the user decided: torch's thread count is left as it is. Otherwise the
    main process keeps every usable CPU, `workers` DataLoader workers or not (they run one thread each):
    on 2 cores with 1 worker decoding per sample, 2 threads ran the CPU preset's loop 8-11% faster than
    1 (`benchmarks/bench_concurrent.py --variants alone-planned,alone-room --set data.preload=false
    data.num_workers=1`, 2026-12-05). What does collapse is two processes each with all the CPUs
    (14x slower each): give each job its own CPUs (taskset, a cgroup quota) and this sizes to them.
    """
    cpus = usable_cpus(root, proc_cgroup)
    workers = max(0, int(workers))
    from_env = bool(os.environ.get("OMP_NUM_THREADS", "").strip())
    if not from_env and torch.get_num_threads() != cpus:
        torch.set_num_threads(cpus)
    return ThreadPlan(cpus=cpus, intra_op=torch.get_num_threads(), workers=workers,
                      affinity=_affinity_cpus(), quota=cgroup_cpu_quota(root, proc_cgroup), from_env=from_env)


def set_tf32(enabled: bool) -> None:
    """TF32 for CUDA convolutions and matmuls (torch allows it for convolutions by default, so a run
    that says fp32 is only fp32 with this off)."""
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = bool(enabled)


def worker_context() -> multiprocessing.context.BaseContext:
    """The start method of vidkd's process pools (writing, probing, preparing videos): fork on Linux,
    where the workers start at once and only decode or encode; spawn elsewhere (macOS's system
    libraries are not fork-safe)."""
    return multiprocessing.get_context("fork" if sys.platform.startswith("linux") else "spawn")

