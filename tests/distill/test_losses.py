"""Knowledge-distillation losses against hand computations."""

from __future__ import annotations

import math

import pytest
import torch

from vidkd.options import TeacherConfig
from vidkd.distill.losses import FeatureKD, KDLoss, logit_kd_loss, relational_kd_loss
from vidkd.methods.base import ModelOutput as PCLOutput


def _hand_kl(teacher_logits: torch.Tensor, student_logits: torch.Tensor, temperature: float) -> float:
    """Mean over rows of sum_k p_t log(p_t / p_s), with explicit sums in float64."""
    total = 0.0
    for t_row, s_row in zip(teacher_logits.double().tolist(), student_logits.double().tolist()):
        t_exp = [math.exp(v / temperature) for v in t_row]
        s_exp = [math.exp(v / temperature) for v in s_row]
        p_t = [v / sum(t_exp) for v in t_exp]
        p_s = [v / sum(s_exp) for v in s_exp]
        total += sum(pt * math.log(pt / ps) for pt, ps in zip(p_t, p_s))
    return total / len(teacher_logits)


@pytest.mark.parametrize("temperature", [1.0, 4.0])
def test_logit_kd_matches_hand_computation(temperature):
    gen = torch.Generator().manual_seed(0)
    student = torch.randn(6, 5, generator=gen) * 3
    teacher = torch.randn(6, 5, generator=gen) * 3
    got = logit_kd_loss(student, teacher, temperature)
    expected = temperature**2 * _hand_kl(teacher, student, temperature)
    assert got.item() == pytest.approx(expected, rel=1e-5)


def test_logit_kd_direction_is_teacher_to_student():
    # KL is asymmetric: swapping the roles must change the value for these logits.
    student = torch.tensor([[4.0, 0.0, 0.0]])
    teacher = torch.tensor([[1.0, 1.0, 0.0]])
    forward = logit_kd_loss(student, teacher, 1.0).item()
    assert forward == pytest.approx(_hand_kl(teacher, student, 1.0), rel=1e-5)
    assert forward != pytest.approx(_hand_kl(student, teacher, 1.0), rel=1e-3)


def test_logit_kd_zero_for_equal_logits_and_stable_for_large_logits():
    logits = torch.randn(4, 5) * 1000  # exp() of these overflows without log_softmax
    assert logit_kd_loss(logits, logits.clone(), 2.0).item() == pytest.approx(0.0, abs=1e-6)
    assert torch.isfinite(logit_kd_loss(logits, -logits, 2.0))


def test_logit_kd_gradient_reaches_student_only():
    student = torch.randn(3, 5, requires_grad=True)
    teacher = torch.randn(3, 5, requires_grad=True)
    logit_kd_loss(student, teacher, 4.0).backward()
    assert student.grad is not None and student.grad.abs().sum() > 0
    assert teacher.grad is None


def test_logit_kd_refuses_mismatched_classes():
    with pytest.raises(ValueError, match="pretext classes"):
        logit_kd_loss(torch.randn(2, 5), torch.randn(2, 400), 4.0)


def test_relational_kd_with_different_dims():
    gen = torch.Generator().manual_seed(1)
    student = torch.randn(8, 16, generator=gen, requires_grad=True)
    teacher = torch.randn(8, 64, generator=gen, requires_grad=True)
    loss = relational_kd_loss(student, teacher, temperature=0.1)
    assert loss.item() > 0
    loss.backward()
    assert student.grad.abs().sum() > 0 and teacher.grad is None


def test_relational_kd_zero_for_identical_similarity_structure():
    gen = torch.Generator().manual_seed(2)
    teacher = torch.randn(6, 32, generator=gen)
    # A random rotation into a larger space plus a per-row rescale keeps every cosine similarity.
    rotation, _ = torch.linalg.qr(torch.randn(48, 48, generator=gen))
    padded = torch.cat([teacher, torch.zeros(6, 16)], dim=1)
    student = (padded @ rotation) * torch.rand(6, 1, generator=gen).add(0.5)
    assert relational_kd_loss(student, teacher, 0.1).item() == pytest.approx(0.0, abs=1e-5)
    assert relational_kd_loss(torch.randn(6, 48, generator=gen), teacher, 0.1).item() > 1e-3


def test_relational_kd_matches_hand_computation():
    student = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    teacher = torch.tensor([[1.0, 0.0, 0.0], [1.0, 0.1, 0.0], [0.0, 0.0, 1.0]])
    tau = 0.5

    def off_diagonal_probs(x):
        rows = x.double().tolist()
        unit = [[v / math.sqrt(sum(w * w for w in r)) for v in r] for r in rows]
        probs = []
        for i, a in enumerate(unit):
            e = [math.exp(sum(p * q for p, q in zip(a, b)) / tau) for j, b in enumerate(unit) if j != i]
            probs.append([v / sum(e) for v in e])
        return probs

    p_t, p_s = off_diagonal_probs(teacher), off_diagonal_probs(student)
    expected = sum(t * math.log(t / s) for rt, rs in zip(p_t, p_s) for t, s in zip(rt, rs)) / 3
    assert relational_kd_loss(student, teacher, tau).item() == pytest.approx(expected, rel=1e-5)


def test_feature_kd_with_different_dims():
    torch.manual_seed(0)
    kd = FeatureKD(student_dim=12, teacher_dim=20)
    student = torch.randn(4, 3, 12, requires_grad=True)
    teacher = torch.randn(4, 3, 20, requires_grad=True)
    loss = kd(student, teacher)
    assert 0 <= loss.item() <= 2
    loss.backward()
    assert student.grad.abs().sum() > 0 and kd.projection.weight.grad.abs().sum() > 0
    assert teacher.grad is None
    # Zero when the projected student already points along the teacher (scale does not matter).
    target = 3.0 * kd.projection(student.detach())
    assert kd(student.detach(), target).item() == pytest.approx(0.0, abs=1e-6)


def _output(batch, tuple_len, dim, classes, gen):
    return PCLOutput(
        pretext_logits=torch.randn(batch, classes, generator=gen),
        features=torch.randn(batch, tuple_len, dim, generator=gen),
        embeddings=None,
    )


def test_kd_loss_combines_weighted_terms_with_different_dims():
    gen = torch.Generator().manual_seed(3)
    cfg = TeacherConfig(temperature=2.0, alpha=0.7, relational_weight=0.3, relational_temperature=0.2,
                        feature_weight=0.5)
    kd = KDLoss(cfg, student_dim=16, teacher_dim=24)
    student, teacher = _output(4, 3, 16, 5, gen), _output(4, 3, 24, 5, gen)
    loss, parts = kd(student, teacher)
    assert set(parts) == {"kd_logit", "kd_relational", "kd_feature"}
    assert parts["kd_logit"].item() == pytest.approx(
        logit_kd_loss(student.pretext_logits, teacher.pretext_logits, 2.0).item())
    assert parts["kd_relational"].item() == pytest.approx(
        relational_kd_loss(student.features.flatten(0, 1), teacher.features.flatten(0, 1), 0.2).item())
    assert parts["kd_feature"].item() == pytest.approx(
        kd.terms["kd_feature"](student.features, teacher.features).item())
    expected = 0.7 * parts["kd_logit"] + 0.3 * parts["kd_relational"] + 0.5 * parts["kd_feature"]
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)


def test_kd_loss_defaults_only_logit_term():
    gen = torch.Generator().manual_seed(4)
    kd = KDLoss(TeacherConfig(), student_dim=16, teacher_dim=8)
    assert "kd_feature" not in kd.terms and not list(kd.parameters())
    student, teacher = _output(3, 3, 16, 5, gen), _output(3, 3, 8, 5, gen)
    loss, parts = kd(student, teacher)
    assert set(parts) == {"kd_logit"}  # terms with weight 0 are not computed
    assert loss.item() == pytest.approx(logit_kd_loss(student.pretext_logits, teacher.pretext_logits, 4.0).item())


def test_kd_loss_needs_logits_for_logit_term():
    gen = torch.Generator().manual_seed(5)
    student = _output(2, 3, 8, 5, gen)._replace(pretext_logits=None)
    with pytest.raises(ValueError, match="needs pretext_logits"):
        KDLoss(TeacherConfig(), 8, 8)(student, _output(2, 3, 8, 5, gen))
