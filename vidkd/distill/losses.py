"""Knowledge-distillation terms over plain tensors: a frozen teacher's outputs guide the student.

- `logit_kd_loss`: Hinton KD on the K-way pretext logits, T^2 * KL(p_t || p_s) at temperature T.
- `relational_kd_loss`: the student copies the teacher's in-batch similarity structure, which
  works whatever the two feature sizes are.
- `FeatureKD`: the student's features, through a learned linear map, point where the teacher's do.
- `attention_transfer_loss`: the student's spatio-temporal attention maps (where its backbone
  stages respond) match the teacher's (Zagoruyko & Komodakis, ICLR 2017).

Every term detaches the teacher, so gradients reach the student (and the projection) only. Each
term (`KD_TERMS`) declares which `ModelOutput` field it needs from both networks, so a teacher
is checked for exactly that; `KDLoss` sums the terms with a weight above zero.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

from vidkd.options import KD_WEIGHT_KEYS, TeacherConfig
from vidkd.methods.base import ModelOutput


def logit_kd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """T^2 * KL(softmax(teacher / T) || softmax(student / T)), mean over the batch.

    The T^2 factor keeps the gradient scale independent of T (Hinton et al., 2015).
    """
    if student_logits.shape != teacher_logits.shape:
        raise ValueError(
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


def attention_map(stage_map: torch.Tensor, size: tuple[int, int, int] | None = None) -> torch.Tensor:
    """(N, C, T, H, W) -> (N, T*H*W): mean over channels of A_c^2, trilinearly resized to `size` (T, H, W)
    when given and different, flattened and L2-normalised per sample. In fp32."""
    attention = stage_map.float().pow(2).mean(dim=1)
    if size is not None and tuple(attention.shape[1:]) != tuple(size):
        attention = F.interpolate(attention.unsqueeze(1), size=tuple(size), mode="trilinear",
                                  align_corners=False).squeeze(1)
    return F.normalize(attention.flatten(1), dim=1)


def attention_transfer_loss(student_maps: list[torch.Tensor], teacher_maps: list[torch.Tensor]) -> torch.Tensor:
    """Sum over stages of mean((at(S_i) - at(T_i))^2), `at` = `attention_map` (the authors' code).

    Pairs the i-th student map with the i-th teacher map; channel counts may differ, and a teacher
    map of another (T, H, W) size is resized to the student's.
    """
    if len(student_maps) != len(teacher_maps) or not student_maps:
        raise ValueError(f"attention transfer pairs stage maps: got {len(student_maps)} student and "
                         f"{len(teacher_maps)} teacher maps")
    loss = student_maps[0].new_zeros((), dtype=torch.float32)
    for student, teacher in zip(student_maps, teacher_maps):
        if student.shape[0] != teacher.shape[0]:
            raise ValueError(f"student and teacher batches differ: {student.shape[0]} vs {teacher.shape[0]}")
        target = attention_map(teacher.detach(), size=tuple(student.shape[2:]))
        loss = loss + (attention_map(student) - target).pow(2).mean()
    return loss


@dataclass(frozen=True)
class KDTerm:
    """One KD term: the config keys of its weight, the output field it compares, how it is built."""

    weight_key: str  # teacher.<weight_key>
    needs: str  # ModelOutput field both networks must provide
    build: Callable[[TeacherConfig, int, int], nn.Module]


class _LogitTerm(nn.Module):
    def __init__(self, temperature: float) -> None:
        super().__init__()
        self.temperature = temperature

    def forward(self, student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
        return logit_kd_loss(student, teacher, self.temperature)


class _RelationalTerm(nn.Module):
    def __init__(self, temperature: float) -> None:
        super().__init__()
        self.temperature = temperature

    def forward(self, student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
        # pooled features of every clip of every sample: (B * clips) rows
        return relational_kd_loss(student.flatten(0, 1), teacher.flatten(0, 1), self.temperature)


class _AttentionTerm(nn.Module):
    def forward(self, student: list[torch.Tensor], teacher: list[torch.Tensor]) -> torch.Tensor:
        # stage maps (B, clips, C, T, H, W): every clip of every sample is one attention map
        return attention_transfer_loss([m.flatten(0, 1) for m in student], [m.flatten(0, 1) for m in teacher])


KD_TERMS: dict[str, KDTerm] = {
    "kd_logit": KDTerm("alpha", "pretext_logits", lambda cfg, s, t: _LogitTerm(cfg.temperature)),
    "kd_relational": KDTerm("relational_weight", "features",
                            lambda cfg, s, t: _RelationalTerm(cfg.relational_temperature)),
    "kd_feature": KDTerm("feature_weight", "features", lambda cfg, s, t: FeatureKD(s, t)),
    "kd_attention": KDTerm("attention_weight", "maps", lambda cfg, s, t: _AttentionTerm()),
}
assert sorted(term.weight_key for term in KD_TERMS.values()) == sorted(KD_WEIGHT_KEYS)  # one weight per term


def active_terms(teacher_cfg: TeacherConfig) -> dict[str, KDTerm]:
    """The terms whose weight is above zero (a negative weight is a ValueError; config validation
    refuses it first, with the key's name)."""
    for term in KD_TERMS.values():
        if getattr(teacher_cfg, term.weight_key) < 0:
            raise ValueError(f"the weight of {term.weight_key} must not be negative; "
                             f"got {getattr(teacher_cfg, term.weight_key)}")
    if teacher_cfg.relational_temperature <= 0:
        raise ValueError("the relational KD temperature must be positive")
    return {name: term for name, term in KD_TERMS.items() if getattr(teacher_cfg, term.weight_key) > 0}


def requested_stages(teacher_cfg: TeacherConfig) -> tuple[int, ...] | None:
    """The backbone stages whose maps the active terms compare (`teacher.attention_stages`), or None
    when no active term compares stage maps."""
    wanted = any(term.needs == "maps" for term in active_terms(teacher_cfg).values())
    return tuple(teacher_cfg.attention_stages) if wanted else None


class KDLoss(nn.Module):
    """Sum of weight * term over the active KD terms (see `KD_TERMS`).

    Terms with parameters (`FeatureKD`'s projection) are submodules: add this module's
    parameters to the optimizer and keep its state with the run.
    """

    def __init__(self, teacher_cfg: TeacherConfig, student_dim: int, teacher_dim: int) -> None:
        super().__init__()
        self.specs = active_terms(teacher_cfg)
        self._map_stages = requested_stages(teacher_cfg)
        self.weights = {name: float(getattr(teacher_cfg, term.weight_key)) for name, term in self.specs.items()}
        self.terms = nn.ModuleDict({name: term.build(teacher_cfg, student_dim, teacher_dim)
                                    for name, term in self.specs.items()})

    @property
    def needs(self) -> set[str]:
        return {term.needs for term in self.specs.values()}

    @property
    def map_stages(self) -> tuple[int, ...] | None:
        """The backbone stages whose maps the models must return (`maps=`), or None when no active
        term needs `maps` (then the models run their plain forward)."""
        return self._map_stages

    def forward(self, student: ModelOutput, teacher: ModelOutput) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Weighted KD loss and its unweighted, detached parts (one per active term)."""
        loss = student.features.new_zeros((), dtype=torch.float32)
        parts: dict[str, torch.Tensor] = {}
        for name, module in self.terms.items():
            field = self.specs[name].needs
            s, t = getattr(student, field), getattr(teacher, field)
            if s is None or t is None:
                raise ValueError(f"{name} needs {field} from student and teacher; turn it off "
                                 f"(weight {self.specs[name].weight_key} = 0)")
            value = module(s, t)
            loss = loss + self.weights[name] * value
            parts[name] = value.detach()
        return loss, parts
