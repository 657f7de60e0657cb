"""`vidkd evaluate`: run the evaluation protocols on a run directory, a checkpoint or `random:ARCH`.

The dataset and transforms come from the run's `config.yaml` unless overridden. Retrieval, kNN
and the linear probe share one feature extraction per subset (cached on disk under
`<out>/features/`); fine-tuning trains a copy of the backbone. Each protocol writes
`<out>/<protocol>.json` (default `<out>` = `RUN/eval/`).
"""

from __future__ import annotations

import copy
import dataclasses
import datetime as dt
import logging
import time
from pathlib import Path
from typing import Any, Sequence

import torch
from torch import nn

from vidkd.config import Config, load_config, parse_overrides
from vidkd.engine.checkpoint import atomic_write_json
from vidkd.errors import ConfigError, DatasetError
from vidkd.eval.features import FeatureCache, extract_features, split_fingerprint, weights_fingerprint
from vidkd.eval.fractions import check_fraction
from vidkd.eval.knn import knn_classify
from vidkd.eval.linear import linear_probe
from vidkd.eval.retrieval import DEFAULT_KS, retrieval_recall

log = logging.getLogger("vidkd.eval")

PROTOCOLS = ("retrieval", "knn", "linear", "finetune")
FEATURE_PROTOCOLS = ("retrieval", "knn", "linear")
EVAL_CLIPS = 10  # evenly spaced clips per video, as PCL/VCOP
CLIPS_PER_FORWARD = 64  # feature extraction batches this many clips (EVAL_CLIPS per video)
KNN_TEMPERATURE = 0.07
LINEAR_STEPS = 300
FINETUNE_EPOCHS = 50


def find_run_dir(source: Path) -> Path | None:
    """The run directory holding `source` (itself, a checkpoint dir in it, or a weights file)."""
    path = source if source.is_dir() else source.parent
    for candidate in (path, path.parent, path.parent.parent):
        if (candidate / "config.yaml").is_file():
            return candidate
    return None


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
        from vidkd.engine.trainer import seed_everything
        from vidkd.models import build_backbone

        arch = text.split(":", 1)[1]
        if not arch:
            raise ConfigError("random source needs an architecture, for example random:r3d")
        cfg = load_config(None, list(overrides or []) + [f"model.arch={arch}"])
        seed_everything(cfg.train.seed)  # the same seed gives the same random network
        backbone = build_backbone(arch, width=cfg.model.width, in_channels=3)
        return backbone, cfg, None, {"arch": arch, "width": cfg.model.width, "init": "random", "seed": cfg.train.seed}

    from vidkd.models.loading import load_backbone

    path = Path(text)
    if not path.exists():
        raise ConfigError(f"evaluation source {path} does not exist; pass a run directory, a checkpoint, or random:ARCH")
    run_dir = find_run_dir(path)
    cfg = load_config(run_dir / "config.yaml" if run_dir else None, overrides)
    # a foreign state_dict says nothing about its network: --set model.arch/model.width name it
    model_overrides = parse_overrides(overrides).get("model", {})
    backbone, info = load_backbone(path, arch=model_overrides.get("arch"), width=model_overrides.get("width"))
    info = dict(info)
    info.setdefault("arch", getattr(backbone, "arch", cfg.model.arch))
    return backbone, cfg, run_dir, info


def resolve_device(cfg: Config) -> torch.device:
    from vidkd.engine.trainer import resolve_device as trainer_device

    return trainer_device(cfg, local_rank=0)


def build_eval_transforms(cfg: Config) -> tuple[Any, Any]:
    """(fine-tuning train transform, test transform). Fine-tuning augments with crop and flip only."""
    from vidkd.data.transforms import transforms_from_config

    return transforms_from_config(cfg.data, colour_augmentation=False)


def result_name(protocol: str, split: int, fraction: float) -> str:
    """`finetune.json`; other splits and labelled fractions get a suffix so results never overwrite."""
    name = protocol
    if split != 1:
        name += f"_split{split}"
    if fraction < 1 and protocol in ("linear", "finetune"):
        name += f"_frac{fraction:g}"
    return name + ".json"


def evaluate(
    source: str | Path,
    protocols: Sequence[str] = ("retrieval", "knn"),
    data_root: str | Path | None = None,
    layout: str | None = None,
    split: int | None = None,
    fraction: float = 1.0,
    epochs: int | None = None,
    overrides: list[str] | None = None,
    out: str | Path | None = None,
    progress: bool = True,
) -> dict[str, dict[str, Any]]:
    """Run `protocols` on `source`; returns {protocol: result record} and writes one JSON each.

    `source` is a run directory, a checkpoint (directory or weights file) or `random:ARCH`.
    Results go to `out`, by default `RUN/eval/`; without either (e.g. `random:`) nothing is written.
    `epochs` sets fine-tuning epochs and linear-probe L-BFGS steps.
    """
    from vidkd.data.datasets import load_split
    from vidkd.data.loaders import MultiClipDataset

    protocols = list(dict.fromkeys(protocols))  # keep order, drop repeats
    unknown = [p for p in protocols if p not in PROTOCOLS]
    if unknown or not protocols:
        raise ConfigError(f"unknown protocol {', '.join(unknown) or '(none)'}; choose from {', '.join(PROTOCOLS)}")
    fraction = check_fraction(fraction)
    if epochs is not None and epochs < 1:
        raise ConfigError(f"--epochs must be at least 1; got {epochs}")

    backbone, cfg, run_dir, info = load_source(source, overrides)
    if data_root is not None:
        cfg.data.root = str(data_root)
    if layout is not None:
        cfg.data.layout = layout
    if split is not None:
        cfg.data.split = split
    root = Path(cfg.data.root)
    if not root.exists():
        raise DatasetError(f"dataset root {root} not found; pass --data ROOT (or fix data.root in the run's config.yaml)")

    out_dir = Path(out) if out is not None else (run_dir / "eval" if run_dir else None)
    if out_dir is None:
        log.info("no run directory and no --out: results are printed, not written")
    device = resolve_device(cfg)
    backbone = backbone.to(device)
    seed = cfg.train.seed
    train_split = load_split(root, "train", split=cfg.data.split, layout=cfg.data.layout, seed=seed)
    test_split = load_split(root, "test", split=cfg.data.split, layout=cfg.data.layout, seed=seed)
    finetune_transform, test_transform = build_eval_transforms(cfg)
    num_classes = len(train_split.class_names)
    dataset_info = {"root": str(root), "layout": train_split.layout, "split": cfg.data.split, "classes": num_classes,
                    "train_videos": len(train_split.records), "test_videos": len(test_split.records)}

    cache = FeatureCache(out_dir / "features" if out_dir else None)
    fingerprint = weights_fingerprint(backbone) if out_dir else ""
    features: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}

    def get_features(subset: str) -> tuple[torch.Tensor, torch.Tensor]:
        if subset not in features:
            split_obj = train_split if subset == "train" else test_split
            dataset = MultiClipDataset(split_obj, EVAL_CLIPS, cfg.data.clip_len, test_transform, progress=progress)
            usable = dataclasses.replace(split_obj, records=dataset.records)  # unreadable videos are left out
            key = {"weights": fingerprint, "videos": split_fingerprint(usable), "root": str(root.resolve()),
                   "layout": split_obj.layout, "split": cfg.data.split, "subset": subset, "num_clips": EVAL_CLIPS,
                   "clip_len": cfg.data.clip_len, "resize": list(cfg.data.resize), "crop": cfg.data.crop,
                   "mean": list(cfg.data.mean), "std": list(cfg.data.std), "modality": cfg.data.modality}
            features[subset] = cache.get_or_extract(key, lambda: extract_features(
                backbone, dataset, batch_size=max(1, CLIPS_PER_FORWARD // EVAL_CLIPS), device=device,
                num_workers=cfg.data.num_workers, desc=f"features {subset}", amp=cfg.train.amp, progress=progress))
        return features[subset]

    results: dict[str, dict[str, Any]] = {}
    # a fixed order: the frozen-feature protocols share one extraction, fine-tuning (of a copy) comes last
    for protocol in sorted(protocols, key=PROTOCOLS.index):
        start = time.time()
        history = None
        if protocol in FEATURE_PROTOCOLS:
            train_feats, train_labels = get_features("train")
            test_feats, test_labels = get_features("test")
            dataset_info.update(train_features=len(train_feats), test_features=len(test_feats))
        if protocol == "retrieval":
            settings = {"queries": "test", "gallery": "train", "similarity": "cosine", "ks": list(DEFAULT_KS),
                        "num_clips": EVAL_CLIPS, "crop": "centre"}
            metrics = retrieval_recall(test_feats, test_labels, train_feats, train_labels, ks=DEFAULT_KS)
        elif protocol == "knn":
            settings = {"k": cfg.train.knn_k, "temperature": KNN_TEMPERATURE, "num_clips": EVAL_CLIPS, "crop": "centre"}
            metrics = knn_classify(train_feats, train_labels, test_feats, test_labels, k=cfg.train.knn_k,
                                   temperature=KNN_TEMPERATURE, num_classes=num_classes)
        elif protocol == "linear":
            steps = epochs or LINEAR_STEPS
            settings = {"optimizer": "lbfgs", "steps": steps, "fraction": fraction, "seed": seed,
                        "num_clips": EVAL_CLIPS, "standardised": True}
            metrics = linear_probe(train_feats, train_labels, test_feats, test_labels, num_classes=num_classes,
                                   fraction=fraction, seed=seed, steps=steps)
        else:
            from vidkd.eval.finetune import finetune

            settings = {"epochs": epochs or FINETUNE_EPOCHS, "lr": cfg.train.lr, "backbone_lr_scale": 0.1,
                        "batch_size": cfg.train.batch_size, "fraction": fraction, "seed": seed,
                        "momentum": cfg.train.momentum, "weight_decay": cfg.train.weight_decay,
                        "schedule": "cosine", "dropout": 0.5, "test_clips": EVAL_CLIPS}
            metrics = finetune(
                copy.deepcopy(backbone), train_split, test_split, train_transform=finetune_transform,
                test_transform=test_transform, epochs=settings["epochs"], lr=cfg.train.lr,
                backbone_lr_scale=settings["backbone_lr_scale"], batch_size=cfg.train.batch_size,
                fraction=fraction, seed=seed, clip_len=cfg.data.clip_len, num_test_clips=EVAL_CLIPS,
                momentum=cfg.train.momentum, weight_decay=cfg.train.weight_decay, dropout=settings["dropout"],
                device=device, num_workers=cfg.data.num_workers, amp=cfg.train.amp, progress=progress)
            history = metrics.pop("history")
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
        if out_dir is not None:
            record["path"] = str(out_dir / result_name(protocol, cfg.data.split, fraction))
            atomic_write_json(Path(record["path"]), record)
        results[protocol] = record
    return results


HEADLINE = {"retrieval": ("R@1", "R@5", "R@10", "R@20", "R@50"), "knn": ("top1", "top5"),
            "linear": ("test_top1", "test_top5", "train_top1"), "finetune": ("video_top1", "clip_top1")}


def format_results(results: dict[str, dict[str, Any]]) -> str:
    """A short table: protocol, headline metrics (in %), seconds."""
    lines = [f"{'protocol':<10} {'metrics (%)':<56} {'seconds':>8}"]
    for protocol, record in results.items():
        shown = "  ".join(f"{name} {100 * record['metrics'][name]:.1f}"
                          for name in HEADLINE[protocol] if name in record["metrics"])
        lines.append(f"{protocol:<10} {shown:<56} {record['seconds']:>8.1f}")
    written = [r["path"] for r in results.values() if "path" in r]
    if written:
        lines.append(f"results written to {Path(written[0]).parent}/")
    return "\n".join(lines)


def evaluate_cli(args: Any) -> int:
    """Entry point of `vidkd evaluate` (arguments parsed in vidkd/cli.py)."""
    results = evaluate(
        args.source, protocols=args.protocol or ("retrieval", "knn"), data_root=args.data, layout=args.layout,
        split=args.split, fraction=args.fraction, epochs=args.epochs, overrides=args.set, out=args.out,
    )
    print(format_results(results))
    return 0
