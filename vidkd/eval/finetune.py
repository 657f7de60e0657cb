"""Supervised fine-tuning of a (pretrained) backbone with a new linear classifier, as PCL/VCOP.

Training runs through the engine as the `Supervised` method (one random clip per video per
epoch, SGD with momentum, the backbone at `backbone_lr_scale` of the head's learning rate; the
transforms decide crop, flip and normalisation). Testing takes `num_test_clips` evenly spaced
centre-crop clips per video and reports clip accuracy (every clip on its own) and video accuracy
(logits averaged over the clips). Every setting of that is one `FinetuneRecipe`; where it runs
(device, workers, progress, preloading) is an `EvalRuntime`.

Two ways to end: without a validation split (the vidkd recipe) the cosine-decayed last epoch is
tested; with `val_videos > 0` (the PCL recipe) that many training videos are held out (seeded),
validated after every epoch, the schedule may follow the validation loss (`scheduler="plateau"`),
and the weights of the epoch with the lowest validation loss are tested.

`finetune_repeated` fine-tunes copies of one backbone several times, each with its own seed (so its
own labelled subset, head initialisation and clip order), and reports the mean: with a few
labelled videos per class, which ones are drawn moves one run's accuracy by several points.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import statistics
import time
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from vidkd.config import Config, TrainConfig
from vidkd.data.loaders import ClipDataset, MultiClipDataset
from vidkd.data.transforms import transforms_from_config
from vidkd.engine.trainer import RunOptions, Trainer
from vidkd.errors import TrainingError
from vidkd.eval.fractions import fraction_of_split
from vidkd.eval.runtime import EvalRuntime
from vidkd.methods.supervised import Supervised
from vidkd.utils.runtime import autocast_context

log = logging.getLogger(__name__)

REPEAT_SEED_STRIDE = 10_000  # repeat r of seed s fine-tunes with seed s + r * stride; seeds below it never collide


def hold_out_videos(split: Any, count: int, seed: int = 0) -> tuple[Any, Any]:
    """(rest, held out): `count` videos of `split` drawn at random (seeded), and the others.

    The two are disjoint and together are `split`; each keeps the split's order. The reference
    (`ft_classify.py`) draws the same way with `torch.utils.data.random_split`.
    """
    total = len(split.records)
    if not 0 < count < total:
        raise TrainingError(f"cannot hold out {count} of {total} training videos for validation; "
                            "the fine-tuning split needs at least two videos")
    order = torch.randperm(total, generator=torch.Generator().manual_seed(seed)).tolist()
    held = set(order[:count])
    rest = [r for i, r in enumerate(split.records) if i not in held]
    val = [r for i, r in enumerate(split.records) if i in held]
    return dataclasses.replace(split, records=rest), dataclasses.replace(split, records=val)


@torch.no_grad()
def evaluate_clips(model: nn.Module, loader: DataLoader, device: torch.device, amp: str = "none",
                   progress: bool = True) -> dict[str, float]:
    """Clip and video top-1 over a loader of `{"clips": (B, n, C, T, H, W), "label"}` items."""
    model.eval()
    clip_correct = clip_total = video_correct = video_total = 0
    for batch in tqdm(loader, desc="finetune test", leave=False, disable=not progress, unit="batch"):
        clips, labels = batch["clips"], batch["label"].long()
        num_videos, num_clips = clips.shape[:2]
        with autocast_context(device, amp):
            logits = model(clips.reshape(num_videos * num_clips, *clips.shape[2:]).to(device, non_blocking=True))
        logits = logits.float().cpu().reshape(num_videos, num_clips, -1)
        clip_correct += int((logits.argmax(dim=2) == labels[:, None]).sum())
        clip_total += num_videos * num_clips
        video_correct += int((logits.mean(dim=1).argmax(dim=1) == labels).sum())
        video_total += num_videos
    return {"clip_top1": clip_correct / clip_total, "video_top1": video_correct / video_total}


@dataclass(frozen=True)
class FinetuneRecipe:
    """How to fine-tune: transforms, optimiser, schedule, labelled share, validation and testing.

    The defaults are the vidkd recipe's defaults; `FinetuneRecipe.from_config` builds the vidkd
    recipe of a config and `vidkd.eval.protocols.pcl_finetune_recipe` the reference's.
    `fraction` keeps a per-class share of the training videos. `val_videos > 0` holds that many
    of them out (seeded) as a validation split, validated every epoch with the training
    transform; the best-validation epoch is tested. `scheduler` is `cosine` (per step) or
    `plateau` (per epoch, on the validation loss when there is one).
    """

    train_transform: Any
    test_transform: Any
    epochs: int = 50
    lr: float = 0.01
    backbone_lr_scale: float = 0.1
    batch_size: int = 16
    momentum: float = 0.9
    weight_decay: float = 5e-4
    dropout: float = 0.5
    fraction: float = 1.0
    seed: int = 0
    clip_len: int = 16
    num_test_clips: int = 10
    scheduler: str = "cosine"
    plateau_patience: int = 30
    plateau_factor: float = 0.1
    min_lr: float = 0.0
    val_videos: int = 0
    drop_last: bool = True
    amp: str = "none"

    @classmethod
    def from_config(cls, cfg: Config, fraction: float) -> FinetuneRecipe:
        """The vidkd recipe: the `eval` section's fine-tuning settings, `train`'s momentum, weight decay,
        seed and precision, the data's clips with crop and flip (no colour augmentation)."""
        train_transform, test_transform = transforms_from_config(cfg.data, colour_augmentation=False)
        e = cfg.eval
        return cls(train_transform, test_transform, epochs=e.finetune_epochs, lr=e.finetune_lr,
                   backbone_lr_scale=e.finetune_backbone_lr_scale, batch_size=e.finetune_batch_size,
                   momentum=cfg.train.momentum, weight_decay=cfg.train.weight_decay, dropout=e.finetune_dropout,
                   fraction=fraction, seed=cfg.train.seed, clip_len=cfg.data.clip_len, num_test_clips=e.num_clips,
                   amp=cfg.train.amp)


@dataclass
class _Datasets:
    train: ClipDataset
    val: ClipDataset | None
    test: MultiClipDataset
    num_classes: int


def _datasets(train_split: Any, test_split: Any, recipe: FinetuneRecipe, runtime: EvalRuntime) -> _Datasets:
    """The labelled training videos (less the held-out validation ones, if any) and the test videos."""
    train_split = fraction_of_split(train_split, recipe.fraction, recipe.seed)
    num_classes = len(train_split.class_names)
    clip_len, seed, progress = recipe.clip_len, recipe.seed, runtime.progress
    val_set = None
    if recipe.val_videos > 0:
        train_split, val_split = hold_out_videos(train_split, recipe.val_videos, seed)
        val_set = ClipDataset(val_split, clip_len, recipe.train_transform, seed=seed, progress=progress)
    train_set = ClipDataset(train_split, clip_len, recipe.train_transform, seed=seed, progress=progress)
    test_set = MultiClipDataset(test_split, recipe.num_test_clips, clip_len, recipe.test_transform, seed=seed,
                                progress=progress)
    if runtime.preload:
        for dataset, transform in ((train_set, recipe.train_transform), (val_set, recipe.train_transform),
                                   (test_set, recipe.test_transform)):
            if dataset is not None:
                dataset.preload(transform.resize, progress=progress)
    if len(train_set) == 0 or len(test_set) == 0:
        raise TrainingError("fine-tuning needs training and test videos; check the dataset split")
    return _Datasets(train_set, val_set, test_set, num_classes)


def _trainer(backbone: nn.Module, data: _Datasets, recipe: FinetuneRecipe, batch_size: int,
             runtime: EvalRuntime) -> Trainer:
    """The engine, set up to train `backbone` and a new head as the `Supervised` method."""
    device = torch.device(runtime.device)
    torch.manual_seed(recipe.seed)  # the new head's initialisation
    method = Supervised(backbone, data.num_classes, data.train, dropout=recipe.dropout,
                        backbone_lr_scale=recipe.backbone_lr_scale, val_set=data.val)
    validated = data.val is not None
    schedule = TrainConfig(epochs=recipe.epochs, batch_size=batch_size, optimizer="sgd", lr=recipe.lr,
                           momentum=recipe.momentum, weight_decay=recipe.weight_decay, scheduler=recipe.scheduler,
                           plateau_patience=recipe.plateau_patience, plateau_factor=recipe.plateau_factor,
                           min_lr=recipe.min_lr, best_by="loss" if validated else "accuracy", amp=recipe.amp,
                           seed=recipe.seed, device=device.type, knn_every=0, drop_last=recipe.drop_last)
    # only this process fine-tunes, even inside a torchrun job (evaluations run on rank 0)
    return Trainer(method, schedule, run_dir=None, options=RunOptions(
        num_workers=runtime.num_workers, progress=runtime.progress, keep_best=validated, distributed=False))


def _restore_best(trainer: Trainer, history: list[dict[str, Any]], val_set: ClipDataset | None) -> dict[str, Any]:
    """Load the weights of the epoch with the lowest validation loss; what the result says about it."""
    if val_set is None or trainer.best_state is None:
        return {}
    trainer.method.model.load_state_dict(trainer.best_state)
    best_entry = next(h for h in history if h["epoch"] == trainer.best_epoch)
    best = {"best_epoch": trainer.best_epoch, "best_val_loss": best_entry.get("val_loss"),
            "best_val_top1": best_entry.get("val_top1"), "val_videos": len(val_set)}
    log.info("finetune: testing the best validation epoch %d (val loss %.4f)", trainer.best_epoch,
             best["best_val_loss"])
    return best


def finetune(backbone: nn.Module, train_split: Any, test_split: Any, recipe: FinetuneRecipe,
             runtime: EvalRuntime = EvalRuntime()) -> dict[str, Any]:
    """Fine-tune `backbone` (in place) plus a new linear classifier by `recipe`; return the test accuracies.

    With a validation split the best-validation epoch is tested (`best_epoch` in the result).
    """
    if recipe.epochs < 1:
        raise TrainingError(f"fine-tuning needs at least one epoch, got {recipe.epochs} (use --epochs N)")
    start_time = time.time()
    data = _datasets(train_split, test_split, recipe, runtime)
    batch_size = min(recipe.batch_size, len(data.train))  # a small labelled fraction still makes one batch
    trainer = _trainer(backbone, data, recipe, batch_size, runtime)
    param_group_lrs = [float(group["lr"]) for group in trainer.optimizer.param_groups]
    history = trainer.fit()
    for entry in history:
        log.info("finetune epoch %d/%d: loss %.4f, train top-1 %.3f%s", entry["epoch"], recipe.epochs,
                 entry["train_loss"], entry["train_top1"],
                 f", val loss {entry['val_loss']:.4f}" if "val_loss" in entry else "")
    best = _restore_best(trainer, history, data.val)
    test_loader = DataLoader(data.test, batch_size=max(1, batch_size // 2), shuffle=False,
                             num_workers=runtime.num_workers, pin_memory=torch.device(runtime.device).type == "cuda")
    metrics = evaluate_clips(trainer.method.model, test_loader, trainer.device, trainer.amp, runtime.progress)
    history_keys = ("epoch", "train_loss", "train_top1", "val_loss", "val_top1", "lr")
    return {
        **metrics,
        **best,
        "epochs": recipe.epochs,
        "fraction": float(recipe.fraction),
        "train_videos": len(data.train),
        "test_videos": len(data.test),
        "test_clips_per_video": recipe.num_test_clips,
        "lr": recipe.lr,
        "backbone_lr_scale": recipe.backbone_lr_scale,
        "batch_size": batch_size,
        "final_train_loss": history[-1]["train_loss"],
        "final_train_top1": history[-1]["train_top1"],
        "history": [{k: h[k] for k in history_keys if k in h} for h in history],
        "param_group_lrs": param_group_lrs,
        "train_seconds": sum(float(h.get("epoch_seconds") or 0.0) for h in history),  # the training steps alone
        "seconds": time.time() - start_time,
    }


def repeat_seed(seed: int, repeat: int) -> int:
    """The seed of fine-tuning repeat `repeat` (0-based) of a run with `seed`; repeat 0 is `seed` itself."""
    return seed + repeat * REPEAT_SEED_STRIDE


def finetune_repeated(backbone: nn.Module, train_split: Any, test_split: Any, recipe: FinetuneRecipe,
                      runtime: EvalRuntime = EvalRuntime(), repeats: int = 1) -> dict[str, Any]:
    """`finetune` a copy of `backbone` `repeats` times, repeat r with `repeat_seed(recipe.seed, r)`; `backbone` is
    untouched.

    One repeat returns `finetune`'s result as it is. Several return the first repeat's record with
    `clip_top1` and `video_top1` averaged over the repeats, the seconds summed, and `repeats`: each
    repeat's seed, accuracies and training history.
    """
    if repeats < 1:
        raise TrainingError(f"fine-tuning needs at least one repeat, got {repeats} (set eval.finetune_repeats)")
    seeds = [repeat_seed(recipe.seed, repeat) for repeat in range(repeats)]
    results = []
    for repeat, repeat_of_seed in enumerate(seeds, 1):
        results.append(finetune(copy.deepcopy(backbone), train_split, test_split,
                                dataclasses.replace(recipe, seed=repeat_of_seed), runtime))
        if repeats > 1:
            log.info("finetune repeat %d/%d (seed %d): video top-1 %.3f", repeat, repeats, repeat_of_seed,
                     results[-1]["video_top1"])
    if repeats == 1:
        return results[0]
    per_repeat_keys = ("clip_top1", "video_top1", "final_train_loss", "final_train_top1", "history")
    return {
        **{key: value for key, value in results[0].items() if key not in per_repeat_keys},
        "clip_top1": statistics.fmean(r["clip_top1"] for r in results),
        "video_top1": statistics.fmean(r["video_top1"] for r in results),
        "train_seconds": sum(r["train_seconds"] for r in results),
        "seconds": sum(r["seconds"] for r in results),
        "repeats": [{"seed": repeat_of_seed, "train_videos": r["train_videos"],
                     **{key: r[key] for key in per_repeat_keys}} for repeat_of_seed, r in zip(seeds, results)],
    }
