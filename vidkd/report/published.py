"""Published PCL numbers, each with the full setting it was measured in, and the matching rule.

Source: Li Tao, Xueting Wang, Toshihiko Yamasaki, "Pretext-Contrastive Learning: Toward Good
Practices in Self-supervised Video Representation Learning", arXiv:2010.15464, as listed in the
reference code's readme (BestJuly/Pretext-Contrastive-Learning, "Results"): PCL with the VCP
pretext task, pretrained on UCF101 split 1 with the code's defaults (residual clips of 16x112x112,
200 epochs), evaluated by the code's recipe (`eval.protocol: pcl`) on split 1 with every label.

- Retrieval (R@k %, UCF101 test videos query the train videos) was published for **R3D-18**, the
  torchvision `r3d_18` (`retrieve_clips.py --model r18`), not for the one-block R3D (vidkd `r3d`).
- Fine-tuning (video top-1 %) was published for C3D, R3D and R(2+1)D (VCOP's one-block networks,
  vidkd `c3d`, `r3d`, `r21d`) and for R3D-18 (`r3d_18`), on UCF101 and HMDB51.

`compare` sets one of our results beside a published number only when every field of
`SETTING_FIELDS` matches; otherwise it lists the fields that differ, or says that the reference
never published that evaluation for that backbone ("no published counterpart"). `run_setting`
reads a run's setting from its `config.yaml` (as a dict) and one result record.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vidkd.config import Config
from vidkd.protocol_specs import HEADLINE, RETRIEVAL_METRICS
from vidkd.report.results import ARCH_NAMES
from vidkd.result_record import ResultRecord

PCL_SOURCE = "Tao, Wang & Yamasaki, Pretext-Contrastive Learning (PCL, VCP), arXiv:2010.15464"

# every field that must match, in the order differences are listed, with its label
SETTING_FIELDS: dict[str, str] = {
    "width": "width",
    "method": "pretraining",
    "modality": "modality",
    "pretrain_epochs": "pretraining epochs",
    "pretrain_dataset": "pretraining dataset",
    "pretrain_split": "pretraining split",
    "input": "clip size",
    "recipe": "evaluation protocol",
    "dataset": "evaluation dataset",
    "split": "evaluation split",
    "fraction": "labelled fraction",
}

PCL_METHOD = "PCL (VCP)"
# what every published number below shares: the reference code's defaults
PCL_SETTING: dict[str, Any] = {
    "width": 1.0,
    "method": PCL_METHOD,
    "modality": "residual",  # train_vcp_contrast.py --modality res (default), kept for retrieval and fine-tuning
    "pretrain_epochs": 200,  # train_vcp_contrast.py: range(1, 201)
    "pretrain_dataset": "ucf101",
    "pretrain_split": 1,
    "input": "16x112x112",
    "recipe": "pcl",  # retrieve_clips.py / ft_classify.py
    "split": 1,
    "fraction": 1.0,
}


@dataclass(frozen=True)
class Published:
    """One published result: an evaluation of one backbone on one dataset, in `setting`."""

    evaluation: str  # retrieval | finetune
    arch: str  # vidkd backbone name
    dataset: str  # evaluation dataset
    values: dict[str, float]  # metric name (as in our result files) -> published value in %
    setting: dict[str, Any] = field(default_factory=dict)

    @property
    def full_setting(self) -> dict[str, Any]:
        return {**PCL_SETTING, "dataset": self.dataset, **self.setting}

    @property
    def label(self) -> str:
        return f"{self.full_setting['method']} {ARCH_NAMES.get(self.arch, self.arch)} on {self.dataset.upper()}"


_VIDEO_TOP1 = HEADLINE["finetune"]  # what the readme's fine-tuning accuracy is: video top-1
PUBLISHED: tuple[Published, ...] = (
    # readme "Video retrieval" (UCF101 split 1), "PCL (VCP) | R3D-18": R@1, 5, 10, 20, 50
    Published("retrieval", "r3d_18", "ucf101", dict(zip(RETRIEVAL_METRICS, (55.1, 71.2, 78.9, 85.5, 92.3), strict=True))),
    # readme "Video recognition", Pre-train UCF, 16x112x112
    Published("finetune", "r3d_18", "ucf101", {_VIDEO_TOP1: 83.4}),
    Published("finetune", "r3d_18", "hmdb51", {_VIDEO_TOP1: 48.8}),
    Published("finetune", "r3d", "ucf101", {_VIDEO_TOP1: 81.1}),
    Published("finetune", "r3d", "hmdb51", {_VIDEO_TOP1: 45.0}),
    Published("finetune", "c3d", "ucf101", {_VIDEO_TOP1: 81.4}),
    Published("finetune", "c3d", "hmdb51", {_VIDEO_TOP1: 45.2}),
    Published("finetune", "r21d", "ucf101", {_VIDEO_TOP1: 79.9}),
    Published("finetune", "r21d", "hmdb51", {_VIDEO_TOP1: 45.6}),
)

COMPARABLE_DATASETS = ("ucf101", "hmdb51")


def dataset_key(name: str | None) -> str | None:
    """'ucf101' or 'hmdb51' when a dataset name/path names one of them, else None."""
    text = (name or "").lower().replace("-", "").replace("_", "")
    for key in COMPARABLE_DATASETS:
        if key in text:
            return key
    return None


def dataset_name(layout: str | None, root: str | None) -> str | None:
    """'ucf101' / 'hmdb51' from a layout or root path, else the root folder's name (None if neither)."""
    key = dataset_key(layout) or dataset_key(str(root) if root else None)
    if key:
        return key
    return Path(str(root)).name if root else None


_DEFAULTS = Config().to_dict()


def _config_value(config: dict[str, Any], section: str, key: str) -> Any:
    values = config.get(section)
    if isinstance(values, dict) and key in values:
        return values[key]
    return _DEFAULTS[section][key]


def method_name(config: dict[str, Any]) -> str:
    """'PCL (VCP)' for PCL with the VCP pretext and the memory-bank contrastive term, else what it is."""
    method = config.get("method") or _DEFAULTS["method"]
    if method != "pcl":
        return str(method).upper()
    pretext = _config_value(config, "ssl", "pretext")
    contrastive = _config_value(config, "ssl", "contrastive")
    if pretext == "vcp" and contrastive == "memory_bank":
        return PCL_METHOD
    if contrastive == "none":
        return "VCP (no contrastive term)"
    if pretext == "none":
        return f"contrastive only ({contrastive})"
    return f"PCL (VCP, {contrastive} contrastive)"


def run_setting(config: dict[str, Any], record: ResultRecord | None, *, random_init: bool = False,
                dataset: str | None = None, split: int = 1, fraction: float = 1.0,
                width: float | None = None) -> dict[str, Any]:
    """The setting of one of our results, in the fields of `SETTING_FIELDS`.

    `config` is the run's config.yaml as a dict ({} for a random-init evaluation); `record` the
    result file (its `settings`, `dataset` and `input`); `dataset`, `split` and `fraction` stand in
    for a record that does not say (the experiment's plan). A record without `settings.recipe`
    was written before recipes existed: vidkd's.
    """
    settings = record.settings if record else {}
    evaluated = record.dataset if record else {}
    inputs = record.input if record else {}
    clip_len = inputs.get("clip_len", _config_value(config, "data", "clip_len"))
    crop = inputs.get("crop", _config_value(config, "data", "crop"))
    if width is None:
        width = record.width if record and record.width is not None else _config_value(config, "model", "width")
    return {
        "width": float(width) if width is not None else None,
        "method": "none (random init)" if random_init else method_name(config),
        "modality": inputs.get("modality", _config_value(config, "data", "modality")),
        "pretrain_epochs": 0 if random_init else _config_value(config, "train", "epochs"),
        "pretrain_dataset": None if random_init else dataset_name(_config_value(config, "data", "layout"),
                                                                  _config_value(config, "data", "root")),
        "pretrain_split": None if random_init else _config_value(config, "data", "split"),
        "input": f"{clip_len}x{crop}x{crop}",
        "recipe": record.recipe if record else "vidkd",
        "dataset": dataset_name(evaluated.get("layout"), evaluated.get("root")) or dataset_name(None, dataset),
        "split": evaluated.get("split", split),
        "fraction": float(settings.get("fraction", fraction)),
    }


def _same(ours: Any, theirs: Any) -> bool:
    if isinstance(ours, (int, float)) and isinstance(theirs, (int, float)) and not isinstance(ours, bool):
        return float(ours) == float(theirs)
    return ours == theirs


def _shown(value: Any) -> str:
    if value is None:
        return "unknown"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def differences(setting: dict[str, Any], published: Published) -> list[str]:
    """'label ours (published theirs)' for every field of `SETTING_FIELDS` that differs."""
    theirs = published.full_setting
    return [f"{label} {_shown(setting.get(key))} (published {_shown(theirs[key])})"
            for key, label in SETTING_FIELDS.items() if not _same(setting.get(key), theirs[key])]


@dataclass(frozen=True)
class Comparison:
    """How one of our results relates to the published numbers."""

    published: Published | None  # the closest published result of this evaluation and backbone
    differences: list[str]

    @property
    def matches(self) -> bool:
        return self.published is not None and not self.differences

    def value(self, metric: str) -> float | None:
        return self.published.values.get(metric) if self.matches and self.published else None

    def describe(self, evaluation: str, arch: str, metric: str) -> str:
        """Why no published number stands beside ours (or which one does)."""
        if self.published is None:
            archs = dict.fromkeys(p.arch for p in PUBLISHED if p.evaluation == evaluation)
            have = [ARCH_NAMES.get(a, a) for a in archs]
            return (f"no published counterpart (the reference published {evaluation} for "
                    f"{', '.join(have) or 'no backbone'}, not {ARCH_NAMES.get(arch, arch)})")
        value = self.published.values.get(metric)
        shown = f" ({value:.1f})" if value is not None else ""
        if self.matches:
            return f"matches {self.published.label}{shown}"
        return f"differs from {self.published.label}{shown} in " + ", ".join(self.differences)


def compare(evaluation: str, arch: str, setting: dict[str, Any]) -> Comparison:
    """Our result of `evaluation` with backbone `arch` in `setting` against the published ones.

    The candidates are the published results of the same evaluation and backbone; the one with
    the fewest differing fields is chosen (the first listed on a tie). None: no counterpart.
    """
    candidates = [p for p in PUBLISHED if p.evaluation == evaluation and p.arch == arch]
    if not candidates:
        return Comparison(None, [])
    best = min(candidates, key=lambda p: len(differences(setting, p)))
    return Comparison(best, differences(setting, best))
