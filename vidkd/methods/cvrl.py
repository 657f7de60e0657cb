"""Spatiotemporal Contrastive Video Representation Learning (CVRL; Qian et al., CVPR 2021) as a `Method`.

Two clips of one video, their start-to-start distance t drawn from a decreasing distribution over
the video's length (P(t) ∝ 1 - (t/T)^power, linear for power 1), each with its own crop, flip and
colour draw applied to all its frames; a 3-hidden-layer MLP (Linear-BN-ReLU, then Linear) projects
the pooled features, and NT-Xent (SimCLR's InfoNCE: every other clip of the batch is a negative,
2B - 2 per anchor, temperature 0.1) pulls the two clips of a video together. No pretext head.

Following the public code (tensorflow/models, official/projects/video_ssl: `sample_ssl_sequence`,
`contrastive_loss`, the projection of `video_ssl_model.py`), with these differences:
- clips are `data.clip_len` consecutive frames (CVRL: 16 frames at stride 2), so T = frames - clip_len;
- the crop is vidkd's random crop of `data.crop` from `data.resize` (CVRL: random-resized crop, area
  0.3-1, aspect 0.5-2) and blur is `data.blur` for both clips (CVRL: 1.0 for one clip, 0.1 for the
  other, and solarisation on the second): the data settings every method here shares;
- the loss averages its two directions (CVRL sums them: the gradient differs by a factor of 2, which
  the learning rate absorbs) and the optimiser is the run's (CVRL: LARS/SGD, lr 0.32, batch 1024).
Its main metric is the validation instance-discrimination accuracy (`val_instance_acc`): how often a
validation clip's nearest clip among the batch's other 2B - 1 is its own video's other clip.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Sequence

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.data import Dataset

from vidkd.config import Config
from vidkd.data.loaders import batch_clips
from vidkd.data.samplers import ClipSampler, DrawParams, ReadFrames, Sample, read_clips
from vidkd.methods.base import Method, ModelOutput
from vidkd.methods.common import RunSplits, backbone_from_config, in_memory, input_meta, tuple_datasets
from vidkd.methods.pcl import tuple_features_and_maps
from vidkd.utils.dist import gather_with_grad

VIEWS = 2


def interval_cdf(max_offset: int, power: float) -> np.ndarray:
    """P(distance <= k) for k = 1..T of the density ∝ 1 - (t/T)^power on [0, T] (CVRL's `cdf`)."""
    k = np.arange(1, max_offset + 1, dtype=np.float64)
    t = float(max_offset)
    return -k ** (power + 1) / (power * t ** (power + 1)) + k * (power + 1) / (power * t)


@dataclass(frozen=True)
class CVRLSampler(ClipSampler):
    """Two clips of `clip_len` frames whose start-to-start distance follows `interval_cdf`; the first
    start is uniform where the pair fits, then the pair's order is swapped with probability 1/2."""

    clip_len: int
    power: float = 1.0
    clips: int = VIEWS

    @property
    def min_frames(self) -> int:
        return self.clip_len

    def starts(self, num_frames: int, rng: np.random.Generator) -> list[int]:
        max_offset = num_frames - self.clip_len  # the last start
        if max_offset <= 0:
            return [0, 0]
        distance = int(np.searchsorted(interval_cdf(max_offset, self.power), rng.random()))
        first = int(rng.integers(max_offset - distance + 1))
        pair = [first, first + distance]
        return pair[::-1] if rng.random() < 0.5 else pair

    def sample(self, num_frames: int, rng: np.random.Generator, read: ReadFrames, draw_params: DrawParams) -> Sample:
        frames = read_clips(read, self.starts(num_frames, rng), self.clip_len, num_frames)
        return Sample(frames, [draw_params(clip.shape[1:3]) for clip in frames])


class CVRLModel(nn.Module):
    """Backbone + projection MLP; takes (B, clips, C, T, H, W) for any number of clips."""

    HEAD_PREFIXES: ClassVar[tuple[str, ...]] = ("cvrl_projection.",)
    PRETEXT_LOGITS_WEIGHT: ClassVar[str | None] = None  # no pretext head

    def __init__(self, backbone: nn.Module, hidden: int = 0, hidden_layers: int = 3, proj_dim: int = 128) -> None:
        super().__init__()
        self.backbone = backbone
        self.batchnorm = "joint"
        width, blocks = int(backbone.feature_dim), []
        hidden = hidden or width
        for _ in range(hidden_layers):
            blocks += [nn.Linear(width, hidden), nn.BatchNorm1d(hidden), nn.ReLU(inplace=True)]
            width = hidden
        self.cvrl_projection = nn.Sequential(*blocks, nn.Linear(width, proj_dim))

    @classmethod
    def from_state(cls, backbone: nn.Module, state: dict[str, torch.Tensor], meta: dict[str, Any]) -> CVRLModel:
        linears = sorted(k for k in state if k.startswith("cvrl_projection.") and k.endswith(".weight")
                         and state[k].dim() == 2)
        hidden = int(state[linears[0]].shape[0]) if len(linears) > 1 else 0
        proj_dim = int(state[linears[-1]].shape[0]) if linears else 128
        return cls(backbone, hidden=hidden, hidden_layers=max(0, len(linears) - 1), proj_dim=proj_dim)

    def forward(self, clips: torch.Tensor, maps: Sequence[int] | None = None) -> ModelOutput:
        if clips.dim() != 6:
            raise ValueError(f"expected clips of shape (B, clips, C, T, H, W), got {tuple(clips.shape)}")
        features, stage_maps = tuple_features_and_maps(self.backbone, clips, "joint", maps)
        z = self.cvrl_projection(features.flatten(0, 1)).view(*features.shape[:2], -1)
        return ModelOutput(pretext_logits=None, features=features, embeddings=F.normalize(z, dim=-1),
                           maps=stage_maps)


def nt_xent_logits(z1: torch.Tensor, z2: torch.Tensor, temperature: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(2B, 2B) similarity logits of the two views' unit embeddings (self-similarity masked out) and
    each row's positive column: row i of view 1 pairs with row i of view 2."""
    z = torch.cat([z1, z2]).float()
    logits = z @ z.T / temperature
    logits.fill_diagonal_(float("-inf"))
    batch = z1.shape[0]
    positives = torch.cat([torch.arange(batch, 2 * batch), torch.arange(batch)]).to(z.device)
    return logits, positives


class CVRL(Method):
    name = "cvrl"
    model_type = CVRLModel
    main_metric = "val_instance_acc"

    def __init__(self, cfg: Config, splits: RunSplits) -> None:
        self.cfg = cfg
        options = cfg.cvrl
        self.temperature = options.temperature
        sampler = CVRLSampler(cfg.data.clip_len, options.power)
        self.train_set, self.val_set = tuple_datasets(cfg, splits, sampler)
        self.model = CVRLModel(backbone_from_config(cfg), options.hidden, options.hidden_layers, options.proj_dim)

    def train_dataset(self) -> Dataset:
        return self.train_set

    def validation_dataset(self) -> Dataset | None:
        self.val_set = in_memory(self.val_set, VIEWS, self.cfg)
        return self.val_set

    def inputs(self, batch: dict[str, Any]) -> torch.Tensor:
        return batch_clips(batch, self.device)

    def loss(self, output: ModelOutput, batch: dict[str, Any]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        # every rank's clips are negatives (gathered with their gradient, as CVRL's cross-replica concat)
        z1, z2 = gather_with_grad(output.embeddings[:, 0]), gather_with_grad(output.embeddings[:, 1])
        logits, positives = nt_xent_logits(z1, z2, self.temperature)
        loss = F.cross_entropy(logits, positives)
        accuracy = (logits.argmax(1) == positives).float().mean()
        return loss, {"nt_xent": loss.detach(), "instance_acc": accuracy.detach()}

    @torch.no_grad()
    def validation_step(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        z = self.model(self.inputs(batch)).embeddings
        logits, positives = nt_xent_logits(z[:, 0], z[:, 1], self.temperature)
        return {"correct": (logits.argmax(1) == positives).sum().double(),
                "loss": F.cross_entropy(logits, positives, reduction="sum").double(),
                "count": torch.tensor(float(positives.numel()), dtype=torch.float64, device=logits.device)}

    def validation_metrics(self, sums: dict[str, Any]) -> dict[str, float]:
        count = max(1.0, float(sums["count"]))
        return {"val_instance_acc": float(sums["correct"]) / count, "val_loss": float(sums["loss"]) / count}

    def score(self, metrics: dict[str, Any]) -> float:
        if self.cfg.train.best_by == "loss" or metrics.get("val_instance_acc") is None:
            return -float(metrics.get("val_loss", metrics.get("train_loss")) or 0.0)
        return float(metrics["val_instance_acc"])

    def meta(self) -> dict[str, Any]:
        cfg = self.cfg
        return {"method": self.name, "arch": cfg.model.arch, "width": cfg.model.width, "pretext_classes": 0, "proj_dim": cfg.cvrl.proj_dim, "input": input_meta(cfg)}
