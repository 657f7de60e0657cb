"""The evaluation protocols by name: what each one measures, shows and depends on.

The one owner of what config, runs, eval and report know about a protocol (it imports nothing of
vidkd, so every one of them can read it):

- `name`: the protocol as `vidkd evaluate --protocol`, an experiment's `evaluations` and a result
  file (`eval/<name>.json`) spell it;
- `headline`: the one number of its result the report's summary and study use;
- `metrics`: the metrics `vidkd evaluate` shows, headline first;
- `uses_labels`: it trains on labels, so it runs on a labelled fraction and its result file is
  named by that fraction (`runs.result_name`);
- `settings`: the `eval.*` keys its result depends on besides the split, fraction and recipe its
  file is named by (stored in the record as `eval`, compared when a grid resumes);
- `fraction_key`: the `eval.*` key of its own labelled fraction, if it may have one (unset: `eval.fraction`);
- `recipes`: the named recipes (`eval.protocol`) that define how it runs; under any other it runs as vidkd's.

A protocol's function (how it runs) is `vidkd.eval.protocols.PROTOCOLS`'s; the metric names are
the keys that function's result holds (`eval/knn.py`, `linear.py`, `finetune.py`, `retrieval.py`).
"""

from __future__ import annotations

from dataclasses import dataclass

RETRIEVAL_KS = (1, 5, 10, 20, 50)  # the ks every retrieval result reports, as PCL and VCOP


def recall_name(k: int) -> str:
    """The metric name of recall at `k` in a result's metrics: `R@k`."""
    return f"R@{k}"


RETRIEVAL_METRICS = tuple(recall_name(k) for k in RETRIEVAL_KS)  # ("R@1", "R@5", "R@10", "R@20", "R@50")


@dataclass(frozen=True)
class ProtocolSpec:
    """One evaluation protocol: its name, the metrics it reports and what its result depends on."""

    name: str
    headline: str  # the one number the report's summary uses
    metrics: tuple[str, ...]  # shown by `vidkd evaluate`, headline first
    uses_labels: bool  # trains on a labelled fraction of the training split (named in its result file)
    settings: tuple[str, ...]  # the `eval.*` keys its result depends on (EvalConfig fields)
    fraction_key: str = "fraction"  # eval.<key> of its labelled fraction (None there: eval.fraction)
    recipes: tuple[str, ...] = ("vidkd",)  # the recipes that define it (vidkd's settings; pcl: the reference code's)

    def __post_init__(self) -> None:
        if not self.metrics or self.metrics[0] != self.headline:
            raise ValueError(f"protocol {self.name}: the headline metric {self.headline!r} must be the first shown")


PROTOCOL_SPECS: dict[str, ProtocolSpec] = {spec.name: spec for spec in (
    # in the order evaluations run: the frozen-feature protocols share one extraction, fine-tuning comes last
    ProtocolSpec("retrieval", headline=RETRIEVAL_METRICS[0], metrics=RETRIEVAL_METRICS, uses_labels=False,
                 settings=("num_clips",), recipes=("vidkd", "pcl")),
    ProtocolSpec("knn", headline="top1", metrics=("top1", "top5"), uses_labels=False,
                 settings=("num_clips", "knn_k", "knn_temperature")),
    ProtocolSpec("linear", headline="test_top1", metrics=("test_top1", "test_top5", "train_top1"), uses_labels=True,
                 settings=("num_clips", "linear_steps", "linear_weight_decay")),
    ProtocolSpec("finetune", headline="video_top1", metrics=("video_top1", "clip_top1"), uses_labels=True,
                 settings=("num_clips", "finetune_epochs", "finetune_lr", "finetune_batch_size",
                           "finetune_backbone_lr_scale", "finetune_dropout", "finetune_repeats"),
                 fraction_key="finetune_fraction", recipes=("vidkd", "pcl")),
)}
PROTOCOL_NAMES = tuple(PROTOCOL_SPECS)  # ("retrieval", "knn", "linear", "finetune")
HEADLINE = {name: spec.headline for name, spec in PROTOCOL_SPECS.items()}  # protocol -> its headline metric
# the named recipes of the evaluations (`eval.protocol`, docs/evaluation.md), vidkd's first
EVAL_PROTOCOLS = tuple(dict.fromkeys(recipe for spec in PROTOCOL_SPECS.values() for recipe in spec.recipes))
DEFAULT_EVALUATIONS = ("retrieval", "finetune")  # an experiment's evaluations unless it names its own
SUPERVISED_PROTOCOL = "finetune"  # how the supervised reference trains: fine-tuning a random network on every label


def recipe_of(eval_protocol: str, protocol: str) -> str:
    """The recipe `protocol` runs under `eval.protocol`: its own if it defines one, else vidkd's."""
    spec = PROTOCOL_SPECS.get(protocol)
    return eval_protocol if spec is not None and eval_protocol in spec.recipes else "vidkd"
