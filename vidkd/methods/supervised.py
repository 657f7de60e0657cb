"""Supervised training of a backbone plus a linear classifier, as a `Method` (fine-tuning).

Training sees one random clip per video per epoch (random crop, flip). The backbone may learn
at a fraction of the head's learning rate (`backbone_lr_scale`), so pretrained features are not
wiped out by the fresh head's first large gradients.

With a validation set (`val_set`, items like the training ones) the engine scores it after every
epoch: `val_loss` (mean cross-entropy per clip) and `val_top1`; `score` is then `-val_loss`, so the
best checkpoint and the plateau schedule follow the validation loss (PCL's `ft_classify.py`).
Without one nothing is validated and the score falls back to the training loss.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset

from vidkd.methods.base import Method
from vidkd.models.heads import LinearClassifier


class BackboneClassifier(nn.Module):
    """A backbone's pooled features followed by a linear classifier."""

    def __init__(self, backbone: nn.Module, num_classes: int, dropout: float):
        super().__init__()
        self.backbone = backbone
        self.head = LinearClassifier(backbone.feature_dim, num_classes, dropout)

    def forward(self, clips: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(clips))


class Supervised(Method):
    """Cross-entropy on labelled clips (`{"clip": (C, T, H, W), "label"}` items)."""

    name = "supervised"

    def __init__(self, backbone: nn.Module, num_classes: int, train_set: Dataset, dropout: float = 0.0,
                 backbone_lr_scale: float = 1.0, val_set: Dataset | None = None) -> None:
        self.model = BackboneClassifier(backbone, num_classes, dropout)
        self.train_set = train_set
        self.val_set = val_set
        self.backbone_lr_scale = backbone_lr_scale

    def train_dataset(self) -> Dataset:
        return self.train_set

    def validation_dataset(self) -> Dataset | None:
        return self.val_set

    def param_groups(self) -> list[dict[str, Any]]:
        return [{"params": list(self.model.backbone.parameters()), "lr_scale": self.backbone_lr_scale},
                {"params": list(self.model.head.parameters()), "lr_scale": 1.0}]

    def inputs(self, batch: dict[str, Any]) -> torch.Tensor:
        return batch["clip"].to(self.device, non_blocking=True)

    def clips_in(self, batch: dict[str, Any]) -> int:
        return int(batch["clip"].shape[0])

    def loss(self, output: torch.Tensor, batch: dict[str, Any]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        labels = batch["label"].long().to(self.device, non_blocking=True)
        logits = output.float()
        loss = F.cross_entropy(logits, labels)
        return loss, {"top1": (logits.argmax(1) == labels).float().mean().detach()}

    def validation_step(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        labels = batch["label"].long().to(self.device, non_blocking=True)
        logits = self.model(self.inputs(batch)).float()
        return {"loss_sum": F.cross_entropy(logits, labels, reduction="sum").double(),
                "correct": (logits.argmax(1) == labels).sum().double(),
                "count": torch.tensor(float(labels.numel()), dtype=torch.float64, device=labels.device)}

    def validation_metrics(self, sums: dict[str, Any]) -> dict[str, float]:
        count = float(sums.get("count", 0.0))
        if count <= 0:
            return {}
        return {"val_loss": float(sums["loss_sum"]) / count, "val_top1": float(sums["correct"]) / count}

    def score(self, metrics: dict[str, Any]) -> float:
        """-val_loss with a validation set (lower loss is better); the base rule otherwise."""
        if metrics.get("val_loss") is not None:
            return -float(metrics["val_loss"])
        return super().score(metrics)

    def meta(self) -> dict[str, Any]:
        return {"method": self.name, "classes": int(self.model.head.fc.out_features)}
