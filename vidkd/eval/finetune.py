"""Supervised fine-tuning of a (pretrained) backbone with a new linear classifier, as PCL/VCOP.

Training runs through the engine as the `Supervised` method (one random clip per video per
epoch, random crop and flip, SGD with momentum, cosine decay per step, the backbone at
`backbone_lr_scale` of the head's learning rate). Testing takes `num_test_clips` evenly
spaced centre-crop clips per video and reports clip accuracy (every clip on its own) and video
accuracy (logits averaged over the clips).
"""

from __future__ import annotations

import logging
import time
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from vidkd.config import TrainConfig
from vidkd.data.loaders import ClipDataset, MultiClipDataset
from vidkd.engine.trainer import Trainer
from vidkd.errors import TrainingError
from vidkd.eval.fractions import fraction_of_split
from vidkd.methods.supervised import Supervised
from vidkd.utils.runtime import autocast_context

log = logging.getLogger(__name__)


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


def finetune(
    backbone: nn.Module,
    train_split: Any,
    test_split: Any,
    *,
    train_transform: Any,
    test_transform: Any,
    epochs: int = 50,
    lr: float = 0.01,
    backbone_lr_scale: float = 0.1,
    batch_size: int = 16,
    fraction: float = 1.0,
    seed: int = 0,
    clip_len: int = 16,
    num_test_clips: int = 10,
    momentum: float = 0.9,
    weight_decay: float = 5e-4,
    dropout: float = 0.5,
    device: str | torch.device = "cpu",
    num_workers: int = 0,
    amp: str = "none",
    progress: bool = True,
) -> dict[str, Any]:
    """Fine-tune `backbone` (in place) plus a new linear classifier; return the test accuracies.

    `fraction` keeps a per-class share of the training videos.
    """
    if epochs < 1:
        raise TrainingError(f"fine-tuning needs at least one epoch, got {epochs} (use --epochs N)")
    start_time = time.time()
    device = torch.device(device)
    train_split = fraction_of_split(train_split, fraction, seed)
    num_classes = len(train_split.class_names)
    train_set = ClipDataset(train_split, clip_len, train_transform, seed=seed, progress=progress)
    test_set = MultiClipDataset(test_split, num_test_clips, clip_len, test_transform, seed=seed, progress=progress)
    if len(train_set) == 0 or len(test_set) == 0:
        raise TrainingError("fine-tuning needs training and test videos; check the dataset split")
    batch_size = min(batch_size, len(train_set))  # a small labelled fraction still makes one batch

    torch.manual_seed(seed)  # the new head's initialisation
    method = Supervised(backbone, num_classes, train_set, dropout=dropout, backbone_lr_scale=backbone_lr_scale)
    schedule = TrainConfig(epochs=epochs, batch_size=batch_size, optimizer="sgd", lr=lr, momentum=momentum,
                           weight_decay=weight_decay, scheduler="cosine", amp=amp, seed=seed,
                           device=device.type, knn_every=0)
    trainer = Trainer(method, schedule, run_dir=None, num_workers=num_workers, progress=progress)
    history = trainer.fit()
    for entry in history:
        log.info("finetune epoch %d/%d: loss %.4f, train top-1 %.3f", entry["epoch"], epochs, entry["train_loss"],
                 entry["train_top1"])

    test_loader = DataLoader(test_set, batch_size=max(1, batch_size // 2), shuffle=False,
                             num_workers=num_workers, pin_memory=device.type == "cuda")
    metrics = evaluate_clips(method.model, test_loader, trainer.device, trainer.amp, progress)
    return {
        **metrics,
        "epochs": epochs,
        "fraction": float(fraction),
        "train_videos": len(train_set),
        "test_videos": len(test_set),
        "test_clips_per_video": num_test_clips,
        "lr": lr,
        "backbone_lr_scale": backbone_lr_scale,
        "batch_size": batch_size,
        "final_train_loss": history[-1]["train_loss"],
        "final_train_top1": history[-1]["train_top1"],
        "history": [{"epoch": h["epoch"], "train_loss": h["train_loss"], "train_top1": h["train_top1"],
                     "lr": h["lr"]} for h in history],
        "seconds": time.time() - start_time,
    }
