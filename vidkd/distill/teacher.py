"""A frozen teacher for distillation, checked against the student before any training starts.

The checkpoint is read once; the check asks for exactly what the active KD terms need (a
pretext head of the same task for logit KD; pooled features, which every model has, for
relational and feature KD), and for the same clips (length, crop, modality, tuple length).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn

from vidkd.options import TeacherConfig
from vidkd.distill.losses import active_terms
from vidkd.errors import CheckpointError
from vidkd.methods import MODEL_TYPES, method_of
from vidkd.methods.loading import load_model
from vidkd.models.loading import WeightSource, read_weights, resolve_arch


def _head_classes(weights: WeightSource) -> int | None:
    """The classes of the checkpoint's pretext head (None without one), by the tensor each method's model names."""
    for model_type in MODEL_TYPES.values():
        key = model_type.PRETEXT_LOGITS_WEIGHT
        if key in weights.state:
            return int(weights.state[key].shape[0])
    return None


def heads_needed(teacher_cfg: TeacherConfig) -> bool:
    """Whether an active term reads the teacher's heads, which take its own number of clips (feature
    terms read its backbone, which takes any: see `Distillation`)."""
    return bool({"pretext_logits", "embeddings"} & {term.needs for term in active_terms(teacher_cfg).values()})


def check_teacher_fits(teacher_cfg: TeacherConfig, student_meta: dict[str, Any],
                       weights: WeightSource) -> dict[str, Any]:
    """Raise a one-line CheckpointError naming the first mismatch; return what was read.

    `student_meta` is the student method's `meta()` (method, pretext_classes, tuple_len, input).
    """
    path = teacher_cfg.path
    arch, width = resolve_arch(weights, teacher_cfg.arch, teacher_cfg.width)
    teacher_method = method_of(weights.state, weights.meta)
    if "pretext_logits" in {term.needs for term in active_terms(teacher_cfg).values()}:
        classes = _head_classes(weights)
        if classes is None:
            raise CheckpointError(
                f"teacher {path} has no pretext head ({weights.format} weights of {arch}), which logit KD needs; "
                f"give it one with `vidkd adapt-teacher {path} --arch {arch} --out DIR` and use DIR as the "
                "teacher, or distil features only (teacher.alpha=0, teacher.relational_weight=1)")
        student_method = student_meta.get("method")
        if teacher_method != student_method or classes != student_meta.get("pretext_classes"):
            raise CheckpointError(
                f"teacher {path} ({teacher_method}, {classes} pretext classes) and the student ({student_method}, "
                f"{student_meta.get('pretext_classes')} pretext classes) do not share a pretext task, which logit KD "
                "needs; set teacher.alpha=0 and distil features (teacher.relational_weight=1)")
    clip_inputs = weights.meta.get("input") or {}
    student_inputs = student_meta.get("input") or {}
    for key in ("clip_len", "crop", "modality"):
        teacher_value, student_value = clip_inputs.get(key), student_inputs.get(key)
        if teacher_value is not None and teacher_value != student_value:
            raise CheckpointError(f"teacher {path} was trained with data.{key}={teacher_value} but the student uses "
                                  f"{student_value}; both see the same clips, so set data.{key}={teacher_value}")
    teacher_tuple = weights.meta.get("tuple_len")
    if heads_needed(teacher_cfg) and teacher_tuple is not None and teacher_tuple != student_meta.get("tuple_len"):
        raise CheckpointError(f"teacher {path} uses tuples of {teacher_tuple} clips, the student "
                              f"{student_meta.get('tuple_len')}; set data.tuple_len={teacher_tuple}")
    return {"arch": arch, "width": width, "format": weights.format, "method": teacher_method}


def freeze(model: nn.Module) -> nn.Module:
    model.eval()
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    return model


def load_teacher(teacher_cfg: TeacherConfig, student_meta: dict[str, Any],
                 device: torch.device | str = "cpu") -> tuple[nn.Module, dict[str, Any]]:
    """Read, check and freeze the teacher named by `teacher_cfg.path` (eval mode, no gradients)."""
    weights = read_weights(teacher_cfg.path)
    found = check_teacher_fits(teacher_cfg, student_meta, weights)
    model, report, _ = load_model(weights, arch=found["arch"], width=found["width"],
                                  allow_partial=teacher_cfg.allow_partial)
    if heads_needed(teacher_cfg) and getattr(model, "tuple_len", student_meta.get("tuple_len")) != student_meta.get("tuple_len"):
        raise CheckpointError(f"teacher {teacher_cfg.path} takes tuples of {model.tuple_len} clips, the student "
                              f"{student_meta.get('tuple_len')}; set data.tuple_len={model.tuple_len}")
    diverged = [k for k, v in model.state_dict().items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if diverged:
        raise CheckpointError(f"teacher {teacher_cfg.path} has NaN or infinite weights ({diverged[0]}"
                              f"{f' and {len(diverged) - 1} more' if len(diverged) > 1 else ''}): it diverged; use "
                              "an earlier checkpoint of it, or train it again with a lower train.lr")
    freeze(model).to(device)
    return model, {"summary": report.summary, "report": report.to_dict(), **found}
