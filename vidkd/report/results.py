"""Reading an experiment directory (or one run directory) into Run / Group / Experiment objects.

Every path comes from `vidkd.runs`. Nothing here is required to exist: a run still training, an
evaluation not run or a damaged file is recorded (in `Run.problems`, or as an absent value) and
the rest is read. No rendering happens here.

Evaluation results are read for the experiment's setting: the plan's `split` (default 1) and
labelled `fraction` (default 1.0). A single run directory uses its config's `data.split` and the
full labels, or, when a protocol has exactly one result, that one.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import yaml

from vidkd import runs
from vidkd.errors import VidkdError
from vidkd.methods import METHODS
from vidkd.plan import Plan, PlanEntry, PlanError
from vidkd.protocol_specs import PROTOCOL_NAMES, SUPERVISED_PROTOCOL, recipe_of
from vidkd.result_record import RecordError, ResultRecord
from vidkd.utils.checkpoint import WEIGHTS_FILE

# the key of `Run.series` for the validation metric a run's method names first (`Method.main_metric`:
# the pretext accuracy of PCL and VCOP, CVRL's instance discrimination); curves and KD claims read it
MAIN_METRIC = "main_metric"

ARCH_NAMES = {"c3d": "C3D", "r3d": "R3D", "r21d": "R(2+1)D", "r3d_18": "R3D-18", "mc3_18": "MC3-18",
              "r2plus1d_18": "R(2+1)D-18"}
ARCH_ORDER = ("c3d", "r3d", "r21d", "r3d_18", "mc3_18", "r2plus1d_18")


@dataclass
class Run:
    """One run directory of the plan, read defensively: anything may be absent."""

    name: str
    kind: str  # baseline | student | random
    arch: str
    teacher_arch: str | None
    teacher_run: str | None
    seed: int | None
    run_dir: Path
    planned_epochs: int | None
    config: dict[str, Any] = field(default_factory=dict)
    metrics: list[dict[str, Any]] = field(default_factory=list)
    evals: dict[str, dict[str, Any]] = field(default_factory=dict)  # protocol -> the result's "metrics"
    eval_seconds: dict[str, float] = field(default_factory=dict)  # protocol -> the result's "seconds"
    records: dict[str, ResultRecord] = field(default_factory=dict)  # protocol -> the whole result record
    problems: list[str] = field(default_factory=list)
    teacher_epochs: int | None = None  # a student's teacher budget in a teacher-strength study
    arm: str | None = None  # a student's named KD arm

    @property
    def width(self) -> float | None:
        value = self.config.get("model", {}).get("width")
        return float(value) if value is not None else None

    @property
    def input_shape(self) -> tuple[int, int, int, int] | None:
        data = self.config.get("data", {})
        if "clip_len" not in data or "crop" not in data:
            return None
        return (3, int(data["clip_len"]), int(data["crop"]), int(data["crop"]))

    @property
    def last_epoch(self) -> int | None:
        epochs = [int(m["epoch"]) for m in self.metrics if isinstance(m.get("epoch"), (int, float))]
        return max(epochs) if epochs else None

    @property
    def status(self) -> str:
        last = self.last_epoch
        if last is None or last == 0:
            return "not started"
        if self.planned_epochs and last < self.planned_epochs:
            return f"incomplete ({last}/{self.planned_epochs} epochs)"
        return "done"

    @property
    def main_metric(self) -> str:
        method = METHODS.get(str(self.config.get("method", "pcl")))
        return method.main_metric if method is not None else "val_pretext_acc"

    def series(self, key: str) -> tuple[list[int], list[float]]:
        """(epochs, values) of one metric (`MAIN_METRIC`: the run's method's), sorted by epoch;
        null/missing values skipped. A resumed run may log an epoch twice; the later line wins.
        """
        key = self.main_metric if key == MAIN_METRIC else key
        by_epoch: dict[int, float] = {}
        for entry in self.metrics:
            epoch, value = entry.get("epoch"), entry.get(key)
            if isinstance(epoch, (int, float)) and isinstance(value, (int, float)) and math.isfinite(value):
                by_epoch[int(epoch)] = float(value)
        epochs = sorted(by_epoch)
        return epochs, [by_epoch[e] for e in epochs]

    def weights_bytes(self) -> int | None:
        """Size of the weights file of the checkpoint the run is used through (best, else last)."""
        checkpoint = runs.trained_checkpoint(self.run_dir)
        if checkpoint is None or not (checkpoint / WEIGHTS_FILE).is_file():
            return None
        return (checkpoint / WEIGHTS_FILE).stat().st_size


@dataclass
class Group:
    """Runs that differ only by seed."""

    kind: str
    arch: str
    teacher_arch: str | None
    width: float | None
    runs: list[Run]
    teacher_epochs: int | None = None  # students: their teacher's budget; teachers: their own
    arm: str | None = None

    @property
    def label(self) -> str:
        name = ARCH_NAMES.get(self.arch, self.arch)
        if self.width is not None and self.width != 1.0:
            name += f" ×{self.width:g}"
        budget = f" {self.teacher_epochs} ep" if self.teacher_epochs is not None else ""
        if self.kind == "student":
            name += f" ← {ARCH_NAMES.get(self.teacher_arch or '', self.teacher_arch or '?')}{budget}"
            name += f" ({self.arm})" if self.arm else ""
        elif self.kind == "teacher":
            name += f" teacher{budget}"
        elif self.kind == "random":
            name += " (random init)"
        return name

    @property
    def slug(self) -> str:
        width = "" if self.width in (None, 1.0) else f"_w{self.width:g}"
        budget = "" if self.teacher_epochs is None else f"_e{self.teacher_epochs}"
        return f"{self.arch}{width}{budget}{'_' + self.arm if self.arm else ''}"

    @property
    def input_shape(self) -> tuple[int, int, int, int] | None:
        return next((r.input_shape for r in self.runs if r.input_shape), None)

    def seeds_with(self, key: str) -> list[Run]:
        return [r for r in self.runs if r.series(key)[0]]


@dataclass
class Experiment:
    directory: Path
    plan: Plan
    runs: list[Run]
    single_run: bool = False
    random_init: list[Group] = field(default_factory=list)  # evaluations of untrained networks

    @property
    def dataset(self) -> str:
        if self.plan.dataset:
            return self.plan.dataset
        root = next((r.config.get("data", {}).get("root") for r in self.runs if r.config), None)
        return Path(root).name if root else "unknown"

    @property
    def epochs(self) -> int | None:
        return self.plan.epochs or next((r.planned_epochs for r in self.runs if r.planned_epochs), None)

    @property
    def split(self) -> int:
        """The dataset split the evaluations use (the plan's `split`, 1 when absent)."""
        return self.plan.split

    @property
    def eval_protocol(self) -> str:
        """The evaluation recipe (the plan's `protocol`, vidkd when absent)."""
        return self.plan.protocol

    @property
    def fraction(self) -> float:
        """The labelled fraction the linear probe uses (the plan's `fraction`, 1.0 when absent)."""
        return self.plan.labelled_fraction()

    @property
    def finetune_fraction(self) -> float:
        """The labelled fraction fine-tuning uses (the plan's `finetune_fraction`, else its `fraction`)."""
        return self.plan.labelled_fraction("finetune")


def read_json(path: Path, problems: list[str]) -> Any:
    """The parsed file, or None (with the reason appended to `problems`)."""
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:  # ValueError: not JSON, or not UTF-8
        problems.append(f"cannot read {path.name}: {str(exc).splitlines()[0][:120]}")
        return None


def read_config(run_dir: Path, problems: list[str]) -> dict[str, Any]:
    """The run's resolved config as a plain dict ({} when absent or unreadable)."""
    path = runs.config_path(run_dir)
    if not path.is_file():
        return {}
    try:
        config = yaml.safe_load(path.read_text()) or {}
    except (OSError, ValueError, yaml.YAMLError):  # ValueError: bytes that are not UTF-8 text
        problems.append(f"{path.name} is not valid YAML")
        return {}
    return config if isinstance(config, dict) else {}


ALL_LABELS = Plan(runs=())  # the setting of a run evaluated by hand: split 1, every label, the vidkd recipe


def result_files(run_dir: Path, setting: Plan = ALL_LABELS, any_single: bool = False) -> dict[str, Path]:
    """protocol -> the result file of `run_dir` in the plan's `setting`: its split and recipe, and each
    protocol's labelled fraction (`Plan.labelled_fraction`).

    With `any_single`, a protocol without that exact result but with exactly one result of
    another split or fraction gets that one (a run evaluated by hand in one setting).
    """
    eval_dir = runs.eval_dir(run_dir)
    found: dict[str, Path] = {}
    others: dict[str, list[Path]] = {}
    if any_single:
        for key, path in runs.iter_results(eval_dir):
            others.setdefault(key.protocol, []).append(path)
    for protocol in PROTOCOL_NAMES:
        exact = runs.result_path(eval_dir, protocol, setting.split, setting.labelled_fraction(protocol),
                                 recipe_of(setting.protocol, protocol))
        if exact.is_file():
            found[protocol] = exact
        elif len(others.get(protocol, [])) == 1:
            found[protocol] = others[protocol][0]
    return found


def load_run(entry: PlanEntry, base: Path, planned_epochs: int | None, setting: Plan = ALL_LABELS,
             any_single: bool = False) -> Run:
    """Read one plan entry's run directory (relative to `base`); nothing in it is required.

    Evaluation results are those of the plan's `setting` (see `result_files`).
    """
    run_dir = entry.path(base).resolve()
    problems: list[str] = []
    config = read_config(run_dir, problems)
    model_cfg = config.get("model", {})
    run = Run(
        name=entry.name or run_dir.name,
        kind=entry.kind or ("student" if config.get("teacher", {}).get("path") else "baseline"),
        arch=entry.arch or str(model_cfg.get("arch", "?")),
        teacher_arch=entry.teacher_arch or config.get("teacher", {}).get("arch"),
        teacher_run=entry.teacher_run,
        seed=entry.seed if entry.seed is not None else config.get("train", {}).get("seed"),
        run_dir=run_dir,
        planned_epochs=entry.epochs or planned_epochs or config.get("train", {}).get("epochs"),
        config=config,
        problems=problems,
        teacher_epochs=entry.teacher_epochs if entry.kind == "student" else (
            entry.epochs if entry.kind == "teacher" else None),
        arm=entry.arm,
    )
    if entry.width is not None and "model" not in config:  # a run not started yet: the plan knows its width
        run.config.setdefault("model", {})["width"] = entry.width
    run.metrics = runs.read_metrics(run_dir, problems)
    for protocol, path in result_files(run_dir, setting, any_single).items():
        read_result(run, protocol, path)
    return run


def read_result(run: Run, key: str, path: Path) -> None:
    """Keep the result record at `path` under `key` (metrics, whole record, seconds); a record
    that cannot be read is noted in `run.problems`."""
    try:
        record = ResultRecord.from_json(read_json(path, run.problems))
    except RecordError:
        return  # unreadable (noted by read_json) or not a result
    run.evals[key] = record.metrics
    run.records[key] = record
    if record.seconds is not None:
        run.eval_seconds[key] = record.seconds


def _single_run_plan(directory: Path) -> Plan:
    config = read_config(directory, [])
    teacher = config.get("teacher", {})
    return Plan.from_json({
        "runs": [{"name": directory.name, "kind": "student" if teacher.get("path") else "baseline",
                  "arch": config.get("model", {}).get("arch", "?"), "teacher_arch": teacher.get("arch"),
                  "seed": config.get("train", {}).get("seed"), "run_dir": "."}],
        "dataset": Path(config.get("data", {}).get("root", "unknown")).name,
        "epochs": config.get("train", {}).get("epochs"),
        "split": config.get("data", {}).get("split", 1),
        "fraction": 1.0,
        "protocol": config.get("eval", {}).get("protocol", "vidkd"),
        "evaluations": [],
    })


def load_experiment(directory: Path) -> Experiment:
    """Read the plan and every run it lists; a single run directory is read as a one-run plan.

    Raises:
        VidkdError: `directory` has neither a plan nor a metrics file, or its plan is not valid.
    """
    directory = Path(directory)
    plan_path = runs.plan_path(directory)
    if plan_path.is_file():
        problems: list[str] = []
        try:
            plan = Plan.from_json(read_json(plan_path, problems))
        except PlanError as exc:
            raise VidkdError(f"{plan_path} is not a valid experiment plan ({'; '.join(problems) or exc}); "
                             "re-create it with `vidkd experiment`") from None
        single = False
    elif runs.metrics_path(directory).is_file():
        plan, single = _single_run_plan(directory), True
        if not any(m["epoch"] >= 1 for m in runs.read_metrics(directory)):
            raise VidkdError(f"{directory} has not finished an epoch yet, so there is nothing to report; continue "
                             f"it with `vidkd pretrain --resume {directory}` and report it afterwards")
    else:
        raise VidkdError(f"{directory} is not an experiment directory (no {runs.PLAN_FILE}) nor a run directory "
                         f"(no {runs.METRICS_FILE}); pass the --out directory of `vidkd experiment` or `vidkd pretrain`")
    loaded = [load_run(entry, directory, plan.epochs, plan, any_single=single) for entry in plan.runs]
    return Experiment(directory=directory, plan=plan, runs=loaded, single_run=single,
                      random_init=_random_init_groups(directory, {r.run_dir for r in loaded}, plan))


SUPERVISED = "supervised"  # Run.evals key of a random network fine-tuned on every training label


def _random_init_groups(directory: Path, planned: set[Path], setting: Plan) -> list[Group]:
    """The untrained references `vidkd experiment` evaluates beside the plan (eval.random_init), one
    group per architecture with one run per seed. A fine-tuning on every training label (the
    supervised reference) is read into `evals["supervised"]` when fine-tuning's fraction is below 1."""
    by_arch: dict[str, list[Run]] = {}
    for arch, seed, run_dir in runs.iter_random_init_dirs(directory):
        if run_dir.resolve() in planned or not runs.eval_dir(run_dir).is_dir():
            continue
        entry = PlanEntry(run_dir.name, "random", arch, seed, run_dir=str(run_dir.relative_to(directory)))
        run = load_run(entry, directory, None, setting)
        if setting.labelled_fraction(SUPERVISED_PROTOCOL) < 1:
            every_label = dataclasses.replace(setting, fraction=1.0, finetune_fraction=None)
            supervised = result_files(run.run_dir, every_label).get(SUPERVISED_PROTOCOL)
            if supervised:
                read_result(run, SUPERVISED, supervised)
        if run.evals:
            by_arch.setdefault(arch, []).append(run)
    groups = []
    for arch, arch_runs in by_arch.items():
        width = next((rec.width for run in arch_runs for rec in run.records.values() if rec.width is not None), None)
        arch_runs.sort(key=lambda run: -1 if run.seed is None else run.seed)
        groups.append(Group("random", arch, None, float(width) if width is not None else None, arch_runs))
    return groups


def arch_rank(arch: str) -> tuple[int, str]:
    return (ARCH_ORDER.index(arch) if arch in ARCH_ORDER else len(ARCH_ORDER), arch)


def group_runs(all_runs: Sequence[Run]) -> list[Group]:
    """Group runs that differ only by seed; baselines first, then students by teacher and arch."""
    groups: dict[tuple[Any, ...], Group] = {}
    for run in all_runs:
        key = (run.kind, run.arch, run.teacher_arch, run.width, run.teacher_epochs, run.arm)
        groups.setdefault(key, Group(run.kind, run.arch, run.teacher_arch, run.width, [], run.teacher_epochs,
                                     run.arm)).runs.append(run)
    # a run that never wrote its config has no width: join it to the one group it can belong to
    for key in [k for k in groups if k[3] is None]:
        matches = [k for k in groups if k[:3] == key[:3] and k[4:] == key[4:] and k[3] is not None]
        if len(matches) == 1:
            groups[matches[0]].runs.extend(groups.pop(key).runs)
    kinds = ("baseline", "teacher", "student")
    return sorted(groups.values(), key=lambda g: (kinds.index(g.kind) if g.kind in kinds else len(kinds),
                                                  arch_rank(g.teacher_arch or ""), g.teacher_epochs or 0,
                                                  arch_rank(g.arch), g.arm or "", -(g.width or 1.0)))
