"""Distributed helpers: torchrun initialisation, rank-0 helpers and all-gathers.

Everything here also works in a plain single process (no `torch.distributed` group): the
helpers then return their input unchanged, so callers never branch on the world size.

`gather_with_grad` is the one to be careful with. Every rank computes a loss from the gathered
batch, so the gradient that reaches one rank's slice is the SUM of the gradients every rank's
loss sends to it; the backward pass therefore all-reduces (SUM) the gradient of the whole
gathered tensor before keeping this rank's slice. Taking only the local slice of the local
gradient (as several SSL codebases did) drops the terms from the other ranks' losses.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from vidkd.errors import ConfigError


@dataclass(frozen=True)
class DistInfo:
    rank: int
    world_size: int
    local_rank: int
    device: torch.device
    is_main: bool


def is_distributed() -> bool:
    """True when a process group is initialised (and so collectives must be called)."""
    return dist.is_available() and dist.is_initialized()


def get_world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def get_rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def is_main_process() -> bool:
    return get_rank() == 0


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise ConfigError(f"environment variable {name}={raw!r} is not an integer (launch with torchrun)") from None


def init_distributed(backend: str | None = None) -> DistInfo:
    """Join the process group described by torchrun's RANK / WORLD_SIZE / LOCAL_RANK.

    Without those variables (or with WORLD_SIZE=1) this is a single process and no group is
    created. The backend defaults to NCCL when CUDA is available, else gloo. With CUDA each
    process uses the GPU `cuda:LOCAL_RANK`.
    """
    world_size = _env_int("WORLD_SIZE", 1)
    rank = _env_int("RANK", 0)
    local_rank = _env_int("LOCAL_RANK", 0)
    cuda = torch.cuda.is_available()
    if cuda:
        if local_rank >= torch.cuda.device_count():
            raise ConfigError(
                f"LOCAL_RANK {local_rank} but only {torch.cuda.device_count()} GPU(s) visible; "
                "start at most one process per GPU (torchrun --nproc_per_node)"
            )
        torch.cuda.set_device(local_rank)
        device = torch.device("cuda", local_rank)
    else:
        device = torch.device("cpu")

    if is_distributed():  # already joined (several runs in one process, e.g. the experiment grid)
        rank, world_size = dist.get_rank(), dist.get_world_size()
    elif world_size > 1:
        backend = backend or ("nccl" if cuda else "gloo")
        if backend == "nccl" and not cuda:
            raise ConfigError("the NCCL backend needs CUDA GPUs; use backend 'gloo' on CPU")
        for name in ("MASTER_ADDR", "MASTER_PORT"):
            if name not in os.environ:
                raise ConfigError(f"WORLD_SIZE={world_size} but {name} is not set; launch with torchrun")
        dist.init_process_group(backend=backend, rank=rank, world_size=world_size)
    return DistInfo(rank=rank, world_size=world_size, local_rank=local_rank, device=device, is_main=rank == 0)


def single_process() -> DistInfo:
    """This process alone (no collectives), whatever group it belongs to."""
    cuda = torch.cuda.is_available()
    local_rank = _env_int("LOCAL_RANK", 0) if cuda else 0
    return DistInfo(rank=0, world_size=1, local_rank=local_rank,
                    device=torch.device("cuda", local_rank) if cuda else torch.device("cpu"), is_main=True)


def cleanup() -> None:
    """Leave the process group (a no-op in a single process)."""
    if is_distributed():
        dist.destroy_process_group()


def barrier() -> None:
    if is_distributed():
        dist.barrier()


def is_main_process_env() -> bool:
    """Rank 0 as torchrun announces it, usable before the process group exists."""
    return get_rank() == 0 if is_distributed() else _env_int("RANK", 0) == 0


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """Sum of `tensor` over all ranks (a detached copy; for metrics and counts)."""
    out = tensor.detach().clone()
    if is_distributed():
        dist.all_reduce(out, op=dist.ReduceOp.SUM)
    return out


def all_reduce_mean(tensor: torch.Tensor) -> torch.Tensor:
    """Mean of `tensor` over all ranks (a detached copy; for metrics, not for gradients)."""
    out = tensor.detach().clone()
    if is_distributed():
        dist.all_reduce(out, op=dist.ReduceOp.SUM)
        out /= get_world_size()
    return out


def _gather_sizes(tensor: torch.Tensor) -> list[int]:
    size = torch.tensor([tensor.shape[0]], dtype=torch.long, device=tensor.device)
    sizes = [torch.zeros_like(size) for _ in range(get_world_size())]
    dist.all_gather(sizes, size)
    return [int(s.item()) for s in sizes]


def _all_gather_cat(tensor: torch.Tensor) -> tuple[torch.Tensor, list[int]]:
    """Concatenate every rank's `tensor` along dim 0 (first dims may differ between ranks)."""
    tensor = tensor.contiguous()
    sizes = _gather_sizes(tensor)
    largest = max(sizes)
    if tensor.shape[0] < largest:  # all_gather needs equal shapes: pad, then trim
        pad = tensor.new_zeros((largest - tensor.shape[0], *tensor.shape[1:]))
        tensor = torch.cat([tensor, pad])
    parts = [torch.empty_like(tensor) for _ in sizes]
    dist.all_gather(parts, tensor)
    return torch.cat([part[:n] for part, n in zip(parts, sizes)]), sizes


def all_gather_no_grad(tensor: torch.Tensor) -> torch.Tensor:
    """All ranks' `tensor` concatenated along dim 0 in rank order, without a gradient."""
    tensor = tensor.detach()
    if not is_distributed():
        return tensor
    with torch.no_grad():
        return _all_gather_cat(tensor)[0]


class _GatherWithGrad(torch.autograd.Function):
    @staticmethod
    def forward(ctx, tensor: torch.Tensor) -> torch.Tensor:
        gathered, sizes = _all_gather_cat(tensor)
        ctx.start = sum(sizes[: get_rank()])
        ctx.length = tensor.shape[0]
        return gathered

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        # Every rank's loss depends on this rank's slice: add up all their gradients.
        grad = grad.contiguous().clone()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        return grad[ctx.start : ctx.start + ctx.length]


def gather_with_grad(tensor: torch.Tensor) -> torch.Tensor:
    """All ranks' `tensor` concatenated along dim 0, differentiable.

    The backward pass sums the gradients of the gathered tensor over all ranks and returns this
    rank's slice. Under DDP (which averages parameter gradients over ranks) a loss computed on
    every rank from the gathered batch then gives the parameter gradient of that global loss.
    """
    if not is_distributed():
        return tensor
    return _GatherWithGrad.apply(tensor)
