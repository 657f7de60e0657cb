"""A frozen teacher for distillation, checked against the student before any training starts."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
import torch.nn as nn

from vidkd.errors import CheckpointError
from vidkd.models.loading import load_pcl_model, read_weights, resolve_arch

if TYPE_CHECKING:
    from vidkd.config import Config, TeacherConfig


def check_teacher_fits(teacher_cfg: TeacherConfig, student_cfg: Config) -> dict[str, Any]:
    """Raise a one-line CheckpointError naming the first mismatch; return what was read."""
    path = teacher_cfg.path
    weights = read_weights(path)
    arch, width = resolve_arch(weights, teacher_cfg.arch, teacher_cfg.width)
    head = weights.state.get("pretext_head.fc.weight")
    if head is None:
        raise CheckpointError(
            f"teacher {path} has no pretext head ({weights.format} weights of {arch}); give it one with "
            f"`vidkd adapt-teacher {path} --arch {arch} --out DIR` and use DIR as the teacher")
    if head.shape[0] != student_cfg.ssl.pretext_classes:
        raise CheckpointError(f"teacher {path} predicts {head.shape[0]} pretext classes but the student "
                              f"{student_cfg.ssl.pretext_classes}; KD needs the same pretext task")
    clip_inputs = weights.meta.get("input") or {}
    for key, student_value in (("clip_len", student_cfg.data.clip_len), ("crop", student_cfg.data.crop),
                               ("modality", student_cfg.data.modality)):
        teacher_value = clip_inputs.get(key)
        if teacher_value is not None and teacher_value != student_value:
            raise CheckpointError(f"teacher {path} was trained with data.{key}={teacher_value} but the student uses "
                                  f"{student_value}; both see the same clips, so set data.{key}={teacher_value}")
    teacher_tuple = weights.meta.get("tuple_len")
    if teacher_tuple is not None and teacher_tuple != student_cfg.data.tuple_len:
        raise CheckpointError(f"teacher {path} uses tuples of {teacher_tuple} clips, the student "
                              f"{student_cfg.data.tuple_len}; set data.tuple_len={teacher_tuple}")
    if teacher_cfg.relational_weight > 0 and "projection.mlp.2.weight" not in weights.state:
        raise CheckpointError(f"teacher {path} has no projection head, which relational KD needs; "
                              "set teacher.relational_weight=0")
    return {"arch": arch, "width": width, "format": weights.format}


def freeze(model: nn.Module) -> nn.Module:
    model.eval()
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    return model


def load_teacher(teacher_cfg: TeacherConfig, student_cfg: Config,
                 device: torch.device | str = "cpu") -> tuple[nn.Module, dict[str, Any]]:
    """Load, check and freeze the teacher named by `teacher_cfg.path` (eval mode, no gradients)."""
    found = check_teacher_fits(teacher_cfg, student_cfg)
    model, report, _ = load_pcl_model(teacher_cfg.path, arch=found["arch"], width=found["width"],
                                      allow_partial=teacher_cfg.allow_partial,
                                      tuple_len=student_cfg.data.tuple_len)
    freeze(model).to(device)
    return model, {"summary": report.summary, "report": report.to_dict(), **found}
