"""Typed configs: YAML in, resolved YAML out, `--set a.b=c` overrides, one-line errors.

Every key a user may write is a dataclass field below; anything else is refused with a
suggestion, so a typo never silently falls back to a default.
"""

from __future__ import annotations

import dataclasses
import difflib
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from vidkd.errors import ConfigError


@dataclass
class DataConfig:
    root: str = "data/synthetic"
    layout: str = "auto"  # auto | ucf101 | hmdb51 | folder
    split: int = 1  # official split 1, 2 or 3
    clip_len: int = 16
    interval: int = 8  # frames between consecutive clips of a tuple
    tuple_len: int = 3
    resize: list[int] = field(default_factory=lambda: [128, 171])  # (H, W)
    crop: int = 112
    modality: str = "rgb"  # rgb | residual
    flip: bool = True
    color_jitter: float = 0.8  # probability of a colour jitter per clip (0 = off)
    grayscale: float = 0.2  # probability of grayscale per clip
    mean: list[float] = field(default_factory=lambda: [0.43216, 0.394666, 0.37645])
    std: list[float] = field(default_factory=lambda: [0.22803, 0.22145, 0.216989])
    shared_augmentation: bool = False  # one crop/flip/colour draw per tuple instead of per clip
    num_workers: int = 2
    train_fraction: float = 1.0  # labelled fraction, drawn per class (evaluation protocols)


@dataclass
class ModelConfig:
    arch: str = "r3d"  # c3d | r3d | r21d | r3d_18 | mc3_18 | r2plus1d_18
    width: float = 1.0  # channel multiplier; 1.0 is the published network
    sync_bn: bool = False
    init: str | None = None  # initialise the backbone from these weights (run dir, checkpoint, state_dict)
    init_allow_partial: bool = False
    freeze_backbone: bool = False  # train only the heads (adapt-teacher)


@dataclass
class SSLConfig:
    pretext: str = "vcp"  # vcp | none
    pretext_classes: int = 5
    contrastive: str = "memory_bank"  # memory_bank | in_batch | none
    nce_weight: float = 0.5  # lambda in CE + lambda * (NCE1 + NCE2)
    nce_negatives: int = 1024
    nce_temperature: float = 0.07
    nce_momentum: float = 0.5
    proj_dim: int = 128


@dataclass
class TeacherConfig:
    path: str | None = None  # run directory, vidkd checkpoint, PCL or torchvision state_dict
    arch: str | None = None  # needed for a foreign checkpoint; read from a vidkd run otherwise
    width: float | None = None
    temperature: float = 4.0
    alpha: float = 1.0  # weight of the logit KD term
    relational_weight: float = 0.0  # KD of in-batch similarity structure (off by default)
    relational_temperature: float = 0.1
    feature_weight: float = 0.0  # feature KD through a learned projection (off by default)
    allow_partial: bool = False  # accept a checkpoint that loads only partly


@dataclass
class TrainConfig:
    epochs: int = 100
    batch_size: int = 16  # per process
    optimizer: str = "sgd"  # sgd (PCL) | adamw (learns faster in short CPU runs)
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 5e-4
    scheduler: str = "plateau"  # plateau | cosine | none
    warmup_epochs: int = 0
    plateau_patience: int = 8
    plateau_factor: float = 0.1
    grad_clip: float = 0.0  # max grad norm; 0 = off
    amp: str = "none"  # none | bf16 | fp16 (CUDA only)
    compile: bool = False
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda
    steps_per_epoch: int = 0  # 0 = a full pass over the data
    knn_k: int = 20
    knn_every: int = 1  # epochs between kNN probes; 0 = off
    val_tuples_per_video: int = 1  # fixed validation tuples per test video (more = a less noisy curve)
    checkpoint_every: int = 1


@dataclass
class Config:
    name: str = "pcl"
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    ssl: SSLConfig = field(default_factory=SSLConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    teacher: TeacherConfig = field(default_factory=TeacherConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def field_types(cls: type) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def coerce_value(value: Any, annotation: Any, key: str) -> Any:
    """Check and convert one YAML value to the field's declared type."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return coerce_value(value, inner[0], key)
    if origin is list:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"config key '{key}' needs a list, got {value!r}")
        return [coerce_value(v, args[0], key) for v in value]
    if annotation is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"config key '{key}' needs true or false, got {value!r}")
    if annotation is int:
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                return int(value)
            raise ConfigError(f"config key '{key}' needs an integer, got {value!r}")
        return value
    if annotation is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"config key '{key}' needs a number, got {value!r}")
        return float(value)
    if annotation is str:
        if not isinstance(value, (str, int, float)) or isinstance(value, bool):
            raise ConfigError(f"config key '{key}' needs a string, got {value!r}")
        return str(value)
    return value


def unknown_key_error(key: str, known: list[str]) -> ConfigError:
    close = difflib.get_close_matches(key, known, n=1)
    hint = f"; did you mean '{close[0]}'?" if close else f"; known keys: {', '.join(sorted(known))}"
    return ConfigError(f"unknown config key '{key}'{hint}")


def _all_keys() -> list[str]:
    keys = []
    for section, cls in field_types(Config).items():
        if dataclasses.is_dataclass(cls):
            keys += [f"{section}.{k}" for k in field_types(cls)]
        else:
            keys.append(section)
    return keys


def _build(cls: type, values: dict[str, Any], prefix: str) -> Any:
    if not isinstance(values, dict):
        raise ConfigError(f"config section '{prefix.rstrip('.') or 'top'}' must be a mapping")
    types = field_types(cls)
    obj = cls()
    for key, value in values.items():
        full = f"{prefix}{key}"
        if key not in types:
            raise unknown_key_error(full, _all_keys())
        annotation = types[key]
        if dataclasses.is_dataclass(annotation):
            setattr(obj, key, _build(annotation, value or {}, f"{full}."))
        else:
            setattr(obj, key, coerce_value(value, annotation, full))
    return obj


def _set_path(tree: dict[str, Any], dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    node = tree
    for part in parts[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(f"cannot set '{dotted}': '{part}' is not a section")
    node[parts[-1]] = value


def parse_overrides(overrides: list[str] | None) -> dict[str, Any]:
    """Turn ['train.lr=0.1', 'model.arch=c3d'] into a nested dict (values parsed as YAML)."""
    tree: dict[str, Any] = {}
    for item in overrides or []:
        if "=" not in item:
            raise ConfigError(f"--set expects key=value, got '{item}' (for example --set train.epochs=5)")
        key, raw = item.split("=", 1)
        key = key.strip()
        if key not in _all_keys() and key not in field_types(Config):
            raise unknown_key_error(key, _all_keys())
        _set_path(tree, key, yaml.safe_load(raw) if raw.strip() else None)
    return tree


def deep_merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def config_from_dict(values: dict[str, Any] | None) -> Config:
    cfg = _build(Config, values or {}, "")
    validate(cfg)
    return cfg


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> Config:
    """Read a YAML config (or start from defaults) and apply `key=value` overrides."""
    values: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config file not found: {path} (see configs/ for presets)")
        try:
            values = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"config file {path} is not valid YAML: {str(exc).splitlines()[0]}") from None
    return config_from_dict(deep_merge(values, parse_overrides(overrides)))


def save_config(cfg: Config, path: str | Path) -> None:
    from vidkd.engine.checkpoint import atomic_write_text

    atomic_write_text(Path(path), yaml.safe_dump(cfg.to_dict(), sort_keys=False))


def _one_of(key: str, value: Any, allowed: tuple[Any, ...]) -> None:
    if value not in allowed:
        raise ConfigError(f"config key '{key}' must be one of {', '.join(map(str, allowed))}; got {value!r}")


def validate(cfg: Config) -> None:
    _one_of("data.layout", cfg.data.layout, ("auto", "ucf101", "hmdb51", "folder"))
    _one_of("data.split", cfg.data.split, (1, 2, 3))
    _one_of("data.modality", cfg.data.modality, ("rgb", "residual"))
    _one_of("ssl.pretext", cfg.ssl.pretext, ("vcp", "none"))
    _one_of("ssl.contrastive", cfg.ssl.contrastive, ("memory_bank", "in_batch", "none"))
    _one_of("train.scheduler", cfg.train.scheduler, ("plateau", "cosine", "none"))
    _one_of("train.optimizer", cfg.train.optimizer, ("sgd", "adamw"))
    _one_of("train.amp", cfg.train.amp, ("none", "bf16", "fp16"))
    _one_of("train.device", cfg.train.device, ("auto", "cpu", "cuda"))
    if len(cfg.data.resize) != 2:
        raise ConfigError("config key 'data.resize' needs two numbers [height, width]")
    if cfg.data.crop > min(cfg.data.resize):
        raise ConfigError(f"data.crop {cfg.data.crop} is larger than data.resize {cfg.data.resize}")
    for key, value in (("data.clip_len", cfg.data.clip_len), ("data.tuple_len", cfg.data.tuple_len),
                       ("train.epochs", cfg.train.epochs), ("train.batch_size", cfg.train.batch_size)):
        if value < 1:
            raise ConfigError(f"config key '{key}' must be at least 1; got {value}")
    if cfg.train.val_tuples_per_video < 1:
        raise ConfigError("config key 'train.val_tuples_per_video' must be at least 1")
    if cfg.model.width <= 0:
        raise ConfigError(f"config key 'model.width' must be positive; got {cfg.model.width}")
    if not 0 < cfg.data.train_fraction <= 1:
        raise ConfigError(f"config key 'data.train_fraction' must be in (0, 1]; got {cfg.data.train_fraction}")
    if cfg.teacher.temperature <= 0:
        raise ConfigError(f"config key 'teacher.temperature' must be positive; got {cfg.teacher.temperature}")
