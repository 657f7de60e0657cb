"""Evaluation protocols: retrieval R@k, weighted kNN, label fractions, linear probe, features, run."""

from __future__ import annotations

import importlib.util
import json
import math

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import Dataset

from vidkd.errors import ConfigError
from vidkd.eval.features import FeatureCache, extract_features, weights_fingerprint
from vidkd.eval.fractions import sample_fraction
from vidkd.eval.knn import knn_classify
from vidkd.eval.linear import linear_probe
from vidkd.eval.retrieval import retrieval_recall


def _have(*modules: str) -> bool:
    try:
        return all(importlib.util.find_spec(m) is not None for m in modules)
    except ModuleNotFoundError:
        return False


NEEDS_DATA_AND_MODELS = pytest.mark.skipif(
    not _have("vidkd.data.datasets", "vidkd.data.loaders", "vidkd.data.transforms", "vidkd.models.heads",
              "vidkd.models.r3d"),
    reason="the data layer / models are not available yet",
)


# ---------------------------------------------------------------- retrieval

def test_retrieval_recall_matches_hand_computed_ranks():
    gallery = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [0.9, 0.1]])
    gallery_labels = [0, 1, 2, 1]
    queries = torch.tensor([[1.0, 0.0], [1.0, 0.05], [-1.0, -0.2], [0.1, -1.0], [0.0, 1.0]])
    query_labels = [0, 1, 2, 2, 3]
    # Cosine ranks of the gallery per query, and where the first same-class item appears:
    #   q0 (1,0) class 0:      g0 1.0 > g3 .994 > g1 0 > g2 -1          -> hit at rank 1
    #   q1 (1,.05) class 1:    g0 .9988 > g3 .9982 > g1 .05 > g2        -> first class-1 item at rank 2
    #   q2 (-1,-.2) class 2:   g2 .98 > g1 -.196 > g0 -.98 > g3 -.996   -> hit at rank 1
    #   q3 (.1,-1) class 2:    g0 .0995 > g3 -.011 > g2 -.0995 > g1     -> hit at rank 3
    #   q4 (0,1) class 3:      no class-3 item in the gallery           -> never a hit
    # R@1 = {q0,q2} = 2/5, R@2 adds q1 = 3/5, R@3 adds q3 = 4/5; R@10 is clamped to the 4 items: 4/5.
    expected = {"R@1": 0.4, "R@2": 0.6, "R@3": 0.8, "R@10": 0.8}
    assert retrieval_recall(queries, query_labels, gallery, gallery_labels, ks=(1, 2, 3, 10)) == pytest.approx(expected)
    # chunking and feature scale (cosine similarity) must not change the answer
    chunked = retrieval_recall(queries * 3, query_labels, gallery * 7, gallery_labels, ks=(1, 2, 3, 10), chunk_size=2)
    assert chunked == pytest.approx(expected)


def test_retrieval_rejects_mismatched_inputs():
    with pytest.raises(ValueError):
        retrieval_recall(torch.ones(2, 3), [0], torch.ones(2, 3), [0, 1])


# ---------------------------------------------------------------- kNN

def test_knn_separates_clear_clusters():
    gen = torch.Generator().manual_seed(0)
    centres = torch.eye(6, 16) * 5
    train_labels = torch.arange(6).repeat_interleave(10)
    test_labels = torch.arange(6).repeat_interleave(4)
    train = centres[train_labels] + 0.3 * torch.randn(60, 16, generator=gen)
    test = centres[test_labels] + 0.3 * torch.randn(24, 16, generator=gen)
    result = knn_classify(train, train_labels, test, test_labels, k=5, chunk_size=7)
    assert result == {"top1": 1.0, "top5": 1.0}
    # with shuffled memory labels the classifier can only guess
    shuffled = train_labels[torch.randperm(60, generator=gen)]
    assert knn_classify(train, shuffled, test, test_labels, k=5)["top1"] < 0.6


def test_knn_similarity_weighting_decides_the_vote():
    # The query's single nearest neighbour is class 1 (cos 0.99); two class-0 neighbours follow at 0.80.
    # With T = 0.07: exp(0.99/0.07) = e^14.14 beats 2 * exp(0.80/0.07) = 2 * e^11.43 (ratio e^2.71 ~ 15 > 2),
    # so class 1 wins; with T = 100 the weights are almost equal and the 2-vs-1 majority (class 0) wins.
    train = torch.tensor([[0.99, math.sqrt(1 - 0.99**2)], [0.8, 0.6], [0.8, -0.6], [-1.0, 0.0]])
    train_labels = [1, 0, 0, 2]
    query, query_label = torch.tensor([[1.0, 0.0]]), [1]
    assert knn_classify(train, train_labels, query, query_label, k=3, temperature=0.07)["top1"] == 1.0
    assert knn_classify(train, train_labels, query, query_label, k=3, temperature=100.0)["top1"] == 0.0
    # k is clamped to the memory size; the fourth neighbour (class 2) then enters top-5 as well
    assert knn_classify(train, train_labels, query, [2], k=50)["top5"] == 1.0


# ---------------------------------------------------------------- label fractions

def test_sample_fraction_per_class_deterministic_and_sized():
    labels = np.array([0] * 100 + [1] * 50 + [2] * 10 + [3] * 1)
    rng = np.random.default_rng(1)
    labels = labels[rng.permutation(len(labels))]  # classes interleaved, as in a real list
    for fraction in (0.5, 0.25, 0.02):
        picked = sample_fraction(labels, fraction, seed=3)
        assert np.array_equal(picked, sample_fraction(labels, fraction, seed=3))
        assert len(np.unique(picked)) == len(picked) and np.all(np.diff(picked) > 0)
        counts = np.bincount(labels[picked], minlength=4)
        expected = [max(1, round(fraction * n)) for n in (100, 50, 10, 1)]
        assert counts.tolist() == expected, fraction
    assert not np.array_equal(sample_fraction(labels, 0.25, seed=3), sample_fraction(labels, 0.25, seed=4))
    assert np.array_equal(sample_fraction(labels, 1.0, seed=0), np.arange(len(labels)))
    for bad in (0.0, -0.1, 1.5):
        with pytest.raises(ConfigError):
            sample_fraction(labels, bad, seed=0)


# ---------------------------------------------------------------- linear probe

def _clusters(num_classes: int, per_class: int, dim: int, seed: int, spread: float = 1.0):
    gen = torch.Generator().manual_seed(seed)
    centres = torch.randn(num_classes, dim, generator=torch.Generator().manual_seed(100)) * 3 + 10  # offset: needs standardising
    labels = torch.arange(num_classes).repeat_interleave(per_class)
    return centres[labels] + spread * torch.randn(len(labels), dim, generator=gen), labels


def test_linear_probe_separates_clusters_and_uses_the_fraction():
    train, train_labels = _clusters(5, 40, 32, seed=0)
    test, test_labels = _clusters(5, 20, 32, seed=1)
    result = linear_probe(train, train_labels, test, test_labels, steps=30)
    assert result["train_top1"] == 1.0 and result["test_top1"] >= 0.95
    assert result["train_videos"] == 200 and result["test_videos"] == 100

    small = linear_probe(train, train_labels, test, test_labels, fraction=0.1, steps=30)
    assert small["train_videos"] == 20 and small["fraction"] == 0.1
    assert small == linear_probe(train, train_labels, test, test_labels, fraction=0.1, steps=30)  # deterministic

    shuffled = train_labels[torch.randperm(200, generator=torch.Generator().manual_seed(0))]
    assert linear_probe(train, shuffled, test, test_labels, steps=30)["test_top1"] < 0.5


# ---------------------------------------------------------------- feature extraction and cache

class ChannelMean(nn.Module):
    """Stand-in backbone: the feature of a clip is its per-channel mean; records what it saw."""

    feature_dim = 3

    def __init__(self):
        super().__init__()
        self.scale = nn.Parameter(torch.ones(1))
        self.seen: list[tuple[tuple[int, ...], bool]] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen.append((tuple(x.shape), self.training))
        return x.mean(dim=(2, 3, 4)) * self.scale


class ConstantClips(Dataset):
    """Video i, clip j, channel c is filled with 10*i + j + c; label i % 2."""

    def __init__(self, videos: int = 5, clips: int = 3):
        self.videos, self.clips = videos, clips

    def __len__(self) -> int:
        return self.videos

    def __getitem__(self, i: int) -> dict:
        value = 10.0 * i + torch.arange(self.clips)[:, None] + torch.arange(3)[None, :]  # (clips, C)
        return {"clips": value[:, :, None, None, None].expand(self.clips, 3, 2, 4, 4).clone(), "label": i % 2, "index": i}


def test_extract_features_averages_clips_per_video():
    backbone = ChannelMean().train()
    feats, labels = extract_features(backbone, ConstantClips(5, 3), batch_size=2, progress=False)
    # mean over clips j = 0, 1, 2 of 10*i + j + c is 10*i + 1 + c
    expected = torch.tensor([[10.0 * i + 1 + c for c in range(3)] for i in range(5)])
    assert feats.dtype == torch.float32 and torch.allclose(feats, expected)
    assert labels.tolist() == [0, 1, 0, 1, 0]
    # every clip of a batch in one forward, in eval mode; the caller's mode is restored
    assert [shape[0] for shape, _ in backbone.seen] == [6, 6, 3]
    assert not any(training for _, training in backbone.seen) and backbone.training


def test_feature_cache_extracts_once_per_key(tmp_path):
    cache = FeatureCache(tmp_path / "features")
    backbone = ChannelMean()
    calls = []

    def extract():
        calls.append(1)
        return extract_features(backbone, ConstantClips(4, 2), batch_size=3, progress=False)

    key = {"weights": weights_fingerprint(backbone), "subset": "train", "num_clips": 2}
    first = cache.get_or_extract(key, extract)
    second = cache.get_or_extract(key, extract)
    assert len(calls) == 1 and torch.equal(first[0], second[0]) and torch.equal(first[1], second[1])
    cache.get_or_extract({**key, "num_clips": 10}, extract)
    assert len(calls) == 2
    with torch.no_grad():
        backbone.scale.fill_(2.0)  # new weights, new key
    assert weights_fingerprint(backbone) != key["weights"]
    assert len(list((tmp_path / "features").glob("*.safetensors"))) == 2


# ---------------------------------------------------------------- end to end on real video files

def _write_tiny_ucf(root, classes=("Jump", "Run", "Wave"), groups=3, frames=20, size=(40, 32)):
    from vidkd.data.video import write_video

    (root / "splits").mkdir(parents=True)
    train, test = [], []
    for c, name in enumerate(classes):
        for g in range(1, groups + 1):
            rel = f"{name}/v_{name}_g{g:02d}_c01.avi"
            rng = np.random.default_rng(c * 10 + g)
            base = np.zeros((size[1], size[0], 3), np.uint8)
            base[..., c] = 200  # class colour, so features differ by class
            video = []
            for t in range(frames):
                frame = base.copy()
                x = (t * (c + 1)) % (size[0] - 8)
                frame[8:16, x:x + 8] = 255
                video.append(np.clip(frame + rng.integers(0, 20, frame.shape), 0, 255).astype(np.uint8))
            write_video(root / "videos" / rel, video)
            (train if g < groups else test).append(rel)
            if g < groups:
                train[-1] = f"{rel} {c + 1}"
    (root / "splits" / "classInd.txt").write_text("".join(f"{i + 1} {n}\n" for i, n in enumerate(classes)))
    (root / "splits" / "trainlist01.txt").write_text("\n".join(train) + "\n")
    (root / "splits" / "testlist01.txt").write_text("\n".join(test) + "\n")
    return root


TINY = ["model.width=0.125", "data.resize=[32,40]", "data.crop=32", "data.clip_len=4", "data.num_workers=0",
        "train.device=cpu", "train.batch_size=4", "train.knn_k=3"]


@NEEDS_DATA_AND_MODELS
def test_evaluate_random_r3d_end_to_end(tmp_path, monkeypatch):
    from vidkd.eval import protocols as run

    torch.set_num_threads(2)
    root = _write_tiny_ucf(tmp_path / "ucf")
    out = tmp_path / "eval"
    results = run.evaluate("random:r3d", protocols=("knn", "retrieval", "linear"), data_root=root,
                           overrides=TINY, out=out, epochs=20, progress=False)
    assert list(results) == ["retrieval", "knn", "linear"]
    recall = results["retrieval"]["metrics"]
    assert list(recall) == ["R@1", "R@5", "R@10", "R@20", "R@50"]
    assert all(0 <= v <= 1 for v in recall.values()) and list(recall.values()) == sorted(recall.values())
    assert recall["R@10"] == 1.0  # only 6 gallery videos: k is clamped, every class is in the gallery
    for protocol in results:
        saved = json.loads((out / f"{protocol}.json").read_text())
        assert saved["metrics"] == pytest.approx(results[protocol]["metrics"])
        assert saved["dataset"]["train_videos"] == 6 and saved["dataset"]["test_videos"] == 3
        assert saved["arch"] == "r3d" and saved["width"] == 0.125
    assert len(list((out / "features").glob("*.safetensors"))) == 2  # train and test, extracted once

    # a second evaluation reads the cached features: extraction must not run again
    def no_extraction(*args, **kwargs):
        raise AssertionError("features should come from the cache")

    monkeypatch.setattr(run, "extract_features", no_extraction)
    again = run.evaluate("random:r3d", protocols=("retrieval",), data_root=root, overrides=TINY, out=out,
                         progress=False)
    assert again["retrieval"]["metrics"] == recall
    print(run.format_results(results))


@NEEDS_DATA_AND_MODELS
def test_finetune_one_epoch_trains_and_reports_fractions(tmp_path):
    from vidkd.data.datasets import load_split
    from vidkd.eval.finetune import finetune
    from vidkd.data.transforms import transforms_from_config
    from vidkd.config import load_config
    from vidkd.models import build_backbone

    torch.set_num_threads(2)
    root = _write_tiny_ucf(tmp_path / "ucf")
    cfg = load_config(None, TINY)
    train_tf, test_tf = transforms_from_config(cfg.data, colour_augmentation=False)
    torch.manual_seed(0)
    backbone = build_backbone("r3d", width=0.125)
    before = {k: v.clone() for k, v in backbone.state_dict().items()}
    result = finetune(backbone, load_split(root, "train"), load_split(root, "test"), train_transform=train_tf,
                      test_transform=test_tf, epochs=1, lr=0.05, batch_size=3, fraction=0.5, clip_len=4,
                      num_test_clips=2, progress=False)
    for key in ("clip_top1", "video_top1", "epochs", "fraction", "train_videos", "test_videos", "history"):
        assert key in result
    assert 0 <= result["clip_top1"] <= 1 and 0 <= result["video_top1"] <= 1
    assert result["epochs"] == 1 and result["fraction"] == 0.5
    assert result["train_videos"] == 3  # one of the two training videos per class
    assert math.isfinite(result["final_train_loss"])
    changed = [k for k, v in backbone.state_dict().items() if v.is_floating_point() and not torch.equal(v, before[k])]
    assert changed, "fine-tuning did not update the backbone"


def test_find_run_dir_from_run_checkpoint_or_weights(tmp_path):
    from vidkd.runs import find_run_dir, result_name

    run_dir = tmp_path / "run"
    best = run_dir / "checkpoints" / "best"
    best.mkdir(parents=True)
    (run_dir / "config.yaml").write_text("name: x\n")
    (best / "model.safetensors").write_bytes(b"")
    for source in (run_dir, best, best / "model.safetensors"):
        assert find_run_dir(source) == run_dir
    assert find_run_dir(tmp_path) is None
    assert result_name("finetune", 1, 1.0) == "finetune.json"
    assert result_name("finetune", 2, 0.25) == "finetune_split2_frac0.25.json"
    assert result_name("retrieval", 1, 0.25) == "retrieval.json"  # the fraction does not apply to retrieval


@NEEDS_DATA_AND_MODELS
def test_evaluate_refuses_user_mistakes_with_clear_errors(tmp_path):
    from vidkd.errors import DatasetError
    from vidkd.eval.protocols import evaluate

    with pytest.raises(ConfigError, match="unknown protocol"):
        evaluate("random:r3d", protocols=("recall",), overrides=TINY)
    with pytest.raises(ConfigError, match="fraction"):
        evaluate("random:r3d", protocols=("linear",), fraction=0.0, overrides=TINY)
    with pytest.raises(DatasetError, match="--data"):
        evaluate("random:r3d", data_root=tmp_path / "missing", overrides=TINY)
    with pytest.raises(ConfigError, match="does not exist"):
        evaluate(tmp_path / "no-run", overrides=TINY)


@NEEDS_DATA_AND_MODELS
def test_evaluate_run_directory_reads_its_config_and_checkpoint(tmp_path):
    from vidkd.config import load_config, save_config
    from vidkd.utils.checkpoint import save_checkpoint
    from tiny_runs import checkpoint_meta as model_meta
    from vidkd.methods.pcl import pcl_model as build_pcl_model
    from vidkd.utils.runtime import seed_everything
    from vidkd.eval.protocols import evaluate

    torch.set_num_threads(2)
    root = _write_tiny_ucf(tmp_path / "ucf")
    cfg = load_config(None, TINY + [f"data.root={root}"])
    run_dir = tmp_path / "run"
    save_config(cfg, run_dir / "config.yaml")
    seed_everything(cfg.train.seed)  # the backbone then gets the same weights as random:r3d with this seed
    model = build_pcl_model(cfg)
    save_checkpoint(run_dir / "checkpoints" / "best", model.state_dict(), model_meta(cfg, 7, {}))

    result = evaluate(run_dir, protocols=("knn",), overrides=["data.num_workers=0"], progress=False)["knn"]
    saved = json.loads((run_dir / "eval" / "knn.json").read_text())
    assert saved["dataset"]["root"] == str(root) and saved["checkpoint"]["epoch"] == 7
    assert saved["arch"] == "r3d" and saved["width"] == 0.125
    reference = evaluate("random:r3d", protocols=("knn",), data_root=root, overrides=TINY, out=tmp_path / "ref",
                         progress=False)["knn"]
    assert result["metrics"] == reference["metrics"]
    # same weights, so the same cached test features: the checkpoint really was loaded
    from safetensors.torch import load_file

    run_feats = load_file(str(next((run_dir / "eval" / "features").glob("test-*.safetensors"))))["features"]
    ref_feats = load_file(str(next((tmp_path / "ref" / "features").glob("test-*.safetensors"))))["features"]
    assert torch.allclose(run_feats, ref_feats, atol=1e-5) and run_feats.abs().sum() > 0
