"""`vidkd report DIR`: figures and a Markdown + HTML report of an experiment grid (or of one run).

Input: an experiment directory written by `vidkd experiment` (`plan.json`, `runs/<name>/...`), or
a single run directory (`metrics.jsonl`). Output, under `DIR/report/`: `report.md`, a
self-contained `report.html` (figures embedded as PNG data URIs), `figures/*.png|svg` and
`efficiency.json` (the cached cost of every network). Whatever is missing (a run still training,
an evaluation not run) is reported as missing; the rest is shown.
"""

from __future__ import annotations

import base64
import datetime as dt
import html
import json
import math
import re
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import yaml

from vidkd.engine.checkpoint import WEIGHTS_FILE, atomic_write_text
from vidkd.engine.trainer import METRICS_FILE, read_metrics
from vidkd.errors import VidkdError
from vidkd.experiments import published

PLAN_FILE = "plan.json"
REPORT_DIR = "report"
PROTOCOLS = ("retrieval", "knn", "linear", "finetune")
RETRIEVAL_KS = ("R@1", "R@5", "R@10", "R@20", "R@50")
NEAR_FRACTION = 0.95  # "converged": within 95% of the target accuracy
ARCH_NAMES = {"c3d": "C3D", "r3d": "R3D", "r21d": "R(2+1)D", "r3d_18": "R3D-18", "mc3_18": "MC3-18",
              "r2plus1d_18": "R(2+1)D-18"}
ARCH_ORDER = ("c3d", "r3d", "r21d", "r3d_18", "mc3_18", "r2plus1d_18")
MISSING = "—"


# ---------------------------------------------------------------------------------------------
# Reading the experiment


@dataclass
class Run:
    """One run directory of the plan, read defensively: anything may be absent."""

    name: str
    kind: str  # baseline | student
    arch: str
    teacher_arch: str | None
    teacher_run: str | None
    seed: int | None
    run_dir: Path
    planned_epochs: int | None
    config: dict[str, Any] = field(default_factory=dict)
    metrics: list[dict[str, Any]] = field(default_factory=list)
    evals: dict[str, dict[str, Any]] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

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

    def series(self, key: str) -> tuple[list[int], list[float]]:
        """(epochs, values) of one metric, sorted by epoch; null/missing values skipped.

        A resumed run may log an epoch twice; the later line wins.
        """
        by_epoch: dict[int, float] = {}
        for entry in self.metrics:
            epoch, value = entry.get("epoch"), entry.get(key)
            if isinstance(epoch, (int, float)) and isinstance(value, (int, float)) and math.isfinite(value):
                by_epoch[int(epoch)] = float(value)
        epochs = sorted(by_epoch)
        return epochs, [by_epoch[e] for e in epochs]

    def weights_bytes(self) -> int | None:
        for which in ("best", "last"):
            path = self.run_dir / "checkpoints" / which / WEIGHTS_FILE
            if path.is_file():
                return path.stat().st_size
        return None


@dataclass
class Group:
    """Runs that differ only by seed."""

    kind: str
    arch: str
    teacher_arch: str | None
    width: float | None
    runs: list[Run]

    @property
    def label(self) -> str:
        name = ARCH_NAMES.get(self.arch, self.arch)
        if self.width is not None and self.width != 1.0:
            name += f" ×{self.width:g}"
        if self.kind == "student":
            name += f" ← {ARCH_NAMES.get(self.teacher_arch or '', self.teacher_arch or '?')}"
        elif self.kind == "random":
            name += " (random init)"
        return name

    @property
    def slug(self) -> str:
        width = "" if self.width in (None, 1.0) else f"_w{self.width:g}"
        return f"{self.arch}{width}"

    @property
    def input_shape(self) -> tuple[int, int, int, int] | None:
        return next((r.input_shape for r in self.runs if r.input_shape), None)

    def seeds_with(self, key: str) -> list[Run]:
        return [r for r in self.runs if r.series(key)[0]]


@dataclass
class Experiment:
    directory: Path
    plan: dict[str, Any]
    runs: list[Run]
    single_run: bool = False
    random_init: list[Group] = field(default_factory=list)  # evaluations of untrained networks

    @property
    def dataset(self) -> str:
        if self.plan.get("dataset"):
            return str(self.plan["dataset"])
        root = next((r.config.get("data", {}).get("root") for r in self.runs if r.config), None)
        return Path(root).name if root else "unknown"

    @property
    def epochs(self) -> int | None:
        return self.plan.get("epochs") or next((r.planned_epochs for r in self.runs if r.planned_epochs), None)


def _read_json(path: Path, problems: list[str]) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        problems.append(f"cannot read {path.name}: {str(exc).splitlines()[0][:120]}")
        return None


def load_run(entry: dict[str, Any], base: Path, planned_epochs: int | None) -> Run:
    """Read one plan entry's run directory; nothing in it is required."""
    run_dir = (base / entry.get("run_dir", f"runs/{entry.get('name', '')}")).resolve()
    problems: list[str] = []
    config: dict[str, Any] = {}
    config_path = run_dir / "config.yaml"
    if config_path.is_file():
        try:
            config = yaml.safe_load(config_path.read_text()) or {}
        except yaml.YAMLError:
            problems.append("config.yaml is not valid YAML")
    model_cfg = config.get("model", {})
    run = Run(
        name=str(entry.get("name", run_dir.name)),
        kind=str(entry.get("kind") or ("student" if config.get("teacher", {}).get("path") else "baseline")),
        arch=str(entry.get("arch") or model_cfg.get("arch", "?")),
        teacher_arch=entry.get("teacher_arch") or config.get("teacher", {}).get("arch"),
        teacher_run=entry.get("teacher_run"),
        seed=entry.get("seed", config.get("train", {}).get("seed")),
        run_dir=run_dir,
        planned_epochs=planned_epochs or config.get("train", {}).get("epochs"),
        config=config,
        problems=problems,
    )
    if "width" in entry and "model" not in config:  # a run not started yet: the plan knows its width
        run.config.setdefault("model", {})["width"] = entry["width"]
    run.metrics = read_metrics(run_dir, problems)
    for protocol in PROTOCOLS:
        path = run_dir / "eval" / f"{protocol}.json"
        if path.is_file():
            record = _read_json(path, problems)
            if isinstance(record, dict) and isinstance(record.get("metrics"), dict):
                run.evals[protocol] = record["metrics"]
    return run


def _single_run_plan(directory: Path) -> dict[str, Any]:
    config = {}
    if (directory / "config.yaml").is_file():
        config = yaml.safe_load((directory / "config.yaml").read_text()) or {}
    teacher = config.get("teacher", {})
    return {
        "runs": [{"name": directory.name, "kind": "student" if teacher.get("path") else "baseline",
                  "arch": config.get("model", {}).get("arch", "?"), "teacher_arch": teacher.get("arch"),
                  "seed": config.get("train", {}).get("seed"), "run_dir": "."}],
        "dataset": Path(config.get("data", {}).get("root", "unknown")).name,
        "epochs": config.get("train", {}).get("epochs"),
        "evaluations": [],
    }


def load_experiment(directory: Path) -> Experiment:
    """Read `plan.json` and every run it lists; a single run directory is read as a one-run plan."""
    directory = Path(directory)
    plan_path = directory / PLAN_FILE
    if plan_path.is_file():
        problems: list[str] = []
        plan = _read_json(plan_path, problems)
        if not isinstance(plan, dict) or not isinstance(plan.get("runs"), list):
            raise VidkdError(f"{plan_path} is not a valid experiment plan ({'; '.join(problems) or 'no runs list'}); "
                             "re-create it with `vidkd experiment`")
        single = False
    elif (directory / METRICS_FILE).is_file():
        plan, single = _single_run_plan(directory), True
    else:
        raise VidkdError(f"{directory} is not an experiment directory (no {PLAN_FILE}) nor a run directory "
                         f"(no {METRICS_FILE}); pass the --out directory of `vidkd experiment` or `vidkd pretrain`")
    runs = [load_run(entry, directory, plan.get("epochs")) for entry in plan["runs"] if isinstance(entry, dict)]
    return Experiment(directory=directory, plan=plan, runs=runs, single_run=single,
                      random_init=_random_init_groups(directory, {r.run_dir for r in runs}))


def _random_init_groups(directory: Path, planned: set[Path]) -> list[Group]:
    """`runs/random_<arch>/eval/` (written by `vidkd experiment` with eval.random_init): the untrained reference."""
    groups = []
    for run_dir in sorted((directory / "runs").glob("random_*")):
        if run_dir.resolve() in planned or not (run_dir / "eval").is_dir():
            continue
        arch = run_dir.name[len("random_"):]
        run = load_run({"name": run_dir.name, "kind": "random", "arch": arch, "run_dir": f"runs/{run_dir.name}"},
                       directory, None)
        width = next((rec.get("width") for p in sorted((run_dir / "eval").glob("*.json"))
                      if isinstance(rec := _read_json(p, []), dict)), None)
        if run.evals:
            groups.append(Group("random", arch, None, float(width) if width is not None else None, [run]))
    return groups


def _arch_rank(arch: str) -> tuple[int, str]:
    return (ARCH_ORDER.index(arch) if arch in ARCH_ORDER else len(ARCH_ORDER), arch)


def group_runs(runs: Sequence[Run]) -> list[Group]:
    """Group runs that differ only by seed; baselines first, then students by teacher and arch."""
    groups: dict[tuple[Any, ...], Group] = {}
    for run in runs:
        key = (run.kind, run.arch, run.teacher_arch, run.width)
        groups.setdefault(key, Group(run.kind, run.arch, run.teacher_arch, run.width, [])).runs.append(run)
    # a run that never wrote its config has no width: join it to the one group it can belong to
    for key in [k for k in groups if k[3] is None]:
        matches = [k for k in groups if k[:3] == key[:3] and k[3] is not None]
        if len(matches) == 1:
            groups[matches[0]].runs.extend(groups.pop(key).runs)
    return sorted(groups.values(), key=lambda g: (g.kind != "baseline", _arch_rank(g.teacher_arch or ""),
                                                  _arch_rank(g.arch), -(g.width or 1.0)))


# ---------------------------------------------------------------------------------------------
# Statistics


def first_epoch_reaching(epochs: Sequence[int], values: Sequence[float], target: float) -> int | None:
    """The first epoch whose value is >= target (with a float tolerance), or None if never."""
    for epoch, value in zip(epochs, values):
        if value >= target - 1e-9:
            return epoch
    return None


def mean_std(values: Sequence[float]) -> tuple[float, float | None]:
    """Mean and sample standard deviation (n-1); the std is None for a single value."""
    mean = statistics.fmean(values)
    return mean, (statistics.stdev(values) if len(values) > 1 else None)


def format_values(values: Sequence[float | None], scale: float = 1.0, digits: int = 1) -> str:
    """'mean ± std' over seeds ('—' when nothing is known; '(k/n seeds)' when only some are)."""
    known = [v * scale for v in values if v is not None]
    if not known:
        return MISSING
    mean, std = mean_std(known)
    text = f"{mean:.{digits}f}" if std is None else f"{mean:.{digits}f} ± {std:.{digits}f}"
    if len(known) < len(values):
        text += f" ({len(known)}/{len(values)} seeds)"
    return text


def format_percent(values: Sequence[float | None]) -> str:
    """Fractions in [0, 1] shown as percent, mean ± std."""
    return format_values(values, scale=100.0, digits=1)


def format_epochs(values: Sequence[int | None]) -> str:
    if len(values) == 1 and values[0] is not None:
        return str(values[0])
    return format_values(values, digits=1)


def format_seconds(seconds: float | None) -> str:
    if seconds is None:
        return MISSING
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def total_wall_seconds(metrics: Sequence[dict[str, Any]]) -> float | None:
    """Training wall time; `wall_seconds` restarts from 0 on resume, so each stretch is added."""
    walls = [m.get("wall_seconds") for m in metrics if isinstance(m.get("wall_seconds"), (int, float))]
    if not walls:
        seconds = [m["epoch_seconds"] for m in metrics if isinstance(m.get("epoch_seconds"), (int, float))]
        return float(sum(seconds)) if seconds else None
    total, previous = 0.0, 0.0
    for wall in walls:
        if wall < previous:
            total += previous
        previous = wall
    return total + previous


@dataclass
class RunSummary:
    best_pretext: float | None
    final_pretext: float | None
    best_knn: float | None
    final_knn: float | None
    epoch_to_target: int | None
    epoch_to_near_target: int | None
    wall_seconds: float | None


def summarise_run(run: Run, target: float | None) -> RunSummary:
    """Best/final accuracies and the first epochs reaching `target` and 95% of it."""
    epochs, pretext = run.series("val_pretext_acc")
    _, knn = run.series("val_knn_top1")
    reach = near = None
    if target is not None:
        reach = first_epoch_reaching(epochs, pretext, target)
        near = first_epoch_reaching(epochs, pretext, NEAR_FRACTION * target)
    return RunSummary(
        best_pretext=max(pretext) if pretext else None,
        final_pretext=pretext[-1] if pretext else None,
        best_knn=max(knn) if knn else None,
        final_knn=knn[-1] if knn else None,
        epoch_to_target=reach,
        epoch_to_near_target=near,
        wall_seconds=total_wall_seconds(run.metrics),
    )


def baseline_group(groups: Sequence[Group], arch: str, width: float | None) -> Group | None:
    """The from-scratch baseline of `arch`: the same width if there is one, else full width, else any."""
    candidates = [g for g in groups if g.kind == "baseline" and g.arch == arch]
    for wanted in (width, 1.0):
        match = next((g for g in candidates if g.width == wanted), None)
        if match:
            return match
    return candidates[0] if candidates else None


def target_accuracy(baseline: Group | None) -> float | None:
    """The baseline's best val pretext accuracy, averaged over its seeds."""
    if baseline is None:
        return None
    bests = [max(vals) for run in baseline.runs if (vals := run.series("val_pretext_acc")[1])]
    return statistics.fmean(bests) if bests else None


# ---------------------------------------------------------------------------------------------
# The document: sections of paragraphs, tables and figures, rendered to Markdown and HTML


@dataclass
class Table:
    headers: list[str]
    rows: list[list[str]]


@dataclass
class Figure:
    path: Path
    caption: str


@dataclass
class Section:
    title: str
    blocks: list[str | Table | Figure] = field(default_factory=list)


def _pct(value: float | None) -> str:
    return MISSING if value is None else f"{100 * value:.1f}"


def _eval_values(group: Group, protocol: str, key: str) -> list[float | None]:
    values = [r.evals.get(protocol, {}).get(key) for r in group.runs]
    return [float(v) if isinstance(v, (int, float)) and math.isfinite(v) else None for v in values]


def _header_section(exp: Experiment, groups: list[Group]) -> Section:
    seeds = sorted({r.seed for r in exp.runs if r.seed is not None})
    status = [r.status for r in exp.runs]
    done = sum(s == "done" for s in status)
    started = dt.datetime.fromtimestamp((exp.directory / PLAN_FILE).stat().st_mtime) if not exp.single_run else None
    lines = [
        f"**Dataset:** {exp.dataset} · **epochs planned:** {exp.epochs or MISSING} · "
        f"**seeds:** {', '.join(map(str, seeds)) or MISSING} · **runs:** {len(exp.runs)} "
        f"({done} done) in {len(groups)} configurations · "
        f"**evaluations planned:** {', '.join(exp.plan.get('evaluations') or []) or 'none'}",
        (f"Experiment planned {started:%Y-%m-%d %H:%M}; " if started else "")
        + f"report written {dt.datetime.now():%Y-%m-%d %H:%M} from `{exp.directory}`.",
    ]
    missing = []
    for run in exp.runs:
        if run.status != "done":
            missing.append(f"run `{run.name}`: {run.status}")
        absent = [p for p in exp.plan.get("evaluations") or [] if p not in run.evals]
        if absent and run.status == "done":
            missing.append(f"run `{run.name}`: no {', '.join(absent)} result yet")
        missing += [f"run `{run.name}`: {problem}" for problem in run.problems]
    if missing:
        lines.append("**Missing so far** (shown as —): " + "; ".join(missing) + ".")
    else:
        lines.append("Every planned run and evaluation is present.")
    return Section("Overview", lines)


def _pretraining_section(groups: list[Group]) -> Section:
    rows, targets = [], []
    for group in groups:
        baseline = baseline_group(groups, group.arch, group.width)
        target = target_accuracy(baseline)
        summaries = [summarise_run(r, target) for r in group.runs]
        rows.append([
            group.label, group.kind, f"{group.width:g}" if group.width else MISSING, str(len(group.runs)),
            format_percent([s.best_pretext for s in summaries]), format_percent([s.final_pretext for s in summaries]),
            format_percent([s.best_knn for s in summaries]), format_percent([s.final_knn for s in summaries]),
            format_epochs([s.epoch_to_target for s in summaries]),
            format_epochs([s.epoch_to_near_target for s in summaries]),
            format_seconds(statistics.fmean(w) if (w := [s.wall_seconds for s in summaries if s.wall_seconds]) else None),
        ])
        if group.kind == "baseline":
            targets.append(f"{group.label} {_pct(target)}%" if target is not None else f"{group.label} (no data yet)")
    table = Table(["model", "kind", "width", "seeds", "best val pretext %", "final val pretext %", "best kNN %",
                   "final kNN %", "epoch ≥ baseline best", "epoch ≥ 95% of it", "wall time"], rows)
    note = ("Targets (from-scratch baselines' best val pretext accuracy, mean over seeds): "
            + (", ".join(targets) if targets else "no baseline has finished an epoch yet") + ".")
    return Section("Pretraining (mean ± std over seeds)", [table, note])


def _runs_section(groups: list[Group]) -> Section:
    rows = []
    for group in groups:
        target = target_accuracy(baseline_group(groups, group.arch, group.width))
        for run in group.runs:
            s = summarise_run(run, target)
            rows.append([f"`{run.name}`", group.label, str(run.seed if run.seed is not None else MISSING),
                         str(run.last_epoch if run.last_epoch is not None else MISSING), run.status,
                         _pct(s.best_pretext), _pct(s.best_knn),
                         str(s.epoch_to_target) if s.epoch_to_target is not None else MISSING,
                         format_seconds(s.wall_seconds)])
    return Section("Every run", [Table(["run", "model", "seed", "last epoch", "status", "best val pretext %",
                                        "best kNN %", "epoch ≥ baseline best", "wall time"], rows)])


def _figures_section(groups: list[Group], figure_dir: Path) -> Section:
    from vidkd.experiments import figures

    section = Section("Curves")
    baselines = [g for g in groups if g.kind == "baseline"]
    students = [g for g in groups if g.kind == "student"]
    if baselines:
        section.blocks.append(Figure(figures.plot_baselines(baselines, figure_dir),
                                     "From-scratch baselines: val pretext accuracy and kNN top-1 per epoch "
                                     "(mean over seeds, band = min–max)."))
    by_teacher: dict[int, tuple[Group, list[Group]]] = {}
    for student in students:
        teacher = _teacher_group(groups, student)
        if teacher is None:
            section.blocks.append(f"{student.label}: its teacher's baseline run is not in this experiment; "
                                  "its curves are in the train-loss figure only.")
            continue
        by_teacher.setdefault(id(teacher), (teacher, []))[1].append(student)
    for teacher, its_students in by_teacher.values():
        section.blocks.append(Figure(figures.plot_teacher_students(teacher, its_students, figure_dir),
                                     f"Teacher {teacher.label} (solid) against its students (dashed): the "
                                     "same-architecture student first, then all of them."))
    if groups:
        section.blocks.append(Figure(figures.plot_train_loss(groups, figure_dir), "Training loss per epoch."))
    return section


def _teacher_group(groups: Sequence[Group], student: Group) -> Group | None:
    teacher_runs = {r.teacher_run for r in student.runs if r.teacher_run}
    for group in groups:
        if group.kind == "baseline" and any(r.name in teacher_runs for r in group.runs):
            return group
    return baseline_group(groups, student.teacher_arch or "", 1.0) if student.teacher_arch else None


def _comparable(exp: Experiment, group: Group) -> bool:
    shape = group.input_shape
    return group.kind != "random" and published.is_comparable(exp.dataset, group.width, shape[1] if shape else None, shape[2] if shape else None)


def _evaluation_sections(exp: Experiment, trained: list[Group]) -> list[Section]:
    groups = trained + exp.random_init
    any_comparable = any(_comparable(exp, g) for g in trained)
    dataset = published.dataset_key(exp.dataset)
    sections = []
    planned = set(exp.plan.get("evaluations") or [])

    def shown(*protocols: str) -> bool:  # planned, or present in some run
        return any(p in planned or any(p in r.evals for g in groups for r in g.runs) for p in protocols)

    headers = ["model", "seeds", *RETRIEVAL_KS]
    rows = []
    for group in groups:
        row = [group.label, str(len(group.runs))] + [format_percent(_eval_values(group, "retrieval", k)) for k in RETRIEVAL_KS]
        if any_comparable:
            value = published.published_retrieval_r1(group.arch, dataset) if _comparable(exp, group) else None
            row.append(f"{value:.1f}" if value is not None else MISSING)
        rows.append(row)
    if any_comparable:
        headers.append("PCL R@1 (published)")
    if shown("retrieval"):
        sections.append(Section("Retrieval (R@k %, test clips query train clips)", [Table(headers, rows)]))

    headers = ["model", "seeds", "video top-1 %", "clip top-1 %"]
    rows = []
    for group in groups:
        row = [group.label, str(len(group.runs)), format_percent(_eval_values(group, "finetune", "video_top1")),
               format_percent(_eval_values(group, "finetune", "clip_top1"))]
        if any_comparable:
            value = published.published_finetune(group.arch, dataset) if _comparable(exp, group) else None
            row.append(f"{value:.1f}" if value is not None else MISSING)
        rows.append(row)
    if any_comparable:
        headers.append(f"PCL video top-1 on {dataset.upper()} (published)")
    if shown("finetune"):
        sections.append(Section("Fine-tuning (top-1 %)", [Table(headers, rows)]))

    if shown("knn", "linear"):
        rows = [[g.label, str(len(g.runs)), format_percent(_eval_values(g, "knn", "top1")),
                 format_percent(_eval_values(g, "linear", "test_top1"))] for g in groups]
        sections.append(Section("Frozen-feature probes (top-1 %)",
                                [Table(["model", "seeds", "kNN top-1 %", "linear probe top-1 %"], rows)]))

    if any_comparable:
        note = (f"Published numbers: {published.PCL_SOURCE}; shown only for full-width networks on 16×112×112 "
                "clips of UCF101/HMDB51 (PCL pretrains on UCF101 split 1).")
    else:
        note = (f"Published PCL numbers are not shown: this experiment ({exp.dataset}) is not the published "
                "setting (UCF101/HMDB51, full-width networks, 16×112×112 clips, hundreds of epochs), so its "
                f"numbers are not comparable with them. Source for the published numbers: {published.PCL_SOURCE}.")
    if not sections:
        sections.append(Section("Evaluations", ["No evaluation was planned or found."]))
    sections[-1].blocks.append(note)
    return sections


def _efficiency_section(exp: Experiment, groups: list[Group], cache_path: Path) -> Section:
    from vidkd.experiments.efficiency import efficiency_key, load_or_measure

    sizes: dict[tuple[str, float, tuple[int, ...]], list[Group]] = {}
    unknown = []
    for group in groups:
        if group.input_shape is None:
            unknown.append(group.label)
            continue
        sizes.setdefault((group.arch, group.width or 1.0, group.input_shape), []).append(group)
    costs = load_or_measure(cache_path, list(sizes))
    rows = []
    for (arch, width, shape), members in sorted(sizes.items(), key=lambda kv: (_arch_rank(kv[0][0]), -kv[0][1])):
        cost = costs[efficiency_key(arch, width, shape)]
        weights = next((b for g in members for r in g.runs if (b := r.weights_bytes()) is not None), None)
        trained = []
        for g in members:
            bests = [max(v) for r in g.runs if (v := r.series("val_pretext_acc")[1])]
            trained.append(f"{g.label} ({g.kind}): {format_percent(bests)}")
        missing_cost = "error" in cost
        rows.append([
            ARCH_NAMES.get(arch, arch), f"{width:g}", "×".join(map(str, shape)),
            MISSING if missing_cost else f"{cost['params'] / 1e6:.2f}",
            MISSING if missing_cost else f"{cost['gflops']:.2f}",
            MISSING if missing_cost else f"{cost['cpu_latency_ms']:.1f}",
            f"{weights / 2**20:.1f}" if weights is not None else MISSING,
            "; ".join(trained),
        ])
    threads = {c.get("cpu_threads") for c in costs.values() if "cpu_threads" in c}
    blocks: list[str | Table | Figure] = [
        Table(["arch", "width", "input C×T×H×W", "params (M)", "GFLOPs / clip", "CPU ms / clip",
               "model.safetensors (MB)", "trained as: best val pretext %"], rows),
        "Backbone only (no heads) for parameters, FLOPs (2 per multiply-accumulate) and latency; latency is "
        "the median of several batch-1 forwards on this machine's CPU after a warm-up "
        f"({', '.join(map(str, sorted(threads))) or '?'} thread(s)), cached in `{cache_path.name}`. "
        "The file size is the whole saved PCL model (backbone and heads).",
    ]
    failed = [f"{c['arch']} ×{c['width']:g}: {c['error']}" for c in costs.values() if "error" in c]
    if failed or unknown:
        blocks.append("Not measured: " + "; ".join(failed + [f"{u} (no config yet)" for u in unknown]) + ".")
    return Section("Efficiency (per architecture and width)", blocks)


READING_GUIDE = (
    "Each configuration (kind, architecture, width, teacher) is trained with "
    "several seeds; tables show the mean ± sample standard deviation over the seeds that have the value, "
    "and say when only some have it. *Best* is the highest value over all epochs, *final* the last "
    "logged one. *Val pretext %* is the accuracy of the 5-way VCP pretext task on the test split; "
    "*kNN %* classifies test videos by their nearest training videos in feature space (labels are used "
    "only to measure). *Epoch ≥ baseline best* is the first epoch whose val pretext accuracy reaches "
    "the best accuracy of the from-scratch baseline of the same architecture (mean over its seeds); "
    "*epoch ≥ 95% of it* is the first epoch within 95% of that target — a student that needs fewer "
    "epochs than its baseline converges faster, one whose best exceeds the target beats it. Epoch 0 is "
    "the untrained network. Retrieval R@k: a test video counts as found if any of its k nearest "
    "training videos shares its class. Fine-tuning: top-1 after training the whole network with labels, "
    "per video (logits averaged over clips) and per clip. The efficiency table puts each network's "
    "cost beside the accuracy of the models trained at that size, so a smaller student that keeps "
    "its teacher's accuracy shows as fewer parameters, GFLOPs and milliseconds for the same accuracy."
)


def build_sections(exp: Experiment, report_dir: Path) -> list[Section]:
    """Everything the report shows, in order (writes the figures and the efficiency cache)."""
    groups = group_runs(exp.runs)
    sections = [_header_section(exp, groups), _pretraining_section(groups), _figures_section(groups, report_dir / "figures")]
    sections += _evaluation_sections(exp, groups)
    sections.append(_efficiency_section(exp, groups, report_dir / "efficiency.json"))
    sections.append(_runs_section(groups))
    sections.append(Section("Reading this report", [READING_GUIDE]))
    return sections


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def render_markdown(title: str, sections: Sequence[Section], report_dir: Path) -> str:
    out = [f"# {title}", ""]
    for section in sections:
        out += [f"## {section.title}", ""]
        for block in section.blocks:
            if isinstance(block, Table):
                out.append("| " + " | ".join(map(_md_cell, block.headers)) + " |")
                out.append("|" + "|".join("---" for _ in block.headers) + "|")
                out += ["| " + " | ".join(map(_md_cell, row)) + " |" for row in block.rows]
            elif isinstance(block, Figure):
                out.append(f"![{block.caption}]({block.path.relative_to(report_dir).as_posix()})")
                out.append(f"*{block.caption}* ([SVG]({block.path.with_suffix('.svg').relative_to(report_dir).as_posix()}))")
            else:
                out.append(block)
            out.append("")
    return "\n".join(out)


def _inline_html(text: str) -> str:
    """Escape, then the little Markdown the report's prose uses: **bold**, *italic*, `code`."""
    text = html.escape(text)
    text = re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", text)
    text = re.sub(r"\*(.+?)\*", r"<em>\1</em>", text)
    return re.sub(r"`(.+?)`", r"<code>\1</code>", text)


HTML_STYLE = """
body { font-family: system-ui, sans-serif; max-width: 1200px; margin: 2em auto; padding: 0 1em; color: #222; }
table { border-collapse: collapse; margin: 1em 0; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 4px 8px; text-align: right; }
th { background: #f3f3f3; } td:first-child, th:first-child { text-align: left; }
figure { margin: 1.5em 0; } img { max-width: 100%; } figcaption { color: #555; font-size: 0.9em; }
code { background: #f3f3f3; padding: 0 3px; }
"""


def render_html(title: str, sections: Sequence[Section]) -> str:
    """A single self-contained HTML page: figures are embedded as base64 PNG data URIs."""
    out = ["<!DOCTYPE html>", "<html><head><meta charset='utf-8'>", f"<title>{html.escape(title)}</title>",
           f"<style>{HTML_STYLE}</style></head><body>", f"<h1>{html.escape(title)}</h1>"]
    for section in sections:
        out.append(f"<h2>{html.escape(section.title)}</h2>")
        for block in section.blocks:
            if isinstance(block, Table):
                out.append("<table><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in block.headers) + "</tr>")
                out += ["<tr>" + "".join(f"<td>{_inline_html(c)}</td>" for c in row) + "</tr>" for row in block.rows]
                out.append("</table>")
            elif isinstance(block, Figure):
                data = base64.b64encode(block.path.read_bytes()).decode("ascii")
                out.append(f"<figure><img src='data:image/png;base64,{data}' alt='{html.escape(block.caption)}'>"
                           f"<figcaption>{_inline_html(block.caption)}</figcaption></figure>")
            else:
                out.append(f"<p>{_inline_html(block)}</p>")
    out.append("</body></html>")
    return "\n".join(out) + "\n"


def write_report(directory: Path) -> Path:
    """Write `DIR/report/report.md`, `report.html` and `figures/`; returns the Markdown path.

    Raises:
        VidkdError: DIR is neither an experiment directory (plan.json) nor a run directory.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise VidkdError(f"{directory} does not exist; pass the --out directory of `vidkd experiment`")
    exp = load_experiment(directory)
    report_dir = directory / REPORT_DIR
    report_dir.mkdir(parents=True, exist_ok=True)
    sections = build_sections(exp, report_dir)
    title = f"vidkd {'run' if exp.single_run else 'experiment'} report: {directory.resolve().name}"
    atomic_write_text(report_dir / "report.html", render_html(title, sections))
    md_path = report_dir / "report.md"
    atomic_write_text(md_path, render_markdown(title, sections, report_dir))
    return md_path
