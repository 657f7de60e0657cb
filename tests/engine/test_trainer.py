"""Real (tiny) PCL training runs: run directory contract, resume, NaN, bad input, torchrun."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tiny_runs import make_tiny_dataset, tiny_args, tiny_config
from vidkd.cli import main
from vidkd.utils.checkpoint import load_checkpoint
from vidkd.utils.io import load_weights
from vidkd.apps.pretrain import build_trainer, pretrain, resume
from vidkd.engine.trainer import Trainer
from vidkd.methods.common import pretext_score, pretext_validation_metrics
from vidkd.runs import read_metrics
from vidkd.errors import ConfigError, TrainingError

pytestmark = pytest.mark.usefixtures("single_thread")  # tiny tensors: threads cost more than they save



def test_pretrain_writes_the_run_directory(data_root, tmp_path):
    run = tmp_path / "run"
    pretrain(tiny_config(data_root), run)
    for name in ("config.yaml", "metrics.jsonl", "log.txt"):
        assert (run / name).is_file(), name
    assert any((run / "tb").iterdir())
    metrics = read_metrics(run)
    assert [m["epoch"] for m in metrics] == [0, 1, 2]
    for m in metrics[1:]:
        for key in ("train_loss", "train_pretext_acc", "val_pretext_acc", "val_knn_top1", "lr",
                    "epoch_seconds", "clips_per_second"):
            assert m[key] is not None, key
        for key in ("train_pretext_acc", "val_pretext_acc", "val_knn_top1"):
            assert 0.0 <= m[key] <= 1.0
    assert "train_loss" not in metrics[0] and 0.0 <= metrics[0]["val_knn_top1"] <= 1.0
    for name in ("last", "best"):
        weights, meta, state = load_checkpoint(run / "checkpoints" / name, with_trainer=True)
        assert meta["arch"] == "r3d" and meta["width"] == 0.125
        assert any(k.startswith("backbone.") for k in weights) and "pretext_head.fc.weight" in weights
        assert state["epoch"] == meta["epoch"]
    assert json.loads((run / "checkpoints" / "last" / "meta.json").read_text())["epoch"] == 2
    # the weights moved away from the initialisation
    first = load_weights(run / "checkpoints" / "last" / "model.safetensors")
    fresh = tiny_config(data_root)
    from vidkd.methods.pcl import pcl_model as build_pcl_model
    from vidkd.utils.runtime import seed_everything

    seed_everything(fresh.train.seed)
    init = build_pcl_model(fresh).state_dict()
    assert not torch.equal(first["pretext_head.fc.weight"], init["pretext_head.fc.weight"])


def test_resume_after_an_interruption_gives_identical_weights(data_root, tmp_path, monkeypatch):
    straight = tmp_path / "straight"
    pretrain(tiny_config(data_root, "train.knn_every=0"), straight)

    interrupted = tmp_path / "interrupted"
    original = Trainer.train_one_epoch

    def crash_in_epoch_2(self, epoch):
        if epoch == 2:
            raise KeyboardInterrupt
        return original(self, epoch)

    monkeypatch.setattr(Trainer, "train_one_epoch", crash_in_epoch_2)
    with pytest.raises(KeyboardInterrupt):
        pretrain(tiny_config(data_root, "train.knn_every=0"), interrupted)
    monkeypatch.setattr(Trainer, "train_one_epoch", original)
    assert [m["epoch"] for m in read_metrics(interrupted)] == [1]

    resume(interrupted)
    a = load_weights(straight / "checkpoints" / "last" / "model.safetensors")
    b = load_weights(interrupted / "checkpoints" / "last" / "model.safetensors")
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    losses = lambda run: [m["train_loss"] for m in read_metrics(run)]  # noqa: E731
    assert losses(straight) == losses(interrupted)


def test_nan_loss_stops_the_run_and_keeps_the_last_good_checkpoint(data_root, tmp_path, monkeypatch):
    from vidkd.methods import pcl

    original = pcl.PCLLoss.forward
    calls = {"n": 0}

    def nan_after_two_steps(self, *args, **kwargs):
        loss, parts = original(self, *args, **kwargs)
        calls["n"] += 1
        return (loss * float("nan") if calls["n"] > 2 else loss), parts

    monkeypatch.setattr(pcl.PCLLoss, "forward", nan_after_two_steps)
    run = tmp_path / "run"
    with pytest.raises(TrainingError, match="lower learning rate"):
        pretrain(tiny_config(data_root, "train.knn_every=0"), run)
    _, meta, _ = load_checkpoint(run / "checkpoints" / "last")
    assert meta["epoch"] == 1  # epoch 1 (two good steps) survived; epoch 2 hit the NaN


def test_an_output_directory_with_another_run_is_refused(data_root, tmp_path):
    run = tmp_path / "run"
    pretrain(tiny_config(data_root, "train.epochs=1", "train.knn_every=0"), run)
    with pytest.raises(ConfigError, match="different run .*train.lr"):
        pretrain(tiny_config(data_root, "train.epochs=1", "train.knn_every=0", "train.lr=0.2"), run)
    with pytest.raises(ConfigError, match="--resume"):
        pretrain(tiny_config(data_root, "train.epochs=1", "train.knn_every=0"), run)


def test_a_batch_larger_than_the_dataset_is_a_clear_error(data_root, tmp_path):
    with pytest.raises(TrainingError, match="lower train.batch_size"):
        pretrain(tiny_config(data_root, "train.batch_size=64"), tmp_path / "run")


def test_cli_reports_user_mistakes_in_one_line(data_root, tmp_path, capsys):
    code = main(["pretrain", *tiny_args(data_root, "train.epoch=3"), "--out", str(tmp_path / "r")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "did you mean 'train.epochs'" in err[0]
    code = main(["pretrain", *tiny_args(data_root, "model.arch=resnet9000"), "--out", str(tmp_path / "r2")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "unknown backbone" in err[0]
    code = main(["pretrain", *tiny_args(tmp_path / "nowhere"), "--out", str(tmp_path / "r3")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.slow
def test_two_ranks_match_one_rank_with_twice_the_batch(data_root, tmp_path):
    """torchrun, 2 gloo processes x batch 2 == 1 process x batch 4 (SyncBatchNorm, memory bank)."""
    # two optimizer steps: float rounding differences (sums in another order) stay below 3e-6 for
    # train.seed 1-3 (AMD EPYC, 2026-12-04); on seed 0 a near-degenerate BatchNorm channel of the tiny
    # net amplifies them to 9e-5 after the first step and 4e-3 after the second. Without SyncBatchNorm
    # the weights differ by 0.1-0.34.
    common = ["train.knn_every=0", "train.epochs=2", "train.steps_per_epoch=1", "model.sync_bn=true",
              "train.lr=0.01", "train.seed=1"]
    one = tmp_path / "one"
    pretrain(tiny_config(data_root, *common, "train.batch_size=4"), one)

    two = tmp_path / "two"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2",
               f"--master_port={_free_port()}", "-m", "vidkd", "pretrain",
               *tiny_args(data_root, *common, "train.batch_size=2"), "--out", str(two)]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]

    a = load_weights(one / "checkpoints" / "last" / "model.safetensors")
    b = load_weights(two / "checkpoints" / "last" / "model.safetensors")
    for key in a:
        difference = (a[key].float() - b[key].float()).abs().max().item()
        assert torch.allclose(a[key].float(), b[key].float(), rtol=1e-3, atol=1e-3), (key, difference)
    la, lb = read_metrics(one), read_metrics(two)
    for ma, mb in zip(la, lb):
        assert ma["train_loss"] == pytest.approx(mb["train_loss"], rel=1e-4)
        assert ma["val_pretext_acc"] == pytest.approx(mb["val_pretext_acc"], abs=1e-6)


def test_a_constant_predictor_never_outranks_a_real_one_as_best_checkpoint():
    collapsed = {"val_pretext_acc": 0.26, "val_top_class_share": 1.0}  # one label for every tuple
    weaker_but_real = {"val_pretext_acc": 0.22, "val_top_class_share": 0.6}
    assert pretext_score(weaker_but_real) > pretext_score(collapsed)
    assert pretext_score(collapsed) > pretext_score({"val_pretext_acc": 0.1, "val_top_class_share": 1.0})
    # a method whose pretext accuracy has its own name gets the same guard
    own = {key.replace("pretext", "rotation"): value for key, value in collapsed.items()}
    assert pretext_score(own, accuracy="val_rotation_acc") == pretext_score(collapsed) == pytest.approx(0.26 - 1.0)
    sums = {"count": 4, "correct": 3, "loss": 2.0, "predicted": [1, 3]}
    assert pretext_validation_metrics(sums, accuracy="val_rotation_acc") == {
        "val_rotation_acc": 0.75, "val_loss": 0.5, "val_top_class_share": 0.75}


def test_best_by_last_keeps_the_final_epoch_as_the_checkpoint_used(data_root, tmp_path):
    """`train.best_by: last`: checkpoints/best is the last epoch's, whatever the validation said."""
    run = tmp_path / "run"
    pretrain(tiny_config(data_root, "train.epochs=3", "train.knn_every=0", "train.best_by=last"), run)
    best = load_weights(run / "checkpoints" / "best" / "model.safetensors")
    last = load_weights(run / "checkpoints" / "last" / "model.safetensors")
    assert json.loads((run / "checkpoints" / "best" / "meta.json").read_text())["epoch"] == 3
    assert all(torch.equal(best[k], last[k]) for k in last)


def test_val_every_validates_every_n_epochs_and_the_last_without_changing_training(data_root, tmp_path):
    every = tiny_config(data_root, "train.epochs=3", "train.knn_every=0", "train.best_by=last")
    pretrain(every, tmp_path / "every")
    pretrain(tiny_config(data_root, "train.epochs=3", "train.knn_every=0", "train.best_by=last",
                         "train.val_every=2"), tmp_path / "sparse")
    sparse = read_metrics(tmp_path / "sparse")
    assert [m["epoch"] for m in sparse if "val_pretext_acc" in m] == [2, 3]
    assert [m["epoch"] for m in sparse] == [1, 2, 3]
    dense, thin = (load_weights(tmp_path / name / "checkpoints" / "last" / "model.safetensors")
                   for name in ("every", "sparse"))
    assert all(torch.equal(dense[k], thin[k]) for k in dense)  # validation draws no training randomness
    with pytest.raises(ConfigError, match="val_every above 1"):
        tiny_config(data_root, "train.val_every=2")  # best_by accuracy needs every epoch's validation


def test_the_memory_format_changes_the_layout_not_the_training(data_root, tmp_path):
    """`train.memory_format`: channels-last 3D weights on the CPU by default; the same numbers up to float rounding."""
    # one optimizer step. The layouts run different BatchNorm code (channels-last folds voxels for channel
    # counts that are not a multiple of 16, vidkd.models.batchnorm) and this tiny net's gradients are ill
    # conditioned: against float64, the stock float32 kernel's are up to 6% off here, the folded ones 1e-5
    # (test_batchnorm.py checks the accuracy), so one step's weights agree to about 4e-4, not to rounding
    common = ["train.knn_every=0", "train.epochs=1", "train.steps_per_epoch=1"]
    trainers = {}
    for name in ("auto", "contiguous"):
        trainer = build_trainer(tiny_config(data_root, *common, f"train.memory_format={name}"), tmp_path / name)
        weight = next(p for p in trainer.method.model.parameters() if p.dim() == 5)
        trainers[name] = weight.is_contiguous(memory_format=torch.channels_last_3d), weight.is_contiguous()
        trainer.fit()
        trainer.close()
    assert trainers == {"auto": (True, False), "contiguous": (False, True)}
    a = load_weights(tmp_path / "auto" / "checkpoints" / "last" / "model.safetensors")
    b = load_weights(tmp_path / "contiguous" / "checkpoints" / "last" / "model.safetensors")
    assert a.keys() == b.keys()
    for key in a:
        assert torch.allclose(a[key].float(), b[key].float(), rtol=1e-2, atol=1e-3), key
    assert read_metrics(tmp_path / "auto")[-1]["train_loss"] == pytest.approx(
        read_metrics(tmp_path / "contiguous")[-1]["train_loss"], rel=1e-5)  # the same forward pass


def test_augmenting_on_the_model_device_trains_the_same_weights(tmp_path):
    """`data.transform_device: model` (the GPU default) on the CPU: the same run, bit for bit."""
    torch.set_num_threads(1)
    data = make_tiny_dataset(tmp_path / "data")
    for where in ("cpu", "model"):
        pretrain(tiny_config(data, "train.epochs=1", "train.knn_every=0", "data.blur=0.5",
                             f"data.transform_device={where}"), tmp_path / where)
    weights = [load_weights(tmp_path / w / "checkpoints" / "last" / "model.safetensors") for w in ("cpu", "model")]
    assert weights[0].keys() == weights[1].keys() and all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])
    losses = [read_metrics(tmp_path / w)[-1]["train_loss"] for w in ("cpu", "model")]
    assert losses[0] == losses[1]
