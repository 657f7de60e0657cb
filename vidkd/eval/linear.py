"""Linear probe: a softmax classifier trained on frozen, cached video features.

Features are standardised with the training subset's statistics; the classifier is trained
full-batch with L-BFGS on cross-entropy plus an L2 penalty. Zero initialisation and a
deterministic optimiser make the result depend only on the features and the labelled subset.

The L2 strength matters more than anything else when there are few labelled videos per feature
dimension, so it is chosen, never on the test split: given several candidates and the training
videos' groups (actors), each candidate is scored by leave-groups-out validation on the training
subset, and the best one is refit on the whole subset.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from vidkd.config import Config
from vidkd.eval.fractions import sample_fraction
from vidkd.eval.retrieval import as_tensor

log = logging.getLogger("vidkd.eval")


def _accuracy(logits: torch.Tensor, labels: torch.Tensor, k: int = 1) -> float:
    top = logits.topk(min(k, logits.shape[1]), dim=1).indices
    return float((top == labels[:, None]).any(dim=1).float().mean())


def _fit(x_train: torch.Tensor, y_train: torch.Tensor, num_classes: int, steps: int,
         weight_decay: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(weight, bias) of the L2-penalised softmax classifier on standardised features."""
    weight = torch.zeros(num_classes, x_train.shape[1], device=x_train.device, requires_grad=True)
    bias = torch.zeros(num_classes, device=x_train.device, requires_grad=True)
    optimizer = torch.optim.LBFGS([weight, bias], lr=1.0, max_iter=steps, history_size=20,
                                  tolerance_grad=1e-6, tolerance_change=1e-9, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = F.cross_entropy(x_train @ weight.T + bias, y_train) + 0.5 * weight_decay * weight.pow(2).sum()
        loss.backward()
        return loss

    optimizer.step(closure)
    return weight.detach(), bias.detach()


def _standardise(x_train: torch.Tensor, *others: torch.Tensor) -> list[torch.Tensor]:
    mean = x_train.mean(dim=0)
    std = x_train.std(dim=0, unbiased=False).clamp_min(1e-6)
    return [(x - mean) / std for x in (x_train, *others)]


def group_folds(groups: Sequence[str], folds: int) -> list[np.ndarray]:
    """Boolean validation masks: the distinct groups dealt round-robin (sorted) into `folds` folds."""
    groups = np.asarray([str(g) for g in groups])
    distinct = sorted(set(groups.tolist()))
    folds = min(folds, len(distinct))
    return [np.isin(groups, distinct[i::folds]) for i in range(folds)]


def choose_weight_decay(features: torch.Tensor, labels: torch.Tensor, groups: Sequence[str],
                        candidates: Sequence[float], num_classes: int, steps: int,
                        folds: int = 3) -> tuple[float, dict[str, float]]:
    """The candidate with the best mean accuracy on held-out groups (ties: the stronger penalty).
    With a single group nothing can be held out: the middle candidate, with a warning."""
    masks = group_folds(groups, folds)
    if len(masks) < 2:
        middle = sorted(candidates)[len(candidates) // 2]
        log.warning("one group in the labelled training videos: the linear probe's weight decay cannot be chosen "
                    "on held-out groups; using %g", middle)
        return float(middle), {}
    scores = {}
    for weight_decay in candidates:
        accuracies = []
        for val in masks:
            val = torch.from_numpy(val)
            x_fit, x_val = _standardise(features[~val], features[val])
            weight, bias = _fit(x_fit, labels[~val], num_classes, steps, weight_decay)
            accuracies.append(_accuracy(x_val @ weight.T + bias, labels[val]))
        scores[f"{weight_decay:g}"] = float(np.mean(accuracies))
    best = max(sorted(candidates, reverse=True), key=lambda wd: scores[f"{wd:g}"])
    return float(best), scores


@dataclass(frozen=True)
class LinearRecipe:
    """How the probe is fitted: the labelled share and its seed, the L-BFGS steps, the L2 strength(s).

    `steps` bounds the L-BFGS iterations (each one a full pass over the training features). Several
    `weight_decay` values are chosen among by leave-groups-out validation on the labelled subset.
    """

    fraction: float = 1.0
    seed: int = 0
    steps: int = 300
    weight_decay: float | Sequence[float] = 5e-4

    @classmethod
    def from_config(cls, cfg: Config, fraction: float) -> LinearRecipe:
        """The vidkd recipe: `eval.linear_steps` and `eval.linear_weight_decay`, `train.seed`."""
        return cls(fraction=fraction, seed=cfg.train.seed, steps=cfg.eval.linear_steps,
                   weight_decay=cfg.eval.linear_weight_decay)


def linear_probe(
    train_feats: torch.Tensor | np.ndarray,
    train_labels: torch.Tensor | np.ndarray | Sequence[int],
    test_feats: torch.Tensor | np.ndarray,
    test_labels: torch.Tensor | np.ndarray | Sequence[int],
    recipe: LinearRecipe = LinearRecipe(),
    num_classes: int | None = None,
    train_groups: Sequence[str] | None = None,
    device: str | torch.device = "cpu",
) -> dict[str, float | int]:
    """Train a linear classifier on (a per-class `recipe.fraction` of) the training features.

    Choosing among several weight decays needs `train_groups`, one per training video. Returns
    fractions `train_top1`, `test_top1`, `test_top5`, the subset size and the weight decay used.
    """
    fraction, seed, steps, weight_decay = recipe.fraction, recipe.seed, recipe.steps, recipe.weight_decay
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
    candidates = [float(weight_decay)] if isinstance(weight_decay, (int, float)) else [float(w) for w in weight_decay]
    validation: dict[str, float] = {}
    if len(candidates) > 1:
        if train_groups is None or len(train_groups) != len(train_labels):
            raise ValueError("choosing among several weight decays needs one group per training video")
        subset_groups = [train_groups[i] for i in keep.tolist()]
        chosen, validation = choose_weight_decay(x_train, y_train, subset_groups, candidates, num_classes, steps)
    else:
        chosen = candidates[0]
    x_train, x_test = _standardise(x_train, x_test)
    weight, bias = _fit(x_train, y_train, num_classes, steps, chosen)
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
        "weight_decay": chosen,
        **({"validation_top1_by_weight_decay": validation} if validation else {}),
    }
