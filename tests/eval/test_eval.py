"""Evaluation protocols: retrieval R@k, weighted kNN, label fractions, linear probe, features, run."""

from __future__ import annotations

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
from vidkd.eval.linear import LinearRecipe, group_folds, linear_probe
from vidkd.eval.protocols import EvaluationChoices
from vidkd.result_record import ResultRecord
from vidkd.eval.retrieval import retrieval_recall
from vidkd.eval.runtime import EvalRuntime






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
    result = linear_probe(train, train_labels, test, test_labels, LinearRecipe(steps=30))
    assert result["train_top1"] == 1.0 and result["test_top1"] >= 0.95
    assert result["train_videos"] == 200 and result["test_videos"] == 100

    small = linear_probe(train, train_labels, test, test_labels, LinearRecipe(fraction=0.1, steps=30))
    assert small["train_videos"] == 20 and small["fraction"] == 0.1
    again = linear_probe(train, train_labels, test, test_labels, LinearRecipe(fraction=0.1, steps=30))
    assert small == again  # deterministic

    shuffled = train_labels[torch.randperm(200, generator=torch.Generator().manual_seed(0))]
    assert linear_probe(train, shuffled, test, test_labels, LinearRecipe(steps=30))["test_top1"] < 0.5


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
    feats, labels = extract_features(backbone, ConstantClips(5, 3), batch_size=2,
                                     runtime=EvalRuntime(progress=False))
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
        return extract_features(backbone, ConstantClips(4, 2), batch_size=3, runtime=EvalRuntime(progress=False))

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


def test_evaluate_random_r3d_end_to_end(tmp_path, monkeypatch):
    from vidkd.eval import protocols as run

    torch.set_num_threads(2)
    root = _write_tiny_ucf(tmp_path / "ucf")
    out = tmp_path / "eval"
    results = run.evaluate("random:r3d", protocols=("knn", "retrieval", "linear"),
                           choices=EvaluationChoices(data_root=root, epochs=20), overrides=TINY, out=out,
                           progress=False)
    assert list(results) == ["retrieval", "knn", "linear"]
    recall = results["retrieval"].metrics
    assert list(recall) == ["R@1", "R@5", "R@10", "R@20", "R@50"]
    assert all(0 <= v <= 1 for v in recall.values()) and list(recall.values()) == sorted(recall.values())
    assert recall["R@10"] == 1.0  # only 6 gallery videos: k is clamped, every class is in the gallery
    for protocol in results:
        saved = json.loads((out / f"{protocol}.json").read_text())
        assert saved["metrics"] == pytest.approx(results[protocol].metrics)
        assert saved["dataset"]["train_videos"] == 6 and saved["dataset"]["test_videos"] == 3
        assert saved["arch"] == "r3d" and saved["width"] == 0.125
    assert len(list((out / "features").glob("*.safetensors"))) == 2  # train and test, extracted once

    # a second evaluation reads the cached features: extraction must not run again
    def no_extraction(*args, **kwargs):
        raise AssertionError("features should come from the cache")

    monkeypatch.setattr(run, "extract_features", no_extraction)
    again = run.evaluate("random:r3d", protocols=("retrieval",), choices=EvaluationChoices(data_root=root), overrides=TINY, out=out,
                         progress=False)
    assert again["retrieval"].metrics == recall
    print(run.format_results(results))


def test_finetune_one_epoch_trains_and_reports_fractions(tmp_path):
    from vidkd.data.datasets import load_split
    from vidkd.eval.finetune import FinetuneRecipe, finetune
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
    recipe = FinetuneRecipe(train_tf, test_tf, epochs=1, lr=0.05, batch_size=3, fraction=0.5, clip_len=4,
                            num_test_clips=2)
    result = finetune(backbone, load_split(root, "train"), load_split(root, "test"), recipe,
                      EvalRuntime(progress=False))
    for key in ("clip_top1", "video_top1", "epochs", "fraction", "train_videos", "test_videos", "history"):
        assert key in result
    assert 0 <= result["clip_top1"] <= 1 and 0 <= result["video_top1"] <= 1
    assert result["epochs"] == 1 and result["fraction"] == 0.5
    assert result["train_videos"] == 3  # one of the two training videos per class
    assert math.isfinite(result["final_train_loss"])
    changed = [k for k, v in backbone.state_dict().items() if v.is_floating_point() and not torch.equal(v, before[k])]
    assert changed, "fine-tuning did not update the backbone"


def test_find_run_dir_from_run_checkpoint_or_weights(tmp_path):
    from vidkd.runs import find_run_dir, parse_result_name, result_name

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
    assert result_name("finetune", 2, 0.25, "pcl") == "finetune_pcl_split2_frac0.25.json"
    for args in (("finetune", 2, 0.25, "pcl"), ("retrieval", 1, 1.0, "pcl"), ("knn", 3, 1.0, "vidkd")):
        key = parse_result_name(result_name(*args))
        assert (key.protocol, key.split, key.fraction, key.recipe) == args


def test_evaluate_refuses_user_mistakes_with_clear_errors(tmp_path):
    from vidkd.errors import DatasetError
    from vidkd.eval.protocols import evaluate

    with pytest.raises(ConfigError, match="unknown protocol"):
        evaluate("random:r3d", protocols=("recall",), overrides=TINY)
    with pytest.raises(ConfigError, match="fraction"):
        evaluate("random:r3d", protocols=("linear",), choices=EvaluationChoices(fraction=0.0), overrides=TINY)
    with pytest.raises(DatasetError, match="--data"):
        evaluate("random:r3d", choices=EvaluationChoices(data_root=tmp_path / "missing"), overrides=TINY)
    with pytest.raises(ConfigError, match="does not exist"):
        evaluate(tmp_path / "no-run", overrides=TINY)


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
    reference = evaluate("random:r3d", protocols=("knn",), choices=EvaluationChoices(data_root=root), overrides=TINY,
                         out=tmp_path / "ref",
                         progress=False)["knn"]
    assert result.metrics == reference.metrics
    # same weights, so the same cached test features: the checkpoint really was loaded
    from safetensors.torch import load_file

    run_feats = load_file(str(next((run_dir / "eval" / "features").glob("test-*.safetensors"))))["features"]
    ref_feats = load_file(str(next((tmp_path / "ref" / "features").glob("test-*.safetensors"))))["features"]
    assert torch.allclose(run_feats, ref_feats, atol=1e-5) and run_feats.abs().sum() > 0


# ---------------------------------------------------------------- eval.protocol: pcl (the reference recipe)

def _conv5_maxpool_size(arch: str, channels: int, clip_len: int, crop: int) -> int:
    """C * T' * floor(H'/2) * floor(W'/2) of the last map (C, T', H', W').

    C3D max-pools (floor): T' = T // 8 (pool2-4), H' = H // 16 (pool1-4). The VCOP ResNets stride
    by 2 with padding (ceil): T' = ceil(T / 8) (conv3-5), H' = ceil(H / 16) (conv1, conv3-5).
    """
    if arch == "c3d":
        t, s = clip_len // 8, crop // 16
    else:
        t, s = -(-clip_len // 8), -(-crop // 16)
    return channels * t * (s // 2) * (s // 2)


@pytest.mark.parametrize("arch", ["c3d", "r3d", "r21d", "r3d_18"])
def test_pcl_retrieval_feature_shape_per_backbone(arch):
    from vidkd.eval.features import clip_features
    from vidkd.eval.protocols import pcl_retrieval_feature
    from vidkd.models import build_backbone
    from vidkd.models.registry import scale_channels

    torch.manual_seed(0)
    width, clip_len, crop = 0.25, 12, 64  # T = 12: ceil(12/8) = 2 for the ResNets, 12 // 8 = 1 for C3D
    channels = scale_channels(512, width)
    backbone = build_backbone(arch, width=width).eval()
    feature = pcl_retrieval_feature(arch)
    with torch.no_grad():
        out = clip_features(backbone, torch.randn(2, 3, clip_len, crop, crop), feature)
    if arch == "r3d_18":  # torchvision's network: the pooled feature (retrieve_clips.py 'r18')
        assert feature == "pooled" and out.shape == (2, channels)
    else:
        assert feature == "conv5_maxpool"
        assert out.shape == (2, _conv5_maxpool_size(arch, channels, clip_len, crop))
        assert out.shape[1] == channels * (2 if arch != "c3d" else 1) * 2 * 2
    # the published input, 16x112x112 at full width (shapes only, on the meta device): 512 x 2 x 3 x 3 = 9216
    with torch.device("meta"):
        full = build_backbone(arch, width=1.0).eval()
        shape = clip_features(full, torch.empty(1, 3, 16, 112, 112), feature).shape
    assert shape == ((1, 512) if arch == "r3d_18" else (1, 9216))
    if arch != "r3d_18":
        assert _conv5_maxpool_size(arch, 512, 16, 112) == 9216
        assert _conv5_maxpool_size(arch, 512, 16, 128) == 16384


def test_pcl_retrieval_refuses_a_backbone_without_a_reference_feature():
    from vidkd.eval.protocols import pcl_retrieval_feature

    with pytest.raises(ConfigError, match="eval.protocol=vidkd"):
        pcl_retrieval_feature("my_net")


def test_pcl_validation_split_is_seeded_held_out_and_disjoint(tmp_path):
    from vidkd.data.datasets import load_split
    from vidkd.eval.finetune import hold_out_videos
    from vidkd.eval.protocols import pcl_validation_size

    # the reference's 800 (UCF101) / 400 (HMDB51), at most 1/8 of the training videos, at least 1
    assert pcl_validation_size(9537, "ucf101") == 800 and pcl_validation_size(3570, "hmdb51") == 400
    assert pcl_validation_size(40, "ucf101") == 5 and pcl_validation_size(6, "folder") == 1
    split = load_split(_write_tiny_ucf(tmp_path / "ucf", groups=5), "train")
    rest, val = hold_out_videos(split, 3, seed=0)
    paths = lambda s: [r.path for r in s.records]  # noqa: E731
    assert len(val.records) == 3 and len(rest.records) == len(split.records) - 3
    assert not set(paths(rest)) & set(paths(val)) and sorted(paths(rest) + paths(val)) == sorted(paths(split))
    assert paths(hold_out_videos(split, 3, seed=0)[1]) == paths(val)  # seeded
    assert any(paths(hold_out_videos(split, 3, seed=s)[1]) != paths(val) for s in (1, 2, 3))
    from vidkd.errors import TrainingError

    with pytest.raises(TrainingError, match="hold out"):
        hold_out_videos(split, len(split.records), seed=0)


def test_pcl_finetune_recipe_is_recorded_and_run_through_the_engine(tmp_path, monkeypatch):
    from vidkd.eval import finetune as finetune_module
    from vidkd.eval import protocols as run

    torch.set_num_threads(2)
    root = _write_tiny_ucf(tmp_path / "ucf")
    trainers = []

    class Recording(finetune_module.Trainer):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            trainers.append(self)
            self.initial_lrs = [group["lr"] for group in self.optimizer.param_groups]

    monkeypatch.setattr(finetune_module, "Trainer", Recording)
    results = run.evaluate("random:r3d", protocols=("finetune", "knn"), choices=EvaluationChoices(data_root=root, epochs=2),
                           out=tmp_path / "out",
                           overrides=TINY + ["eval.protocol=pcl", "eval.finetune_lr=0.5", "eval.finetune_dropout=0.9"],
                           progress=False)
    # a pcl result is named for its recipe, so it never overwrites the vidkd one
    assert not (tmp_path / "out" / "finetune.json").exists()
    record = json.loads((tmp_path / "out" / "finetune_pcl.json").read_text())
    assert (tmp_path / "out" / "knn.json").is_file()  # the reference has no kNN: vidkd's recipe and name
    settings, metrics = record["settings"], record["metrics"]
    # the recipe, not the eval section, decides; --epochs still overrides the epochs
    assert settings["recipe"] == "pcl" and settings["epochs"] == 2 and run.PCL_FINETUNE_EPOCHS == 149
    assert settings["lr"] == 1e-3 and settings["param_group_lrs"] == [1e-3, 1e-3]
    assert settings["dropout"] == 0.0 and settings["schedule"] == "plateau" and settings["plateau_patience"] == 30
    assert settings["momentum"] == 0.9 and settings["weight_decay"] == 5e-4
    assert settings["tested"] == "best validation loss"
    assert settings["val_videos"] == metrics["val_videos"] == 1  # 6 training videos: 6 // 8 -> at least one
    assert metrics["train_videos"] + metrics["val_videos"] == 6
    assert metrics["best_epoch"] in (1, 2)
    best = next(h for h in record["history"] if h["epoch"] == metrics["best_epoch"])
    assert best["val_loss"] == pytest.approx(min(h["val_loss"] for h in record["history"]))
    assert metrics["best_val_loss"] == pytest.approx(best["val_loss"])
    assert results["knn"].recipe == "vidkd"  # the reference has no kNN: vidkd's runs

    (trainer,) = trainers
    assert trainer.initial_lrs == [1e-3, 1e-3] and trainer.options.keep_best and trainer.best_epoch == metrics["best_epoch"]
    assert trainer.train.scheduler == "plateau" and trainer.train.plateau_patience == 30
    assert trainer.train.plateau_factor == 0.1 and trainer.train.min_lr == 1e-5 and trainer.train.batch_size == 5
    assert isinstance(trainer.method.model.head.dropout, nn.Identity)
    train_paths = {r.path for r in trainer.method.train_dataset().records}
    val_paths = {r.path for r in trainer.method.validation_dataset().records}
    assert len(val_paths) == 1 and not train_paths & val_paths
    assert trainer.method.score({"val_loss": 0.5, "train_loss": 0.1}) == -0.5


def test_finetune_repeats_average_runs_whose_first_is_the_single_run(tmp_path):
    from vidkd.eval import protocols as run
    from vidkd.eval.finetune import repeat_seed

    torch.set_num_threads(2)
    root = _write_tiny_ucf(tmp_path / "ucf")
    settings = TINY + ["eval.fraction=0.5", "eval.num_clips=2", "eval.finetune_batch_size=3", "train.seed=3"]
    single = run.evaluate("random:r3d", protocols=("finetune",), choices=EvaluationChoices(data_root=root, epochs=2),
                          overrides=settings, progress=False)["finetune"]
    record = run.evaluate("random:r3d", protocols=("finetune",), choices=EvaluationChoices(data_root=root, epochs=2),
                          out=tmp_path / "out", overrides=settings + ["eval.finetune_repeats=3"], progress=False)["finetune"]
    saved = json.loads((tmp_path / "out" / "finetune_frac0.5.json").read_text())
    metrics = saved["metrics"]
    assert saved["settings"]["repeats"] == 3 and single.settings["repeats"] == 1
    assert [r["seed"] for r in metrics["repeats"]] == [3, repeat_seed(3, 1), repeat_seed(3, 2)] != [3, 3, 3]
    # repeat 0 is the single run, so one repeat changes nothing; the headline is the repeats' mean
    first = metrics["repeats"][0]
    assert first["video_top1"] == single.metrics["video_top1"] and first["clip_top1"] == single.metrics["clip_top1"]
    assert first["history"] == single.history
    assert metrics["video_top1"] == pytest.approx(sum(r["video_top1"] for r in metrics["repeats"]) / 3)
    assert metrics["clip_top1"] == pytest.approx(sum(r["clip_top1"] for r in metrics["repeats"]) / 3)
    assert record.metrics["video_top1"] == pytest.approx(metrics["video_top1"])
    assert all(len(r["history"]) == 2 and r["train_videos"] == 3 for r in metrics["repeats"])
    # each repeat trains on its own draw of the labelled videos
    assert len({str(r["history"]) for r in metrics["repeats"]}) == 3


def test_repeat_seeds_draw_other_labelled_subsets():
    from vidkd.eval.finetune import repeat_seed

    labels = np.repeat(np.arange(10), 24)  # the synthetic training split: 24 videos of each of 10 actions
    subsets = {tuple(sample_fraction(labels, 0.1, repeat_seed(seed, r))) for seed in range(3) for r in range(3)}
    assert len(subsets) == 9
    assert repeat_seed(5, 0) == 5


def test_finetune_repeats_below_one_is_a_config_error():
    from vidkd.config import load_config

    with pytest.raises(ConfigError, match="eval.finetune_repeats"):
        load_config(None, ["eval.finetune_repeats=0"])


def test_a_labelled_protocol_that_ignores_its_fraction_is_refused_before_its_result_is_named(tmp_path, monkeypatch):
    """A result file of a labelled protocol is named by its fraction: one computed on other labels
    (a protocol that forgot to subsample) must fail loudly, not take the name."""
    from vidkd.eval import protocols

    def all_labels(ctx):
        settings, metrics = protocols.linear(ctx)
        return {**settings, "fraction": 1.0}, metrics

    monkeypatch.setitem(protocols.PROTOCOLS, "linear", all_labels)
    root = _write_tiny_ucf(tmp_path / "ucf")
    with pytest.raises(RuntimeError, match="fraction 1.0, not the 0.5"):
        protocols.evaluate("random:r3d", protocols=("linear",), choices=EvaluationChoices(data_root=root, fraction=0.5),
                           overrides=TINY, out=tmp_path / "out", progress=False)
    assert not list((tmp_path / "out").glob("linear*.json"))


def test_vidkd_recipe_is_the_default_and_recorded(tmp_path):
    from vidkd.eval.protocols import evaluate

    torch.set_num_threads(2)
    root = _write_tiny_ucf(tmp_path / "ucf")
    results = evaluate("random:r3d", protocols=("retrieval",), choices=EvaluationChoices(data_root=root), overrides=TINY,
                       progress=False)
    assert results["retrieval"].recipe == "vidkd"
    assert "feature" not in results["retrieval"].settings


def test_unknown_protocol_name_is_a_one_line_error(capsys):
    from vidkd.cli import main as cli_main

    assert cli_main(["evaluate", "random:r3d", "--set", "eval.protocol=foo"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("vidkd: error:")
    assert "eval.protocol" in err and "vidkd" in err and "pcl" in err and "foo" in err


def test_linear_probe_chooses_weight_decay_on_held_out_groups_never_on_the_test_split():
    # 2 weakly informative dimensions among 300 noise ones, 60 labelled videos: a weak penalty fits the noise
    gen = torch.Generator().manual_seed(0)

    def draw(n):
        labels = torch.arange(2).repeat(n // 2)
        x = torch.randn(n, 302, generator=gen)
        x[:, :2] += 1.5 * (2 * labels[:, None] - 1)
        return x, labels

    train, train_labels = draw(60)
    test, test_labels = draw(400)
    groups = [f"g{i % 6}" for i in range(60)]
    candidates = [1e-4, 1.0, 100.0]
    auto = linear_probe(train, train_labels, test, test_labels, LinearRecipe(steps=50, weight_decay=candidates),
                        train_groups=groups)
    scores = auto["validation_top1_by_weight_decay"]
    assert set(scores) == {"0.0001", "1", "100"}
    assert auto["weight_decay"] == max(candidates, key=lambda wd: (scores[f"{wd:g}"], wd))
    single = linear_probe(train, train_labels, test, test_labels,
                          LinearRecipe(steps=50, weight_decay=auto["weight_decay"]))
    assert single["test_top1"] == auto["test_top1"]  # refit on every labelled video with the chosen value
    # folds hold whole groups: a group is never both fitted and validated on
    folds = group_folds(groups, 3)
    assert sum(mask.sum() for mask in folds) == 60
    for mask in folds:
        assert not set(np.array(groups)[mask]) & set(np.array(groups)[~mask])
    # the choice depends on the training videos alone
    flipped = linear_probe(train, train_labels, test, 1 - test_labels, LinearRecipe(steps=50, weight_decay=candidates),
                           train_groups=groups)
    assert flipped["weight_decay"] == auto["weight_decay"]
    with pytest.raises(ValueError, match="one group per training video"):
        linear_probe(train, train_labels, test, test_labels, LinearRecipe(weight_decay=candidates))


def test_changed_settings_compare_only_what_a_protocol_depends_on():
    from vidkd.config import EvalConfig
    from vidkd.eval.protocols import changed_settings, result_settings

    now = EvalConfig(finetune_repeats=2, knn_k=7)

    def stored(values: dict | None) -> ResultRecord:
        return ResultRecord.from_json({"metrics": {}, **({"eval": values} if values is not None else {})})

    assert changed_settings(stored(result_settings(EvalConfig(), "finetune")), now, "finetune") == ["finetune_repeats"]
    assert changed_settings(stored(result_settings(EvalConfig(), "linear")), now, "linear") == []
    assert changed_settings(stored({"num_clips": 10}), now, "knn") == ["knn_k"]  # an absent key had its default
    assert changed_settings(stored({"num_clips": 10}), EvalConfig(), "knn") == []
    assert changed_settings(stored(None), now, "knn") == []  # a record from before `eval`: nothing to compare
