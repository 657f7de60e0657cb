"""Typed configs: YAML in, resolved YAML out, `--set a.b=c` overrides, one-line errors.

One mechanism for run configs (`Config`) and experiment configs (`ExperimentConfig`): every
key a user may write is a dataclass field; anything else is refused with a suggestion, so a
typo never silently falls back to a default. Only this module speaks of config keys.
"""

from __future__ import annotations

import dataclasses
import difflib
import logging
import math
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import yaml

from vidkd.errors import ConfigError
from vidkd.layout_specs import LAYOUTS
from vidkd.options import METHOD_NAMES, METHOD_SECTIONS, TeacherConfig
from vidkd.options.checks import one_of
from vidkd.options.eval import EvalConfig
from vidkd.protocol_specs import DEFAULT_EVALUATIONS, PROTOCOL_NAMES, SUPERVISED_PROTOCOL
from vidkd.utils.io import atomic_write_text

log = logging.getLogger("vidkd.config")


# Kinetics-400's per-channel mean and std (torchvision's video models, PCL): the default normalisation
KINETICS_MEAN = (0.43216, 0.394666, 0.37645)
KINETICS_STD = (0.22803, 0.22145, 0.216989)


@dataclass
class DataConfig:
    root: str = "data/synthetic"
    layout: str = "auto"  # auto (detected from the files) | a layout of vidkd.layout_specs
    split: int = 1  # official split 1, 2 or 3
    clip_len: int = 16
    interval: int = 8  # frames between consecutive clips of a tuple
    tuple_len: int = 3
    resize: list[int] = field(default_factory=lambda: [128, 171])  # (H, W)
    crop: int = 112
    modality: str = "rgb"  # rgb | residual (PCL: roll(x, 1, T) - x) | residual_rescaled ((that + 1) / 2, VCP/IIC)
    flip: bool = True
    color_jitter: float = 0.8  # probability of a colour jitter per clip (0 = off)
    jitter_order: str = "fixed"  # fixed (brightness, contrast, saturation, hue) | random (torchvision, PCL)
    grayscale: float = 0.2  # probability of grayscale per clip
    blur: float = 0.0  # probability of a Gaussian blur per clip, sigma in [0.1, 2] (PCL: 0.5)
    tuple_starts: str = "vidkd"  # vidkd: clip i at start + i*(clip_len + interval) | reference: + i*(tuple_len + interval)
    mean: list[float] = field(default_factory=lambda: list(KINETICS_MEAN))
    std: list[float] = field(default_factory=lambda: list(KINETICS_STD))
    shared_augmentation: bool = False  # one crop/flip/colour draw per tuple instead of per clip
    num_workers: int = 2
    preload: bool = False  # decode the videos once per process into memory (resized, uint8) when they fit
    # where training clips are augmented: cpu (in the DataLoader workers) | model (batched on the device
    # the model trains on; the workers only decode and crop) | auto (model on a GPU, else cpu)
    transform_device: str = "auto"
    resize_antialias: bool = False  # resize frames as PIL does (antialiased bilinear; the reference's JPEG frames)
    # colour jitter: "clip" (vidkd: one pivot per clip, hue rotated in YIQ, float values) | "pil" (the
    # reference's torchvision-on-PIL: each frame's own contrast pivot, hue shifted in HSV, uint8 after each step)
    jitter_style: str = "clip"
    min_video_frames: int = 0  # leave out shorter videos (the reference's lists: 64); 0 = what a tuple needs


@dataclass
class ModelConfig:
    arch: str = "r3d"  # c3d | r3d | r21d | r3d_18 | mc3_18 | r2plus1d_18
    width: float = 1.0  # channel multiplier; 1.0 is the published network
    sync_bn: bool = False
    # BatchNorm statistics of a tuple's clips: "joint" (vidkd: one backbone call over all B x tuple_len clips)
    # | "per_position" (the reference PCL/VCOP: one call per tuple position, statistics per position)
    batchnorm: str = "joint"
    weight_init: str = "kaiming"  # kaiming (fan_out, zero conv bias, as torchvision) | torch_default (the reference)
    init: str | None = None  # initialise the backbone from these weights (run dir, checkpoint, state_dict)
    init_allow_partial: bool = False
    freeze_backbone: bool = False  # train only the heads (adapt-teacher)


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
    min_lr: float = 0.0  # the plateau scheduler never goes below this (PCL: 1e-5)
    best_by: str = "accuracy"  # what picks checkpoints/best: accuracy | loss (PCL) | last (the final epoch)
    grad_clip: float = 0.0  # max grad norm; 0 = off
    amp: str = "none"  # none | bf16 | fp16 (CUDA only)
    compile: bool = False
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda
    memory_format: str = "auto"  # auto (channels-last on the CPU, where oneDNN's 3D convs run faster) | channels_last | contiguous
    steps_per_epoch: int = 0  # 0 = a full pass over the data
    knn_k: int = 20  # neighbours of the per-epoch kNN probe
    knn_every: int = 1  # epochs between kNN probes; 0 = off
    val_tuples_per_video: int = 1  # fixed validation tuples per test video (more = a less noisy curve)
    val_every: int = 1  # epochs between validations (and the last); above 1 needs best_by last, no plateau scheduler
    val_augmented: bool = False  # validation tuples get the training augmentation (drawn once per tuple), as PCL
    tf32: bool = True  # CUDA convolutions and matmuls in TF32 (torch's default for convolutions); false = true fp32
    drop_last: bool = True  # leave out a last incomplete batch (the reference keeps it)


def _to_dict(self: Any) -> dict[str, Any]:
    """The config as plain data; a method's section is written for a run of its method, or when set."""
    out = dataclasses.asdict(self)
    for section in METHOD_SECTIONS:
        if section.METHOD != self.method and getattr(self, section.SECTION) == section():
            out.pop(section.SECTION)
    return out


# A run config: the sections of the run, with one section per registered method (vidkd.options),
# in the order config.yaml writes them. Built from the registry, so this module names no method.
Config = dataclasses.make_dataclass("Config", [
    ("name", str, field(default=METHOD_NAMES[0])),
    ("method", str, field(default=METHOD_NAMES[0])),  # one of vidkd.options.METHOD_NAMES
    ("data", DataConfig, field(default_factory=DataConfig)),
    ("model", ModelConfig, field(default_factory=ModelConfig)),
    *((section.SECTION, section, field(default_factory=section)) for section in METHOD_SECTIONS),
    ("train", TrainConfig, field(default_factory=TrainConfig)),
    ("teacher", TeacherConfig, field(default_factory=TeacherConfig)),
    ("eval", EvalConfig, field(default_factory=EvalConfig)),
], namespace={"to_dict": _to_dict, "__module__": __name__,
              "__doc__": "A run config: one section per concern and one per registered method (vidkd.options)."})


@dataclass
class ExperimentConfig:
    """`vidkd experiment`: a grid of baselines and teacher -> student runs, then evaluations."""

    name: str = "experiment"
    base: dict[str, Any] = field(default_factory=dict)  # run config shared by every run
    widths: dict[str, float] = field(default_factory=dict)  # per-architecture model.width
    epochs_by_arch: dict[str, int] = field(default_factory=dict)  # per-architecture train.epochs (students too)
    lr_by_arch: dict[str, float] = field(default_factory=dict)  # per-architecture train.lr (students too)
    baselines: list[str] = field(default_factory=lambda: ["c3d", "r3d", "r21d"])
    teachers: list[str] = field(default_factory=lambda: ["c3d", "r3d", "r21d"])
    students: list[str] = field(default_factory=lambda: ["c3d", "r3d", "r21d"])
    seeds: list[int] = field(default_factory=lambda: [0])
    teacher: dict[str, Any] = field(default_factory=dict)  # KD settings: teacher.* keys of every student
    # a teacher-strength study: every student is taught by a teacher of each of these budgets (epochs;
    # a budget equal to the runs' epochs is the baseline itself); empty: the baseline of the same seed
    teacher_epochs: list[int] = field(default_factory=list)
    # KD arms beside the one `teacher` defines: name -> {teacher: {teacher.* keys over `teacher`},
    # teacher_epochs: [budgets it is run at] (default all), students: [architectures] (default all),
    # epochs: the students' own budget (default the runs' epochs), base: run config keys over `base`}
    arms: dict[str, Any] = field(default_factory=dict)
    teacher_runs: dict[str, Any] = field(default_factory=dict)  # run config keys over `base` for the teacher runs
    # synthetic-dataset seeds: the grid runs once per draw in DIR/draw_<k>/, on a dataset written there
    draws: list[int] = field(default_factory=list)
    synthetic: dict[str, Any] = field(default_factory=dict)  # the draws' dataset: arguments of `vidkd synth` (classes, ...)
    evaluations: list[str] = field(default_factory=lambda: list(DEFAULT_EVALUATIONS))
    student_evaluations: list[str] | None = None  # those of `evaluations` the students get (None: all)
    random_init: bool = True  # evaluate each architecture at random initialisation too, once per seed
    supervised: bool = False  # and fine-tune each random network on every training label (the supervised ceiling)
    supervised_epochs: int | None = None  # epochs of that fine-tuning (None: eval.finetune_epochs)
    supervised_seeds: list[int] | None = None  # the seeds that get a supervised reference (None: every seed)
    eval: EvalConfig = field(default_factory=EvalConfig)  # every run's eval section

    def run_values(self) -> dict[str, Any]:
        """The config values every run shares: `base` with this experiment's eval section."""
        return deep_merge(self.base, {"eval": dataclasses.asdict(self.eval)})


# keys of earlier versions that nothing reads any more: dropped from old config.yaml files
RETIRED_KEYS = {"data.train_fraction", "train.checkpoint_every", "ssl.pretext_classes"}


def field_types(cls: type) -> dict[str, Any]:
    """The keys of a config dataclass and their types (for `Config`, the registered sections too)."""
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def coerce_value(value: Any, annotation: Any, key: str) -> Any:
    """Check and convert one YAML value to the field's declared type."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return coerce_value(value, inner[0], key)
    if value is None:
        raise ConfigError(f"config key '{key}' has no value (YAML reads an empty value, ~ or null as nothing); "
                          f"give it one, or leave the key out for its default")
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"config key '{key}' needs a mapping of key: value, got {value!r}")
        return value
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
        if isinstance(value, str):  # YAML 1.1 reads 1e-3 (no dot) as a string
            try:
                value = float(value.strip())
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"config key '{key}' needs a number, got {value!r}")
        return float(value)
    if annotation is str:
        if isinstance(value, bool):
            leaf = key.rsplit(".", 1)[-1]
            raise ConfigError(f"config key '{key}' needs a string, got {value!r}: YAML reads an unquoted "
                              f"yes/no/on/off/true/false as a boolean; quote the value ({leaf}: \"...\")")
        if not isinstance(value, (str, int, float)):
            raise ConfigError(f"config key '{key}' needs a string, got {value!r}")
        return str(value)
    return value


def unknown_key_error(key: str, known: list[str]) -> ConfigError:
    close = difflib.get_close_matches(key, known, n=1)
    hint = f"; did you mean '{close[0]}'?" if close else f"; known keys: {', '.join(sorted(known))}"
    return ConfigError(f"unknown config key '{key}'{hint}")


def all_keys(cls: type = None) -> list[str]:
    """Every dotted key of a config dataclass (sections expanded one level)."""
    keys = []
    for section, annotation in field_types(cls or Config).items():
        if dataclasses.is_dataclass(annotation):
            keys += [f"{section}.{k}" for k in field_types(annotation)]
        else:
            keys.append(section)
    return keys


def _example_key(cls: type, section: str) -> str:
    names = list(field_types(cls))
    return f"{section}.{'epochs' if 'epochs' in names else names[0]}"


def section_names(cls: type) -> list[str]:
    """The keys of a config dataclass that are sections (mappings of their own keys)."""
    return [name for name, hint in field_types(cls).items() if dataclasses.is_dataclass(hint)]


def build_section(cls: type, values: Any, prefix: str = "", root: type | None = None) -> Any:
    """A dataclass from a mapping: types checked, unknown keys refused with a suggestion."""
    if not isinstance(values, dict):
        section = prefix.rstrip(".") or "top"
        raise ConfigError(f"config section '{section}' must be a mapping of key: value, got {values!r}; "
                          f"give its keys (for example {_example_key(cls, section)}=...) or leave it out")
    hints = field_types(cls)
    obj = cls()
    for key, value in values.items():
        full = f"{prefix}{key}"
        if full in RETIRED_KEYS:
            log.warning("config key '%s' is no longer used (ignored)", full)
            continue
        if key not in hints:
            raise unknown_key_error(full, all_keys(root or cls))
        annotation = hints[key]
        if dataclasses.is_dataclass(annotation):
            setattr(obj, key, build_section(annotation, {} if value is None else value, f"{full}.", root or cls))
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


def split_override(item: str) -> tuple[str, Any]:
    """'train.lr=0.1' -> ('train.lr', 0.1); the value is read as YAML."""
    if "=" not in item:
        raise ConfigError(f"--set expects key=value, got '{item}' (for example --set train.epochs=5)")
    key, raw = item.split("=", 1)
    try:
        value = load_yaml(raw) if raw.strip() else None
    except DuplicateKeyError as exc:
        raise ConfigError(f"--set {key.strip()}: {exc}") from None
    except yaml.YAMLError:
        value = raw
    return key.strip(), value


def parse_overrides(overrides: list[str] | None, cls: type | None = None) -> dict[str, Any]:
    """Turn ['train.lr=0.1', 'model.arch=c3d'] into a nested dict (values parsed as YAML)."""
    known = all_keys(cls or Config)
    tree: dict[str, Any] = {}
    for item in overrides or []:
        key, value = split_override(item)
        if key not in known:
            raise _section_error(key, cls or Config) or unknown_key_error(key, known)
        _set_path(tree, key, value)
    return tree


def _section_error(key: str, cls: type) -> ConfigError | None:
    """`--set train=5`: a section named where one of its keys is meant."""
    if key not in section_names(cls):
        return None
    example = _example_key(field_types(cls)[key], key)
    return ConfigError(f"'{key}' is a config section, not a value; set one of its keys, for example --set {example}=...")


def deep_merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def config_from_dict(values: dict[str, Any] | None) -> Config:
    cfg = build_section(Config, values or {}, "")
    validate(cfg)
    return cfg


PRESETS_DIR = Path(__file__).resolve().parent / "configs"


def list_presets() -> list[str]:
    return sorted(p.stem for p in PRESETS_DIR.glob("*.yaml"))


def resolve_config_path(path: str | Path) -> Path:
    """A config file by path, or a preset shipped with vidkd by name (`pcl_r3d_synthetic`)."""
    path = Path(path)
    if path.is_file():
        return path
    if path.parent == Path(".") and (PRESETS_DIR / f"{path.stem}.yaml").is_file():
        return PRESETS_DIR / f"{path.stem}.yaml"
    if path.exists():
        raise ConfigError(f"config {path} is not a file; give a YAML file or a preset name")
    raise ConfigError(f"config file not found: {path}; give a path or a preset name "
                      f"({', '.join(list_presets())})")


class DuplicateKeyError(yaml.YAMLError):
    """A mapping that names one key twice (YAML would silently keep the last value)."""


class StrictLoader(yaml.SafeLoader):
    """yaml.SafeLoader that refuses a mapping with a key given twice, naming the key and both lines."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # `<<: *base` may be overridden key by key
                continue
            key = self.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            try:
                if key in seen:
                    where = f"lines {seen[key]} and {line}" if seen[key] != line else f"line {line}"
                    raise DuplicateKeyError(f"key '{key}' appears twice ({where})")
                seen[key] = line
            except TypeError:  # an unhashable key: SafeLoader reports it
                continue
        return super().construct_mapping(node, deep=deep)


def load_yaml(text: str) -> Any:
    """yaml.safe_load, but a key given twice in one mapping is a DuplicateKeyError."""
    return yaml.load(text, Loader=StrictLoader)


def read_yaml_mapping(path: str | Path) -> dict[str, Any]:
    """A YAML file that must hold a mapping; anything else is a one-line ConfigError."""
    path = resolve_config_path(path)
    try:
        values = load_yaml(path.read_text())
    except DuplicateKeyError as exc:
        raise ConfigError(f"config file {path}: {exc}; YAML would keep only the last value, so remove or merge "
                          "one of them") from None
    except (yaml.YAMLError, UnicodeDecodeError, ValueError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ConfigError(f"config file {path} is not valid YAML: {first}") from None
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None
    if values is None:
        return {}
    if not isinstance(values, dict):
        raise ConfigError(f"config file {path} must hold a mapping of sections (data:, model:, train: ...), "
                          f"not a {type(values).__name__}")
    return values


# keys only one kind of config file has: they tell a run config from an experiment config
EXPERIMENT_ONLY_KEYS = sorted(set(field_types(ExperimentConfig)) - set(field_types(Config)))
RUN_ONLY_KEYS = sorted(set(field_types(Config)) - set(field_types(ExperimentConfig)))


def _keys_of_other_kind(values: dict[str, Any], keys: list[str]) -> str:
    found = [f"{k}:" for k in keys if k in values]
    return ", ".join(found[:4]) + (", ..." if len(found) > 4 else "")


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> Config:
    """Read a YAML config (or start from defaults) and apply `key=value` overrides."""
    values = read_yaml_mapping(path) if path is not None else {}
    found = _keys_of_other_kind(values, EXPERIMENT_ONLY_KEYS)
    if found:
        raise ConfigError(f"{path} is an experiment config (it has {found}), not a run config; run it with "
                          f"`vidkd experiment --config {path} --out DIR`")
    return config_from_dict(deep_merge(values, parse_overrides(overrides)))


def config_values(cfg: Config) -> dict[str, Any]:
    """Every value of the config, every method's section included: what two configs are compared by
    (`to_dict`, what config.yaml holds, leaves out another method's section at its defaults)."""
    return dataclasses.asdict(cfg)


def config_yaml(cfg: Config) -> str:
    return yaml.safe_dump(cfg.to_dict(), sort_keys=False)


def save_config(cfg: Config, path: str | Path) -> None:
    atomic_write_text(Path(path), config_yaml(cfg))


def config_differences(a: dict[str, Any], b: dict[str, Any], prefix: str = "") -> list[str]:
    """Dotted keys whose values differ between two config dicts."""
    keys = []
    for key in sorted(set(a) | set(b)):
        va, vb = a.get(key), b.get(key)
        if isinstance(va, dict) and isinstance(vb, dict):
            keys += config_differences(va, vb, f"{prefix}{key}.")
        elif va != vb:
            keys.append(f"{prefix}{key}")
    return keys


def experiment_from_dict(values: dict[str, Any]) -> ExperimentConfig:
    exp = build_section(ExperimentConfig, values, "")
    for protocol in [*exp.evaluations, *(exp.student_evaluations or [])]:
        if protocol not in PROTOCOL_NAMES:
            raise ConfigError(f"unknown evaluation '{protocol}'; choose from {', '.join(PROTOCOL_NAMES)}")
    stray = [seed for seed in exp.supervised_seeds or [] if seed not in exp.seeds]
    if stray or exp.supervised_seeds == []:
        raise ConfigError(f"supervised_seeds must be some of the experiment's seeds {exp.seeds}; got {exp.supervised_seeds}")
    missing = [t for t in exp.teachers if t not in exp.baselines]
    if missing:
        raise ConfigError(f"teachers {missing} have no baseline run; add them to 'baselines'")
    if not exp.seeds:
        raise ConfigError("experiment key 'seeds' needs at least one seed")
    for arch, epochs in exp.epochs_by_arch.items():
        if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
            raise ConfigError(f"experiment key 'epochs_by_arch.{arch}' must be a whole number of epochs >= 1; got {epochs!r}")
    for key in ("lr_by_arch", "widths"):
        what = "a learning rate" if key == "lr_by_arch" else "a channel multiplier"
        for arch, value in getattr(exp, key).items():
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not (math.isfinite(value) and value > 0):
                raise ConfigError(f"experiment key '{key}.{arch}' must be {what} > 0; got {value!r}")
    negative = [seed for seed in exp.seeds if seed < 0]
    if negative:
        raise ConfigError(f"experiment key 'seeds' must hold seeds >= 0; got {negative[0]}")
    if exp.supervised_epochs is not None and exp.supervised_epochs < 1:
        raise ConfigError(f"experiment key 'supervised_epochs' must be at least 1; got {exp.supervised_epochs}")
    for section in ("base", "teacher"):
        if not isinstance(getattr(exp, section), dict):
            raise ConfigError(f"experiment key '{section}' must be a mapping")
    base = config_from_dict(exp.run_values())  # every run config key is checked now, not when its run starts
    for arch, epochs in exp.epochs_by_arch.items():
        check_warmup(base.train.warmup_epochs, epochs, f"epochs_by_arch.{arch}")
    if exp.supervised and not exp.random_init:
        raise ConfigError("experiment key 'supervised: true' fine-tunes the random-init networks; set random_init: true")
    if exp.supervised and exp.eval.labelled_fraction(SUPERVISED_PROTOCOL) >= 1 and SUPERVISED_PROTOCOL in exp.evaluations:
        raise ConfigError("with fine-tuning on every label, the supervised reference would be the random network's "
                          "own fine-tuning; set eval.finetune_fraction below 1 (e.g. 0.1) or supervised: false")
    if "path" in exp.teacher:
        raise ConfigError("experiment key 'teacher.path' is set by the grid (each student's baseline run); leave it out")
    parse_overrides([f"teacher.{k}={v}" for k, v in exp.teacher.items()])
    if exp.teachers and exp.students:  # the students' teacher section, checked now with a stand-in path
        config_from_dict(deep_merge(exp.run_values(), {"teacher": {**exp.teacher, "path": "baseline"}}))
    _validate_study(exp)
    return exp


ARM_KEYS = ("teacher", "teacher_epochs", "students", "epochs", "base")  # what an entry of an experiment's `arms` may set


def _validate_study(exp: ExperimentConfig) -> None:
    """The teacher-strength keys: budgets, arms and draws."""
    for key in ("teacher_epochs", "draws"):
        values = getattr(exp, key)
        if len(set(values)) != len(values) or any(v < (1 if key == "teacher_epochs" else 0) for v in values):
            raise ConfigError(f"experiment key '{key}' must hold distinct whole numbers >= "
                              f"{1 if key == 'teacher_epochs' else 0}; got {values}")
    if exp.teacher_runs:
        if not exp.teacher_epochs:
            raise ConfigError("experiment key 'teacher_runs' sets the teacher runs of `teacher_epochs`; set teacher_epochs")
        config_from_dict(deep_merge(exp.run_values(), exp.teacher_runs))
    for name, arm in exp.arms.items():
        if not re.fullmatch(r"[a-z][a-z0-9]*", str(name)):
            raise ConfigError(f"experiment key 'arms.{name}': an arm's name is lower-case letters and digits "
                              "(it becomes part of run names)")
        if not isinstance(arm, dict) or not set(arm) <= set(ARM_KEYS):
            raise ConfigError(f"experiment key 'arms.{name}' must be a mapping of {', '.join(ARM_KEYS)}; got {arm!r}")
        teacher = arm.get("teacher", {})
        if not isinstance(teacher, dict) or "path" in teacher:
            raise ConfigError(f"experiment key 'arms.{name}.teacher' must be a mapping of teacher.* keys (not path)")
        base = arm.get("base", {})
        if not isinstance(base, dict):
            raise ConfigError(f"experiment key 'arms.{name}.base' must be a mapping of run config sections")
        config_from_dict(deep_merge(deep_merge(exp.run_values(), base),
                                    {"teacher": {**exp.teacher, **teacher, "path": "baseline"}}))
        budgets = arm.get("teacher_epochs", exp.teacher_epochs)
        if not isinstance(budgets, list) or not set(budgets) <= set(exp.teacher_epochs or budgets):
            raise ConfigError(f"experiment key 'arms.{name}.teacher_epochs' must be some of teacher_epochs "
                              f"{exp.teacher_epochs}; got {budgets!r}")
        epochs = arm.get("epochs", 1)
        if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
            raise ConfigError(f"experiment key 'arms.{name}.epochs' must be a whole number of epochs >= 1; got {epochs!r}")
        students = arm.get("students", exp.students)
        if not isinstance(students, list) or not set(students) <= set(exp.students):
            raise ConfigError(f"experiment key 'arms.{name}.students' must be some of students {exp.students}; "
                              f"got {students!r}")


def check_arch_names(exp: ExperimentConfig, known: Sequence[str]) -> None:
    """Per-architecture keys of an experiment (widths.r3d) must name architectures in `known` (the
    model registry's, passed in by the caller: the config knows no model)."""
    for key in ("widths", "epochs_by_arch", "lr_by_arch"):
        for arch in getattr(exp, key):
            if arch in known:
                continue
            folded = {name.lower(): name for name in known}
            close = ([folded[str(arch).lower()]] if str(arch).lower() in folded
                     else difflib.get_close_matches(str(arch).lower(), list(known), n=1))
            hint = f"did you mean '{close[0]}'?" if close else f"known architectures: {', '.join(known)}"
            raise ConfigError(f"experiment key '{key}.{arch}' names no known architecture; {hint}")


def load_experiment(path: str | Path, overrides: list[str] | None = None) -> ExperimentConfig:
    """Read an experiment config; an override names an experiment key (seeds=[0,1]) or a run
    config key that every run gets (train.epochs=5)."""
    values = read_yaml_mapping(path)
    found = _keys_of_other_kind(values, RUN_ONLY_KEYS)
    if found:
        raise ConfigError(f"{path} is a run config (it has {found}), not an experiment config; train it with "
                          f"`vidkd pretrain --config {path} --out DIR`, or put its sections under base: of an "
                          "experiment config")
    types = field_types(ExperimentConfig)
    experiment_keys = set(types)
    # keys whose values are free mappings (base, widths, ...): any dotted key under them is theirs to check
    mapping_keys = {name for name, hint in types.items() if typing.get_origin(hint) is dict}
    for item in overrides or []:
        key, value = split_override(item)
        head = key.split(".")[0]
        if head in experiment_keys:
            if key not in all_keys(ExperimentConfig) and "." in key and head not in mapping_keys:
                raise unknown_key_error(key, all_keys(ExperimentConfig))
            _set_path(values, key, value)
        else:
            if key not in all_keys(Config):
                raise _section_error(key, Config) or unknown_key_error(key, all_keys(Config) + all_keys(ExperimentConfig))
            _set_path(values, f"base.{key}", value)
    return experiment_from_dict(values)


_warned: set[str] = set()


def _warn_once(message: str) -> None:
    """A config warning, logged once per process (configs are validated again on resume and in grids)."""
    if message not in _warned:
        _warned.add(message)
        log.warning(message)


def check_warmup(warmup: int, epochs: int, epochs_key: str) -> None:
    """Warm-up longer than the run is refused; as long as the run, it is warned about (a smoke run of
    one epoch of a config with one warm-up epoch is meant)."""
    if warmup > epochs:
        raise ConfigError(f"train.warmup_epochs={warmup} is longer than the run ({epochs_key}={epochs}); "
                          f"set train.warmup_epochs below {epochs} (0 = no warm-up)")
    if 0 < warmup == epochs:
        _warn_once(f"train.warmup_epochs={warmup} is the whole run ({epochs_key}={epochs}): the learning rate "
                   f"only reaches train.lr at the last step; for a real run, set train.warmup_epochs below {epochs_key}")


def validate(cfg: Config) -> None:
    """Refuse, with one line naming the key, every value training could not use (in this order)."""
    _validate_choices(cfg)
    _validate_ranges(cfg)
    _validate_rates(cfg)
    for name in field_types(Config):  # each owned section checks its own values (`check(cfg)`)
        check = getattr(getattr(cfg, name), "check", None)
        if check is not None:
            check(cfg)
    _check_finite(cfg)  # last: the checks above name their own range for NaN where they have one


def _validate_choices(cfg: Config) -> None:
    one_of("data.layout", cfg.data.layout, ("auto", *LAYOUTS))
    one_of("data.split", cfg.data.split, (1, 2, 3))
    one_of("data.modality", cfg.data.modality, ("rgb", "residual", "residual_rescaled"))
    one_of("data.jitter_order", cfg.data.jitter_order, ("fixed", "random"))
    one_of("data.transform_device", cfg.data.transform_device, ("auto", "cpu", "model"))
    one_of("data.jitter_style", cfg.data.jitter_style, ("clip", "pil"))
    one_of("model.batchnorm", cfg.model.batchnorm, ("joint", "per_position"))
    one_of("model.weight_init", cfg.model.weight_init, ("kaiming", "torch_default"))
    one_of("data.tuple_starts", cfg.data.tuple_starts, ("vidkd", "reference"))
    one_of("train.best_by", cfg.train.best_by, ("accuracy", "loss", "last"))
    if cfg.train.val_every < 1:
        raise ConfigError(f"train.val_every must be at least 1 (epochs between validations); got {cfg.train.val_every}")
    if cfg.train.val_every > 1 and (cfg.train.best_by != "last" or cfg.train.scheduler == "plateau"):
        raise ConfigError("train.val_every above 1 leaves epochs without a validation, which best_by "
                          f"{cfg.train.best_by!r} and the plateau scheduler need every epoch; set train.best_by=last "
                          "and another scheduler (e.g. cosine), or val_every=1")
    one_of("method", cfg.method, METHOD_NAMES)
    one_of("train.scheduler", cfg.train.scheduler, ("plateau", "cosine", "none"))
    one_of("train.optimizer", cfg.train.optimizer, ("sgd", "adamw"))
    one_of("train.amp", cfg.train.amp, ("none", "bf16", "fp16"))
    one_of("train.device", cfg.train.device, ("auto", "cpu", "cuda"))
    one_of("train.memory_format", cfg.train.memory_format, ("auto", "channels_last", "contiguous"))


def _validate_ranges(cfg: Config) -> None:
    """Sizes, counts, probabilities and factors of the data, model and schedule."""
    if len(cfg.data.resize) != 2:
        raise ConfigError("config key 'data.resize' needs two numbers [height, width]")
    if min(cfg.data.resize) < 1:
        raise ConfigError(f"config key 'data.resize' needs two sizes of at least 1 pixel; got {cfg.data.resize}")
    if cfg.data.crop < 1:
        raise ConfigError(f"config key 'data.crop' must be a size of at least 1 pixel; got {cfg.data.crop}")
    if cfg.data.crop > min(cfg.data.resize):
        raise ConfigError(f"data.crop {cfg.data.crop} is larger than data.resize {cfg.data.resize}")
    for key, value in (("data.clip_len", cfg.data.clip_len), ("data.tuple_len", cfg.data.tuple_len),
                       ("train.epochs", cfg.train.epochs), ("train.batch_size", cfg.train.batch_size),
                       ("train.val_tuples_per_video", cfg.train.val_tuples_per_video)):
        if value < 1:
            raise ConfigError(f"config key '{key}' must be at least 1; got {value}")
    if not (math.isfinite(cfg.model.width) and cfg.model.width > 0):
        raise ConfigError(f"config key 'model.width' must be a positive number (1.0 is the published network); "
                          f"got {cfg.model.width}")
    for key, value in (("data.interval", cfg.data.interval), ("train.seed", cfg.train.seed),
                       ("train.plateau_patience", cfg.train.plateau_patience),
                       ("data.min_video_frames", cfg.data.min_video_frames)):
        if value < 0:
            raise ConfigError(f"config key '{key}' must not be negative; got {value}")
    for key in ("mean", "std"):
        values = getattr(cfg.data, key)
        if len(values) != 3:
            raise ConfigError(f"config key 'data.{key}' needs 3 numbers, one per RGB channel (vidkd feeds 3-channel "
                              f"clips, grayscale ones too); got {values}")
    if any(not v > 0 for v in cfg.data.std):
        raise ConfigError(f"config key 'data.std' divides the pixels: every value must be positive; got {cfg.data.std}")
    for key, value in (("data.color_jitter", cfg.data.color_jitter), ("data.grayscale", cfg.data.grayscale),
                       ("data.blur", cfg.data.blur)):
        if not 0 <= value <= 1:
            raise ConfigError(f"config key '{key}' is a probability: it must be in [0, 1]; got {value}")
    if not 0 < cfg.train.plateau_factor < 1:
        raise ConfigError(f"config key 'train.plateau_factor' multiplies the learning rate on a plateau: it must be "
                          f"in (0, 1); got {cfg.train.plateau_factor}")
    check_warmup(cfg.train.warmup_epochs, cfg.train.epochs, "train.epochs")


def _validate_rates(cfg: Config) -> None:
    if not math.isfinite(cfg.train.lr) or cfg.train.lr <= 0:
        raise ConfigError(f"config key 'train.lr' must be a positive number; got {cfg.train.lr}")
    for key, value in (("data.blur", cfg.data.blur), ("train.min_lr", cfg.train.min_lr),
                       ("train.weight_decay", cfg.train.weight_decay), ("train.momentum", cfg.train.momentum),
                       ("train.grad_clip", cfg.train.grad_clip), ("train.warmup_epochs", cfg.train.warmup_epochs),
                       ("train.steps_per_epoch", cfg.train.steps_per_epoch), ("train.knn_every", cfg.train.knn_every),
                       ("data.num_workers", cfg.data.num_workers)):
        if not math.isfinite(value):
            raise ConfigError(f"config key '{key}' needs a finite number, got {value}")
        if value < 0:
            raise ConfigError(f"config key '{key}' must not be negative; got {value}")
    if cfg.train.knn_k < 1:
        raise ConfigError(f"config key 'train.knn_k' must be at least 1; got {cfg.train.knn_k}")


def _check_finite(cfg: Any, prefix: str = "") -> None:
    """NaN or infinity in any number of the config is refused, naming the key."""
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        if dataclasses.is_dataclass(value):
            _check_finite(value, f"{prefix}{f.name}.")
            continue
        for item in value if isinstance(value, list) else [value]:
            if isinstance(item, float) and not math.isfinite(item):
                raise ConfigError(f"config key '{prefix}{f.name}' needs a finite number, got {value!r}")
