"""What pretext methods share: a backbone built (and maybe initialised) from the config, the
train/test splits of the run, and tuple datasets with fixed validation tuples."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.utils.data import ConcatDataset, Dataset

from vidkd.config import Config
from vidkd.data.datasets import VideoSplit, load_split
from vidkd.data.loaders import MaterializedDataset, TupleDataset, materialized_bytes
from vidkd.data.samplers import ClipSampler, TupleSampler
from vidkd.data.sampling import TupleSpec
from vidkd.data.transforms import transforms_from_config
from vidkd.models import build_backbone
from vidkd.models.loading import load_into, read_weights
from vidkd.utils.runtime import resolve_device

log = logging.getLogger("vidkd.methods")

IN_MEMORY_BYTES = 2 * 1024**3  # keep fixed validation clips in memory up to this size
VALIDATION_SEED_STRIDE = 7919  # a prime: the r-th set of validation tuples per video


def backbone_from_config(cfg: Config) -> nn.Module:
    """`model.arch` at `model.width` (`model.weight_init`), initialised from `model.init` and frozen if asked."""
    backbone = build_backbone(cfg.model.arch, width=cfg.model.width, weight_init=cfg.model.weight_init)
    if cfg.model.init:
        report = load_into(backbone, read_weights(cfg.model.init), cfg.model.arch, cfg.model.width,
                           allow_partial=cfg.model.init_allow_partial, only_backbone=True)
        log.info("backbone initialised from %s", report.summary)
    if cfg.model.freeze_backbone:
        for parameter in backbone.parameters():
            parameter.requires_grad_(False)
    return backbone


@dataclass
class RunSplits:
    train: VideoSplit
    test: VideoSplit


def run_splits(cfg: Config) -> RunSplits:
    data = cfg.data
    return RunSplits(
        train=load_split(data.root, "train", split=data.split, layout=data.layout, seed=cfg.train.seed),
        test=load_split(data.root, "test", split=data.split, layout=data.layout, seed=cfg.train.seed))


def tuple_spec(cfg: Config) -> TupleSpec:
    return TupleSpec(clip_len=cfg.data.clip_len, interval=cfg.data.interval, tuple_len=cfg.data.tuple_len,
                     starts=cfg.data.tuple_starts)


def tuple_sampler(cfg: Config, kind: type[TupleSampler] = TupleSampler, **options: Any) -> TupleSampler:
    """Tuples of the run's data settings: plain (clips in order), or a method's `kind` with its `options`."""
    return kind(tuple_spec(cfg), shared_augmentation=cfg.data.shared_augmentation,
                min_video_frames=cfg.data.min_video_frames, **options)


def tuple_datasets(cfg: Config, splits: RunSplits, sampler: ClipSampler) -> tuple[TupleDataset, Dataset]:
    """(training items, fixed validation items on the test split) of a method's `sampler`."""
    train_tf, eval_tf = transforms_from_config(cfg.data)
    train = TupleDataset(splits.train, sampler, train_tf, seed=cfg.train.seed, deferred=augments_on_model(cfg))
    if cfg.data.preload:
        train.preload(train_tf.resize)
    # fixed tuples (same clips and transformations every epoch), several per video if asked
    val_tf = train_tf if cfg.train.val_augmented else eval_tf  # fixed=True: the same draw every epoch
    val_sets = [TupleDataset(splits.test, sampler.for_validation(), val_tf, seed=cfg.train.seed + VALIDATION_SEED_STRIDE * r,
                             fixed=True, progress=False)
                for r in range(cfg.train.val_tuples_per_video)]
    if cfg.data.preload:  # the test videos: shared with the other validation draws and the evaluations
        for val_set in val_sets:
            val_set.preload(val_tf.resize, progress=False)
    val: Dataset = val_sets[0] if len(val_sets) == 1 else ConcatDataset(val_sets)
    return train, val


def augments_on_model(cfg: Config) -> bool:
    """`data.transform_device`: whether training clips are augmented on the model's device (auto: on a GPU)."""
    where = cfg.data.transform_device
    return where == "model" or (where == "auto" and resolve_device(cfg.train.device).type == "cuda")


def in_memory(dataset: Dataset, clips_per_item: int, cfg: Config) -> Dataset:
    """Decode a fixed dataset once when it fits in memory (every later pass is compute-bound)."""
    if isinstance(dataset, MaterializedDataset):
        return dataset
    size = materialized_bytes(len(dataset), clips_per_item, cfg.data.clip_len, cfg.data.crop)
    if size > IN_MEMORY_BYTES:
        return dataset
    return MaterializedDataset(dataset, cfg.data.num_workers)


def input_meta(cfg: Config) -> dict[str, Any]:
    data = cfg.data
    return {"clip_len": data.clip_len, "crop": data.crop, "modality": data.modality, "mean": data.mean,
            "std": data.std}


def pretext_validation_sums(logits: torch.Tensor, labels: torch.Tensor, num_classes: int) -> dict[str, torch.Tensor]:
    """Correct predictions, summed cross-entropy, count and predictions per class of one batch."""
    logits = logits.float()
    predicted = logits.argmax(1)
    return {"correct": (predicted == labels).sum().double(),
            "loss": nn.functional.cross_entropy(logits, labels, reduction="sum").double(),
            "count": torch.tensor(float(labels.numel()), dtype=torch.float64, device=logits.device),
            "predicted": torch.bincount(predicted, minlength=num_classes).double()}


def pretext_validation_metrics(sums: dict[str, Any], accuracy: str = "val_pretext_acc") -> dict[str, float]:
    """A classification pretext's validation metrics; `accuracy`: the key of its accuracy (its main metric)."""
    count = max(1.0, float(sums["count"]))
    # share of the most predicted class: 1.0 means a constant predictor, whatever its accuracy
    return {accuracy: float(sums["correct"]) / count, "val_loss": float(sums["loss"]) / count,
            "val_top_class_share": float(torch.as_tensor(sums["predicted"]).max()) / count}


def pretext_score(metrics: dict[str, Any], best_by: str = "accuracy", accuracy: str = "val_pretext_acc") -> float:
    """Validation pretext accuracy (`accuracy`: its key), with a network that predicts one class
    everywhere ranked last; with `best_by="loss"` (the reference PCL code's rule) minus the validation loss."""
    if best_by == "loss" and metrics.get("val_loss") is not None:
        return -float(metrics["val_loss"])
    if metrics.get("val_top_class_share") == 1.0:
        # a constant predictor scores that label's share of the validation set; as a "best"
        # checkpoint (and so as a teacher) it would only pass on the collapse
        return float(metrics[accuracy]) - 1.0
    for key in (accuracy, "val_knn_top1"):
        if metrics.get(key) is not None:
            return float(metrics[key])
    return -float(metrics.get("train_loss") or 0.0)
