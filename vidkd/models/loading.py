"""Load trained weights from any source vidkd understands, and say exactly what was loaded.

Sources:
- a vidkd run directory (`config.yaml` + `checkpoints/best|last`), or a checkpoint directory;
- a `.safetensors` file (vidkd PCL layout or a bare backbone);
- a checkpoint of the published PCL code (BestJuly/Pretext-Contrastive-Learning): a `state_dict`
  with `base_network.*`, `fc.*`, `projector.mlp.{0,2}.*` (or `projector.{0,2}.*`) keys, possibly
  under a `model` / `state_dict` key (DDP `module.` prefixes too); it names no architecture, so
  C3D / R3D / R(2+1)D (or the `r18` Sequential of torchvision's r3d_18) is read off its keys;
- a torchvision-layout video ResNet `state_dict` (`stem.*`, `layer1.*`, `fc.*`: Kinetics-400).

Everything is mapped to the vidkd PCL layout (`backbone.*`, `pretext_head.fc.*`,
`projection.mlp.*`) and loaded strictly: a partial load, or a tensor of a reference checkpoint
that has no place in vidkd, is refused unless asked for (only torchvision's Kinetics-400 `fc` is
dropped on purpose, and reported as `dropped`).
Torch files are read with `weights_only=True`; nothing from a checkpoint is executed.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from vidkd import runs
from vidkd.errors import CheckpointError
from vidkd.models.registry import build_backbone
from vidkd.utils.checkpoint import META_FILE, WEIGHTS_FILE, find_checkpoint, read_meta
from vidkd.utils.io import load_weights, safe_torch_load

log = logging.getLogger("vidkd.models")



@dataclass
class WeightSource:
    """Weights mapped to the vidkd PCL layout, plus what is known of the network."""

    path: Path
    format: str  # vidkd | pcl | torchvision | backbone
    state: dict[str, torch.Tensor]
    meta: dict[str, Any] = field(default_factory=dict)
    dropped: list[str] = field(default_factory=list)  # source tensors left out on purpose (torchvision's 400-way fc)
    unplaced: list[str] = field(default_factory=list)  # source tensors with no place in vidkd: refused unless partial


@dataclass
class LoadReport:
    source: str
    format: str
    arch: str
    width: float
    loaded: list[str]
    missing: list[str]
    unexpected: list[str]
    dropped: list[str]

    @property
    def summary(self) -> str:
        parts = [f"{self.source} ({self.format}, {self.arch} width {self.width}): loaded {len(self.loaded)} tensors"]
        if self.missing:
            parts.append(f"missing {len(self.missing)} (e.g. {', '.join(self.missing[:3])})")
        if self.unexpected:
            parts.append(f"unused {len(self.unexpected)} (e.g. {', '.join(self.unexpected[:3])})")
        if self.dropped:
            parts.append(f"dropped {len(self.dropped)} ({', '.join(self.dropped[:3])})")
        return "; ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        return {"source": self.source, "format": self.format, "arch": self.arch, "width": self.width,
                "loaded": self.loaded, "missing": self.missing, "unexpected": self.unexpected,
                "dropped": self.dropped}


def _strip(state: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    if state and all(k.startswith(prefix) for k in state):
        return {k[len(prefix):]: v for k, v in state.items()}
    return state


def _unwrap(obj: Any, path: Path) -> dict[str, torch.Tensor]:
    for key in ("model", "state_dict", "model_state", "network"):
        if isinstance(obj, dict) and key in obj and isinstance(obj[key], dict):
            obj = obj[key]
            break
    if not isinstance(obj, dict) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointError(f"{path} holds no state_dict of tensors (looked at the top level and under "
                              "'model' / 'state_dict'); save the model with model.state_dict()")
    return _strip(dict(obj), "module.")


_PROJECTOR_SPELLINGS = ("projector.mlp.", "projector.")  # PCL's MoCoHead (`mlp` Sequential), or a bare Sequential
# the owner of these names is vidkd.methods.pcl.PCLModel (above models, so spelled here; tests/methods/test_head_names.py)
PCL_PRETEXT_HEAD, PCL_PROJECTION = "pretext_head.", "projection.mlp."
# the first Sequential child of PCL's `r18` base network (torchvision r3d_18 children[:-1]) -> torchvision names
_R18_CHILDREN = {"0": "stem", "1": "layer1", "2": "layer2", "3": "layer3", "4": "layer4"}


def _projector_keys(state: dict[str, torch.Tensor]) -> dict[str, str]:
    """PCL's projector is Linear-ReLU-Linear in a Sequential (`projector.mlp.N.*`, or `projector.N.*`):
    map its two Linears to ours (`projection.mlp.0` and `.2`) by order. Any other layout maps nothing."""
    found: dict[str, dict[str, int]] = {}  # spelling -> {key: index}
    for key in state:
        for spelling in _PROJECTOR_SPELLINGS:
            index = key[len(spelling):].split(".", 1)[0]
            if key.startswith(spelling) and index.isdigit() and key.count(".") == spelling.count(".") + 1:
                found.setdefault(spelling, {})[key] = int(index)
                break
    if len(found) != 1:  # no projector, or both spellings at once: nothing is guessed
        return {}
    (spelling, indices), = found.items()
    order = sorted(set(indices.values()))
    if len(order) != 2:
        return {}
    ours = dict(zip(order, (0, 2)))
    return {key: f"{PCL_PROJECTION}{ours[index]}.{key[len(spelling):].split('.', 1)[1]}"
            for key, index in indices.items()}


def _base_network_key(key: str) -> str:
    """`base_network.X` -> `backbone.X`; PCL's `r18` (`base_network.0.*` ... `4.*`) gets torchvision's names."""
    rest = key[len("base_network."):]
    head, _, tail = rest.partition(".")
    if head in _R18_CHILDREN and tail:
        rest = f"{_R18_CHILDREN[head]}.{tail}"
    return "backbone." + rest


def _from_pcl(state: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], list[str]]:
    """The vidkd layout of a PCL checkpoint, and the source tensors that have no place in it."""
    mapped, unplaced = {}, []
    projector = _projector_keys(state)
    for key, value in state.items():
        if key.startswith("base_network."):
            mapped[_base_network_key(key)] = value
        elif key.startswith("fc.") and key.count(".") == 1:
            mapped[PCL_PRETEXT_HEAD + key] = value
        elif key in projector:
            mapped[projector[key]] = value
        else:
            unplaced.append(key)
    return mapped, unplaced


def infer_reference_arch(state: dict[str, torch.Tensor]) -> str | None:
    """C3D / R3D / R(2+1)D of the VCOP/PCL code, from the names of vidkd-layout `backbone.*` tensors.

    C3D has plain biased convs with split stages (`conv3a.weight`); R3D wraps every conv as
    `.temporal_spatial_conv` (stem `conv1.temporal_spatial_conv.weight`); R(2+1)D factorises it
    into `.spatial_conv` (1,k,k) + `.bn` + `.temporal_conv` (k,1,1) (stem `conv1.spatial_conv.weight`).
    """
    def shape(key: str) -> tuple[int, ...] | None:
        value = state.get("backbone." + key)
        return None if value is None else tuple(value.shape)

    stem = shape("conv1.weight")
    if stem is not None and len(stem) == 5 and shape("conv3a.weight") is not None and shape("conv5b.weight") is not None:
        return "c3d"
    spatial, temporal = shape("conv1.spatial_conv.weight"), shape("conv1.temporal_conv.weight")
    if spatial is not None and temporal is not None and spatial[2] == 1 and temporal[3:] == (1, 1):
        return "r21d"
    stem = shape("conv1.temporal_spatial_conv.weight")
    if stem is not None and len(stem) == 5 and stem[2] > 1:
        return "r3d"
    return None


def infer_arch(state: dict[str, torch.Tensor]) -> str | None:
    """The architecture of vidkd-layout tensors: a VCOP/PCL net, else a torchvision one (None if neither)."""
    return infer_reference_arch(state) or infer_torchvision_arch(
        {k[len("backbone."):]: v for k, v in state.items() if k.startswith("backbone.")})


def infer_torchvision_arch(state: dict[str, torch.Tensor]) -> str | None:
    stem = state.get("stem.0.weight")
    if stem is None:
        return None
    if stem.shape[2] == 1:  # (1, 7, 7) spatial stem conv
        return "r2plus1d_18"
    layer2 = state.get("layer2.0.conv1.0.weight")
    if layer2 is not None and layer2.shape[2] == 1:
        return "mc3_18"
    return "r3d_18"


def infer_width(state: dict[str, torch.Tensor], arch: str) -> float:
    """The width whose network has exactly these tensor shapes (tried on the meta device, so free).

    Candidates are the BatchNorm sizes over 512: the last stage has 512·width channels.
    """
    shapes = {k[len("backbone."):]: tuple(v.shape) for k, v in state.items() if k.startswith("backbone.")}
    sizes = {v.shape[0] for k, v in state.items() if k.startswith("backbone.") and k.endswith("running_mean")}
    for size in sorted(sizes, reverse=True):
        with torch.device("meta"):
            candidate = build_backbone(arch, width=size / 512).state_dict()
        common = [k for k in shapes if k in candidate]
        if common and all(tuple(candidate[k].shape) == shapes[k] for k in common):
            return size / 512
    raise CheckpointError(f"the tensors do not match {arch} at any width; check the architecture "
                          "(--set model.arch=ARCH, teacher.arch for a teacher, --arch for adapt-teacher) or give model.width")


def read_weights(source: str | Path) -> WeightSource:
    """Find, read and map the weights at `source` (no model is built here)."""
    path = Path(source)
    if not path.exists():
        raise CheckpointError(f"no checkpoint at {path}; give a run directory, a checkpoint directory or a weights file")
    if path.is_dir():
        if runs.is_run_dir(path) or runs.checkpoint_dir(path).parent.is_dir():  # a run: best, else last
            found = runs.trained_checkpoint(path)
            if found is None:
                raise CheckpointError(f"run {source} has no checkpoint yet (it has not finished an epoch); "
                                      "train it first, or resume it with `vidkd pretrain --resume`")
            path = found
        elif find_checkpoint(path) is not None:
            path = find_checkpoint(path)
        else:
            raise CheckpointError(f"{path} is a directory with no vidkd checkpoint ({WEIGHTS_FILE}); give a run "
                                  "directory, a checkpoint directory (checkpoints/best) or a weights file")
        try:
            return WeightSource(path, "vidkd", load_weights(path / WEIGHTS_FILE), read_meta(path))
        except CheckpointError as exc:
            last = find_checkpoint(runs.checkpoint_dir(Path(source), runs.LAST))
            if path.name == runs.BEST and last is not None:
                raise CheckpointError(f"{exc}. The run's last checkpoint is intact: pass {last} instead "
                                      f"(or resume the run to write a new best one)") from None
            raise
    if path.suffix == ".safetensors":
        state = load_weights(path)
        sidecar = path.with_name(META_FILE)
        meta = read_meta(sidecar.parent) if sidecar.is_file() else {}
        if any(k.startswith("backbone.") for k in state):
            return WeightSource(path, "vidkd", state, meta)
        return _classify(path, state, meta)
    return _classify(path, _unwrap(safe_torch_load(path), path), {})


def _classify(path: Path, state: dict[str, torch.Tensor], meta: dict[str, Any]) -> WeightSource:
    if any(k.startswith("base_network.") for k in state):
        mapped, unplaced = _from_pcl(state)
        arch = infer_arch(mapped)
        return WeightSource(path, "pcl", mapped, {"arch": arch, **meta} if arch else meta, unplaced=unplaced)
    if any(k.startswith("backbone.") for k in state):
        return WeightSource(path, "vidkd", state, meta)
    arch = infer_torchvision_arch(state)
    if arch is not None:
        dropped = [k for k in state if k.startswith("fc.")]
        mapped = {f"backbone.{k}": v for k, v in state.items() if not k.startswith("fc.")}
        return WeightSource(path, "torchvision", mapped, {"arch": arch, **meta}, dropped)
    return WeightSource(path, "backbone", {f"backbone.{k}": v for k, v in state.items()}, meta)


def load_into(model: nn.Module, weights: WeightSource, arch: str, width: float, allow_partial: bool,
              only_backbone: bool = False) -> LoadReport:
    """Load mapped weights into `model` (a PCLModel, or a bare backbone with only_backbone)."""
    recorded = weights.meta.get("arch")
    if recorded and recorded != arch:
        raise CheckpointError(f"{weights.path} holds a {recorded} network, not {arch}: drop the --set model.arch "
                              f"(or teacher.arch), or set it to {recorded}")
    state = weights.state
    if only_backbone:
        state = {k[len("backbone."):]: v for k, v in state.items() if k.startswith("backbone.")}
    expected = model.state_dict()
    for key, value in state.items():
        if key in expected and expected[key].shape != value.shape:
            raise CheckpointError(
                f"{weights.path} does not fit {arch} at width {width}: '{key}' is {tuple(value.shape)} in the "
                f"checkpoint but {tuple(expected[key].shape)} in the model; check the architecture (model.arch / teacher.arch) and model.width")
    loaded = [k for k in state if k in expected]
    missing = [k for k in expected if k not in state and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in state if k not in expected] + list(weights.unplaced)
    report = LoadReport(str(weights.path), weights.format, arch, width, loaded, missing, unexpected, weights.dropped)
    if not loaded:
        raise CheckpointError(f"nothing in {weights.path} matches a {arch} model ({len(state)} tensors, e.g. "
                              f"{', '.join(list(state)[:3])}); is the architecture (model.arch / teacher.arch) right?")
    if weights.unplaced and not allow_partial:
        raise CheckpointError(
            f"{weights.path} ({weights.format} layout) has {len(weights.unplaced)} tensor(s) with no place in a vidkd "
            f"model ({', '.join(weights.unplaced[:3])}); pass allow_partial=True (teacher.allow_partial=true, "
            "model.init_allow_partial=true or --allow-partial) if leaving them out is intended")
    if (missing or unexpected) and not allow_partial:
        raise CheckpointError(f"{weights.path} loads only partly into {arch}: {report.summary}; "
                              "pass teacher.allow_partial=true (or --allow-partial) if that is intended")
    merged = {**expected, **{k: state[k] for k in loaded}}
    model.load_state_dict(merged, strict=True)
    log.info("loaded %s", report.summary)
    return report


def resolve_arch(weights: WeightSource, arch: str | None, width: float | None) -> tuple[str, float]:
    """The architecture and width: as given, else from the metadata (for foreign layouts that name
    none, `read_weights` puts there what their keys tell: torchvision and reference PCL checkpoints)."""
    arch = arch or weights.meta.get("arch")
    if not arch:
        raise CheckpointError(f"cannot tell the architecture of {weights.path}; name it: --set model.arch=ARCH (evaluate), teacher.arch=ARCH (a teacher) or --arch (adapt-teacher)")
    if width is None:
        width = weights.meta.get("width") or infer_width(weights.state, arch)
    return arch, float(width)


def load_backbone(source: str | Path, arch: str | None = None, width: float | None = None,
                  allow_partial: bool = False) -> tuple[nn.Module, dict[str, Any]]:
    """A backbone with trained weights, for evaluation and export."""
    weights = read_weights(source)
    arch, width = resolve_arch(weights, arch, width)
    backbone = build_backbone(arch, width=width)
    report = load_into(backbone, weights, arch, width, allow_partial, only_backbone=True)
    return backbone, {"report": report.to_dict(), "meta": weights.meta, "arch": arch, "width": width}
