"""CVRL: its sampler's interval distribution, NT-Xent, real training runs, its config section, and
distillation with PCL in both directions through feature terms."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from tiny_runs import tiny_config
from vidkd.apps.pretrain import build_trainer, pretrain
from vidkd.config import config_yaml, load_config
from vidkd.data.datasets import load_split
from vidkd.data.loaders import TupleDataset
from vidkd.data.transforms import ClipTransform
from vidkd.errors import CheckpointError, ConfigError
from vidkd.methods import METHODS, method_of
from vidkd.methods.cvrl import CVRL, CVRLModel, CVRLSampler, interval_cdf, nt_xent_logits
from vidkd.methods.loading import load_model
from vidkd.models import build_backbone
from vidkd.models.loading import read_weights
from vidkd.report.results import MAIN_METRIC, Run
from vidkd.runs import read_metrics

CVRL_TINY = ["method=cvrl", "data.modality=rgb", "train.knn_every=0", "train.val_augmented=true"]


@pytest.fixture(scope="module")
def cvrl_run(data_root, tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("cvrl") / "run"
    torch.set_num_threads(1)
    pretrain(tiny_config(data_root, *CVRL_TINY, "train.epochs=1"), run)
    return run


@pytest.fixture(scope="module")
def pcl_run(data_root, tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("pcl") / "run"
    pretrain(tiny_config(data_root, "data.modality=rgb", "train.epochs=1", "train.knn_every=0"), run)
    return run


def _train(cfg, run_dir: Path) -> dict:
    """The last logged epoch of a training run of `cfg`."""
    trainer = build_trainer(cfg, run_dir)
    try:
        trainer.fit()
    finally:
        trainer.close()
    return read_metrics(run_dir)[-1]


def test_the_clips_distance_decreases_linearly_and_either_clip_comes_first():
    """CVRL's density 2 (T - t) / T^2 on [0, T] (power 1): mean T / 3, and its cdf at T / 2 is 3/4."""
    sampler, frames = CVRLSampler(clip_len=8), 208
    last = frames - 8
    distances, swapped = [], 0
    for seed in range(4000):
        first, second = sampler.starts(frames, np.random.default_rng(seed))
        assert 0 <= min(first, second) and max(first, second) <= last
        distances.append(abs(second - first))
        swapped += second < first
    distances = np.asarray(distances)
    assert abs(distances.mean() - last / 3) < 0.03 * last
    assert abs((distances <= last / 2).mean() - 0.75) < 0.03
    assert 0.45 < swapped / 4000 < 0.55
    cdf = interval_cdf(last, 1.0)
    assert cdf[-1] == pytest.approx(1.0) and np.all(np.diff(cdf) > 0) and np.all(np.diff(cdf, 2) < 0)
    assert interval_cdf(last, 3.0)[last // 2 - 1] < cdf[last // 2 - 1]  # a larger power puts less mass near 0


def test_each_clip_has_its_own_augmentation_over_all_its_frames(data_root):
    transform = ClipTransform(resize=(32, 43), crop=32, color_jitter=0.8, grayscale=0.0)
    dataset = TupleDataset(load_split(data_root, "train"), CVRLSampler(clip_len=8), transform, progress=False)
    draw = dataset._draw(0, np.random.default_rng(1))
    assert len(draw.frames) == 2 and all(f.shape[0] == 8 for f in draw.frames)
    assert draw.params[0] != draw.params[1]
    item = dataset[0]
    assert item["clips"].shape == (2, 3, 8, 32, 32)
    short = CVRLSampler(clip_len=8).starts(8, np.random.default_rng(0))
    assert short == [0, 0]  # a video of exactly one clip gives it twice


def test_nt_xent_is_simclr_with_2b_minus_2_negatives():
    torch.manual_seed(0)
    z1, z2 = F.normalize(torch.randn(4, 8), dim=1), F.normalize(torch.randn(4, 8), dim=1)
    logits, positives = nt_xent_logits(z1, z2, 0.1)
    z = torch.cat([z1, z2])
    expected = 0.0
    for i in range(8):
        j = (i + 4) % 8
        others = [k for k in range(8) if k != i]
        expected += -(z[i] @ z[j] / 0.1 - torch.logsumexp(torch.stack([z[i] @ z[k] / 0.1 for k in others]), 0))
    assert F.cross_entropy(logits, positives).item() == pytest.approx(expected.item() / 8, rel=1e-5)
    same = nt_xent_logits(z1, z1, 0.1)
    assert (same[0].argmax(1) == same[1]).all()


def test_a_cvrl_run_trains_validates_and_its_checkpoint_rebuilds(cvrl_run):
    metrics = read_metrics(cvrl_run)
    assert {"train_nt_xent", "train_instance_acc", "val_instance_acc"} <= set(metrics[-1])
    assert 0.0 <= metrics[-1]["val_instance_acc"] <= 1.0 and np.isfinite(metrics[-1]["train_loss"])
    weights = read_weights(cvrl_run / "checkpoints" / "last")
    assert method_of(weights.state, weights.meta) == "cvrl"
    assert method_of(weights.state, {}) == "cvrl"  # from its head's tensor names alone
    model, report, _ = load_model(weights)
    assert isinstance(model, CVRLModel) and not report.missing and not report.unexpected
    assert "cvrl:" in (cvrl_run / "config.yaml").read_text()


def test_cvrl_has_its_own_config_section(data_root):
    cfg = tiny_config(data_root, "method=cvrl", "cvrl.temperature=0.2", "cvrl.hidden_layers=2")
    assert cfg.cvrl.temperature == 0.2 and "hidden_layers: 2" in config_yaml(cfg)
    assert "cvrl:" not in config_yaml(tiny_config(data_root))  # a PCL run's config does not list it
    with pytest.raises(ConfigError, match="did you mean 'cvrl.temperature'"):
        load_config(None, ["cvrl.temprature=0.2"])
    assert METHODS["cvrl"] is CVRL and CVRL.main_metric == "val_instance_acc"


def test_a_cvrl_teacher_distils_into_a_pcl_student_through_features(data_root, cvrl_run, tmp_path):
    cfg = tiny_config(data_root, "data.modality=rgb", "train.epochs=1", "train.knn_every=0",
                      f"teacher.path={cvrl_run}", "teacher.alpha=0", "teacher.feature_weight=1",
                      "teacher.relational_weight=1")
    last = _train(cfg, tmp_path / "student")
    assert last["train_kd_feature"] > 0 and last["train_kd_relational"] >= 0
    logit_kd = tiny_config(data_root, "data.modality=rgb", f"teacher.path={cvrl_run}", "teacher.alpha=1")
    with pytest.raises(CheckpointError, match="pretext"):
        build_trainer(logit_kd, tmp_path / "refused")


def test_a_pcl_teacher_distils_into_a_cvrl_student_through_features(data_root, pcl_run, tmp_path):
    """The PCL teacher takes 3-clip tuples; it reads the student's 2 views through its backbone."""
    cfg = tiny_config(data_root, *CVRL_TINY, "train.epochs=1", f"teacher.path={pcl_run}", "teacher.alpha=0",
                      "teacher.feature_weight=1", "teacher.attention_weight=1", "model.arch=c3d")
    last = _train(cfg, tmp_path / "student")
    assert last["train_kd_feature"] > 0 and last["train_kd_attention"] > 0 and "val_instance_acc" in last


def test_cvrl_model_takes_any_number_of_clips():
    model = CVRLModel(build_backbone("r3d", width=0.125), hidden=16, hidden_layers=3, proj_dim=8).eval()
    out = model(torch.randn(2, 3, 3, 8, 32, 32))
    assert out.embeddings.shape == (2, 3, 8) and out.pretext_logits is None
    assert torch.allclose(out.embeddings.norm(dim=-1), torch.ones(2, 3))


def test_the_report_reads_a_cvrl_runs_main_metric(cvrl_run):
    run = Run("cvrl", "baseline", "r3d", None, None, 0, cvrl_run, 1, config={"method": "cvrl"},
              metrics=read_metrics(cvrl_run))
    epochs, values = run.series(MAIN_METRIC)
    logged = [m for m in run.metrics if "val_instance_acc" in m]
    assert epochs[-1] == 1 and (epochs, values) == ([m["epoch"] for m in logged], [m["val_instance_acc"] for m in logged])
    pcl = Run("pcl", "baseline", "r3d", None, None, 0, cvrl_run, 1, config={"method": "pcl"},
              metrics=[{"epoch": 1, "val_pretext_acc": 0.5, "val_instance_acc": 0.9}])
    assert pcl.series(MAIN_METRIC) == ([1], [0.5])
