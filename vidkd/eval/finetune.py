"""Supervised fine-tuning of a (pretrained) backbone with a new linear classifier, as PCL/VCOP.

Training sees one random clip per video per epoch (random crop, flip); testing takes 10 evenly
spaced centre-crop clips per video and reports clip accuracy (every clip classified on its own)
and video accuracy (logits averaged over the clips).
"""

from __future__ import annotations

import logging
import math
import time
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from vidkd.data.loaders import ClipDataset, MultiClipDataset
from vidkd.errors import TrainingError
from vidkd.eval.features import autocast_context
from vidkd.eval.fractions import fraction_of_split
from vidkd.models.heads import LinearClassifier

log = logging.getLogger(__name__)


class BackboneClassifier(nn.Module):
    """A backbone's pooled features followed by a linear classifier."""

    def __init__(self, backbone: nn.Module, num_classes: int, dropout: float):
        super().__init__()
        self.backbone = backbone
        self.head = LinearClassifier(backbone.feature_dim, num_classes, dropout)

    def forward(self, clips: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(clips))


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

    SGD with momentum and weight decay, cosine learning-rate decay per step; the backbone
    learns at `lr * backbone_lr_scale` so pretrained features are not wiped out by the fresh
    head's first large gradients. `fraction` keeps a per-class share of the training videos.
    """
    if epochs < 1:
        raise TrainingError(f"fine-tuning needs at least one epoch, got {epochs} (use --epochs N)")
    start_time = time.time()
    device = torch.device(device)
    torch.manual_seed(seed)
    train_split = fraction_of_split(train_split, fraction, seed)
    num_classes = len(train_split.class_names)

    train_set = ClipDataset(train_split, clip_len, train_transform, seed=seed, progress=progress)
    test_set = MultiClipDataset(test_split, num_test_clips, clip_len, test_transform, seed=seed, progress=progress)
    if len(train_set) == 0 or len(test_set) == 0:
        raise TrainingError("fine-tuning needs training and test videos; check the dataset split")
    # BatchNorm cannot train on a batch of one: drop a lone last sample, keep at least one batch
    batch_size = min(batch_size, len(train_set))
    drop_last = len(train_set) % batch_size == 1 and len(train_set) > batch_size
    generator = torch.Generator().manual_seed(seed)
    train_loader = DataLoader(train_set, batch_size=batch_size, shuffle=True, drop_last=drop_last,
                              num_workers=num_workers, generator=generator, pin_memory=device.type == "cuda")
    test_loader = DataLoader(test_set, batch_size=max(1, batch_size // 2), shuffle=False,
                             num_workers=num_workers, pin_memory=device.type == "cuda")

    model = BackboneClassifier(backbone, num_classes, dropout).to(device)
    optimizer = torch.optim.SGD(
        [{"params": model.backbone.parameters(), "lr": lr * backbone_lr_scale},
         {"params": model.head.parameters(), "lr": lr}],
        lr=lr, momentum=momentum, weight_decay=weight_decay,
    )
    total_steps = epochs * len(train_loader)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: 0.5 * (1 + math.cos(math.pi * min(step, total_steps) / total_steps)))
    scaler = torch.amp.GradScaler("cuda", enabled=device.type == "cuda" and amp == "fp16")

    history = []
    for epoch in range(1, epochs + 1):
        model.train()
        train_set.set_epoch(epoch)  # reproducible clip choice and augmentation per (seed, epoch, video)
        loss_sum = correct = seen = 0
        bar = tqdm(train_loader, desc=f"finetune {epoch}/{epochs}", leave=False, disable=not progress, unit="batch")
        for batch in bar:
            clips, labels = batch["clip"].to(device, non_blocking=True), batch["label"].long().to(device)
            with autocast_context(device, amp):
                logits = model(clips)
            loss = F.cross_entropy(logits.float(), labels)
            if not torch.isfinite(loss):
                raise TrainingError(f"fine-tuning loss became {loss.item()} at epoch {epoch}; lower the learning rate")
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            scheduler.step()
            loss_sum += loss.item() * len(labels)
            correct += int((logits.argmax(dim=1) == labels).sum())
            seen += len(labels)
            bar.set_postfix(loss=f"{loss_sum / seen:.3f}", acc=f"{correct / seen:.3f}")
        history.append({"epoch": epoch, "train_loss": loss_sum / seen, "train_top1": correct / seen,
                        "lr": optimizer.param_groups[1]["lr"]})
        log.info("finetune epoch %d/%d: loss %.4f, train top-1 %.3f", epoch, epochs, loss_sum / seen, correct / seen)

    metrics = evaluate_clips(model, test_loader, device, amp, progress)
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
        "history": history,
        "seconds": time.time() - start_time,
    }
