"""Frozen-backbone feature extraction, and a cache so protocols extract each split once.

Retrieval, kNN and the linear probe share one extraction: 10 evenly spaced centre-crop clips per
video, one feature per clip, averaged over the clips. The feature of a clip is one of
`FEATURE_KINDS`:

- `pooled`: the backbone's globally average-pooled last stage (feature_dim, 512 at width 1).
- `conv5_maxpool`: the last feature map max-pooled with kernel and stride (1, 2, 2) and flattened,
  as PCL's and VCOP's `retrieve_clips.py` (`return_conv=True`). Its size is
  C * T' * floor(H'/2) * floor(W'/2) for a last map (C, T', H', W'): 512 * 2 * 3 * 3 = 9216 for
  C3D, R3D and R(2+1)D at 16x112x112 (map 2x7x7), 16384 at 16x128x128 (2x8x8), 2048 at 8x64x64
  (1x4x4).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from vidkd.errors import CheckpointError
from vidkd.eval.runtime import EvalRuntime
from vidkd.utils.io import load_weights, save_weights
from vidkd.utils.runtime import autocast_context


log = logging.getLogger(__name__)

CACHE_VERSION = 1
FEATURE_KINDS = ("pooled", "conv5_maxpool")


def clip_features(backbone: nn.Module, clips: torch.Tensor, feature: str = "pooled") -> torch.Tensor:
    """(N, C, T, H, W) clips -> (N, d) features of kind `feature` (see the module docstring)."""
    if feature == "pooled":
        return backbone(clips)
    if feature == "conv5_maxpool":
        _, feature_map = backbone(clips, return_map=True)
        return F.max_pool3d(feature_map, kernel_size=(1, 2, 2), stride=(1, 2, 2)).flatten(1)
    raise ValueError(f"unknown feature kind {feature!r}; choose from {', '.join(FEATURE_KINDS)}")


@torch.no_grad()
def extract_features(
    backbone: nn.Module,
    dataset: Dataset,
    batch_size: int = 8,
    runtime: EvalRuntime = EvalRuntime(),
    desc: str = "features",
    amp: str = "none",
    feature: str = "pooled",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Features (N, d) float32 and labels (N,) of every video of `dataset`, in dataset order.

    Items are `{"clips": (n_clips, C, T, H, W), "label", ...}` (or `{"clip": (C, T, H, W)}`).
    All clips of a batch of videos go through the backbone in one forward pass; a video's
    feature is the mean of its clips' features (of kind `feature`). `batch_size` counts videos;
    `runtime` gives the device, loader workers and progress bar (its `preload` is the caller's).
    """
    if feature not in FEATURE_KINDS:
        raise ValueError(f"unknown feature kind {feature!r}; choose from {', '.join(FEATURE_KINDS)}")
    device = torch.device(runtime.device)
    was_training = backbone.training
    backbone.eval()
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=runtime.num_workers,
                        pin_memory=device.type == "cuda", persistent_workers=False)
    features, labels = [], []
    try:
        for batch in tqdm(loader, desc=desc, leave=False, disable=not runtime.progress, unit="batch"):
            clips = batch["clips"] if "clips" in batch else batch["clip"].unsqueeze(1)
            num_videos, num_clips = clips.shape[:2]
            clips = clips.reshape(num_videos * num_clips, *clips.shape[2:]).to(device, non_blocking=True)
            with autocast_context(device, amp):
                out = clip_features(backbone, clips, feature)
            out = out.float().reshape(num_videos, num_clips, -1).mean(dim=1)
            features.append(out.cpu())
            labels.append(torch.as_tensor(batch["label"]).long())
    finally:
        backbone.train(was_training)
    if not features:
        raise ValueError(f"{desc}: the dataset is empty")
    return torch.cat(features), torch.cat(labels)


def weights_fingerprint(module: nn.Module) -> str:
    """A hash of every parameter and buffer, so a cache entry belongs to exactly these weights."""
    digest = hashlib.blake2b(digest_size=16)
    for name, tensor in sorted(module.state_dict().items()):
        digest.update(name.encode())
        digest.update(str(tensor.dtype).encode())
        digest.update(str(tuple(tensor.shape)).encode())
        digest.update(tensor.detach().to("cpu").contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def split_fingerprint(split: Any) -> str:
    """A hash of a split's videos (relative paths and labels) and class names."""
    digest = hashlib.blake2b(digest_size=16)
    root = Path(split.root)
    for record in split.records:
        path = Path(record.path)
        with contextlib.suppress(ValueError):
            path = path.relative_to(root)
        digest.update(f"{path}\t{record.label}\n".encode())
    digest.update("\n".join(split.class_names).encode())
    return digest.hexdigest()


class FeatureCache:
    """Extracted features on disk as safetensors, one file per key.

    The key is any JSON-able dict; callers put in it everything the features depend on (weights
    fingerprint, dataset fingerprint, subset, split, number of clips, clip length, crop, resize,
    normalisation, modality, feature kind, precision). A changed setting gives a new file, never stale features.
    """

    def __init__(self, directory: str | Path | None):
        self.directory = Path(directory) if directory is not None else None

    def path_for(self, key: dict[str, Any]) -> Path | None:
        if self.directory is None:
            return None
        text = json.dumps({"version": CACHE_VERSION, **key}, sort_keys=True, default=str)
        name = str(key.get("subset", "features"))
        return self.directory / f"{name}-{hashlib.sha1(text.encode()).hexdigest()[:16]}.safetensors"

    def load(self, key: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor] | None:
        path = self.path_for(key)
        if path is None or not path.is_file():
            return None
        try:
            tensors = load_weights(path)
            return tensors["features"], tensors["labels"]
        except (CheckpointError, KeyError) as exc:
            log.warning("ignoring damaged feature cache %s (%s); extracting again", path, exc)
            return None

    def save(self, key: dict[str, Any], features: torch.Tensor, labels: torch.Tensor) -> None:
        path = self.path_for(key)
        if path is None:
            return
        meta = {"key": json.dumps(key, sort_keys=True, default=str), "version": str(CACHE_VERSION)}
        try:
            save_weights({"features": features.float(), "labels": labels.long()}, path, metadata=meta)
        except Exception as exc:  # a cache that cannot be written costs time, not results
            log.warning("could not cache features at %s (%s); continuing without the cache", path,
                        str(exc).splitlines()[0][:120] if str(exc) else type(exc).__name__)

    def get_or_extract(self, key: dict[str, Any],
                       extract: Callable[[], tuple[torch.Tensor, torch.Tensor]]) -> tuple[torch.Tensor, torch.Tensor]:
        cached = self.load(key)
        if cached is not None:
            log.info("features from cache: %s", self.path_for(key))
            return cached
        features, labels = extract()
        self.save(key, features, labels)
        return features, labels
