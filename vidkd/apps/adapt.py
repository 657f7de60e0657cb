"""`vidkd adapt-teacher`: give a backbone without a pretext head (e.g. torchvision Kinetics-400
weights) a trained pretext and projection head, so that it can serve as a KD teacher."""

from __future__ import annotations

from pathlib import Path

from vidkd.apps.pretrain import pretrain
from vidkd.config import load_config
from vidkd.models.loading import read_weights, resolve_arch


def adapt_teacher(checkpoint: str, arch: str, out: Path, config: str | None = None,
                  overrides: list[str] | None = None, epochs: int = 3, allow_partial: bool = False) -> Path:
    """Train the heads of a PCL model on the frozen backbone at `checkpoint`; returns the run directory."""
    arch, width = resolve_arch(read_weights(checkpoint), arch, None)
    settings = [f"model.arch={arch}", f"model.width={width}", f"model.init={checkpoint}",
                "model.freeze_backbone=true", f"model.init_allow_partial={str(allow_partial).lower()}",
                f"train.epochs={epochs}", "name=adapted_teacher", "method=pcl"]
    cfg = load_config(config, settings + list(overrides or []))
    pretrain(cfg, Path(out))
    return Path(out)
