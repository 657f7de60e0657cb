"""Knowledge-distillation losses: a frozen teacher's outputs guide the student.

- `logit_kd_loss`: Hinton KD on the K-way pretext logits, T^2 * KL(p_t || p_s) at temperature T.
- `relational_kd_loss`: the student copies the teacher's in-batch similarity structure, which
  works whatever the two feature sizes are.
- `FeatureKD`: the student's features, through a learned linear map, point where the teacher's do.

Every term detaches the teacher, so gradients reach the student (and the projection) only.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn as nn
import torch.nn.functional as F

from vidkd.errors import ConfigError

if TYPE_CHECKING:
    from vidkd.config import TeacherConfig
    from vidkd.ssl.pcl import PCLOutput


def logit_kd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """T^2 * KL(softmax(teacher / T) || softmax(student / T)), mean over the batch.

    The T^2 factor keeps the gradient scale independent of T (Hinton et al., 2015).
    """
    if student_logits.shape != teacher_logits.shape:
        raise ConfigError(
            f"teacher logits {tuple(teacher_logits.shape)} do not match student logits "
            f"{tuple(student_logits.shape)}; teacher and student need the same pretext classes"
        )
    log_p_student = F.log_softmax(student_logits.float() / temperature, dim=1)
    log_p_teacher = F.log_softmax(teacher_logits.detach().float() / temperature, dim=1)
    kl = F.kl_div(log_p_student, log_p_teacher, reduction="batchmean", log_target=True)
    return kl * temperature**2


def _off_diagonal_similarities(embeddings: torch.Tensor, temperature: float) -> torch.Tensor:
    """(N, N-1) cosine similarities of each row to every other row, divided by the temperature."""
    unit = F.normalize(embeddings.float(), dim=1)
    similarity = unit @ unit.T / temperature
    n = similarity.shape[0]
    keep = ~torch.eye(n, dtype=torch.bool, device=similarity.device)
    return similarity[keep].view(n, n - 1)


def relational_kd_loss(student_emb: torch.Tensor, teacher_emb: torch.Tensor, temperature: float = 0.1) -> torch.Tensor:
    """KL between the teacher's and the student's row-softmax of in-batch cosine similarities.

    student_emb (N, d_s) and teacher_emb (N, d_t) may have different sizes; only the N x N
    similarity structure is compared. Self-similarities (the diagonal) are left out. Mean over
    rows; zero for N < 2.
    """
    if student_emb.shape[0] != teacher_emb.shape[0]:
        raise ValueError(f"student and teacher batches differ: {student_emb.shape[0]} vs {teacher_emb.shape[0]}")
    if student_emb.shape[0] < 2:
        return student_emb.sum() * 0.0  # keeps the graph; nothing to compare
    log_p_student = F.log_softmax(_off_diagonal_similarities(student_emb, temperature), dim=1)
    log_p_teacher = F.log_softmax(_off_diagonal_similarities(teacher_emb.detach(), temperature), dim=1)
    return F.kl_div(log_p_student, log_p_teacher, reduction="batchmean", log_target=True)


class FeatureKD(nn.Module):
    """Feature KD through a learned projection: mean of 1 - cos(W s + b, t).

    Cosine (rather than raw MSE) makes the loss independent of the two networks' feature
    scales; on unit vectors it is half the MSE. The projection is trained with the student.
    """

    def __init__(self, student_dim: int, teacher_dim: int) -> None:
        super().__init__()
        self.projection = nn.Linear(student_dim, teacher_dim)

    def forward(self, student_features: torch.Tensor, teacher_features: torch.Tensor) -> torch.Tensor:
        """student (..., d_s) and teacher (..., d_t) with the same leading dims -> scalar."""
        projected = self.projection(student_features.flatten(0, -2).to(self.projection.weight.dtype))
        target = teacher_features.detach().flatten(0, -2).to(projected.dtype)
        return (1 - F.cosine_similarity(projected, target, dim=1)).mean()


class KDLoss(nn.Module):
    """alpha * logit KD + relational_weight * relational KD + feature_weight * feature KD.

    Relational and feature KD act on the pooled features of every clip of every tuple
    (B * tuple_len rows). Terms with weight 0 are not computed (and `FeatureKD`, which has
    parameters, is only built when feature_weight > 0: add this module's parameters to the
    optimizer).
    """

    def __init__(self, teacher_cfg: TeacherConfig, student_dim: int, teacher_dim: int) -> None:
        super().__init__()
        for key in ("alpha", "relational_weight", "feature_weight"):
            if getattr(teacher_cfg, key) < 0:
                raise ConfigError(f"config key 'teacher.{key}' must not be negative; got {getattr(teacher_cfg, key)}")
        if teacher_cfg.relational_temperature <= 0:
            raise ConfigError("config key 'teacher.relational_temperature' must be positive")
        self.temperature = teacher_cfg.temperature
        self.alpha = teacher_cfg.alpha
        self.relational_weight = teacher_cfg.relational_weight
        self.relational_temperature = teacher_cfg.relational_temperature
        self.feature_weight = teacher_cfg.feature_weight
        self.feature_kd = FeatureKD(student_dim, teacher_dim) if self.feature_weight > 0 else None

    def forward(self, student_out: PCLOutput, teacher_out: PCLOutput) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Weighted KD loss and its unweighted, detached parts `kd_logit`, `kd_relational`, `kd_feature`."""
        zero = student_out.features.new_zeros((), dtype=torch.float32)
        kd_logit, kd_relational, kd_feature = zero, zero, zero
        if self.alpha > 0:
            if student_out.pretext_logits is None or teacher_out.pretext_logits is None:
                raise ConfigError("logit KD needs pretext logits from student and teacher; "
                                  "set ssl.pretext=vcp or teacher.alpha=0")
            kd_logit = logit_kd_loss(student_out.pretext_logits, teacher_out.pretext_logits, self.temperature)
        student_features = student_out.features.flatten(0, 1)
        teacher_features = teacher_out.features.flatten(0, 1)
        if self.relational_weight > 0:
            kd_relational = relational_kd_loss(student_features, teacher_features, self.relational_temperature)
        if self.feature_kd is not None:
            kd_feature = self.feature_kd(student_features, teacher_features)
        loss = self.alpha * kd_logit + self.relational_weight * kd_relational + self.feature_weight * kd_feature
        parts = {"kd_logit": kd_logit.detach(), "kd_relational": kd_relational.detach(),
                 "kd_feature": kd_feature.detach()}
        return loss, parts
