"""Evaluation protocols by name, run on a run directory, a checkpoint or `random:ARCH`.

The dataset and transforms come from the run's `config.yaml` unless overridden; every setting
of a protocol comes from the config's `eval` section. Retrieval, kNN and the linear probe share
one feature extraction per subset (cached on disk under `<out>/features/`); fine-tuning trains a
copy of the backbone through the engine. Each protocol writes one result file, named by
`vidkd.runs.result_name(protocol, split, fraction, recipe)` (default `<out>` = `RUN/eval/`).

`eval.protocol` names the recipe (docs/evaluation.md has them side by side):

- `vidkd` (default): the settings of the `eval` section.
- `pcl`: the reference code's evaluation (PCL `retrieve_clips.py` and `ft_classify.py`, which VCOP
  shares): retrieval on conv5 maps max-pooled (1, 2, 2) for C3D/R3D/R(2+1)D (pooled features for
  the torchvision networks); fine-tuning at lr 1e-3 for every layer, batch 8, no dropout, plateau
  on the loss of a validation split held out of the training videos, best-validation epoch tested.
  Every `eval.*` setting is fixed by the recipe; only `--epochs` (`epochs=`) changes the number of
  fine-tuning epochs. The reference has no kNN or linear probe: those run the vidkd recipe.

Every record says which recipe produced it in `settings["recipe"]`.
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
from vidkd.config import Config, config_from_dict, deep_merge, load_config, parse_overrides
from vidkd.data.datasets import VideoSplit, load_split
from vidkd.data.loaders import MultiClipDataset
from vidkd.data.transforms import ClipTransform, transforms_from_config
from vidkd.errors import ConfigError, DatasetError, VidkdError
from vidkd.eval.features import FeatureCache, extract_features, split_fingerprint, weights_fingerprint
from vidkd.eval.finetune import FinetuneRecipe, finetune, finetune_repeated
from vidkd.eval.fractions import check_fraction, fraction_of_split
from vidkd.eval.knn import knn_classify
from vidkd.eval.linear import LinearRecipe, linear_probe
from vidkd.eval.retrieval import retrieval_recall
from vidkd.eval.runtime import EvalRuntime
from vidkd.models import build_backbone
from vidkd.models.loading import load_backbone
from vidkd.options.eval import EvalConfig
from vidkd.protocol_specs import EVAL_PROTOCOLS, PROTOCOL_SPECS, RETRIEVAL_KS
from vidkd.result_record import ResultRecord
from vidkd.utils.checkpoint import find_checkpoint, read_meta
from vidkd.utils.io import atomic_write_json
from vidkd.utils.runtime import resolve_device, resolve_memory_format, seed_everything

log = logging.getLogger("vidkd.eval")

CLIPS_PER_FORWARD = 64  # feature extraction batches this many clips

# The `pcl` recipe: the reference code's evaluation (file:line refs in docs/evaluation.md).
PCL_NUM_CLIPS = 10  # retrieve_clips.py and ft_classify.py test: 10 evenly spaced clips per video
PCL_RETRIEVAL_FEATURES = {  # retrieve_clips.py: return_conv=True for C3D/R3D/R(2+1)D, pooled for R3D-18 ('r18')
    "c3d": "conv5_maxpool", "r3d": "conv5_maxpool", "r21d": "conv5_maxpool",
    "r3d_18": "pooled", "mc3_18": "pooled", "r2plus1d_18": "pooled"}
PCL_FINETUNE_EPOCHS = 149  # ft_classify.py: --epochs 150, but `range(start_epoch=1, epochs)` runs 149
PCL_FINETUNE_LR = 1e-3  # --lr and --ft_lr, equal by default: one learning rate for every layer
PCL_FINETUNE_MOMENTUM = 0.9
PCL_FINETUNE_WEIGHT_DECAY = 5e-4
PCL_FINETUNE_BATCH_SIZE = 8
PCL_PLATEAU_PATIENCE = 30  # ReduceLROnPlateau('min', factor=0.1, patience=30, min_lr=1e-5) on the val loss
PCL_PLATEAU_FACTOR = 0.1
PCL_MIN_LR = 1e-5
PCL_VAL_VIDEOS = {"ucf101": 800, "hmdb51": 400}  # random_split of the train list; 800 for other layouts
PCL_VAL_SHARE = 8  # at most 1/8 of the training videos: keeps 800 of UCF101's 9537 and 400 of HMDB51's 3570


def result_settings(eval_cfg: EvalConfig, protocol: str) -> dict[str, Any]:
    """The `eval.*` values a `protocol` result is computed with (stored in its record as `eval`): those
    of its `ProtocolSpec.settings`."""
    return {key: getattr(eval_cfg, key) for key in PROTOCOL_SPECS[protocol].settings}


def changed_settings(record: ResultRecord, eval_cfg: EvalConfig, protocol: str) -> list[str]:
    """The `eval.*` keys whose values differ from those `record` was computed with; [] for a record
    that predates `eval` (nothing to compare). A key the record lacks had its default value."""
    stored = record.eval
    if stored is None:
        return []
    defaults = EvalConfig()
    return [key for key, value in result_settings(eval_cfg, protocol).items()
            if stored.get(key, getattr(defaults, key)) != value]


def pcl_validation_size(num_train: int, layout: str) -> int:
    """Videos the `pcl` recipe holds out of `num_train` training videos for validation.

    The reference's count (800 for UCF101 and other layouts, 400 for HMDB51), at most 1/8 of the
    training videos and at least one, so a small dataset keeps most of its videos for training.
    """
    return max(1, min(PCL_VAL_VIDEOS.get(layout, PCL_VAL_VIDEOS["ucf101"]), num_train // PCL_VAL_SHARE))


def pcl_retrieval_feature(arch: str) -> str:
    """The clip feature `pcl` retrieval uses for `arch` (see `vidkd.eval.features.FEATURE_KINDS`)."""
    if arch not in PCL_RETRIEVAL_FEATURES:
        raise ConfigError(f"eval.protocol pcl defines retrieval features for {', '.join(PCL_RETRIEVAL_FEATURES)}, "
                          f"not {arch}; use eval.protocol=vidkd")
    return PCL_RETRIEVAL_FEATURES[arch]


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


def _warn_other_input(source: str | Path, info: dict[str, Any], cfg: Config) -> None:
    """Evaluating on other clips than the network was trained on can be meant, but is rarely like for like."""
    trained = (info.get("meta") or {}).get("input") or {}
    for key in ("clip_len", "crop", "modality"):
        if trained.get(key) is not None and trained[key] != getattr(cfg.data, key):
            log.warning("%s was trained on clips with data.%s=%s but is evaluated with %s; drop the --set for a "
                        "like-for-like evaluation", source, key, trained[key], getattr(cfg.data, key))


def _recorded_config(path: Path) -> dict[str, Any] | None:
    """The config a vidkd checkpoint's meta.json records (None for a foreign state_dict)."""
    found = find_checkpoint(path if path.is_dir() else path.parent)
    recorded = read_meta(found).get("config") if found is not None else None
    return recorded if isinstance(recorded, dict) else None


def load_source(source: str | Path, overrides: list[str] | None) -> tuple[nn.Module, Config, Path | None, dict[str, Any]]:
    """Backbone, resolved config, run directory (or None) and loading info for an evaluation source."""
    text = str(source)
    if text.startswith("random:"):
        arch = text.split(":", 1)[1]
        if not arch:
            raise ConfigError("random source needs an architecture, for example random:r3d")
        cfg = load_config(None, list(overrides or []) + [f"model.arch={arch}"])
        seed_everything(cfg.train.seed)  # the same seed gives the same random network
        backbone = build_backbone(arch, width=cfg.model.width, in_channels=3, weight_init=cfg.model.weight_init)
        return backbone, cfg, None, {"arch": arch, "width": cfg.model.width, "init": "random", "seed": cfg.train.seed}

    path = Path(text)
    if not path.exists():
        raise ConfigError(f"evaluation source {path} does not exist; pass a run directory, a checkpoint, or random:ARCH")
    run_dir = runs.find_run_dir(path)
    recorded = None if run_dir else _recorded_config(path)
    if recorded is not None:  # a checkpoint copied out of its run: the settings it was trained with, not defaults
        cfg = config_from_dict(deep_merge(recorded, parse_overrides(list(overrides or []))))
    else:
        cfg = load_config(runs.config_path(run_dir) if run_dir else None, overrides)
    # a foreign state_dict says nothing about its network: --set model.arch/model.width name it
    model_overrides = parse_overrides(overrides).get("model", {})
    backbone, info = load_backbone(path, arch=model_overrides.get("arch"), width=model_overrides.get("width"))
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
    get_features: Callable[..., tuple[torch.Tensor, torch.Tensor]]  # (subset, feature=, num_clips=, amp=)
    progress: bool = True
    dataset_info: dict[str, Any] = field(default_factory=dict)
    epochs: int | None = None  # `--epochs`, when given
    used_records: dict[str, list] = field(default_factory=dict)  # subset -> the readable videos, in feature order

    @property
    def runtime(self) -> EvalRuntime:
        """Where fine-tuning runs: the evaluation's device, `data.num_workers` and `data.preload`."""
        return EvalRuntime(self.device, self.cfg.data.num_workers, self.progress, self.cfg.data.preload)

    @property
    def num_classes(self) -> int:
        return len(self.train_split.class_names)

    @property
    def recipe(self) -> str:
        return self.cfg.eval.protocol

    @property
    def arch(self) -> str:
        return getattr(self.backbone, "arch", self.cfg.model.arch)

    def features(self, feature: str = "pooled", num_clips: int | None = None,
                 amp: str | None = None) -> tuple[torch.Tensor, ...]:
        """Train and test features of kind `feature` (default: pooled, `eval.num_clips`, `train.amp`)."""
        options = dict(feature=feature, num_clips=num_clips or self.cfg.eval.num_clips,
                       amp=self.cfg.train.amp if amp is None else amp)
        train_feats, train_labels = self.get_features("train", **options)
        test_feats, test_labels = self.get_features("test", **options)
        self.dataset_info.update(train_features=len(train_feats), test_features=len(test_feats))
        return train_feats, train_labels, test_feats, test_labels


ProtocolResult = tuple[dict[str, Any], dict[str, Any]]  # (settings, metrics)


def retrieval(ctx: EvaluationContext) -> ProtocolResult:
    train_feats, train_labels, test_feats, test_labels = ctx.features()
    settings = {"recipe": "vidkd", "queries": "test", "gallery": "train", "similarity": "cosine",
                "ks": list(RETRIEVAL_KS), "num_clips": ctx.cfg.eval.num_clips, "crop": "centre"}
    return settings, retrieval_recall(test_feats, test_labels, train_feats, train_labels, ks=RETRIEVAL_KS)


def knn(ctx: EvaluationContext) -> ProtocolResult:
    train_feats, train_labels, test_feats, test_labels = ctx.features()
    e = ctx.cfg.eval
    settings = {"recipe": "vidkd", "k": e.knn_k, "temperature": e.knn_temperature, "num_clips": e.num_clips,
                "crop": "centre"}
    return settings, knn_classify(train_feats, train_labels, test_feats, test_labels, k=e.knn_k,
                                  temperature=e.knn_temperature, num_classes=ctx.num_classes)


def linear(ctx: EvaluationContext) -> ProtocolResult:
    train_feats, train_labels, test_feats, test_labels = ctx.features()
    recipe = LinearRecipe.from_config(ctx.cfg, ctx.fraction)
    settings = {"recipe": "vidkd", "optimizer": "lbfgs", "steps": recipe.steps, "fraction": recipe.fraction,
                "seed": recipe.seed, "num_clips": ctx.cfg.eval.num_clips, "standardised": True,
                "weight_decay_candidates": list(recipe.weight_decay), "chosen_on": "held-out training groups"}
    groups = [record.group for record in ctx.used_records["train"]]
    metrics = linear_probe(train_feats, train_labels, test_feats, test_labels, recipe, num_classes=ctx.num_classes,
                           train_groups=groups)
    settings["validation_top1_by_weight_decay"] = metrics.pop("validation_top1_by_weight_decay", {})
    return settings, metrics


def finetuning(ctx: EvaluationContext) -> ProtocolResult:
    recipe = FinetuneRecipe.from_config(ctx.cfg, ctx.fraction)
    repeats = ctx.cfg.eval.finetune_repeats
    settings = {"recipe": "vidkd", "epochs": recipe.epochs, "lr": recipe.lr,
                "backbone_lr_scale": recipe.backbone_lr_scale, "batch_size": recipe.batch_size,
                "fraction": recipe.fraction, "seed": recipe.seed, "momentum": recipe.momentum,
                "weight_decay": recipe.weight_decay, "schedule": recipe.scheduler, "dropout": recipe.dropout,
                "test_clips": recipe.num_test_clips, "repeats": repeats}
    metrics = finetune_repeated(ctx.backbone, ctx.train_split, ctx.test_split, recipe, ctx.runtime, repeats=repeats)
    metrics.pop("param_group_lrs", None)
    return settings, metrics


def pcl_retrieval(ctx: EvaluationContext) -> ProtocolResult:
    """PCL/VCOP `retrieve_clips.py`: the conv5 map max-pooled (1, 2, 2) (pooled for the torchvision nets)."""
    feature = pcl_retrieval_feature(ctx.arch)
    train_feats, train_labels, test_feats, test_labels = ctx.features(feature, num_clips=PCL_NUM_CLIPS, amp="none")
    settings = {"recipe": "pcl", "reference": "retrieve_clips.py", "queries": "test", "gallery": "train",
                "similarity": "cosine", "ks": list(RETRIEVAL_KS), "num_clips": PCL_NUM_CLIPS, "crop": "centre",
                "feature": feature, "feature_dim": int(train_feats.shape[1]), "precision": "fp32"}
    return settings, retrieval_recall(test_feats, test_labels, train_feats, train_labels, ks=RETRIEVAL_KS)


def pcl_finetune_transforms(cfg: Config) -> tuple[ClipTransform, ClipTransform]:
    """`ft_classify.py`'s transforms: Resize -> RandomCrop (train) / CenterCrop (test) -> ToTensor.

    No flip, no colour, no normalisation (mean 0, std 1); the residual, if any, of [0, 1] frames.
    """
    common = dict(resize=tuple(cfg.data.resize), crop=cfg.data.crop, flip=False, color_jitter=0.0, grayscale=0.0,
                  mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0), modality=cfg.data.modality)
    return ClipTransform(train=True, **common), ClipTransform(train=False, **common)


def pcl_finetune_recipe(cfg: Config, fraction: float, epochs: int, val_videos: int) -> FinetuneRecipe:
    """`ft_classify.py`'s recipe: every setting fixed but the epochs, the labelled fraction and the seed."""
    train_transform, test_transform = pcl_finetune_transforms(cfg)
    return FinetuneRecipe(
        train_transform, test_transform, epochs=epochs, lr=PCL_FINETUNE_LR, backbone_lr_scale=1.0,
        batch_size=PCL_FINETUNE_BATCH_SIZE, momentum=PCL_FINETUNE_MOMENTUM, weight_decay=PCL_FINETUNE_WEIGHT_DECAY,
        dropout=0.0, fraction=fraction, seed=cfg.train.seed, clip_len=cfg.data.clip_len, num_test_clips=PCL_NUM_CLIPS,
        scheduler="plateau", plateau_patience=PCL_PLATEAU_PATIENCE, plateau_factor=PCL_PLATEAU_FACTOR,
        min_lr=PCL_MIN_LR, val_videos=val_videos, drop_last=False, amp="none")


def _pcl_reference(arch: str) -> str:
    if arch in ("r3d", "r3d_18"):
        return "ft_classify.py"
    # PCL's script builds only R3D; VCOP's differs (constant lr, 150 epochs)
    log.info("PCL's ft_classify.py builds only R3D: %s is fine-tuned with the same recipe", arch)
    return f"ft_classify.py's R3D recipe applied to {arch} (PCL has no script for it)"


def pcl_finetuning(ctx: EvaluationContext) -> ProtocolResult:
    """PCL `ft_classify.py` through the engine: every setting fixed, `--epochs` excepted."""
    cfg = ctx.cfg
    labelled = len(fraction_of_split(ctx.train_split, ctx.fraction, cfg.train.seed).records)
    val_videos = pcl_validation_size(labelled, ctx.train_split.layout)
    recipe = pcl_finetune_recipe(cfg, ctx.fraction, ctx.epochs or PCL_FINETUNE_EPOCHS, val_videos)
    metrics = finetune(copy.deepcopy(ctx.backbone), ctx.train_split, ctx.test_split, recipe, ctx.runtime)
    settings = {
        "recipe": "pcl", "reference": _pcl_reference(cfg.model.arch), "drop_last": recipe.drop_last,
        "epochs": recipe.epochs, "lr": recipe.lr, "param_group_lrs": metrics.pop("param_group_lrs"),
        "backbone_lr_scale": recipe.backbone_lr_scale, "batch_size": metrics["batch_size"],
        "momentum": recipe.momentum, "weight_decay": recipe.weight_decay, "dropout": recipe.dropout,
        "schedule": recipe.scheduler, "plateau_on": "val_loss", "plateau_patience": recipe.plateau_patience,
        "plateau_factor": recipe.plateau_factor, "min_lr": recipe.min_lr,
        "validation": "held out of the training videos", "val_videos": val_videos,
        "tested": "best validation loss", "fraction": ctx.fraction, "seed": recipe.seed,
        "augmentation": "random clip, random crop", "normalise": False, "precision": "fp32",
        "test_clips": recipe.num_test_clips}
    return settings, metrics


PROTOCOLS: dict[str, Callable[[EvaluationContext], ProtocolResult]] = {
    "retrieval": retrieval, "knn": knn, "linear": linear, "finetune": finetuning}
# per recipe (eval.protocol), the protocols it defines its own way; the others run the vidkd recipe
RECIPES: dict[str, dict[str, Callable[[EvaluationContext], ProtocolResult]]] = {
    "vidkd": PROTOCOLS, "pcl": {"retrieval": pcl_retrieval, "finetune": pcl_finetuning}}
assert list(PROTOCOLS) == list(PROTOCOL_SPECS)  # one function per registered protocol, in the registry's order
assert all(set(RECIPES[name]) == {p for p, spec in PROTOCOL_SPECS.items() if name in spec.recipes}
           for name in EVAL_PROTOCOLS) and set(RECIPES) == set(EVAL_PROTOCOLS)


def protocol_function(recipe: str, protocol: str) -> Callable[[EvaluationContext], ProtocolResult]:
    """What runs `protocol` under `recipe`; a protocol the recipe does not define runs the vidkd one."""
    if recipe not in RECIPES:
        raise ConfigError(f"unknown evaluation protocol {recipe!r}; choose from {', '.join(RECIPES)}")
    return RECIPES[recipe].get(protocol, PROTOCOLS[protocol])


def check_protocols(protocols: Sequence[str]) -> list[str]:
    protocols = list(dict.fromkeys(protocols))  # keep order, drop repeats
    unknown = [p for p in protocols if p not in PROTOCOLS]
    if unknown or not protocols:
        raise ConfigError(f"unknown protocol {', '.join(unknown) or '(none)'}; choose from {', '.join(PROTOCOLS)}")
    return protocols


class FeatureSource:
    """Clip-averaged features of the train or test videos, extracted once per kind and cached on disk.

    Called as `get_features(subset, feature=, num_clips=, amp=)` by `EvaluationContext.features`;
    `used_records[subset]` are the readable videos of a subset, in feature order.
    """

    def __init__(self, backbone: nn.Module, cfg: Config, splits: dict[str, VideoSplit], device: torch.device,
                 out_dir: Path | None, progress: bool) -> None:
        self.backbone, self.cfg, self.splits, self.device, self.progress = backbone, cfg, splits, device, progress
        self.root = Path(cfg.data.root)
        _, self.transform = transforms_from_config(cfg.data)
        self.cache = FeatureCache(runs.features_dir(out_dir) if out_dir else None)
        self.fingerprint = weights_fingerprint(backbone) if out_dir else ""
        self.features: dict[tuple[Any, ...], tuple[torch.Tensor, torch.Tensor]] = {}
        self.used_records: dict[str, list] = {}

    def __call__(self, subset: str, feature: str = "pooled", num_clips: int = 10,
                 amp: str = "none") -> tuple[torch.Tensor, torch.Tensor]:
        wanted = (subset, feature, num_clips, amp)
        if wanted not in self.features:
            data = self.cfg.data
            split_obj = self.splits[subset]
            dataset = MultiClipDataset(split_obj, num_clips, data.clip_len, self.transform, progress=self.progress)
            usable = dataclasses.replace(split_obj, records=dataset.records)  # unreadable videos are left out
            self.used_records[subset] = dataset.records
            key = {"weights": self.fingerprint, "videos": split_fingerprint(usable), "root": str(self.root.resolve()),
                   "layout": split_obj.layout, "split": data.split, "subset": subset, "num_clips": num_clips,
                   "clip_len": data.clip_len, "resize": list(data.resize), "crop": data.crop,
                   "mean": list(data.mean), "std": list(data.std), "modality": data.modality,
                   "feature": feature, "amp": amp}
            self.features[wanted] = self.cache.get_or_extract(
                key, lambda: self._extract(dataset, subset, feature, num_clips, amp))
        return self.features[wanted]

    def _extract(self, dataset: MultiClipDataset, subset: str, feature: str, num_clips: int,
                 amp: str) -> tuple[torch.Tensor, torch.Tensor]:
        if self.cfg.data.preload:
            dataset.preload(self.transform.resize, progress=self.progress)
        runtime = EvalRuntime(self.device, self.cfg.data.num_workers, self.progress)
        return extract_features(self.backbone, dataset, batch_size=max(1, CLIPS_PER_FORWARD // num_clips),
                                runtime=runtime, desc=f"features {subset}", amp=amp, feature=feature)


def _apply_choices(cfg: Config, choices: EvaluationChoices) -> None:
    """`evaluate`'s data and epoch choices, over the source's config (the fraction is applied per protocol)."""
    if choices.data_root is not None:
        cfg.data.root = str(choices.data_root)
    if choices.layout is not None:
        cfg.data.layout = choices.layout
    if choices.split is not None:
        cfg.data.split = choices.split
    if choices.epochs is not None:
        cfg.eval.finetune_epochs = cfg.eval.linear_steps = choices.epochs


def _output_dir(out: str | Path | None, run_dir: Path | None, own_root: str | None, root: Path) -> Path | None:
    """`out`, else the run's eval directory (its foreign-dataset one when `root` is not the run's own data)."""
    out_dir = Path(out) if out is not None else (runs.eval_dir(run_dir) if run_dir else None)
    if out is None and run_dir is not None and own_root and Path(own_root).exists() \
            and Path(own_root).resolve() != root.resolve():  # (an own root that is gone has moved: still its own)
        out_dir = runs.foreign_eval_dir(run_dir, own_root, root)
        log.info("%s is not the dataset %s was trained on: its results go to %s", root, run_dir, out_dir)
    if out_dir is None:
        log.info("no run directory and no --out: results are printed, not written")
    return out_dir


def _load_splits(cfg: Config, root: Path) -> tuple[VideoSplit, VideoSplit, dict[str, Any]]:
    """The train and test splits, and what a result record says about the dataset."""
    seed = cfg.train.seed
    train_split = load_split(root, "train", split=cfg.data.split, layout=cfg.data.layout, seed=seed)
    test_split = load_split(root, "test", split=cfg.data.split, layout=cfg.data.layout, seed=seed)
    dataset_info = {"root": str(root), "layout": train_split.layout, "split": cfg.data.split,
                    "classes": len(train_split.class_names), "train_videos": len(train_split.records),
                    "test_videos": len(test_split.records)}
    return train_split, test_split, dataset_info


@dataclass(frozen=True)
class _Source:
    """The evaluated weights: the source as given, and what loading them found."""

    name: str
    info: dict[str, Any]


def _record(ctx: EvaluationContext, protocol: str, source: _Source, result: ProtocolResult,
            start: float) -> ResultRecord:
    """The result record of one protocol."""
    settings, metrics = result
    if PROTOCOL_SPECS[protocol].uses_labels and settings.get("fraction") != ctx.fraction:
        # its file is named by the fraction (runs.result_name): a result of other labels must not take the name
        raise RuntimeError(f"protocol {protocol} trains on labels but its settings record the fraction "
                           f"{settings.get('fraction')!r}, not the {ctx.fraction} it was asked for")
    cfg = ctx.cfg
    history = metrics.pop("history", None)
    return ResultRecord(
        protocol=protocol,
        source=source.name,
        arch=source.info.get("arch", cfg.model.arch),
        width=source.info.get("width", cfg.model.width),
        checkpoint=checkpoint_summary(source.info),
        dataset=dict(ctx.dataset_info),
        input={"clip_len": cfg.data.clip_len, "resize": list(cfg.data.resize), "crop": cfg.data.crop,
               "modality": cfg.data.modality},
        settings=settings,
        eval=result_settings(cfg.eval, protocol),
        metrics=metrics,
        device=str(ctx.device),
        timestamp=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        seconds=round(time.time() - start, 3),
        history=history,
    )


def _write_record(out_dir: Path, record: ResultRecord, split: int, fraction: float) -> tuple[ResultRecord, str | None]:
    """Write `record`: the record with its `path`, and what failed, if the write did."""
    path = runs.result_path(out_dir, record.protocol, split, fraction, record.recipe)
    try:
        atomic_write_json(path, record.to_json())
    except OSError as exc:
        return record, f"{path} ({exc.strerror or exc})"
    return record.written_to(str(path)), None


def _run_protocols(shared: dict[str, Any], protocols: Sequence[str], fractions: dict[str, float], source: _Source,
                   out_dir: Path | None,
                   on_result: Callable[[ResultRecord], None] | None) -> dict[str, ResultRecord]:
    """Run each protocol on an `EvaluationContext` of `shared`, hand its record to `on_result`, write it."""
    cfg = shared["cfg"]
    results: dict[str, ResultRecord] = {}
    failed_writes: list[str] = []
    # a fixed order: the frozen-feature protocols share one extraction, fine-tuning (of a copy) comes last
    for protocol in sorted(protocols, key=list(PROTOCOLS).index):
        start = time.time()
        if protocol not in RECIPES.get(cfg.eval.protocol, PROTOCOLS):
            log.info("eval.protocol %s defines no %s; it runs the vidkd recipe", cfg.eval.protocol, protocol)
        ctx = EvaluationContext(fraction=fractions[protocol], **shared)
        record = _record(ctx, protocol, source, protocol_function(cfg.eval.protocol, protocol)(ctx), start)
        if on_result is not None:
            on_result(record)
        if out_dir is not None:
            record, failed = _write_record(out_dir, record, cfg.data.split, fractions[protocol])
            failed_writes += [failed] if failed else []
        results[protocol] = record
    if failed_writes:
        raise VidkdError(f"results computed (shown above) but not written: {failed_writes[0]}"
                         f"{f' and {len(failed_writes) - 1} more' if len(failed_writes) > 1 else ''}; "
                         "free disk space or make the directory writable, or pass --out DIR")
    return results


@dataclass(frozen=True)
class EvaluationChoices:
    """What a caller (the command line, an experiment) sets over the source's own config; None keeps
    the config's value. `fraction` overrides `eval.fraction` and `eval.finetune_fraction` for every
    protocol; `epochs` overrides `eval.finetune_epochs` / `eval.linear_steps` (under
    `eval.protocol: pcl`, the recipe's 149 fine-tuning epochs)."""

    data_root: str | Path | None = None
    layout: str | None = None
    split: int | None = None
    fraction: float | None = None
    epochs: int | None = None


def evaluate(
    source: str | Path,
    protocols: Sequence[str] = ("retrieval", "knn"),
    choices: EvaluationChoices = EvaluationChoices(),
    overrides: list[str] | None = None,
    out: str | Path | None = None,
    progress: bool = True,
    on_result: Callable[[ResultRecord], None] | None = None,
) -> dict[str, ResultRecord]:
    """Run `protocols` on `source`; returns {protocol: result record} and writes one JSON each.

    `source` is a run directory, a checkpoint (directory or weights file) or `random:ARCH`.
    `choices` (dataset, labelled fraction, epochs) and then `overrides` change the source's config.
    Results go to `out`, by default `RUN/eval/`; without either (e.g. `random:`) nothing is written.
    `on_result` is called with each record as soon as it is computed, before it is written, so a
    failed write never loses a result.
    """
    protocols = check_protocols(protocols)
    epochs, fraction = choices.epochs, choices.fraction
    if epochs is not None and epochs < 1:
        raise ConfigError(f"--epochs must be at least 1; got {epochs}")

    backbone, cfg, run_dir, info = load_source(source, overrides)
    own_root = cfg.data.root
    _warn_other_input(source, info, cfg)
    _apply_choices(cfg, choices)
    fractions = {protocol: check_fraction(cfg.eval.labelled_fraction(protocol) if fraction is None else fraction)
                 for protocol in protocols}
    root = Path(cfg.data.root)
    if not root.exists():
        raise DatasetError(f"dataset root {root} not found; pass --data ROOT (or fix data.root in the run's config.yaml)")

    out_dir = _output_dir(out, run_dir, own_root, root)
    device = resolve_device(cfg.train.device)
    backbone = backbone.to(device, memory_format=resolve_memory_format(cfg.train.memory_format, device))
    train_split, test_split, dataset_info = _load_splits(cfg, root)
    get_features = FeatureSource(backbone, cfg, {"train": train_split, "test": test_split}, device, out_dir, progress)
    shared = dict(backbone=backbone, cfg=cfg, train_split=train_split, test_split=test_split, device=device,
                  get_features=get_features, progress=progress, dataset_info=dataset_info, epochs=epochs,
                  used_records=get_features.used_records)
    return _run_protocols(shared, protocols, fractions, _Source(str(source), info), out_dir, on_result)


def format_results(results: dict[str, ResultRecord], header: bool = True, written: bool = True) -> str:
    """A short table: protocol, the metrics its `ProtocolSpec` shows (in %), seconds (and where the results went)."""
    lines = [f"{'protocol':<10} {'metrics (%)':<56} {'seconds':>8}"] if header else []
    for protocol, record in results.items():
        shown = "  ".join(f"{name} {100 * record.metrics[name]:.1f}"
                          for name in PROTOCOL_SPECS[protocol].metrics if name in record.metrics)
        lines.append(f"{protocol:<10} {shown:<56} {record.seconds:>8.1f}")
    paths = [r.path for r in results.values() if r.path]
    if written and paths:
        lines.append(f"results written to {Path(paths[0]).parent}/")
    return "\n".join(lines)
