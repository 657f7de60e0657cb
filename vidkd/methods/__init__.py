"""Training methods behind one interface (`Method`), by name.

A new self-supervised method is one module here (its `Method`, with its `model_type` and sampler) and
one line in `METHODS`, plus its options: a torch-free module in `vidkd/options/` and one line in
`vidkd.options.METHOD_SECTIONS`, so that its presets load with `vidkd.config` alone; see docs/architecture.md.
"""

from __future__ import annotations

from typing import Any, Callable

import torch
from torch import nn

from vidkd.config import Config
from vidkd.errors import ConfigError
from vidkd.methods.base import Method, ModelOutput
from vidkd.methods.common import RunSplits, run_splits
from vidkd.methods.cvrl import CVRL
from vidkd.methods.pcl import PCL
from vidkd.methods.vcop import VCOP
from vidkd.options import METHOD_NAMES

METHODS: dict[str, type[Method]] = {"pcl": PCL, "vcop": VCOP, "cvrl": CVRL}
if set(METHODS) != set(METHOD_NAMES):  # a developer's mistake, named at import rather than as an unknown key later
    raise ImportError(f"methods {sorted(set(METHODS) ^ set(METHOD_NAMES))} must be registered twice: in "
                      "vidkd.methods.METHODS (the Method) and in vidkd.options.METHOD_SECTIONS (its config section)")
# each method's model: it names its head tensors (HEAD_PREFIXES, PRETEXT_LOGITS_WEIGHT) and rebuilds
# itself around a backbone from a checkpoint's tensors and metadata (from_state)
MODEL_TYPES: dict[str, Any] = {name: method.model_type for name, method in METHODS.items()}
MODELS: dict[str, Callable[[nn.Module, dict[str, torch.Tensor], dict[str, Any]], nn.Module]] = {
    name: model.from_state for name, model in MODEL_TYPES.items()}
# tensor-name prefixes that identify a method's heads in a checkpoint without metadata (a bare
# backbone is read as PCL's, so PCL's come last)
HEAD_PREFIXES = {name: model.HEAD_PREFIXES for name, model in MODEL_TYPES.items() if name != "pcl"} | {
    "pcl": MODEL_TYPES["pcl"].HEAD_PREFIXES}


def build_method(cfg: Config, splits: RunSplits | None = None) -> Method:
    if cfg.method not in METHODS:
        raise ConfigError(f"unknown method '{cfg.method}'; choose from {', '.join(METHODS)}")
    return METHODS[cfg.method](cfg, splits or run_splits(cfg))


def method_of(state: dict[str, torch.Tensor], meta: dict[str, Any]) -> str:
    """The method a checkpoint was trained with: from its metadata, else from its head tensors."""
    if meta.get("method") in MODELS:
        return str(meta["method"])
    for name, prefixes in HEAD_PREFIXES.items():
        if any(key.startswith(prefixes) for key in state):
            return name
    return "pcl"  # a bare backbone: wrap it as a PCL model without heads


__all__ = ["METHODS", "MODELS", "MODEL_TYPES", "Method", "ModelOutput", "RunSplits", "build_method", "method_of", "run_splits"]
