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
import time
from pathlib import Path
from typing import Sequence

import yaml

from vidkd import runs
from vidkd.apps.pretrain import moved_teacher, pretrain, read_run_config, resumable, resume, writing
from vidkd.config import (Config, ExperimentConfig, check_arch_names, config_differences, config_from_dict,
                          config_values, deep_merge)
from vidkd.config import list_presets
from vidkd.config import load_config as read_config
from vidkd.config import load_experiment as read_experiment
from vidkd.data.datasets import load_split
from vidkd.distill.method import check_map_stages
from vidkd.errors import ConfigError, VidkdError
from vidkd.eval.protocols import EvaluationChoices, changed_settings, evaluate
from vidkd.models import build_backbone, list_backbones
from vidkd.models.flops import count_flops
from vidkd.options import SECTION_OF
from vidkd.plan import Plan, PlanEntry
from vidkd.protocol_specs import recipe_of
from vidkd.result_record import RecordError, ResultRecord
from vidkd.synthetic import SyntheticSpec, is_synthetic_dataset, write_synthetic_dataset
from vidkd.utils import dist as dist_utils
from vidkd.utils.io import atomic_write_json, atomic_write_text

log = logging.getLogger("vidkd.experiment")


def _arch_epochs(exp: ExperimentConfig, arch: str) -> int:
    return exp.epochs_by_arch.get(arch, config_from_dict(exp.run_values()).train.epochs)


def _arms(exp: ExperimentConfig) -> list[tuple[str | None, list[int | None], list[str]]]:
    """(name, teacher budgets, student architectures) of every KD arm; the unnamed first one is `teacher`."""
    budgets: list[int | None] = list(exp.teacher_epochs) or [None]
    arms = [(None, budgets, list(exp.students))]
    for name, arm in exp.arms.items():
        arms.append((name, arm.get("teacher_epochs", budgets), arm.get("students", exp.students)))
    return arms


def plan_runs(exp: ExperimentConfig) -> list[PlanEntry]:
    """Baselines first, then teachers of other budgets, then same-architecture students, then
    cross-architecture pairs (each pair by teacher budget and arm)."""
    planned: list[PlanEntry] = []
    for seed in exp.seeds:
        for arch in exp.baselines:
            planned.append(PlanEntry(runs.baseline_run_name(arch, seed), "baseline", arch, seed))
    for seed in exp.seeds:
        for arch in exp.teachers:
            for budget in exp.teacher_epochs:
                if budget != _arch_epochs(exp, arch):
                    planned.append(PlanEntry(runs.teacher_run_name(arch, budget, seed), "teacher", arch, seed,
                                              epochs=budget))
    pairs = [(t, s) for t in exp.teachers for s in exp.students]
    ordered = [p for p in pairs if p[0] == p[1]] + [p for p in pairs if p[0] != p[1]]
    for seed in exp.seeds:
        for teacher, student in ordered:
            for budget in list(exp.teacher_epochs) or [None]:
                own = budget is None or budget == _arch_epochs(exp, teacher)
                teacher_run = (runs.baseline_run_name(teacher, seed) if own
                               else runs.teacher_run_name(teacher, budget, seed))
                for arm, arm_budgets, arm_students in _arms(exp):
                    if budget in arm_budgets and student in arm_students:
                        planned.append(PlanEntry(
                            runs.student_run_name(teacher, student, seed, budget, arm), "student", student, seed,
                            teacher_arch=teacher, teacher_run=teacher_run, teacher_epochs=budget, arm=arm))
    return planned


def run_config(exp: ExperimentConfig, run: PlanEntry, out_dir: Path) -> Config:
    values = exp.run_values()
    if run.kind == "teacher":
        values = deep_merge(values, exp.teacher_runs)
    elif run.kind == "student" and run.arm:
        values = deep_merge(values, exp.arms[run.arm].get("base", {}))
    values = deep_merge(values, {"name": run.name, "model": {"arch": run.arch}, "train": {"seed": run.seed}})
    for by_arch, section, key in ((exp.widths, "model", "width"), (exp.epochs_by_arch, "train", "epochs"),
                                  (exp.lr_by_arch, "train", "lr")):
        if run.arch in by_arch:
            values = deep_merge(values, {section: {key: by_arch[run.arch]}})
    arm_epochs = exp.arms.get(run.arm, {}).get("epochs") if run.kind == "student" and run.arm else None
    if run.epochs is not None or arm_epochs is not None:
        values = deep_merge(values, {"train": {"epochs": run.epochs or arm_epochs}})
    if run.kind == "student":
        arm = exp.arms.get(run.arm, {}).get("teacher", {}) if run.arm else {}
        teacher = {**exp.teacher, **arm, "path": str(runs.experiment_run_dir(out_dir, run.teacher_run))}
        values = deep_merge(values, {"teacher": teacher})
    return config_from_dict(values)


@functools.lru_cache(maxsize=None)
def _forward_flops(arch: str, width: float, shape: tuple[int, ...]) -> int:
    return count_flops(build_backbone(arch, width=width), shape)


def _train_videos(cfg: Config) -> int:
    try:
        return len(load_split(cfg.data.root, "train", split=cfg.data.split, layout=cfg.data.layout).records)
    except VidkdError:  # the dataset may not exist yet on a dry run
        return 0


def estimate_cost(exp: ExperimentConfig, planned: list[PlanEntry], out_dir: Path) -> dict[str, dict[str, float]]:
    """Training TFLOPs per run: (3 passes x student + teacher forward) x clips x epochs."""
    costs: dict[str, dict[str, float]] = {}
    videos = None
    for run in planned:
        cfg = run_config(exp, run, out_dir)
        videos = _train_videos(cfg) if videos is None else videos
        shape = (1, 3, cfg.data.clip_len, cfg.data.crop, cfg.data.crop)
        per_clip = 3 * _forward_flops(cfg.model.arch, cfg.model.width, shape)
        if run.kind == "student":
            per_clip += _forward_flops(run.teacher_arch, exp.widths.get(run.teacher_arch, cfg.model.width), shape)
        clips = videos * cfg.data.tuple_len * cfg.train.epochs
        costs[run.name] = {"tflops": per_clip * clips / 1e12, "clips": clips}
    return costs


def _measured_speed(out_dir: Path, planned: list[PlanEntry]) -> dict[str, float]:
    """clips/s per architecture and kind from runs already finished, to turn FLOPs into time."""
    speeds: dict[str, float] = {}
    for run in planned:
        rates = [m["clips_per_second"] for m in runs.read_metrics(run.path(out_dir)) if m.get("clips_per_second")]
        if rates:
            speeds[f"{run.kind}:{run.arch}:{run.teacher_arch}"] = sum(rates) / len(rates)
    return speeds


def _write_plan(exp: ExperimentConfig, planned: list[PlanEntry], out_dir: Path) -> None:
    base = config_from_dict(exp.run_values())
    root = Path(base.data.root)
    if is_synthetic_dataset(root):
        dataset = "synthetic"
    else:
        dataset = base.data.layout if base.data.layout != "auto" else root.name
    plan = Plan(
        name=exp.name, dataset=dataset, dataset_root=base.data.root, layout=base.data.layout, split=base.data.split,
        epochs=base.train.epochs, fraction=exp.eval.fraction, finetune_fraction=exp.eval.labelled_fraction("finetune"),
        protocol=exp.eval.protocol, seeds=tuple(exp.seeds), evaluations=tuple(exp.evaluations),
        student_evaluations=tuple(evaluations_of(exp, "student")),
        runs=tuple(dataclasses.replace(r, run_dir=str(r.path(out_dir).relative_to(out_dir)), width=cfg.model.width,
                                       epochs=cfg.train.epochs, method=base.method)
                   for r in planned for cfg in [run_config(exp, r, out_dir)]),
    )
    atomic_write_json(runs.plan_path(out_dir), plan.to_json())
    atomic_write_text(out_dir / runs.EXPERIMENT_FILE, yaml.safe_dump(dataclasses.asdict(exp), sort_keys=False))


def training_recipe(cfg: Config) -> str:
    """'pcl-reference' when the method's options say every one follows the reference code
    (`follows_reference`, PCL's: docs/method.md), else '<method>-vidkd'; a reference recipe that differs
    from its preset in some setting is 'pcl-ref+N' (`recipe_differences`)."""
    follows = getattr(getattr(cfg, SECTION_OF[cfg.method]), "follows_reference", None)
    if follows is None or not follows(cfg):
        return f"{cfg.method}-vidkd"
    differences = recipe_differences(cfg)[1]
    return f"{cfg.method}-ref+{len(differences)}" if differences else f"{cfg.method}-reference"


# settings that say where and how fast a run works, or what it is taught by: not the recipe
_NOT_RECIPE = ("name", "data.root", "data.layout", "data.num_workers", "data.preload", "data.transform_device",
               "train.device", "train.knn_every", "train.knn_k", "train.compile", "train.memory_format", "eval.",
               "teacher.", "model.init", "model.sync_bn")


def recipe_differences(cfg: Config) -> tuple[str | None, list[str]]:
    """The reference preset of `cfg`'s method and architecture (pcl_r3d_ucf101, ...) and every setting
    in which `cfg` differs from it, as 'key value (reference value)'; (None, []) without a preset."""
    preset = f"{cfg.method}_{cfg.model.arch}_ucf101"
    if preset not in list_presets():
        return None, []
    reference, values = config_values(read_config(preset)), config_values(cfg)
    keys = [k for k in config_differences(reference, values) if not k.startswith(_NOT_RECIPE)]
    return preset, [f"{k} {_lookup(values, k)} (reference {_lookup(reference, k)})" for k in keys]


def format_plan(exp: ExperimentConfig, planned: list[PlanEntry], out_dir: Path) -> str:
    """The plan as a table: every run, its method, recipe, evaluation protocol, status and estimated cost."""
    costs = estimate_cost(exp, planned, out_dir)
    speeds = _measured_speed(out_dir, planned)
    lines = [f"experiment {exp.name}: {len(planned)} training runs, evaluations {', '.join(exp.evaluations) or 'none'}",
             f"{'run':32s} {'recipe':14s} {'protocol':8s} {'arch':6s} {'teacher':8s} {'status':14s} {'TFLOP':>9s} "
             f"{'est. time':>10s}"]
    total = 0.0
    for run in planned:
        cfg = run_config(exp, run, out_dir)
        status, epoch = runs.run_state(run.path(out_dir), cfg.train.epochs)
        shown = {"done": "done", "new": "to run", "partial": f"resume @{epoch + 1}"}[status]
        cost = costs[run.name]
        speed = speeds.get(f"{run.kind}:{run.arch}:{run.teacher_arch}")
        remaining = cost["clips"] * (1 - epoch / cfg.train.epochs) if status != "done" else 0
        eta = f"{remaining / speed / 60:.1f} min" if speed else "—"
        total += cost["tflops"] if status != "done" else 0
        lines.append(f"{run.name:32s} {training_recipe(cfg):14s} {cfg.eval.protocol:8s} {run.arch:6s} "
                     f"{run.teacher_arch or '-':8s} {shown:14s} {cost['tflops']:9.1f} {eta:>10s}")
    lines += _recipe_notes(exp, planned, out_dir)
    lines.append(f"remaining training compute: {total:.1f} TFLOP "
                 "(about 1 h per 100 TFLOP at a sustained 30 TFLOP/s GPU; CPU estimates come from finished runs)")
    return "\n".join(lines)


def _recipe_notes(exp: ExperimentConfig, planned: list[PlanEntry], out_dir: Path) -> list[str]:
    """One line per reference-recipe run group that differs from its preset, naming every difference."""
    by_difference: dict[tuple[str, tuple[str, ...]], list[str]] = {}
    for run in planned:
        cfg = run_config(exp, run, out_dir)
        preset, differences = recipe_differences(cfg)
        if preset and differences and training_recipe(cfg) != f"{cfg.method}-vidkd":
            by_difference.setdefault((preset, tuple(differences)), []).append(run.name)
    return [f"{', '.join(names)}: differ from the reference preset {preset} in {'; '.join(differences)}"
            for (preset, differences), names in by_difference.items()]


def _lookup(values: dict, dotted: str):
    for part in dotted.split("."):
        values = values[part]
    return values


def _train(exp: ExperimentConfig, run: PlanEntry, out_dir: Path, position: str) -> None:
    cfg = run_config(exp, run, out_dir)
    run_dir = run.path(out_dir)
    status, epoch = runs.run_state(run_dir, cfg.train.epochs)
    if status == "done":
        log.info("%s %s: done, skipping", position, run.name)
        return
    if status == "partial":
        existing, values = config_values(config_from_dict(read_run_config(run_dir))), config_values(cfg)
        differs = config_differences(existing, values)
        fixed = [k for k in differs if not resumable(k) and not (
            k == "teacher.path" and moved_teacher(_lookup(existing, k), _lookup(values, k)))]
        if fixed:  # (checked for every run by _refuse_changed_runs before anything was written)
            raise ConfigError(f"{run_dir} was started with a different config ({', '.join(fixed[:4])}); "
                              "remove that run directory or use a new experiment --out")
        log.info("%s %s: resuming after epoch %d", position, run.name, epoch)
        resume(run_dir, overrides=[f"{key}={json.dumps(_lookup(values, key))}" for key in differs])
        return
    log.info("%s %s: training (%s, %d epochs)", position, run.name,
             f"teacher {run.teacher_arch}" if run.teacher_arch else "from scratch", cfg.train.epochs)
    pretrain(cfg, run_dir)


def evaluations_of(exp: ExperimentConfig, kind: str) -> list[str]:
    """The evaluations a planned run of `kind` (baseline | student) gets: students only those of
    `evaluations` that `student_evaluations` names."""
    if kind == "student" and exp.student_evaluations is not None:
        return [p for p in exp.evaluations if p in exp.student_evaluations]
    return list(exp.evaluations)


def supervised_reference(cfg: Config, epochs: int | None = None) -> Config:
    """The ceiling a pretrained network is measured against: the random network fine-tuned on every
    training label, all layers at the full fine-tuning lr (nothing in it is worth protecting), once:
    with every label there is no subset to draw that repeats would average over."""
    return dataclasses.replace(cfg, eval=dataclasses.replace(
        cfg.eval, fraction=1.0, finetune_fraction=1.0, finetune_backbone_lr_scale=1.0,
        finetune_epochs=epochs or cfg.eval.finetune_epochs, finetune_repeats=1))


def _needs_evaluation(path: Path, cfg: Config, protocol: str) -> bool:
    """No result at `path` yet, an unreadable one, or one computed with other `eval.*` settings."""
    if not path.is_file():
        return True
    try:
        record = ResultRecord.from_json(json.loads(path.read_text()))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecordError):
        log.warning("cannot read the result %s; evaluating again", path)
        return True
    changed = changed_settings(record, cfg.eval, protocol)
    if changed:
        log.info("%s was computed with other settings (%s); evaluating again", path,
                 ", ".join(f"eval.{key}" for key in changed))
    return bool(changed)


def _evaluate(exp: ExperimentConfig, source: str, out: Path | None, cfg: Config,
              protocols: Sequence[str] | None = None) -> None:
    """Every missing or outdated result of `protocols` (default: the experiment's evaluations), with the
    experiment's eval settings (a finished run's config.yaml keeps the eval section it was trained with)."""
    eval_dir = out if out is not None else runs.eval_dir(Path(source))
    missing = [protocol for protocol in (protocols or exp.evaluations) if _needs_evaluation(runs.result_path(
        eval_dir, protocol, cfg.data.split, cfg.eval.labelled_fraction(protocol),
        recipe_of(cfg.eval.protocol, protocol)), cfg, protocol)]
    if not missing:
        return
    overrides = [f"eval.{key}={json.dumps(value)}" for key, value in dataclasses.asdict(cfg.eval).items()]
    if source.startswith("random:"):  # the untrained twin sees exactly the clips the runs see
        overrides += [f"model.width={cfg.model.width}", f"train.seed={cfg.train.seed}"]
        overrides += [f"data.{key}={json.dumps(value)}" for key, value in dataclasses.asdict(cfg.data).items()]
    evaluate(source, protocols=tuple(missing), overrides=overrides, out=out, progress=True,
             choices=EvaluationChoices(data_root=cfg.data.root, layout=cfg.data.layout, split=cfg.data.split))


def load_experiment(config_path: str | Path, overrides: list[str] | None = None) -> ExperimentConfig:
    """The experiment config, its per-architecture keys checked against the model registry."""
    exp = read_experiment(config_path, overrides)
    check_arch_names(exp, list_backbones())
    allowed = [field.name for field in dataclasses.fields(SyntheticSpec) if field.name != "seed"]  # the draw sets it
    unknown = [key for key in exp.synthetic if key not in allowed]
    if unknown:
        raise ConfigError(f"experiment key 'synthetic.{unknown[0]}' is no setting of the synthetic dataset; "
                          f"known: {', '.join(allowed)}")
    if exp.synthetic and not exp.draws:
        raise ConfigError("experiment key 'synthetic' describes the datasets of `draws`; set draws (e.g. draws: [0, 1])")
    return exp


def run_experiment(config_path: str | Path, out_dir: Path, overrides: list[str] | None = None) -> Path:
    """Train every planned run (skipping finished ones, resuming interrupted ones), then evaluate; with
    `draws`, the whole grid once per draw of the synthetic dataset, each in its own directory."""
    exp = load_experiment(config_path, overrides)
    out_dir = Path(out_dir)
    if not exp.draws:
        return _run_grid(exp, out_dir)
    with writing(out_dir, "experiment directory"):
        atomic_write_text(out_dir / runs.EXPERIMENT_FILE, yaml.safe_dump(dataclasses.asdict(exp), sort_keys=False))
        for draw in exp.draws:
            log.info("draw %d of the synthetic dataset (%d/%d)", draw, exp.draws.index(draw) + 1, len(exp.draws))
            start = time.perf_counter()
            _run_grid(draw_experiment(exp, out_dir, draw, write_data=True), runs.draw_dir(out_dir, draw))
            add_time(runs.timing_path(out_dir), {f"draw {draw}": time.perf_counter() - start})
    return out_dir


def draw_experiment(exp: ExperimentConfig, out_dir: Path, draw: int, write_data: bool = False) -> ExperimentConfig:
    """The one-draw experiment of `draw`: its runs train on the synthetic dataset of seed `draw`, kept in
    the draw's directory (written first when `write_data` and not there yet)."""
    root = runs.draw_data_dir(out_dir, draw)
    if write_data and not is_synthetic_dataset(root):
        log.info("writing the synthetic dataset of draw %d to %s", draw, root)
        write_synthetic_dataset(root, SyntheticSpec(**exp.synthetic, seed=draw))
    return dataclasses.replace(exp, draws=[], base=deep_merge(exp.base, {"data": {"root": str(root)}}))


def add_time(path: Path, seconds: dict[str, float]) -> dict[str, float]:
    """Add this invocation's seconds to those a timing file holds from earlier invocations of the same
    experiment (a re-run that skips finished work adds little), so that it describes the whole of it."""
    try:
        earlier = json.loads(path.read_text()) if path.is_file() else {}
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        earlier = {}  # unreadable: counted again from here
    earlier = earlier if isinstance(earlier, dict) else {}
    timing = {key: float(value) for key, value in earlier.items() if isinstance(value, (int, float))}
    for key, value in seconds.items():
        timing[key] = timing.get(key, 0.0) + value
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(path, timing)
    return timing


def _run_grid(exp: ExperimentConfig, out_dir: Path) -> Path:
    planned = plan_runs(exp)
    for run in planned:  # every run config and architecture is checked before any training starts
        cfg = run_config(exp, run, out_dir)
        build_backbone(cfg.model.arch, width=cfg.model.width)
        if run.teacher_arch:
            teacher = run_config(exp, dataclasses.replace(run, kind="baseline", arch=run.teacher_arch), out_dir)
            check_map_stages(cfg.teacher, {"student": (cfg.model.arch, cfg.model.width),
                                           "teacher": (teacher.model.arch, teacher.model.width)})
    with writing(out_dir, "experiment directory"):
        _refuse_changed_runs(exp, planned, out_dir)
        if dist_utils.is_main_process_env():
            _write_plan(exp, planned, out_dir)
        for i, run in enumerate(planned, 1):
            _train(exp, run, out_dir, f"[{i}/{len(planned)}]")
        _evaluate_all(exp, planned, out_dir)
    return out_dir


# settings a trained run may differ in from the plan: where files are and how fast they are read
# (data.root only when the old path is gone: a moved dataset), and evaluation (results keep theirs)
_REUSABLE_DIFFERENCES = ("name", "data.num_workers", "train.device")


def _changed_settings(existing: dict, planned: dict, partial: bool) -> list[str]:
    changed = []
    for key in config_differences(existing, planned):
        old, new = _lookup(existing, key), _lookup(planned, key)
        if key in _REUSABLE_DIFFERENCES or key.startswith("eval.") or (partial and resumable(key) and key != "data.root"):
            continue
        if key == "data.root" and not Path(str(old)).exists():
            continue  # the dataset moved
        if key == "teacher.path" and moved_teacher(old, new):
            continue  # the same teacher run of a moved experiment directory
        changed.append(f"{key}: {old!r} -> {new!r}")
    return changed


def _refuse_changed_runs(exp: ExperimentConfig, planned: list[PlanEntry], out_dir: Path) -> None:
    """A trained run of the experiment directory that the plan would train differently is never
    silently reused: the whole re-run is refused, with the differences, before anything is written."""
    conflicts = []
    for run in planned:
        run_dir = run.path(out_dir)
        if not runs.is_run_dir(run_dir) or not runs.has_trained(run_dir):
            continue
        cfg = run_config(exp, run, out_dir)
        existing = config_values(config_from_dict(read_run_config(run_dir)))
        partial = runs.run_state(run_dir, cfg.train.epochs)[0] != "done"
        changed = _changed_settings(existing, config_values(cfg), partial)
        if changed:
            conflicts.append(f"{run.name} ({', '.join(changed[:3])}{', …' if len(changed) > 3 else ''})")
    if conflicts:
        more = f" and {len(conflicts) - 3} more" if len(conflicts) > 3 else ""
        raise ConfigError(f"{out_dir} holds runs trained with other settings than this config asks for: "
                          f"{'; '.join(conflicts[:3])}{more}; use a new --out, or remove those run directories "
                          "to train them again")


def _evaluate_all(exp: ExperimentConfig, planned: list[PlanEntry], out_dir: Path) -> None:
    if dist_utils.is_main_process_env() and exp.evaluations:
        for run in planned:
            protocols = evaluations_of(exp, run.kind)
            if not protocols:
                continue
            log.info("evaluating %s (%s)", run.name, ", ".join(protocols))
            _evaluate(exp, str(run.path(out_dir)), None, run_config(exp, run, out_dir), protocols=protocols)
        if exp.random_init:
            for seed in exp.seeds:  # one untrained network per seed, so that comparisons pair by seed
                for arch in exp.baselines:
                    cfg = run_config(exp, PlanEntry(runs.random_init_dir(out_dir, arch).name, "baseline", arch, seed),
                                     out_dir)
                    results = runs.eval_dir(runs.random_init_dir(out_dir, arch, seed))
                    log.info("evaluating random-init %s (seed %d)", arch, seed)
                    _evaluate(exp, f"random:{arch}", results, cfg)
                    if exp.supervised and seed in (exp.supervised_seeds or exp.seeds):
                        log.info("supervised reference: random-init %s fine-tuned on every training label", arch)
                        _evaluate(exp, f"random:{arch}", results, supervised_reference(cfg, exp.supervised_epochs),
                                  protocols=("finetune",))


def plan_experiment(config_path: str | Path, out_dir: Path, overrides: list[str] | None = None) -> str:
    """The dry run: the plan as text, nothing trained or written."""
    exp = load_experiment(config_path, overrides)
    if exp.draws:
        first = draw_experiment(exp, Path(out_dir), exp.draws[0])
        plan = _plan_text(first, runs.draw_dir(Path(out_dir), exp.draws[0]), data_written_first=True)
        return (f"{plan}\nthe grid above runs once per draw of the synthetic dataset: draws {exp.draws} "
                f"({len(exp.draws)} x {len(plan_runs(first))} training runs), each in {Path(out_dir) / 'draw_<k>'}")
    return _plan_text(exp, Path(out_dir))


def _plan_text(exp: ExperimentConfig, out_dir: Path, data_written_first: bool = False) -> str:
    planned = plan_runs(exp)
    for run in planned:
        cfg = run_config(exp, run, Path(out_dir))
        build_backbone(cfg.model.arch, width=cfg.model.width)
    roots = sorted({run_config(exp, run, Path(out_dir)).data.root for run in planned})
    for root in roots:
        if not Path(root).is_dir() and not data_written_first:  # can be meant (the demo writes its dataset first), so a warning
            log.warning("data.root %s does not exist (yet): the estimates below are without its videos, and the "
                        "experiment itself will not start without it (set base.data.root)", root)
    return format_plan(exp, planned, Path(out_dir))
