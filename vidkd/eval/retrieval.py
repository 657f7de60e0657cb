"""Nearest-neighbour video retrieval, R@k, as PCL and VCOP measure it.

Every test video queries the training videos. A query scores a hit at k when any of its k most
similar gallery videos (cosine similarity of clip-averaged features) shares its class.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from vidkd.protocol_specs import RETRIEVAL_KS, recall_name  # the ks and their metric names are the registry's


def as_tensor(values: torch.Tensor | np.ndarray | Sequence, dtype: torch.dtype | None = None) -> torch.Tensor:
    """Accept tensors, arrays or lists; the protocols work on CPU tensors."""
    tensor = torch.as_tensor(values)
    return tensor.to(dtype) if dtype is not None else tensor


def retrieval_recall(
    query_feats: torch.Tensor | np.ndarray,
    query_labels: torch.Tensor | np.ndarray | Sequence[int],
    gallery_feats: torch.Tensor | np.ndarray,
    gallery_labels: torch.Tensor | np.ndarray | Sequence[int],
    ks: Sequence[int] = RETRIEVAL_KS,
    chunk_size: int = 1024,
) -> dict[str, float]:
    """Recall at k for every k in `ks`: the fraction of queries with a same-class item in the top k.

    A k larger than the gallery is clamped to the gallery size (the key keeps its name).
    Queries are processed `chunk_size` at a time so memory stays bounded.
    """
    query = F.normalize(as_tensor(query_feats, torch.float32), dim=1)
    gallery = F.normalize(as_tensor(gallery_feats, torch.float32), dim=1)
    query_labels = as_tensor(query_labels, torch.long)
    gallery_labels = as_tensor(gallery_labels, torch.long)
    if len(query) == 0 or len(gallery) == 0:
        raise ValueError("retrieval needs at least one query and one gallery item")
    if len(query) != len(query_labels) or len(gallery) != len(gallery_labels):
        raise ValueError("features and labels differ in length")
    if any(k < 1 for k in ks):
        raise ValueError(f"every k must be at least 1, got {list(ks)}")

    max_k = min(max(ks), len(gallery))
    hits = {k: 0 for k in ks}
    for start in range(0, len(query), chunk_size):
        sims = query[start:start + chunk_size] @ gallery.T
        top = sims.topk(max_k, dim=1).indices
        same = gallery_labels[top] == query_labels[start:start + chunk_size, None]
        # first_hit[i] = rank of the first same-class item, or max_k when there is none
        first_hit = torch.where(same.any(dim=1), same.float().argmax(dim=1), torch.full_like(top[:, 0], max_k))
        for k in ks:
            hits[k] += int((first_hit < min(k, max_k)).sum())
    return {recall_name(k): hits[k] / len(query) for k in ks}
