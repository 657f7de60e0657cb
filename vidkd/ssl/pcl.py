"""Pretext-Contrastive Learning (PCL): the model wrapper and its loss.

A sample is a tuple of clips from one video; with VCP the middle clip carries one of five
transformations and the pretext head classifies it from the concatenated clip features. The
first and last clips are untransformed, so they form the positive pair of the contrastive term.

    loss = CE(pretext) + lambda * (NCE_1 + NCE_2)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from vidkd.errors import ConfigError
from vidkd.models.heads import PretextHead, ProjectionHead
from vidkd.ssl.contrastive import InBatchInfoNCE, MemoryBankNCE

if TYPE_CHECKING:
    from vidkd.config import Config, SSLConfig


class PCLOutput(NamedTuple):
    """What `PCLModel` returns (a NamedTuple, so DDP finds the tensors inside)."""

    pretext_logits: torch.Tensor | None  # (B, K); None without a pretext head
    features: torch.Tensor  # (B, tuple_len, d) pooled backbone features of every clip
    embeddings: torch.Tensor | None  # (B, 2, proj_dim) L2-normalised, clips 0 and tuple_len-1


class PCLModel(nn.Module):
    """Backbone + pretext head + projection head.

    Args:
        backbone: any module with `.feature_dim` mapping (N, C, T, H, W) to (N, feature_dim).
        tuple_len: clips per sample.
        pretext_classes: K of the pretext head; 0 builds no pretext head (contrastive only).
        proj_dim: output size of the projection (feature_dim -> feature_dim -> proj_dim).
        use_projection: False builds no projection head (pretext only; `embeddings` is None).
    """

    def __init__(
        self,
        backbone: nn.Module,
        tuple_len: int = 3,
        pretext_classes: int = 5,
        proj_dim: int = 128,
        use_projection: bool = True,
    ) -> None:
        super().__init__()
        if use_projection and tuple_len < 2:
            raise ConfigError("the contrastive term needs at least 2 clips per tuple; set data.tuple_len >= 2")
        if pretext_classes == 0 and not use_projection:
            raise ConfigError("PCL needs a pretext task or a contrastive term; both are off")
        feature_dim = int(backbone.feature_dim)
        self.tuple_len = tuple_len
        self.feature_dim = feature_dim
        self.backbone = backbone
        self.pretext_head = PretextHead(feature_dim, tuple_len, pretext_classes) if pretext_classes > 0 else None
        self.projection = ProjectionHead(feature_dim, feature_dim, proj_dim) if use_projection else None

    @classmethod
    def from_config(cls, backbone: nn.Module, cfg: Config) -> PCLModel:
        """Build from a full `Config` (tuple length from `data`, heads from `ssl`)."""
        return cls(
            backbone,
            tuple_len=cfg.data.tuple_len,
            pretext_classes=cfg.ssl.pretext_classes if cfg.ssl.pretext != "none" else 0,
            proj_dim=cfg.ssl.proj_dim,
            use_projection=cfg.ssl.contrastive != "none",
        )

    def forward(self, clips: torch.Tensor) -> PCLOutput:
        """clips: (B, tuple_len, C, T, H, W) -> PCLOutput."""
        if clips.dim() != 6 or clips.shape[1] != self.tuple_len:
            raise ValueError(f"expected clips of shape (B, {self.tuple_len}, C, T, H, W), got {tuple(clips.shape)}")
        batch = clips.shape[0]
        # One backbone pass over all clips of all tuples (BatchNorm sees the whole batch).
        features = self.backbone(clips.flatten(0, 1)).view(batch, self.tuple_len, -1)
        logits = self.pretext_head(features) if self.pretext_head is not None else None
        embeddings = None
        if self.projection is not None:
            pair = features[:, [0, self.tuple_len - 1]]  # the two untransformed clips
            embeddings = self.projection(pair.flatten(0, 1)).view(batch, 2, -1)
        return PCLOutput(pretext_logits=logits, features=features, embeddings=embeddings)


class PCLLoss(nn.Module):
    """CE(pretext) + nce_weight * (NCE_1 + NCE_2), as configured by `SSLConfig`.

    With `contrastive: memory_bank` this module holds the two memory banks as buffers: move it
    to the training device and keep its `state_dict()` in checkpoints to resume exactly.

    Args:
        ssl_cfg: the `ssl` section of the config.
        num_train_videos: size of the memory banks (indices passed to `forward` index them).
        seed: seeds bank initialisation and negative sampling; must be equal on every rank.
    """

    def __init__(self, ssl_cfg: SSLConfig, num_train_videos: int, seed: int = 0) -> None:
        super().__init__()
        self.use_pretext = ssl_cfg.pretext != "none"
        self.contrastive = ssl_cfg.contrastive
        if not self.use_pretext and self.contrastive == "none":
            raise ConfigError("ssl.pretext and ssl.contrastive are both 'none'; nothing to learn")
        self.nce_weight = ssl_cfg.nce_weight
        self.nce: MemoryBankNCE | InBatchInfoNCE | None = None
        if self.contrastive == "memory_bank":
            self.nce = MemoryBankNCE(
                num_train_videos,
                dim=ssl_cfg.proj_dim,
                num_negatives=ssl_cfg.nce_negatives,
                temperature=ssl_cfg.nce_temperature,
                momentum=ssl_cfg.nce_momentum,
                seed=seed,
            )
        elif self.contrastive == "in_batch":
            self.nce = InBatchInfoNCE(ssl_cfg.nce_temperature)

    def forward(
        self,
        output: PCLOutput,
        pretext_labels: torch.Tensor | None = None,
        indices: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Total loss and its detached parts.

        Parts: `pretext_ce`, `nce` (NCE_1 + NCE_2), `nce_1`, `nce_2` (0 when that term is off)
        and `pretext_acc` (fraction correct; only with a pretext task). With a memory bank,
        `indices=None` (e.g. validation clips, which are not in the bank) skips the NCE term.
        """
        zero = output.features.new_zeros((), dtype=torch.float32)
        pretext_ce, nce_1, nce_2 = zero, zero, zero
        parts: dict[str, torch.Tensor] = {}

        if self.use_pretext:
            if output.pretext_logits is None or pretext_labels is None:
                raise ValueError("ssl.pretext is on: the model needs a pretext head and the batch pretext labels")
            logits = output.pretext_logits.float()
            pretext_labels = pretext_labels.to(logits.device)
            pretext_ce = F.cross_entropy(logits, pretext_labels)
            parts["pretext_acc"] = (logits.argmax(dim=1) == pretext_labels).float().mean().detach()

        if self.nce is not None:
            if output.embeddings is None:
                raise ConfigError(f"ssl.contrastive is '{self.contrastive}' but the model has no projection head")
            v1, v2 = output.embeddings[:, 0], output.embeddings[:, 1]
            if isinstance(self.nce, InBatchInfoNCE):
                nce_1, nce_2 = self.nce(v1, v2)
            elif indices is not None:
                nce_1, nce_2 = self.nce(v1, v2, indices)

        loss = pretext_ce + self.nce_weight * (nce_1 + nce_2)
        parts.update(pretext_ce=pretext_ce.detach(), nce=(nce_1 + nce_2).detach(),
                     nce_1=nce_1.detach(), nce_2=nce_2.detach())
        return loss, parts
