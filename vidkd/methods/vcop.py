"""Video Clip Order Prediction (VCOP; Xu et al., CVPR 2019) as a `Method`.

A tuple of `tuple_len` clips (16 frames, 8 apart in the reference) is shuffled into one of
`tuple_len!` orders; the network sees the clips in that order and classifies which order it is.
As the reference (xudejing/video-clip-order-prediction, models/vcopn.py): every pair of input
slots i < j, in itertools order, gives cat(f_i, f_j) -> fc7 (2d -> 512) -> ReLU; the pair
features are concatenated -> Dropout(0.5) -> fc8 -> tuple_len! logits; cross-entropy.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Any, ClassVar, Sequence

import numpy as np

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.data import Dataset

from vidkd.config import Config
from vidkd.data.loaders import batch_clips
from vidkd.data.samplers import DrawParams, ReadFrames, Sample, TupleSampler
from vidkd.methods.base import Method, ModelOutput
from vidkd.methods.common import (RunSplits, backbone_from_config, in_memory, input_meta, pretext_score,
                                  pretext_validation_metrics, pretext_validation_sums, tuple_datasets,
                                  tuple_sampler)
from vidkd.methods.pcl import check_batchnorm, tuple_features_and_maps


def clip_orders(tuple_len: int) -> list[tuple[int, ...]]:
    """Every order of `tuple_len` clips, chronological first (VCOP's classes: itertools order)."""
    return list(itertools.permutations(range(tuple_len)))


@dataclass(frozen=True)
class OrderSampler(TupleSampler):
    """VCOP's tuples: the clips are shuffled; the target is the index of their order in
    `clip_orders(tuple_len)` (0 = chronological)."""

    def sample(self, num_frames: int, rng: np.random.Generator, read: ReadFrames, draw_params: DrawParams) -> Sample:
        sample = super().sample(num_frames, rng, read, draw_params)
        orders = clip_orders(self.spec.tuple_len)
        sample.target = int(rng.integers(len(orders)))
        sample.task = orders[sample.target]
        return sample

    def arrange(self, x: torch.Tensor, tasks: Sequence[tuple[int, ...]], extras: Sequence[int]) -> torch.Tensor:
        """Each item's clips in its order."""
        n = self.spec.tuple_len
        return x[[b * n + i for b, order in enumerate(tasks) for i in order]]


class OrderHead(nn.Module):
    """Pairwise clip features -> logits over the `tuple_len!` clip orders."""

    def __init__(self, feature_dim: int, tuple_len: int = 3, hidden: int = 512, dropout: float = 0.5) -> None:
        super().__init__()
        self.tuple_len = tuple_len
        self.pairs = list(itertools.combinations(range(tuple_len), 2))
        self.fc7 = nn.Linear(2 * feature_dim, hidden)
        self.dropout = nn.Dropout(dropout)
        self.fc8 = nn.Linear(hidden * len(self.pairs), math.factorial(tuple_len))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """features (B, tuple_len, d) -> logits (B, tuple_len!)."""
        pairs = [F.relu(self.fc7(torch.cat([features[:, i], features[:, j]], dim=1))) for i, j in self.pairs]
        return self.fc8(self.dropout(torch.cat(pairs, dim=1)))


class VCOPModel(nn.Module):
    """Backbone + order head. `batchnorm`: "joint" (one backbone pass over all B * tuple_len clips) or
    "per_position" (one pass per tuple position, as the reference VCOPN; see `PCLModel`)."""

    # the names of its head's tensors in a checkpoint, owned here (read as `PCLModel`'s are)
    HEAD_PREFIXES: ClassVar[tuple[str, ...]] = ("order_head.",)
    PRETEXT_LOGITS_WEIGHT: ClassVar[str] = "order_head.fc8.weight"  # (tuple_len!, pairs * hidden)
    ORDER_HIDDEN_WEIGHT: ClassVar[str] = "order_head.fc7.weight"  # (hidden, 2 * d)

    def __init__(self, backbone: nn.Module, tuple_len: int = 3, hidden: int = 512, dropout: float = 0.5,
                 batchnorm: str = "joint") -> None:
        super().__init__()
        self.tuple_len = tuple_len
        self.batchnorm = check_batchnorm(batchnorm)
        self.backbone = backbone
        self.order_head = OrderHead(int(backbone.feature_dim), tuple_len, hidden, dropout)

    @classmethod
    def from_state(cls, backbone: nn.Module, state: dict[str, torch.Tensor], meta: dict[str, Any]) -> VCOPModel:
        hidden = state[cls.ORDER_HIDDEN_WEIGHT].shape[0] if cls.ORDER_HIDDEN_WEIGHT in state else 512
        return cls(backbone, tuple_len=int(meta.get("tuple_len", 3)), hidden=int(hidden))

    def forward(self, clips: torch.Tensor, maps: Sequence[int] | None = None) -> ModelOutput:
        """clips (B, tuple_len, C, T, H, W) in the shuffled order -> ModelOutput (`maps`: as `PCLModel`)."""
        if clips.dim() != 6 or clips.shape[1] != self.tuple_len:
            raise ValueError(f"expected clips of shape (B, {self.tuple_len}, C, T, H, W), got {tuple(clips.shape)}")
        features, stage_maps = tuple_features_and_maps(self.backbone, clips, self.batchnorm, maps)
        return ModelOutput(pretext_logits=self.order_head(features), features=features, embeddings=None,
                           maps=stage_maps)


class VCOP(Method):
    name = "vcop"
    model_type = VCOPModel

    def __init__(self, cfg: Config, splits: RunSplits) -> None:
        self.cfg = cfg
        self.train_set, self.val_set = tuple_datasets(cfg, splits, tuple_sampler(cfg, OrderSampler))
        self.model = VCOPModel(backbone_from_config(cfg), cfg.data.tuple_len, cfg.vcop.hidden, cfg.vcop.dropout,
                               batchnorm=cfg.model.batchnorm)
        self.num_orders = math.factorial(cfg.data.tuple_len)

    def train_dataset(self) -> Dataset:
        return self.train_set

    def validation_dataset(self) -> Dataset | None:
        self.val_set = in_memory(self.val_set, self.cfg.data.tuple_len, self.cfg)
        return self.val_set

    def inputs(self, batch: dict[str, Any]) -> torch.Tensor:
        return batch_clips(batch, self.device)

    def loss(self, output: ModelOutput, batch: dict[str, Any]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        labels = batch["pretext_label"].to(self.device, non_blocking=True)
        logits = output.pretext_logits.float()
        loss = F.cross_entropy(logits, labels)
        accuracy = (logits.argmax(1) == labels).float().mean()
        return loss, {"pretext_ce": loss.detach(), "pretext_acc": accuracy.detach()}

    @torch.no_grad()
    def validation_step(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        logits = self.model(self.inputs(batch)).pretext_logits
        return pretext_validation_sums(logits, batch["pretext_label"].to(self.device), self.num_orders)

    def validation_metrics(self, sums: dict[str, Any]) -> dict[str, float]:
        return pretext_validation_metrics(sums)

    def score(self, metrics: dict[str, Any]) -> float:
        return pretext_score(metrics, self.cfg.train.best_by)

    def meta(self) -> dict[str, Any]:
        cfg = self.cfg
        return {"method": self.name, "arch": cfg.model.arch, "width": cfg.model.width,
                "tuple_len": cfg.data.tuple_len, "pretext": "order", "pretext_classes": self.num_orders,
                "input": input_meta(cfg)}
