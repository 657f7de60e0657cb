"""Two gloo processes on CPU: gathers, memory banks and in-batch InfoNCE equal one process.

Rank 0 holds 3 samples and rank 1 holds 2 (unequal on purpose: the gathers pad and trim).
The workers save what they computed; the test compares it with one process on all 5 samples.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
import torch.nn.functional as F

from vidkd.config import TrainConfig
from vidkd.engine.trainer import RunOptions, Trainer
from vidkd.methods.contrastive import InBatchInfoNCE, MemoryBankNCE
from vidkd.methods.supervised import Supervised
from vidkd.utils import dist as D

WORLD = 2
SIZES = [3, 2]
BANK = dict(num_samples=12, dim=4, num_negatives=5, temperature=0.1, momentum=0.5, seed=7)
STEPS = 3


def _rows(rank: int) -> slice:
    start = sum(SIZES[:rank])
    return slice(start, start + SIZES[rank])


def _gather_loss(x: torch.Tensor, rows: slice) -> torch.Tensor:
    """The part of (x M x^T)^2 that one rank owns: its rows against ALL rows."""
    m = torch.arange(16.0).view(4, 4) / 10
    return (x[rows] @ m @ x.T).pow(2).sum()


def _data():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(sum(SIZES), 4, generator=gen)
    steps = []
    for _ in range(STEPS):
        v1 = F.normalize(torch.randn(sum(SIZES), 4, generator=gen), dim=1)
        v2 = F.normalize(torch.randn(sum(SIZES), 4, generator=gen), dim=1)
        idx = torch.randperm(BANK["num_samples"], generator=gen)[: sum(SIZES)]
        steps.append((v1, v2, idx))
    return x, steps


def _worker(rank: int, port: int, out_dir: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                      WORLD_SIZE=str(WORLD), LOCAL_RANK=str(rank), CUDA_VISIBLE_DEVICES="")
    torch.set_num_threads(1)
    info = D.init_distributed("gloo")
    try:
        rows = _rows(rank)
        result = {"rank": torch.tensor(D.get_rank()), "world": torch.tensor(D.get_world_size()),
                  "is_main": torch.tensor(info.is_main)}
        x, steps = _data()

        # gather_with_grad: this rank's loss uses every rank's rows.
        local = x[rows].clone().requires_grad_()
        _gather_loss(D.gather_with_grad(local), rows).backward()
        result["gather_grad"] = local.grad
        result["gather_no_grad"] = D.all_gather_no_grad(x[rows])
        result["mean"] = D.all_reduce_mean(torch.tensor([float(rank)]))

        # Memory banks over a few training steps.
        bank = MemoryBankNCE(**BANK)
        nce = []
        for v1, v2, idx in steps:
            n1, n2 = bank(v1[rows], v2[rows], idx[rows])
            nce.append(torch.stack([n1, n2]).detach())
        result["bank_nce"] = torch.stack(nce)
        result["bank1"], result["bank2"] = bank.bank1, bank.bank2

        # In-batch InfoNCE over the gathered batch.
        v1, v2, _ = steps[0]
        a, b = v1[rows].clone().requires_grad_(), v2[rows].clone().requires_grad_()
        l12, l21 = InBatchInfoNCE(0.2)(a, b)
        (l12 + l21).backward()
        result["in_batch"] = torch.stack([l12, l21]).detach()
        result["in_batch_grad"] = torch.cat([a.grad, b.grad], dim=1)

        # A single-process engine inside the job (fine-tuning during rank 0's evaluation): rank 0
        # alone trains; a collective in it would wait forever for the other rank.
        if rank == 0:
            result["solo_epochs"] = torch.tensor(len(_solo_training()))
        D.barrier()
        torch.save(result, Path(out_dir) / f"rank{rank}.pt")
    finally:
        D.cleanup()


class _TinyBackbone(torch.nn.Module):
    feature_dim = 4

    def __init__(self):
        super().__init__()
        self.fc = torch.nn.Linear(3 * 2 * 4 * 4, 4)

    def forward(self, x):
        return self.fc(x.flatten(1))


def _solo_training() -> list:
    items = [{"clip": torch.randn(3, 2, 4, 4), "label": i % 2, "index": i} for i in range(8)]
    method = Supervised(_TinyBackbone(), 2, items)
    schedule = TrainConfig(epochs=2, batch_size=4, optimizer="sgd", lr=0.1, scheduler="none", device="cpu",
                           knn_every=0)
    trainer = Trainer(method, schedule, run_dir=None, options=RunOptions(progress=False, distributed=False))
    assert trainer.dist.world_size == 1
    return trainer.fit()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def ranks(tmp_path_factory):
    out_dir = tmp_path_factory.mktemp("dist")
    mp.spawn(_worker, args=(_free_port(), str(out_dir)), nprocs=WORLD, join=True)
    return [torch.load(out_dir / f"rank{r}.pt", weights_only=True) for r in range(WORLD)]


def test_a_single_process_engine_inside_a_job_trains_on_rank_0_alone(ranks):
    assert int(ranks[0]["solo_epochs"]) == 2 and "solo_epochs" not in ranks[1]


def test_rank_helpers(ranks):
    for r, res in enumerate(ranks):
        assert res["rank"].item() == r and res["world"].item() == WORLD and res["is_main"].item() == (r == 0)
        assert res["mean"].item() == pytest.approx(0.5)
    x, _ = _data()
    assert torch.equal(ranks[0]["gather_no_grad"], x) and torch.equal(ranks[1]["gather_no_grad"], x)


def test_gather_with_grad_sums_gradients_over_ranks(ranks):
    x, _ = _data()
    full = x.clone().requires_grad_()
    sum(_gather_loss(full, _rows(r)) for r in range(WORLD)).backward()
    for r, res in enumerate(ranks):
        assert torch.allclose(res["gather_grad"], full.grad[_rows(r)], rtol=1e-5, atol=1e-5)
    # Taking only the local term's gradient (no sum over ranks) would give something else.
    only_local = x.clone().requires_grad_()
    _gather_loss(only_local, _rows(0)).backward()
    assert not torch.allclose(ranks[0]["gather_grad"], only_local.grad[_rows(0)], atol=1e-3)


def test_memory_banks_match_one_process(ranks):
    _, steps = _data()
    bank = MemoryBankNCE(**BANK)
    for step, (v1, v2, idx) in enumerate(steps):
        n1, n2 = bank(v1, v2, idx)
        # Each rank reports the mean over its rows; weight by rows to get the global mean.
        merged = sum(res["bank_nce"][step] * n for res, n in zip(ranks, SIZES)) / sum(SIZES)
        assert torch.allclose(merged, torch.stack([n1, n2]), atol=1e-5)
    for res in ranks:
        assert torch.equal(res["bank1"], ranks[0]["bank1"]) and torch.equal(res["bank2"], ranks[0]["bank2"])
        assert torch.allclose(res["bank1"], bank.bank1, atol=1e-6)
        assert torch.allclose(res["bank2"], bank.bank2, atol=1e-6)
    assert not torch.allclose(bank.bank1, MemoryBankNCE(**BANK).bank1)  # the banks did move


def test_in_batch_info_nce_matches_one_process(ranks):
    _, steps = _data()
    v1, v2, _ = steps[0]
    a, b = v1.clone().requires_grad_(), v2.clone().requires_grad_()
    l12, l21 = InBatchInfoNCE(0.2)(a, b)
    (l12 + l21).backward()
    single_grad = torch.cat([a.grad, b.grad], dim=1)
    for r, res in enumerate(ranks):
        assert torch.allclose(res["in_batch"], torch.stack([l12, l21]).detach(), atol=1e-6)
        # Every rank computes the global loss, so its input gradient is WORLD times the
        # single-process one; DDP's gradient averaging divides by WORLD again.
        assert torch.allclose(res["in_batch_grad"], WORLD * single_grad[_rows(r)], atol=1e-5)


def test_single_process_helpers_are_identity(monkeypatch):
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    info = D.init_distributed()
    assert (info.rank, info.world_size, info.is_main) == (0, 1, True)
    assert not D.is_distributed() and D.get_world_size() == 1 and D.is_main_process()
    t = torch.randn(3, 2, requires_grad=True)
    assert D.gather_with_grad(t) is t
    assert torch.equal(D.all_gather_no_grad(t), t) and not D.all_gather_no_grad(t).requires_grad
    assert torch.equal(D.all_reduce_mean(t), t)
    D.barrier()
    D.cleanup()
