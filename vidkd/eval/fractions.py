"""Labelled-fraction subsets of a training split (the follow-up study: 100/50/25/2% of UCF101)."""

from __future__ import annotations

import dataclasses
from typing import Any, Sequence

import numpy as np

from vidkd.errors import ConfigError


def check_fraction(fraction: float) -> float:
    if not 0 < fraction <= 1:
        raise ConfigError(f"labelled fraction must be in (0, 1], got {fraction} (for example --fraction 0.25)")
    return float(fraction)


def sample_fraction(labels: Sequence[int] | np.ndarray, fraction: float, seed: int = 0) -> np.ndarray:
    """Sorted indices of a per-class random subset: round(fraction * n_c) videos of each class c.

    Every class present keeps at least one video, so 2% of UCF101 still covers all 101 classes.
    The same labels, fraction and seed always give the same indices.
    """
    fraction = check_fraction(fraction)
    labels = np.asarray(labels)
    if fraction == 1.0:
        return np.arange(len(labels))
    rng = np.random.default_rng(seed)
    chosen = []
    for cls in np.unique(labels):  # sorted, so the draw order does not depend on the label order
        members = np.flatnonzero(labels == cls)
        keep = max(1, int(round(fraction * len(members))))
        chosen.append(rng.permutation(members)[:keep])
    return np.sort(np.concatenate(chosen)) if chosen else np.arange(0)


def fraction_of_split(split: Any, fraction: float, seed: int = 0) -> Any:
    """The same `VideoSplit` with only a per-class fraction of its records."""
    if fraction == 1.0:
        return split
    keep = sample_fraction([record.label for record in split.records], fraction, seed)
    return dataclasses.replace(split, records=[split.records[i] for i in keep])
