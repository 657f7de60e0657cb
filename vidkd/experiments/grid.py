"""`vidkd experiment`: the paper's grid — baselines, same- and cross-architecture students, evaluations.

Every run is an ordinary run directory under `DIR/runs/`, so any of them can be evaluated or
used as a teacher on its own. Running the command again skips finished runs and resumes an
interrupted one from its last checkpoint.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from vidkd.config import Config, coerce_value, field_types, unknown_key_error, config_from_dict, deep_merge
from vidkd.engine import distributed as dist_utils
from vidkd.engine.checkpoint import atomic_write_json, atomic_write_text
from vidkd.errors import ConfigError, VidkdError

log = logging.getLogger("vidkd.experiment")

EVALUATIONS = ("retrieval", "knn", "linear", "finetune")


@dataclass
class EvalSettings:
    finetune_epochs: int = 10
    linear_epochs: int = 100
    fraction: float = 1.0
    random_init: bool = True  # evaluate each architecture at random initialisation too


@dataclass
class ExperimentConfig:
    name: str = "experiment"
    base: dict[str, Any] = field(default_factory=dict)  # run config shared by every run
    widths: dict[str, float] = field(default_factory=dict)  # per-architecture model.width
    baselines: list[str] = field(default_factory=lambda: ["c3d", "r3d", "r21d"])
    teachers: list[str] = field(default_factory=lambda: ["c3d", "r3d", "r21d"])
    students: list[str] = field(default_factory=lambda: ["c3d", "r3d", "r21d"])
    seeds: list[int] = field(default_factory=lambda: [0])
    teacher: dict[str, Any] = field(default_factory=dict)  # KD settings: teacher.* keys
    evaluations: list[str] = field(default_factory=lambda: ["retrieval", "finetune"])
    eval: EvalSettings = field(default_factory=EvalSettings)


@dataclass
class PlannedRun:
    name: str
    kind: str  # baseline | student
    arch: str
    seed: int
    teacher_arch: str | None = None
    teacher_run: str | None = None

    @property
    def run_dir(self) -> str:
        return f"runs/{self.name}"


def _parse_experiment(values: dict[str, Any]) -> ExperimentConfig:
    types = field_types(ExperimentConfig)
    exp = ExperimentConfig()
    for key, value in values.items():
        if key not in types:
            raise unknown_key_error(key, list(types))
        if key == "eval":
            eval_types = field_types(EvalSettings)
            settings = EvalSettings()
            for k, v in (value or {}).items():
                if k not in eval_types:
                    raise unknown_key_error(f"eval.{k}", [f"eval.{n}" for n in eval_types])
                setattr(settings, k, coerce_value(v, eval_types[k], f"eval.{k}"))
            exp.eval = settings
        elif key in ("base", "widths", "teacher"):
            if not isinstance(value or {}, dict):
                raise ConfigError(f"experiment key '{key}' must be a mapping")
            setattr(exp, key, value or {})
        else:
            setattr(exp, key, coerce_value(value, types[key], key))
    for protocol in exp.evaluations:
        if protocol not in EVALUATIONS:
            raise ConfigError(f"unknown evaluation '{protocol}'; choose from {', '.join(EVALUATIONS)}")
    missing = [t for t in exp.teachers if t not in exp.baselines]
    if missing:
        raise ConfigError(f"teachers {missing} have no baseline run; add them to 'baselines'")
    if not exp.seeds:
        raise ConfigError("experiment key 'seeds' needs at least one seed")
    return exp


def load_experiment(path: str | Path, overrides: list[str] | None = None) -> ExperimentConfig:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"experiment config not found: {path} (see configs/paper_ucf101.yaml)")
    values = yaml.safe_load(path.read_text()) or {}
    for item in overrides or []:
        if "=" not in item:
            raise ConfigError(f"--set expects key=value, got '{item}'")
        key, raw = item.split("=", 1)
        parts = key.strip().split(".")
        if parts[0] not in field_types(ExperimentConfig):  # a run config key (train.epochs=5): every run
            parts = ["base", *parts]
        node = values
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"cannot set '{key}': '{part}' is not a section")
        node[parts[-1]] = yaml.safe_load(raw)
    return _parse_experiment(values)


def plan_runs(exp: ExperimentConfig) -> list[PlannedRun]:
    """Baselines first, then same-architecture students, then cross-architecture pairs."""
    runs: list[PlannedRun] = []
    for seed in exp.seeds:
        for arch in exp.baselines:
            runs.append(PlannedRun(f"baseline_{arch}_s{seed}", "baseline", arch, seed))
    pairs = [(t, s) for t in exp.teachers for s in exp.students]
    ordered = [p for p in pairs if p[0] == p[1]] + [p for p in pairs if p[0] != p[1]]
    for seed in exp.seeds:
        for teacher, student in ordered:
            runs.append(PlannedRun(f"kd_{teacher}_to_{student}_s{seed}", "student", student, seed,
                                   teacher_arch=teacher, teacher_run=f"baseline_{teacher}_s{seed}"))
    return runs


def run_config(exp: ExperimentConfig, run: PlannedRun, out_dir: Path) -> Config:
    values = deep_merge(exp.base, {"name": run.name, "model": {"arch": run.arch}, "train": {"seed": run.seed}})
    if run.arch in exp.widths:
        values = deep_merge(values, {"model": {"width": exp.widths[run.arch]}})
    if run.kind == "student":
        teacher = {**exp.teacher, "path": str(out_dir / "runs" / run.teacher_run)}
        values = deep_merge(values, {"teacher": teacher})
    return config_from_dict(values)


def run_status(run_dir: Path, cfg: Config) -> tuple[str, int]:
    """('done' | 'partial' | 'new', last finished epoch)."""
    from vidkd.engine.trainer import read_metrics

    if not (run_dir / "config.yaml").is_file():
        return "new", 0
    epochs = [m["epoch"] for m in read_metrics(run_dir)]
    meta_path = run_dir / "checkpoints" / "last" / "meta.json"
    saved = json.loads(meta_path.read_text())["epoch"] if meta_path.is_file() else 0
    if saved >= cfg.train.epochs and cfg.train.epochs in epochs:
        return "done", saved
    return "partial", saved


@functools.lru_cache(maxsize=None)
def _forward_flops(arch: str, width: float, shape: tuple[int, ...]) -> int:
    from vidkd.models import build_backbone
    from vidkd.models.flops import count_flops

    return count_flops(build_backbone(arch, width=width), shape)


def _train_videos(cfg: Config) -> int:
    from vidkd.data.datasets import load_split

    try:
        return len(load_split(cfg.data.root, "train", split=cfg.data.split, layout=cfg.data.layout).records)
    except VidkdError:  # the dataset may not exist yet on a dry run
        return 0


def estimate_cost(exp: ExperimentConfig, runs: list[PlannedRun], out_dir: Path) -> dict[str, dict[str, float]]:
    """Training TFLOPs per run: (3 passes x student + teacher forward) x clips x epochs."""
    costs: dict[str, dict[str, float]] = {}
    videos = None
    for run in runs:
        cfg = run_config(exp, run, out_dir)
        videos = _train_videos(cfg) if videos is None else videos
        shape = (1, 3, cfg.data.clip_len, cfg.data.crop, cfg.data.crop)
        per_clip = 3 * _forward_flops(cfg.model.arch, cfg.model.width, shape)
        if run.kind == "student":
            per_clip += _forward_flops(run.teacher_arch, exp.widths.get(run.teacher_arch, cfg.model.width), shape)
        clips = videos * cfg.data.tuple_len * cfg.train.epochs
        costs[run.name] = {"tflops": per_clip * clips / 1e12, "clips": clips}
    return costs


def _measured_speed(out_dir: Path, runs: list[PlannedRun]) -> dict[str, float]:
    """clips/s per architecture and kind from runs already finished, to turn FLOPs into time."""
    from vidkd.engine.trainer import read_metrics

    speeds: dict[str, float] = {}
    for run in runs:
        rates = [m["clips_per_second"] for m in read_metrics(out_dir / run.run_dir) if m.get("clips_per_second")]
        if rates:
            speeds[f"{run.kind}:{run.arch}:{run.teacher_arch}"] = sum(rates) / len(rates)
    return speeds


def _write_plan(exp: ExperimentConfig, runs: list[PlannedRun], out_dir: Path) -> None:
    base = config_from_dict(exp.base)
    root = Path(base.data.root)
    if (root / "synthetic.json").is_file():
        dataset = "synthetic"
    else:
        dataset = base.data.layout if base.data.layout != "auto" else root.name
    plan = {
        "name": exp.name,
        "dataset": dataset,  # synthetic | ucf101 | hmdb51 | folder: decides whether published numbers compare
        "dataset_root": base.data.root,
        "layout": base.data.layout,
        "split": base.data.split,
        "epochs": base.train.epochs,
        "seeds": exp.seeds,
        "evaluations": exp.evaluations,
        "runs": [{**dataclasses.asdict(r), "run_dir": r.run_dir, "width": run_config(exp, r, out_dir).model.width}
                 for r in runs],
    }
    atomic_write_json(out_dir / "plan.json", plan)
    atomic_write_text(out_dir / "experiment.yaml", yaml.safe_dump(dataclasses.asdict(exp), sort_keys=False))


def print_plan(exp: ExperimentConfig, runs: list[PlannedRun], out_dir: Path) -> None:
    costs = estimate_cost(exp, runs, out_dir)
    speeds = _measured_speed(out_dir, runs)
    print(f"experiment {exp.name}: {len(runs)} training runs, evaluations {', '.join(exp.evaluations) or 'none'}")
    print(f"{'run':32s} {'kind':8s} {'arch':6s} {'teacher':8s} {'status':14s} {'TFLOP':>9s} {'est. time':>10s}")
    total = 0.0
    for run in runs:
        cfg = run_config(exp, run, out_dir)
        status, epoch = run_status(out_dir / run.run_dir, cfg)
        shown = {"done": "done", "new": "to run", "partial": f"resume @{epoch + 1}"}[status]
        cost = costs[run.name]
        speed = speeds.get(f"{run.kind}:{run.arch}:{run.teacher_arch}")
        remaining = cost["clips"] * (1 - epoch / cfg.train.epochs) if status != "done" else 0
        eta = f"{remaining / speed / 60:.1f} min" if speed else "—"
        total += cost["tflops"] if status != "done" else 0
        print(f"{run.name:32s} {run.kind:8s} {run.arch:6s} {run.teacher_arch or '-':8s} {shown:14s} "
              f"{cost['tflops']:9.1f} {eta:>10s}")
    print(f"remaining training compute: {total:.1f} TFLOP "
          "(about 1 h per 100 TFLOP at a sustained 30 TFLOP/s GPU; CPU estimates come from finished runs)")


def _train(exp: ExperimentConfig, run: PlannedRun, out_dir: Path, position: str) -> None:
    from vidkd.engine.trainer import pretrain, resume

    cfg = run_config(exp, run, out_dir)
    run_dir = out_dir / run.run_dir
    status, epoch = run_status(run_dir, cfg)
    if status == "done":
        log.info("%s %s: done, skipping", position, run.name)
        return
    if status == "partial":
        existing = config_from_dict(yaml.safe_load((run_dir / "config.yaml").read_text()))
        from vidkd.engine.trainer import config_differences

        differs = [k for k in config_differences(existing.to_dict(), cfg.to_dict()) if k != "train.epochs"]
        if differs:
            raise ConfigError(f"{run_dir} was started with a different config ({', '.join(differs[:4])}); "
                              "remove that run directory or use a new experiment --out")
        log.info("%s %s: resuming after epoch %d", position, run.name, epoch)
        resume(run_dir, overrides=[f"train.epochs={cfg.train.epochs}"])
        return
    log.info("%s %s: training (%s, %d epochs)", position, run.name,
             f"teacher {run.teacher_arch}" if run.teacher_arch else "from scratch", cfg.train.epochs)
    pretrain(cfg, run_dir)


def _evaluate(exp: ExperimentConfig, source: str, out: Path | None, base: Config) -> None:
    from vidkd.eval.run import evaluate, result_name

    eval_dir = out if out is not None else Path(source) / "eval"
    for protocol in exp.evaluations:
        if (eval_dir / result_name(protocol, base.data.split, exp.eval.fraction)).is_file():
            continue
        epochs = exp.eval.finetune_epochs if protocol == "finetune" else exp.eval.linear_epochs
        overrides = None
        if source.startswith("random:"):  # the untrained twin sees exactly the clips the runs see
            overrides = [f"model.width={base.model.width}", f"train.seed={base.train.seed}"]
            overrides += [f"data.{key}={json.dumps(value)}" for key, value in dataclasses.asdict(base.data).items()]
        evaluate(source, protocols=(protocol,), fraction=exp.eval.fraction, epochs=epochs, overrides=overrides,
                 out=out, data_root=base.data.root, layout=base.data.layout, split=base.data.split)


def run_experiment(config_path: str | Path, out_dir: Path, overrides: list[str] | None = None,
                   dry_run: bool = False) -> int:
    exp = load_experiment(config_path, overrides)
    out_dir = Path(out_dir)
    runs = plan_runs(exp)
    for run in runs:  # validate every run config before any training starts
        run_config(exp, run, out_dir)
    if dry_run:
        print_plan(exp, runs, out_dir)
        return 0
    if dist_utils.is_main_process_env():
        out_dir.mkdir(parents=True, exist_ok=True)
        _write_plan(exp, runs, out_dir)
    for i, run in enumerate(runs, 1):
        _train(exp, run, out_dir, f"[{i}/{len(runs)}]")
    if dist_utils.is_main_process_env() and exp.evaluations:
        for run in runs:
            cfg = run_config(exp, run, out_dir)
            log.info("evaluating %s (%s)", run.name, ", ".join(exp.evaluations))
            _evaluate(exp, str(out_dir / run.run_dir), None, cfg)
        if exp.eval.random_init:
            for arch in exp.baselines:
                cfg = run_config(exp, PlannedRun(f"random_{arch}", "baseline", arch, exp.seeds[0]), out_dir)
                log.info("evaluating random-init %s", arch)
                _evaluate(exp, f"random:{arch}", out_dir / "runs" / f"random_{arch}" / "eval", cfg)
    print(f"experiment finished: {out_dir}  (next: vidkd report {out_dir})")
    return 0
