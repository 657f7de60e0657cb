"""Linear probe: a softmax classifier trained on frozen, cached video features.

Features are standardised with the training subset's statistics; the classifier is trained
full-batch with L-BFGS on cross-entropy plus an L2 penalty. Zero initialisation and a
deterministic optimiser make the result depend only on the features and the labelled subset.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from vidkd.eval.fractions import sample_fraction
from vidkd.eval.retrieval import as_tensor


def _accuracy(logits: torch.Tensor, labels: torch.Tensor, k: int = 1) -> float:
    top = logits.topk(min(k, logits.shape[1]), dim=1).indices
    return float((top == labels[:, None]).any(dim=1).float().mean())


def linear_probe(
    train_feats: torch.Tensor | np.ndarray,
    train_labels: torch.Tensor | np.ndarray | Sequence[int],
    test_feats: torch.Tensor | np.ndarray,
    test_labels: torch.Tensor | np.ndarray | Sequence[int],
    num_classes: int | None = None,
    fraction: float = 1.0,
    seed: int = 0,
    steps: int = 300,
    weight_decay: float = 5e-4,
    device: str | torch.device = "cpu",
) -> dict[str, float | int]:
    """Train a linear classifier on (a per-class `fraction` of) the training features.

    `steps` bounds the L-BFGS iterations (each one a full pass over the training features).
    Returns fractions `train_top1`, `test_top1`, `test_top5` and the subset size.
    """
    if steps < 1:
        raise ValueError(f"linear probe needs at least one step, got {steps}")
    train_labels = as_tensor(train_labels, torch.long)
    test_labels = as_tensor(test_labels, torch.long)
    num_classes = num_classes or int(max(train_labels.max(), test_labels.max())) + 1
    keep = torch.from_numpy(sample_fraction(train_labels.numpy(), fraction, seed))

    device = torch.device(device)
    x_train = as_tensor(train_feats, torch.float32)[keep].to(device)
    y_train = train_labels[keep].to(device)
    x_test = as_tensor(test_feats, torch.float32).to(device)
    mean = x_train.mean(dim=0)
    std = x_train.std(dim=0, unbiased=False).clamp_min(1e-6)
    x_train = (x_train - mean) / std
    x_test = (x_test - mean) / std

    weight = torch.zeros(num_classes, x_train.shape[1], device=device, requires_grad=True)
    bias = torch.zeros(num_classes, device=device, requires_grad=True)
    optimizer = torch.optim.LBFGS([weight, bias], lr=1.0, max_iter=steps, history_size=20,
                                  tolerance_grad=1e-6, tolerance_change=1e-9, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = F.cross_entropy(x_train @ weight.T + bias, y_train) + 0.5 * weight_decay * weight.pow(2).sum()
        loss.backward()
        return loss

    optimizer.step(closure)
    with torch.no_grad():
        train_logits = (x_train @ weight.T + bias).cpu()
        test_logits = (x_test @ weight.T + bias).cpu()
        final_loss = float(F.cross_entropy(train_logits, y_train.cpu()))
    return {
        "train_top1": _accuracy(train_logits, y_train.cpu()),
        "test_top1": _accuracy(test_logits, test_labels),
        "test_top5": _accuracy(test_logits, test_labels, k=5),
        "train_loss": final_loss,
        "train_videos": int(len(keep)),
        "test_videos": int(len(test_labels)),
        "fraction": float(fraction),
        "steps": int(steps),
        "weight_decay": float(weight_decay),
    }
