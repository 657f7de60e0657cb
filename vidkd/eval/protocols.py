"""Evaluation protocols by name, run on a run directory, a checkpoint or `random:ARCH`.

The dataset and transforms come from the run's `config.yaml` unless overridden; every setting
of a protocol comes from the config's `eval` section. Retrieval, kNN and the linear probe share
one feature extraction per subset (cached on disk under `<out>/features/`); fine-tuning trains a
copy of the backbone through the engine. Each protocol writes one result file, named by
`vidkd.runs.result_name(protocol, split, fraction)` (default `<out>` = `RUN/eval/`).
"""

from __future__ import annotations

import copy
import dataclasses
import datetime as dt
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
from torch import nn

from vidkd import runs
from vidkd.config import Config, load_config, parse_overrides
from vidkd.data.datasets import VideoSplit, load_split
from vidkd.data.loaders import MultiClipDataset
from vidkd.data.transforms import transforms_from_config
from vidkd.errors import ConfigError, DatasetError, VidkdError
from vidkd.eval.features import FeatureCache, extract_features, split_fingerprint, weights_fingerprint
from vidkd.eval.finetune import finetune
from vidkd.eval.fractions import check_fraction
from vidkd.eval.knn import knn_classify
from vidkd.eval.linear import linear_probe
from vidkd.eval.retrieval import DEFAULT_KS, retrieval_recall
from vidkd.models import build_backbone
from vidkd.models.loading import load_backbone
from vidkd.utils.io import atomic_write_json
from vidkd.utils.runtime import resolve_device, seed_everything

log = logging.getLogger("vidkd.eval")

CLIPS_PER_FORWARD = 64  # feature extraction batches this many clips


def checkpoint_summary(info: dict[str, Any]) -> dict[str, Any]:
    """What the result file records about the weights: file, format, epoch, tensors loaded."""
    summary = {k: (str(v) if isinstance(v, Path) else v) for k, v in info.items()
               if isinstance(v, (str, int, float, bool, Path, type(None)))}
    report = info.get("report")
    if isinstance(report, dict):
        summary.update(file=report.get("source"), format=report.get("format"),
                       loaded_tensors=len(report.get("loaded", [])), missing_tensors=len(report.get("missing", [])))
    meta = info.get("meta")
    if isinstance(meta, dict) and "epoch" in meta:
        summary["epoch"] = meta["epoch"]
    return summary


def load_source(source: str | Path, overrides: list[str] | None) -> tuple[nn.Module, Config, Path | None, dict[str, Any]]:
    """Backbone, resolved config, run directory (or None) and loading info for an evaluation source."""
    text = str(source)
    if text.startswith("random:"):
        arch = text.split(":", 1)[1]
        if not arch:
            raise ConfigError("random source needs an architecture, for example random:r3d")
        cfg = load_config(None, list(overrides or []) + [f"model.arch={arch}"])
        seed_everything(cfg.train.seed)  # the same seed gives the same random network
        backbone = build_backbone(arch, width=cfg.model.width, in_channels=3)
        return backbone, cfg, None, {"arch": arch, "width": cfg.model.width, "init": "random", "seed": cfg.train.seed}

    path = Path(text)
    if not path.exists():
        raise ConfigError(f"evaluation source {path} does not exist; pass a run directory, a checkpoint, or random:ARCH")
    run_dir = runs.find_run_dir(path)
    cfg = load_config(runs.config_path(run_dir) if run_dir else None, overrides)
    # a foreign state_dict says nothing about its network: --set model.arch/model.width name it
    model_overrides = parse_overrides(overrides).get("model", {})
    backbone, info = load_backbone(path, arch=model_overrides.get("arch"), width=model_overrides.get("width"))
    info = dict(info)
    info.setdefault("arch", getattr(backbone, "arch", cfg.model.arch))
    return backbone, cfg, run_dir, info


@dataclass
class EvaluationContext:
    """What every protocol may use: the backbone, the splits, the config and shared features."""

    backbone: nn.Module
    cfg: Config
    train_split: VideoSplit
    test_split: VideoSplit
    device: torch.device
    fraction: float
    get_features: Callable[[str], tuple[torch.Tensor, torch.Tensor]]
    progress: bool = True
    dataset_info: dict[str, Any] = field(default_factory=dict)

    @property
    def num_classes(self) -> int:
        return len(self.train_split.class_names)

    def features(self) -> tuple[torch.Tensor, ...]:
        train_feats, train_labels = self.get_features("train")
        test_feats, test_labels = self.get_features("test")
        self.dataset_info.update(train_features=len(train_feats), test_features=len(test_feats))
        return train_feats, train_labels, test_feats, test_labels


ProtocolResult = tuple[dict[str, Any], dict[str, Any]]  # (settings, metrics)


def retrieval(ctx: EvaluationContext) -> ProtocolResult:
    train_feats, train_labels, test_feats, test_labels = ctx.features()
    settings = {"queries": "test", "gallery": "train", "similarity": "cosine", "ks": list(DEFAULT_KS),
                "num_clips": ctx.cfg.eval.num_clips, "crop": "centre"}
    return settings, retrieval_recall(test_feats, test_labels, train_feats, train_labels, ks=DEFAULT_KS)


def knn(ctx: EvaluationContext) -> ProtocolResult:
    train_feats, train_labels, test_feats, test_labels = ctx.features()
    e = ctx.cfg.eval
    settings = {"k": e.knn_k, "temperature": e.knn_temperature, "num_clips": e.num_clips, "crop": "centre"}
    return settings, knn_classify(train_feats, train_labels, test_feats, test_labels, k=e.knn_k,
                                  temperature=e.knn_temperature, num_classes=ctx.num_classes)


def linear(ctx: EvaluationContext) -> ProtocolResult:
    train_feats, train_labels, test_feats, test_labels = ctx.features()
    e, seed = ctx.cfg.eval, ctx.cfg.train.seed
    settings = {"optimizer": "lbfgs", "steps": e.linear_steps, "fraction": ctx.fraction, "seed": seed,
                "num_clips": e.num_clips, "standardised": True}
    return settings, linear_probe(train_feats, train_labels, test_feats, test_labels, num_classes=ctx.num_classes,
                                  fraction=ctx.fraction, seed=seed, steps=e.linear_steps)


def finetuning(ctx: EvaluationContext) -> ProtocolResult:
    cfg, e = ctx.cfg, ctx.cfg.eval
    finetune_transform, test_transform = transforms_from_config(cfg.data, colour_augmentation=False)
    settings = {"epochs": e.finetune_epochs, "lr": e.finetune_lr, "backbone_lr_scale": e.finetune_backbone_lr_scale,
                "batch_size": e.finetune_batch_size, "fraction": ctx.fraction, "seed": cfg.train.seed,
                "momentum": cfg.train.momentum, "weight_decay": cfg.train.weight_decay, "schedule": "cosine",
                "dropout": e.finetune_dropout, "test_clips": e.num_clips}
    metrics = finetune(
        copy.deepcopy(ctx.backbone), ctx.train_split, ctx.test_split, train_transform=finetune_transform,
        test_transform=test_transform, epochs=e.finetune_epochs, lr=e.finetune_lr,
        backbone_lr_scale=e.finetune_backbone_lr_scale, batch_size=e.finetune_batch_size, fraction=ctx.fraction,
        seed=cfg.train.seed, clip_len=cfg.data.clip_len, num_test_clips=e.num_clips, momentum=cfg.train.momentum,
        weight_decay=cfg.train.weight_decay, dropout=e.finetune_dropout, device=ctx.device,
        num_workers=cfg.data.num_workers, amp=cfg.train.amp, progress=ctx.progress)
    return settings, metrics


PROTOCOLS: dict[str, Callable[[EvaluationContext], ProtocolResult]] = {
    "retrieval": retrieval, "knn": knn, "linear": linear, "finetune": finetuning}


def check_protocols(protocols: Sequence[str]) -> list[str]:
    protocols = list(dict.fromkeys(protocols))  # keep order, drop repeats
    unknown = [p for p in protocols if p not in PROTOCOLS]
    if unknown or not protocols:
        raise ConfigError(f"unknown protocol {', '.join(unknown) or '(none)'}; choose from {', '.join(PROTOCOLS)}")
    return protocols


def evaluate(
    source: str | Path,
    protocols: Sequence[str] = ("retrieval", "knn"),
    data_root: str | Path | None = None,
    layout: str | None = None,
    split: int | None = None,
    fraction: float | None = None,
    epochs: int | None = None,
    overrides: list[str] | None = None,
    out: str | Path | None = None,
    progress: bool = True,
    on_result: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, dict[str, Any]]:
    """Run `protocols` on `source`; returns {protocol: result record} and writes one JSON each.

    `source` is a run directory, a checkpoint (directory or weights file) or `random:ARCH`.
    Results go to `out`, by default `RUN/eval/`; without either (e.g. `random:`) nothing is written.
    `fraction` and `epochs` override `eval.fraction` and `eval.finetune_epochs` / `eval.linear_steps`.
    `on_result` is called with each record as soon as it is computed, before it is written, so a
    failed write never loses a result.
    """
    protocols = check_protocols(protocols)
    if epochs is not None and epochs < 1:
        raise ConfigError(f"--epochs must be at least 1; got {epochs}")

    backbone, cfg, run_dir, info = load_source(source, overrides)
    if data_root is not None:
        cfg.data.root = str(data_root)
    if layout is not None:
        cfg.data.layout = layout
    if split is not None:
        cfg.data.split = split
    if epochs is not None:
        cfg.eval.finetune_epochs = cfg.eval.linear_steps = epochs
    fraction = check_fraction(cfg.eval.fraction if fraction is None else fraction)
    root = Path(cfg.data.root)
    if not root.exists():
        raise DatasetError(f"dataset root {root} not found; pass --data ROOT (or fix data.root in the run's config.yaml)")

    out_dir = Path(out) if out is not None else (runs.eval_dir(run_dir) if run_dir else None)
    if out_dir is None:
        log.info("no run directory and no --out: results are printed, not written")
    device = resolve_device(cfg.train.device)
    backbone = backbone.to(device)
    seed = cfg.train.seed
    train_split = load_split(root, "train", split=cfg.data.split, layout=cfg.data.layout, seed=seed)
    test_split = load_split(root, "test", split=cfg.data.split, layout=cfg.data.layout, seed=seed)
    _, test_transform = transforms_from_config(cfg.data)
    dataset_info = {"root": str(root), "layout": train_split.layout, "split": cfg.data.split,
                    "classes": len(train_split.class_names), "train_videos": len(train_split.records),
                    "test_videos": len(test_split.records)}

    cache = FeatureCache(runs.features_dir(out_dir) if out_dir else None)
    fingerprint = weights_fingerprint(backbone) if out_dir else ""
    features: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
    num_clips = cfg.eval.num_clips

    def get_features(subset: str) -> tuple[torch.Tensor, torch.Tensor]:
        if subset not in features:
            split_obj = train_split if subset == "train" else test_split
            dataset = MultiClipDataset(split_obj, num_clips, cfg.data.clip_len, test_transform, progress=progress)
            usable = dataclasses.replace(split_obj, records=dataset.records)  # unreadable videos are left out
            key = {"weights": fingerprint, "videos": split_fingerprint(usable), "root": str(root.resolve()),
                   "layout": split_obj.layout, "split": cfg.data.split, "subset": subset, "num_clips": num_clips,
                   "clip_len": cfg.data.clip_len, "resize": list(cfg.data.resize), "crop": cfg.data.crop,
                   "mean": list(cfg.data.mean), "std": list(cfg.data.std), "modality": cfg.data.modality}
            features[subset] = cache.get_or_extract(key, lambda: extract_features(
                backbone, dataset, batch_size=max(1, CLIPS_PER_FORWARD // num_clips), device=device,
                num_workers=cfg.data.num_workers, desc=f"features {subset}", amp=cfg.train.amp, progress=progress))
        return features[subset]

    ctx = EvaluationContext(backbone, cfg, train_split, test_split, device, fraction, get_features, progress,
                            dataset_info)
    results: dict[str, dict[str, Any]] = {}
    failed_writes: list[str] = []
    # a fixed order: the frozen-feature protocols share one extraction, fine-tuning (of a copy) comes last
    for protocol in sorted(protocols, key=list(PROTOCOLS).index):
        start = time.time()
        settings, metrics = PROTOCOLS[protocol](ctx)
        history = metrics.pop("history", None)
        record = {
            "protocol": protocol,
            "source": str(source),
            "arch": info.get("arch", cfg.model.arch),
            "width": info.get("width", cfg.model.width),
            "checkpoint": checkpoint_summary(info),
            "dataset": dict(dataset_info),
            "input": {"clip_len": cfg.data.clip_len, "resize": list(cfg.data.resize), "crop": cfg.data.crop,
                      "modality": cfg.data.modality},
            "settings": settings,
            "metrics": metrics,
            "device": str(device),
            "timestamp": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "seconds": round(time.time() - start, 3),
        }
        if history is not None:
            record["history"] = history
        if on_result is not None:
            on_result(record)
        if out_dir is not None:
            path = runs.result_path(out_dir, protocol, cfg.data.split, fraction)
            try:
                atomic_write_json(path, record)
                record["path"] = str(path)
            except OSError as exc:
                failed_writes.append(f"{path} ({exc.strerror or exc})")
        results[protocol] = record
    if failed_writes:
        raise VidkdError(f"results computed (shown above) but not written: {failed_writes[0]}"
                         f"{f' and {len(failed_writes) - 1} more' if len(failed_writes) > 1 else ''}; "
                         "free disk space or make the directory writable, or pass --out DIR")
    return results


HEADLINE = {"retrieval": ("R@1", "R@5", "R@10", "R@20", "R@50"), "knn": ("top1", "top5"),
            "linear": ("test_top1", "test_top5", "train_top1"), "finetune": ("video_top1", "clip_top1")}


def format_results(results: dict[str, dict[str, Any]], header: bool = True, written: bool = True) -> str:
    """A short table: protocol, headline metrics (in %), seconds (and where the results went)."""
    lines = [f"{'protocol':<10} {'metrics (%)':<56} {'seconds':>8}"] if header else []
    for protocol, record in results.items():
        shown = "  ".join(f"{name} {100 * record['metrics'][name]:.1f}"
                          for name in HEADLINE[protocol] if name in record["metrics"])
        lines.append(f"{protocol:<10} {shown:<56} {record['seconds']:>8.1f}")
    paths = [r["path"] for r in results.values() if "path" in r]
    if written and paths:
        lines.append(f"results written to {Path(paths[0]).parent}/")
    return "\n".join(lines)
