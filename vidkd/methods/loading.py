"""A whole trained model (backbone and the heads of its method) from any checkpoint source."""

from __future__ import annotations

from pathlib import Path

from torch import nn

from vidkd.methods import MODELS, method_of
from vidkd.models.loading import LoadReport, WeightSource, load_into, read_weights, resolve_arch
from vidkd.models.registry import build_backbone


def load_model(source: str | Path | WeightSource, arch: str | None = None, width: float | None = None,
               allow_partial: bool = False) -> tuple[nn.Module, LoadReport, WeightSource]:
    """The model of the method a checkpoint was trained with (PCL, VCOP, ...), every tensor placed.

    `source` is a run directory, a checkpoint, a weights file (see `vidkd.models.loading.read_weights`)
    or weights already read: a checkpoint of the reference PCL code loads too, its architecture and
    width read off its tensors. `arch` / `width` override what is read. A tensor with no place in
    the model (or a model tensor the checkpoint lacks) raises `CheckpointError` unless `allow_partial`.
    Returns the model (train mode, as built), the `LoadReport` and the mapped weights.
    """
    weights = source if isinstance(source, WeightSource) else read_weights(source)
    arch, width = resolve_arch(weights, arch, width)
    method = method_of(weights.state, weights.meta)
    model = MODELS[method](build_backbone(arch, width=width), weights.state, weights.meta)
    report = load_into(model, weights, arch, width, allow_partial)
    return model, report, weights
