"""Memory-bank NCE and in-batch InfoNCE against hand computations (single process)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from vidkd.errors import TrainingError
from vidkd.methods.contrastive import InBatchInfoNCE, MemoryBankNCE


def _unit(*shape, gen):
    return F.normalize(torch.randn(*shape, generator=gen), dim=-1)


def _hand_nce(query, positive, negatives, temperature):
    """-log softmax at the positive, written out with explicit sums in float64."""
    q = query.double().tolist()
    dot = lambda a, b: sum(x * y for x, y in zip(a, b))  # noqa: E731
    pos = math.exp(dot(q, positive.double().tolist()) / temperature)
    neg = sum(math.exp(dot(q, n) / temperature) for n in negatives.double().tolist())
    return -math.log(pos / (pos + neg))


def test_banks_start_as_seeded_unit_vectors():
    a, b = MemoryBankNCE(10, dim=8, seed=3), MemoryBankNCE(10, dim=8, seed=3)
    assert torch.equal(a.bank1, b.bank1) and torch.equal(a.bank2, b.bank2)
    assert not torch.equal(a.bank1, a.bank2)
    assert torch.allclose(a.bank1.norm(dim=1), torch.ones(10))
    assert not torch.equal(a.bank1, MemoryBankNCE(10, dim=8, seed=4).bank1)
    assert {"bank1", "bank2", "num_updates"} <= set(a.state_dict())


def test_memory_bank_nce_matches_hand_computation():
    gen = torch.Generator().manual_seed(0)
    nce = MemoryBankNCE(6, dim=4, num_negatives=3, temperature=0.5, momentum=0.5, seed=1)
    v1, v2 = _unit(2, 4, gen=gen), _unit(2, 4, gen=gen)
    idx = torch.tensor([4, 1])
    bank1, bank2 = nce.bank1.clone(), nce.bank2.clone()
    # the draw forward() makes at this step; row j goes to the j-th smallest video index (1, then 4)
    negatives = nce.sample_negatives(2)[torch.tensor([1, 0])]
    nce_1, nce_2 = nce(v1, v2, idx)
    expected_1 = sum(_hand_nce(v1[i], bank2[idx[i]], bank2[negatives[i]], 0.5) for i in range(2)) / 2
    expected_2 = sum(_hand_nce(v2[i], bank1[idx[i]], bank1[negatives[i]], 0.5) for i in range(2)) / 2
    assert nce_1.item() == pytest.approx(expected_1, rel=1e-5)
    assert nce_2.item() == pytest.approx(expected_2, rel=1e-5)


def test_memory_bank_update_momentum_and_renormalisation():
    gen = torch.Generator().manual_seed(1)
    nce = MemoryBankNCE(5, dim=3, num_negatives=2, momentum=0.5, seed=0)
    before1, before2 = nce.bank1.clone(), nce.bank2.clone()
    v1, v2 = _unit(2, 3, gen=gen), _unit(2, 3, gen=gen)
    idx = torch.tensor([3, 0])
    nce(v1, v2, idx)
    for row, i in enumerate(idx.tolist()):
        mixed1 = [0.5 * a + 0.5 * b for a, b in zip(before1[i].tolist(), v1[row].tolist())]
        norm = math.sqrt(sum(x * x for x in mixed1))
        assert nce.bank1[i].tolist() == pytest.approx([x / norm for x in mixed1], rel=1e-5)
        expected2 = F.normalize(0.5 * before2[i] + 0.5 * v2[row], dim=0)
        assert torch.allclose(nce.bank2[i], expected2, atol=1e-6)
    untouched = [1, 2, 4]
    assert torch.equal(nce.bank1[untouched], before1[untouched])
    assert torch.equal(nce.bank2[untouched], before2[untouched])
    assert nce.num_updates.item() == 1


def test_eval_mode_does_not_update_banks():
    gen = torch.Generator().manual_seed(2)
    nce = MemoryBankNCE(5, dim=3, num_negatives=2).eval()
    before = nce.bank1.clone()
    nce(_unit(2, 3, gen=gen), _unit(2, 3, gen=gen), torch.tensor([0, 1]))
    assert torch.equal(nce.bank1, before) and nce.num_updates.item() == 0


def test_more_negatives_than_bank_entries():
    gen = torch.Generator().manual_seed(3)
    nce = MemoryBankNCE(4, dim=8, num_negatives=50)
    negatives = nce.sample_negatives(3)
    assert negatives.shape == (3, 50) and negatives.min() >= 0 and negatives.max() < 4
    nce_1, nce_2 = nce(_unit(3, 8, gen=gen), _unit(3, 8, gen=gen), torch.tensor([0, 1, 3]))
    assert torch.isfinite(nce_1) and torch.isfinite(nce_2)


def test_negatives_change_per_step_and_gradient_reaches_embeddings():
    gen = torch.Generator().manual_seed(4)
    nce = MemoryBankNCE(100, dim=8, num_negatives=16)
    first = nce.sample_negatives(2)
    v1 = _unit(2, 8, gen=gen).requires_grad_()
    v2 = _unit(2, 8, gen=gen).requires_grad_()
    nce_1, nce_2 = nce(v1, v2, torch.tensor([5, 6]))
    (nce_1 + nce_2).backward()
    assert v1.grad.abs().sum() > 0 and v2.grad.abs().sum() > 0
    assert not nce.bank1.requires_grad
    assert not torch.equal(first, nce.sample_negatives(2))


def test_memory_bank_checks_inputs():
    with pytest.raises(ValueError, match="num_negatives"):
        MemoryBankNCE(10, num_negatives=0)
    nce = MemoryBankNCE(4, dim=2, num_negatives=2)
    with pytest.raises(TrainingError, match="number of training videos"):
        nce(torch.ones(1, 2), torch.ones(1, 2), torch.tensor([4]))


def test_in_batch_info_nce_matches_hand_computation():
    gen = torch.Generator().manual_seed(5)
    v1, v2 = _unit(4, 6, gen=gen), _unit(4, 6, gen=gen)
    loss_12, loss_21 = InBatchInfoNCE(temperature=0.2)(v1, v2)
    expected_12 = sum(_hand_nce(v1[i], v2[i], v2[[j for j in range(4) if j != i]], 0.2) for i in range(4)) / 4
    expected_21 = sum(_hand_nce(v2[i], v1[i], v1[[j for j in range(4) if j != i]], 0.2) for i in range(4)) / 4
    assert loss_12.item() == pytest.approx(expected_12, rel=1e-5)
    assert loss_21.item() == pytest.approx(expected_21, rel=1e-5)


def test_memory_bank_loss_does_not_depend_on_batch_order():
    """A video's negatives follow its index, not its row: the order of a batch changes nothing."""
    gen = torch.Generator().manual_seed(2)
    v1, v2 = _unit(4, 4, gen=gen), _unit(4, 4, gen=gen)
    idx = torch.tensor([7, 2, 5, 0])
    a = MemoryBankNCE(8, dim=4, num_negatives=6, seed=3)
    b = MemoryBankNCE(8, dim=4, num_negatives=6, seed=3)
    perm = torch.tensor([2, 0, 3, 1])
    loss_a = a(v1, v2, idx)
    loss_b = b(v1[perm], v2[perm], idx[perm])
    assert torch.allclose(torch.stack(loss_a), torch.stack(loss_b), atol=1e-6)
    assert torch.allclose(a.bank1, b.bank1) and torch.allclose(a.bank2, b.bank2)


def test_reference_bank_init_is_cmcs_uniform():
    unit = MemoryBankNCE(50, dim=12, num_negatives=4)
    reference = MemoryBankNCE(50, dim=12, num_negatives=4, init="reference")
    assert torch.allclose(unit.bank1.norm(dim=1), torch.ones(50), atol=1e-5)
    bound = 1 / (12 / 3) ** 0.5
    assert reference.bank1.abs().max() <= bound and reference.bank1.min() < -0.8 * bound
    assert not torch.allclose(reference.bank1.norm(dim=1), torch.ones(50), atol=1e-2)
    assert reference.bank1.norm(dim=1).pow(2).mean().item() == pytest.approx(1.0, abs=0.2)  # same expected norm
    with pytest.raises(ValueError, match="bank init"):
        MemoryBankNCE(5, init="zeros")
