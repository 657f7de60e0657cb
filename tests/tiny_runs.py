"""A tiny synthetic dataset and config so that real training runs finish in seconds."""

from __future__ import annotations

from pathlib import Path

from typing import Any

from vidkd.config import Config, load_config
from vidkd.methods.pcl import pcl_meta
from vidkd.synthetic import SyntheticSpec, write_synthetic_dataset


def make_tiny_dataset(root: Path) -> Path:
    """3 actions x 4 actors x 2 clips (18 train / 6 test videos on split 1), 48 frames of 64x48."""
    write_synthetic_dataset(root, SyntheticSpec(classes=3, groups=4, clips_per_group=2, frames=48, size=(64, 48)),
                            progress=False)
    return root


TINY_SETTINGS = [
    "data.layout=ucf101", "data.clip_len=8", "data.interval=4", "data.resize=[32, 43]", "data.crop=32",
    "data.num_workers=0", "model.arch=r3d", "model.width=0.125", "ssl.nce_negatives=16",
    "train.epochs=2", "train.batch_size=4", "train.steps_per_epoch=2", "train.scheduler=cosine",
    "train.knn_k=5", "train.lr=0.05",
]


def tiny_config(data_root: Path, *overrides: str) -> Config:
    return load_config(None, [f"data.root={data_root}", *TINY_SETTINGS, *overrides])


def tiny_args(data_root: Path, *overrides: str) -> list[str]:
    """The same settings as CLI arguments (`--set k=v ...`)."""
    args: list[str] = []
    for item in [f"data.root={data_root}", *TINY_SETTINGS, *overrides]:
        args += ["--set", item]
    return args


def checkpoint_meta(cfg: Config, epoch: int, metrics: dict[str, Any]) -> dict[str, Any]:
    """meta.json of a PCL checkpoint written by hand, as the engine writes it."""
    return {"format": "vidkd-checkpoint-v2", **pcl_meta(cfg), "epoch": epoch, "metrics": metrics,
            "config": cfg.to_dict()}
