"""The per-epoch kNN probe: label accuracy of a backbone's features, cheap enough to run every epoch.

Memory: one centre clip per training video; queries: one centre clip per test video. The
clips are decoded once and kept in memory when they fit.
"""

from __future__ import annotations

from torch import nn

from vidkd.config import Config
from vidkd.data.loaders import MultiClipDataset
from vidkd.data.transforms import transforms_from_config
from vidkd.eval.features import extract_features
from vidkd.eval.knn import knn_classify
from vidkd.eval.runtime import EvalRuntime
from vidkd.methods.common import RunSplits, in_memory


class KNNProbe:
    """Callable on a model with a `.backbone`: returns {"val_knn_top1": fraction}."""

    def __init__(self, cfg: Config, splits: RunSplits) -> None:
        _, eval_tf = transforms_from_config(cfg.data)
        self.cfg = cfg
        self.memory = MultiClipDataset(splits.train, num_clips=1, clip_len=cfg.data.clip_len, transform=eval_tf,
                                       progress=False)
        self.queries = MultiClipDataset(splits.test, num_clips=1, clip_len=cfg.data.clip_len, transform=eval_tf,
                                        progress=False)
        self.num_classes = len(splits.train.class_names)

    def __call__(self, model: nn.Module) -> dict[str, float]:
        self.memory = in_memory(self.memory, 1, self.cfg)
        self.queries = in_memory(self.queries, 1, self.cfg)
        workers = 0 if getattr(self.memory, "in_memory", False) else self.cfg.data.num_workers
        kwargs = dict(batch_size=self.cfg.train.batch_size * self.cfg.data.tuple_len,
                      runtime=EvalRuntime(next(model.parameters()).device, num_workers=workers, progress=False))
        train_feats, train_labels = extract_features(model.backbone, self.memory, desc="knn memory", **kwargs)
        test_feats, test_labels = extract_features(model.backbone, self.queries, desc="knn queries", **kwargs)
        scores = knn_classify(train_feats, train_labels, test_feats, test_labels, k=self.cfg.train.knn_k,
                              num_classes=self.num_classes)
        return {"val_knn_top1": float(scores["top1"])}
