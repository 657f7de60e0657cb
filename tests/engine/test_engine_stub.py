"""The engine over a stub method that is neither PCL nor VCOP nor CVRL: what the `Method` interface
promises (docs/architecture.md) holds for any method."""

from __future__ import annotations

import json
from typing import Any

import pytest
import torch
from torch import nn

from vidkd.config import TrainConfig
from vidkd.engine.trainer import RunOptions, Trainer
from vidkd.methods.base import Method
from vidkd.runs import read_metrics


class _Regression(Method):
    """Fits y = 2x + 1 with one linear layer; validation scores the error as its main metric."""

    name = "stub"
    model_type = nn.Linear
    main_metric = "val_neg_error"

    def __init__(self, seed: int = 0) -> None:
        generator = torch.Generator().manual_seed(seed)
        x = torch.randn(32, 1, generator=generator)
        self.items = [{"x": x[i], "y": 2 * x[i] + 1, "index": i} for i in range(32)]
        torch.manual_seed(seed)
        self.model = nn.Linear(1, 1)
        self.validation_calls = 0

    def train_dataset(self):
        return self.items

    def validation_dataset(self):
        return self.items[:8]

    def inputs(self, batch: dict[str, Any]) -> torch.Tensor:
        return batch["x"].to(self.device)

    def loss(self, output: torch.Tensor, batch: dict[str, Any]):
        error = (output - batch["y"].to(self.device)).pow(2).mean()
        return error, {"mse": error.detach()}

    def validation_step(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        self.validation_calls += 1
        with torch.no_grad():
            error = (self.model(self.inputs(batch)) - batch["y"]).abs().sum()
        return {"error": error.double(), "count": torch.tensor(float(len(batch["y"])), dtype=torch.float64)}

    def validation_metrics(self, sums: dict[str, Any]) -> dict[str, float]:
        return {"val_neg_error": -float(sums["error"]) / float(sums["count"])}

    def score(self, metrics: dict[str, Any]) -> float:
        return float(metrics.get("val_neg_error", -1e9))

    def meta(self) -> dict[str, Any]:
        return {"method": self.name}


def _schedule(epochs: int) -> TrainConfig:
    return TrainConfig(epochs=epochs, batch_size=8, optimizer="sgd", lr=0.1, scheduler="none", device="cpu",
                       knn_every=0, seed=0)


def _fit(run_dir, epochs: int, resume: bool = False) -> Trainer:
    trainer = Trainer(_Regression(), _schedule(epochs), run_dir,
                      RunOptions(progress=False, distributed=False, resume=resume))
    try:
        trainer.fit()
    finally:
        trainer.close()
    return trainer


def test_a_stub_method_trains_logs_its_keys_and_checkpoints(tmp_path, caplog):
    caplog.set_level("INFO", logger="vidkd.train")
    trainer = _fit(tmp_path / "run", epochs=3)
    metrics = read_metrics(tmp_path / "run")
    trained = [m for m in metrics if m["epoch"] >= 1]
    assert [m["epoch"] for m in trained] == [1, 2, 3]
    assert all("train_mse" in m and "val_neg_error" in m for m in trained)  # every step key as train_<key>
    assert trained[-1]["train_mse"] < trained[0]["train_mse"]  # it learns
    assert trainer.method.validation_calls > 0
    assert "neg_error" in caplog.text  # the epoch line shows the method's main metric
    best = json.loads((tmp_path / "run" / "checkpoints" / "best" / "meta.json").read_text())
    assert best["method"] == "stub"
    assert best["epoch"] == max(trained, key=lambda m: m["val_neg_error"])["epoch"]  # best by the method's score


def test_a_stub_run_resumed_after_a_stop_ends_bit_identical(tmp_path):
    whole = _fit(tmp_path / "whole", epochs=3)
    _fit(tmp_path / "split", epochs=2)
    resumed = _fit(tmp_path / "split", epochs=3, resume=True)
    for (name, a), b in zip(whole.method.model.state_dict().items(), resumed.method.model.state_dict().values()):
        assert torch.equal(a, b), name
    last = [m for m in read_metrics(tmp_path / "split") if m["epoch"] == 3]
    assert last and last[-1]["train_mse"] == read_metrics(tmp_path / "whole")[-1]["train_mse"]


def test_a_method_without_a_loss_says_what_to_implement():
    class NoLoss(_Regression):
        loss = Method.loss

    with pytest.raises(NotImplementedError, match="implement it, or override training_step"):
        NoLoss().training_step(nn.Linear(1, 1), {"x": torch.zeros(2, 1), "y": torch.zeros(2, 1)})
