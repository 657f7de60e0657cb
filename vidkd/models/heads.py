"""Heads on top of a backbone's pooled feature: VCP pretext, contrastive projection, classifier."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class PretextHead(nn.Module):
    """VCP head: the per-clip features of a tuple concatenated -> Linear(tuple_len * d, num_classes).

    Input (B, tuple_len, feature_dim); output logits (B, num_classes).
    """

    def __init__(self, feature_dim: int, tuple_len: int = 3, num_classes: int = 5) -> None:
        super().__init__()
        self.feature_dim = feature_dim
        self.tuple_len = tuple_len
        self.fc = nn.Linear(tuple_len * feature_dim, num_classes)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        expected = (self.tuple_len, self.feature_dim)
        if features.dim() != 3 or tuple(features.shape[1:]) != expected:
            raise ValueError(
                f"PretextHead expects (B, {expected[0]}, {expected[1]}); got {tuple(features.shape)}"
            )
        return self.fc(features.flatten(1))


class ProjectionHead(nn.Module):
    """Contrastive projection Linear-ReLU-Linear; the output is L2-normalised (unit length)."""

    def __init__(self, in_dim: int, hidden_dim: int, out_dim: int = 128) -> None:
        super().__init__()
        self.mlp = nn.Sequential(
            nn.Linear(in_dim, hidden_dim), nn.ReLU(inplace=True), nn.Linear(hidden_dim, out_dim)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.mlp(x), dim=-1)


class LinearClassifier(nn.Module):
    """Dropout then Linear(in_dim, num_classes): the fine-tuning / linear-probe head."""

    def __init__(self, in_dim: int, num_classes: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.fc = nn.Linear(in_dim, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.dropout(x))
