"""Distillation as a `Method` around any student method: its loss plus the KD terms.

Teacher and student see the very same batch; the teacher is frozen (eval mode, no gradients).
Only when an active term needs stage maps (`KDLoss.map_stages`) are the models asked for them;
otherwise both run their plain forward. A teacher of another method whose model takes another number
of clips (a PCL teacher, 3 clips, for a CVRL student's 2 views) sees the student's clips through its
backbone only: the feature terms can compare them, the logit and embedding terms cannot.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
from torch import nn
from torch.utils.data import Dataset

from vidkd.distill.losses import KDLoss, requested_stages
from vidkd.errors import ConfigError
from vidkd.methods.base import Method, ModelOutput
from vidkd.methods.pcl import tuple_features_and_maps
from vidkd.models import build_backbone
from vidkd.models.registry import VideoBackbone, resolve_stage
from vidkd.options import TeacherConfig


def check_stages(stages: Sequence[int], backbone: VideoBackbone, who: str) -> None:
    """Refuse, in one line, a stage of `teacher.attention_stages` that `backbone` lacks."""
    for index in stages:
        try:
            resolve_stage(index, backbone.num_stages, f"the {who}'s {backbone.arch}")
        except ValueError as exc:
            raise ConfigError(f"teacher.attention_stages {list(stages)}: {exc}; choose stages both backbones "
                              "have") from None


def check_map_stages(teacher_cfg: TeacherConfig, archs: dict[str, tuple[str, float]]) -> None:
    """Before any data is read: the stages an active KD term asks for exist in every backbone of
    `archs` (who -> (architecture, width)), when a term asks for stage maps at all."""
    stages = requested_stages(teacher_cfg)
    for who, (arch, width) in archs.items() if stages is not None else ():
        check_stages(stages, build_backbone(arch, width=width), who)


class Distillation(Method):
    def __init__(self, student: Method, teacher: nn.Module, teacher_cfg: TeacherConfig) -> None:
        self.student = student
        self.name = student.name
        self.model = student.model
        self.teacher = teacher
        self.kd_loss = KDLoss(teacher_cfg, student_dim=int(student.model.backbone.feature_dim),
                              teacher_dim=int(teacher.backbone.feature_dim))
        self.map_stages = self.kd_loss.map_stages
        if self.map_stages is not None:
            for network, who in ((student.model, "student"), (teacher, "teacher")):
                check_stages(self.map_stages, network.backbone, who)
        self._extra = nn.ModuleDict({"kd": self.kd_loss})
        student_extra = student.extra_modules()
        if student_extra is not None:
            self._extra["student"] = student_extra

    def train_dataset(self) -> Dataset:
        return self.student.train_dataset()

    def validation_dataset(self) -> Dataset | None:
        return self.student.validation_dataset()

    def extra_modules(self) -> nn.Module:
        return self._extra

    def param_groups(self) -> list[dict[str, Any]]:
        groups = self.student.param_groups()
        kd_params = [p for p in self.kd_loss.parameters() if p.requires_grad]
        return groups + ([{"params": kd_params, "lr_scale": 1.0}] if kd_params else [])

    def to(self, device: torch.device, memory_format: torch.memory_format = torch.preserve_format) -> Distillation:
        self.device = device
        self.student.to(device, memory_format=memory_format)
        self.teacher.to(device, memory_format=memory_format)
        self.kd_loss.to(device)
        return self

    def train_mode(self) -> None:
        self.student.train_mode()
        self.teacher.eval()

    def inputs(self, batch: dict[str, Any]) -> torch.Tensor:
        return self.student.inputs(batch)

    def _run(self, model: nn.Module, inputs: torch.Tensor) -> Any:
        return model(inputs) if self.map_stages is None else model(inputs, maps=self.map_stages)

    def _run_teacher(self, inputs: torch.Tensor) -> Any:
        if inputs.shape[1] == getattr(self.teacher, "tuple_len", inputs.shape[1]):
            return self._run(self.teacher, inputs)
        features, maps = tuple_features_and_maps(self.teacher.backbone, inputs, self.teacher.batchnorm,
                                                 self.map_stages)
        return ModelOutput(pretext_logits=None, features=features, embeddings=None, maps=maps)

    def training_step(self, model: nn.Module, batch: dict[str, Any]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The student's own loss plus the KD terms between its output and the teacher's (here, not in a
        `loss` of its own: the teacher must see the very inputs the student sees)."""
        inputs = self.inputs(batch)  # moved to the device once, for student and teacher
        output = self._run(model, inputs)
        with torch.no_grad():
            teacher_output = self._run_teacher(inputs)
        loss, parts = self.student.loss(output, batch)
        kd, kd_parts = self.kd_loss(output, teacher_output)
        return loss + kd, {**parts, **kd_parts, "kd_loss": kd.detach()}

    def clips_in(self, batch: dict[str, Any]) -> int:
        return self.student.clips_in(batch)

    def validation_step(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        return self.student.validation_step(batch)

    def validation_metrics(self, sums: dict[str, Any]) -> dict[str, float]:
        return self.student.validation_metrics(sums)

    def score(self, metrics: dict[str, Any]) -> float:
        return self.student.score(metrics)

    def meta(self) -> dict[str, Any]:
        return self.student.meta()
