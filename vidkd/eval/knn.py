"""Weighted k-nearest-neighbour classification of frozen features, as in DINO.

Each test feature votes with its k most similar training features (cosine similarity); a
neighbour's vote weighs exp(similarity / T). Cheap enough for the trainer's per-epoch probe.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from vidkd.eval.retrieval import as_tensor


def knn_scores(
    train_feats: torch.Tensor,
    train_labels: torch.Tensor,
    test_feats: torch.Tensor,
    k: int = 20,
    temperature: float = 0.07,
    num_classes: int | None = None,
    chunk_size: int = 512,
) -> torch.Tensor:
    """Class scores (N_test, num_classes): summed exp(sim / T) of the k nearest neighbours per class."""
    train = F.normalize(as_tensor(train_feats, torch.float32), dim=1)
    test = F.normalize(as_tensor(test_feats, torch.float32), dim=1)
    train_labels = as_tensor(train_labels, torch.long)
    if len(train) == 0:
        raise ValueError("kNN needs at least one training feature")
    if len(train) != len(train_labels):
        raise ValueError("training features and labels differ in length")
    if k < 1 or temperature <= 0:
        raise ValueError(f"kNN needs k >= 1 and a positive temperature, got k={k}, T={temperature}")
    num_classes = num_classes or int(train_labels.max()) + 1
    k = min(k, len(train))

    scores = torch.zeros(len(test), num_classes)
    for start in range(0, len(test), chunk_size):
        sims, idx = (test[start:start + chunk_size] @ train.T).topk(k, dim=1)
        weights = (sims / temperature).exp()
        scores[start:start + chunk_size].scatter_add_(1, train_labels[idx], weights)
    return scores


def knn_classify(
    train_feats: torch.Tensor | np.ndarray,
    train_labels: torch.Tensor | np.ndarray | Sequence[int],
    test_feats: torch.Tensor | np.ndarray,
    test_labels: torch.Tensor | np.ndarray | Sequence[int],
    k: int = 20,
    temperature: float = 0.07,
    num_classes: int | None = None,
    chunk_size: int = 512,
) -> dict[str, float]:
    """Top-1 and top-5 accuracy (fractions) of the weighted kNN classifier on the test features."""
    test_labels = as_tensor(test_labels, torch.long)
    if len(test_labels) == 0:
        raise ValueError("kNN needs at least one test feature")
    train_labels = as_tensor(train_labels, torch.long)
    num_classes = num_classes or int(max(train_labels.max(), test_labels.max())) + 1
    scores = knn_scores(train_feats, train_labels, test_feats, k, temperature, num_classes, chunk_size)
    ranked = scores.topk(min(5, num_classes), dim=1).indices
    correct = ranked == test_labels[:, None]
    return {
        "top1": float(correct[:, 0].float().mean()),
        "top5": float(correct.any(dim=1).float().mean()),
    }
