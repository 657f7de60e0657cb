"""Published PCL numbers, shown beside ours only where the setting matches.

Source: Li Tao, Xueting Wang, Toshihiko Yamasaki, "Pretext-Contrastive Learning: Toward Good
Practices in Self-supervised Video Representation Learning", arXiv:2010.15464 (PCL with the VCP
pretext task, RGB input 16x112x112, self-supervised pretraining on UCF101 split 1). Fine-tuning is
top-1 video accuracy (%) on UCF101 / HMDB51 split 1; retrieval is R@1 (%) on UCF101 split 1 (test
videos query the train videos) with the R3D network the paper calls R3D-18 (VCOP's ResNet with one
basic block per stage, which is vidkd's `r3d`).

Our synthetic demo numbers are not comparable with these: another dataset, smaller networks and
inputs, a few epochs.
"""

from __future__ import annotations

PCL_SOURCE = "Tao, Wang & Yamasaki, Pretext-Contrastive Learning (PCL, VCP), arXiv:2010.15464"

# top-1 video accuracy (%) after fine-tuning, per vidkd arch name and target dataset
PUBLISHED_FINETUNE: dict[str, dict[str, float]] = {
    "c3d": {"ucf101": 81.4, "hmdb51": 45.2},
    "r3d": {"ucf101": 81.1, "hmdb51": 45.0},
    "r21d": {"ucf101": 79.9, "hmdb51": 45.6},
}

# retrieval R@1 (%), per vidkd arch name and dataset
PUBLISHED_RETRIEVAL_R1: dict[str, dict[str, float]] = {
    "r3d": {"ucf101": 55.1},
}

COMPARABLE_DATASETS = ("ucf101", "hmdb51")


def dataset_key(name: str | None) -> str | None:
    """'ucf101' or 'hmdb51' when a dataset name/path names one of them, else None."""
    text = (name or "").lower().replace("-", "").replace("_", "")
    for key in COMPARABLE_DATASETS:
        if key in text:
            return key
    return None


def is_comparable(dataset: str | None, width: float | None, clip_len: int | None = 16, crop: int | None = 112) -> bool:
    """True when a run's setting is the published one: UCF101/HMDB51, full width, 16x112x112 clips."""
    return (dataset_key(dataset) is not None and width is not None and float(width) == 1.0
            and clip_len in (None, 16) and crop in (None, 112))


def published_finetune(arch: str, dataset: str | None) -> float | None:
    """Published fine-tuning top-1 (%) for `arch` on `dataset`, or None."""
    return PUBLISHED_FINETUNE.get(arch, {}).get(dataset_key(dataset) or "")


def published_retrieval_r1(arch: str, dataset: str | None) -> float | None:
    """Published retrieval R@1 (%) for `arch` on `dataset`, or None."""
    return PUBLISHED_RETRIEVAL_R1.get(arch, {}).get(dataset_key(dataset) or "")
