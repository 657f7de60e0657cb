"""Contrastive losses between the two untransformed clips of a tuple.

`MemoryBankNCE` follows CMC's `NCEAverage` + `NCESoftmaxLoss` as used by PCL: one memory bank
per view, each clip embedding is scored against the OTHER view's bank entry of its own video
(the positive, logit 0) and K entries drawn uniformly from the whole bank (negatives), softmax
cross-entropy at temperature T, then both banks move towards the new embeddings with momentum.
`InBatchInfoNCE` is the SimCLR/CLIP alternative that needs no bank: the other videos of the
(globally gathered) batch are the negatives.

Both are correct under DDP; see docs/method.md for the reasoning.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from vidkd.errors import TrainingError
from vidkd.utils.dist import all_gather_no_grad, gather_with_grad


def info_nce(logits: torch.Tensor, positive: torch.Tensor | int = 0) -> torch.Tensor:
    """Softmax cross-entropy of each row against its positive column (mean over rows)."""
    if isinstance(positive, int):
        positive = torch.full((logits.shape[0],), positive, dtype=torch.long, device=logits.device)
    return F.cross_entropy(logits, positive)


class MemoryBankNCE(nn.Module):
    """CMC-style InfoNCE with one memory bank per view (PCL's contrastive term).

    Args:
        num_samples: N, the number of training videos; `indices` passed to `forward` index them.
        dim: embedding size (the projection's output).
        num_negatives: K negatives per clip, drawn uniformly with replacement from all N entries
            (as CMC's alias sampler does), so K may exceed N - 1.
        temperature: T in exp(v . m / T).
        momentum: m in bank[i] <- normalize(m * bank[i] + (1 - m) * v).
        seed: seeds the bank initialisation and the negative sampling. Every rank must use the
            same seed: the banks then start and stay identical on all ranks.
        init: "unit" (unit-normalised Gaussian rows) or "reference" (CMC/PCL: uniform in
            [-1/sqrt(dim/3), 1/sqrt(dim/3)], the same expected norm, not normalised).

    The banks (`bank1`, `bank2`) and the update counter (`num_updates`) are buffers, so they are
    part of `state_dict()` and a resumed run samples the same negatives.
    """

    def __init__(
        self,
        num_samples: int,
        dim: int = 128,
        num_negatives: int = 1024,
        temperature: float = 0.07,
        momentum: float = 0.5,
        seed: int = 0,
        init: str = "unit",
    ) -> None:
        super().__init__()
        if init not in ("unit", "reference"):
            raise ValueError(f"bank init must be 'unit' or 'reference', got {init!r}")
        if num_samples < 1:
            raise ValueError(f"the memory bank needs at least one training video; got {num_samples}")
        if num_negatives < 1:
            raise ValueError(f"num_negatives must be at least 1; got {num_negatives}")
        if temperature <= 0:
            raise ValueError(f"temperature must be positive; got {temperature}")
        if not 0 <= momentum < 1:
            raise ValueError(f"momentum must be in [0, 1); got {momentum}")
        self.num_samples = num_samples
        self.dim = dim
        self.num_negatives = num_negatives
        self.temperature = temperature
        self.momentum = momentum
        self.seed = seed
        # A CPU generator gives the same numbers on every rank and every device type.
        generator = torch.Generator().manual_seed(seed)
        if init == "reference":  # CMC/PCL's NCEAverage: uniform in [-1/sqrt(dim/3), 1/sqrt(dim/3)], not normalised
            bound = 1.0 / math.sqrt(dim / 3)
            banks = [torch.rand(num_samples, dim, generator=generator) * 2 * bound - bound for _ in range(2)]
        else:
            banks = [F.normalize(torch.randn(num_samples, dim, generator=generator), dim=1) for _ in range(2)]
        self.register_buffer("bank1", banks[0])
        self.register_buffer("bank2", banks[1])
        self.register_buffer("num_updates", torch.zeros((), dtype=torch.long))

    def extra_repr(self) -> str:
        return (f"num_samples={self.num_samples}, dim={self.dim}, num_negatives={self.num_negatives}, "
                f"temperature={self.temperature}, momentum={self.momentum}")

    def sample_negatives(self, count: int) -> torch.Tensor:
        """(count, K) bank indices; the same on every rank for the same `num_updates`."""
        step = int(self.num_updates.item())
        generator = torch.Generator().manual_seed((self.seed & 0xFFFFFFFF) * 1_000_003 + step)
        negatives = torch.randint(self.num_samples, (count, self.num_negatives), generator=generator)
        return negatives.to(self.bank1.device)

    def _logits(self, query: torch.Tensor, bank: torch.Tensor, positives: torch.Tensor,
                negatives: torch.Tensor) -> torch.Tensor:
        """(B, 1 + K) logits of `query` against bank[positives] (column 0) and bank[negatives]."""
        keys = bank[torch.cat([positives[:, None], negatives], dim=1)]  # (B, 1 + K, dim), no grad
        return torch.einsum("bkd,bd->bk", keys, query) / self.temperature

    def forward(self, v1: torch.Tensor, v2: torch.Tensor, indices: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """InfoNCE of both views for this rank's batch; updates the banks in training mode.

        Args:
            v1, v2: (B, dim) L2-normalised embeddings of view 1 and view 2 (this rank's batch).
            indices: (B,) training-set indices of the videos in the batch.
        Returns:
            (nce_1, nce_2): view 1 against bank 2 and view 2 against bank 1, each a batch mean.
        """
        if v1.shape != v2.shape or v1.dim() != 2 or v1.shape[1] != self.dim:
            raise ValueError(f"expected two (B, {self.dim}) embeddings, got {tuple(v1.shape)} and {tuple(v2.shape)}")
        indices = indices.to(device=self.bank1.device, dtype=torch.long).view(-1)
        if indices.numel() != v1.shape[0]:
            raise ValueError(f"{indices.numel()} indices for a batch of {v1.shape[0]}")
        if indices.numel() and (indices.min() < 0 or indices.max() >= self.num_samples):
            raise TrainingError(
                f"a sample index is outside the memory bank of {self.num_samples} videos; build PCLLoss "
                "with the number of training videos (and pass training-set indices only)"
            )

        # Negatives are drawn for the global batch identically on every rank, and row j goes to
        # the video with the j-th smallest index: a video's negatives then do not depend on how
        # the batch is split over ranks or ordered, so 2 ranks x b equal 1 rank x 2b exactly.
        all_indices = all_gather_no_grad(indices)
        rows = torch.searchsorted(torch.sort(all_indices).values, indices)
        negatives = self.sample_negatives(all_indices.numel())[rows]

        q1, q2 = v1.float(), v2.float()
        nce_1 = info_nce(self._logits(q1, self.bank2, indices, negatives))
        nce_2 = info_nce(self._logits(q2, self.bank1, indices, negatives))

        if self.training:
            self._update(q1, q2, all_indices)
        return nce_1, nce_2

    @torch.no_grad()
    def _update(self, v1: torch.Tensor, v2: torch.Tensor, all_indices: torch.Tensor) -> None:
        """Momentum update with the embeddings of ALL ranks, so every rank's banks stay equal."""
        all_views = all_gather_no_grad(torch.cat([v1, v2], dim=1))
        for bank, new in ((self.bank1, all_views[:, : self.dim]), (self.bank2, all_views[:, self.dim :])):
            mixed = self.momentum * bank[all_indices] + (1 - self.momentum) * new.to(bank.dtype)
            bank.index_copy_(0, all_indices, F.normalize(mixed, dim=1))
        self.num_updates += 1


class InBatchInfoNCE(nn.Module):
    """SimCLR/CLIP-style InfoNCE: view 1 of each video against view 2 of every video in the batch.

    The batch is gathered from all ranks with gradient, so the negatives are the global batch and
    the returned losses are the same on every rank (and equal a single process on that batch).
    """

    def __init__(self, temperature: float = 0.07) -> None:
        super().__init__()
        if temperature <= 0:
            raise ValueError(f"temperature must be positive; got {temperature}")
        self.temperature = temperature

    def extra_repr(self) -> str:
        return f"temperature={self.temperature}"

    def forward(self, v1: torch.Tensor, v2: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Returns (view 1 -> view 2, view 2 -> view 1) losses, each a mean over the global batch."""
        all_v1 = gather_with_grad(v1.float())
        all_v2 = gather_with_grad(v2.float())
        logits = all_v1 @ all_v2.T / self.temperature
        targets = torch.arange(logits.shape[0], device=logits.device)
        return info_nce(logits, targets), info_nce(logits.T, targets)
