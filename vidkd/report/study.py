"""The teacher-strength study: what a student gains over its twin, by the strength of its teacher.

A multi-draw experiment (`draws`, `teacher_epochs`, `arms`) trains, on each draw of the synthetic
dataset and for each seed, teachers of several budgets, students taught by each, and each student's
twin: the from-scratch baseline of the student's architecture, seed and budget. A student and its
twin are one pair; gains are paired differences over every (draw, seed), with 95% t-intervals.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
from matplotlib.figure import Figure as MplFigure

from vidkd import runs
from vidkd.report.figures import arch_colour, save_figure
from vidkd.report.results import ARCH_NAMES, MAIN_METRIC, Run, arch_rank, load_experiment, read_json
from vidkd.report.stats import format_seconds
from vidkd.report.summary import ci95, headline_value
from vidkd.report.tables import FIGURES_DIR, Figure, Section, Table

PRETEXT = MAIN_METRIC  # the pretext accuracy of PCL and VCOP; a run of another method, its main metric
# the metrics of a pair, in the study's tables and figure: (key, label)
GAIN_METRICS = (("best_pretext", "best val pretext acc."), ("linear", "linear probe"), ("knn", "kNN"))
# a value of the validation curve carries about this much noise (one standard error of the study's
# validation accuracy, 640+ tuples): a curve has stopped rising when it never again rises this far
PLATEAU_RISE = 0.02
PLATEAU_SMOOTHING = 3  # epochs of the moving average the plateau is found on


@dataclass(frozen=True)
class Pair:
    """One student and its twin on one (draw, seed)."""

    draw: int
    seed: int
    student: Run
    twin: Run
    teacher_accuracy: float | None  # the teacher's final validation pretext accuracy (best_by last)

    @property
    def cell(self) -> tuple[str, int | None, str | None]:
        return (self.student.arch, self.student.teacher_epochs, self.student.arm)


def final_value(run: Run, key: str = PRETEXT) -> float | None:
    values = run.series(key)[1]
    return values[-1] if values else None


def best_value(run: Run, key: str = PRETEXT) -> float | None:
    values = run.series(key)[1]
    return max(values) if values else None


def metric(run: Run, key: str) -> float | None:
    return best_value(run) if key == "best_pretext" else headline_value(run, key)


def epochs_to_reach(run: Run, target: float | None) -> int | None:
    """The first epoch whose validation pretext accuracy reaches `target`; None if none does."""
    if target is None:
        return None
    for epoch, value in zip(*run.series(PRETEXT)):
        if value >= target - 1e-9:
            return epoch
    return None


def plateau_epoch(run: Run, rise: float = PLATEAU_RISE, smoothing: int = PLATEAU_SMOOTHING) -> int | None:
    """The first epoch after which the smoothed validation curve never rises by `rise` again; None
    when the run is too short to tell or still rising at its end (the last epoch is not a plateau)."""
    epochs, values = run.series(PRETEXT)
    if len(values) < 2 * smoothing:
        return None
    smooth = np.convolve(values, np.ones(smoothing) / smoothing, mode="valid")
    centred = epochs[smoothing // 2: smoothing // 2 + len(smooth)]
    for i, value in enumerate(smooth[:-1]):
        if smooth[i + 1:].max() < value + rise:
            return centred[i]
    return None


def read_pairs(directory: Path) -> tuple[list[Pair], dict[tuple[int, int, str, int], Run]]:
    """Every student of every draw with its twin, and the teachers by (draw, seed, arch, budget)."""
    pairs: list[Pair] = []
    teachers: dict[tuple[int, int, str, int], Run] = {}
    for draw, draw_dir in runs.iter_draw_dirs(directory):
        if not runs.plan_path(draw_dir).is_file():
            continue
        exp = load_experiment(draw_dir)
        # every from-scratch run by (arch, seed, epochs): the baselines and the teachers of other budgets
        from_scratch = {(r.arch, r.seed, r.planned_epochs): r for r in exp.runs if r.kind in ("baseline", "teacher")}
        baseline_epochs = {r.arch: r.planned_epochs for r in exp.runs if r.kind == "baseline"}
        teacher_archs = {r.teacher_arch for r in exp.runs if r.kind == "student"}
        for (arch, seed, epochs), run in from_scratch.items():
            if arch in teacher_archs and epochs and run.status == "done":
                teachers[(draw, seed, arch, epochs)] = run
        for run in exp.runs:
            # the twin: the from-scratch run of the student's architecture, seed and budget (in the
            # paper's design, where the student trains as long as its teacher, the teacher itself)
            twin = from_scratch.get((run.arch, run.seed, run.planned_epochs))
            if run.kind != "student" or twin is None or run.status != "done" or twin.status != "done":
                continue  # a pair is compared once both have finished
            budget = run.teacher_epochs or baseline_epochs.get(run.teacher_arch)
            teacher = teachers.get((draw, run.seed, run.teacher_arch, budget))
            pairs.append(Pair(draw, run.seed, run, twin, final_value(teacher) if teacher else None))
    return pairs, teachers


@dataclass
class CellResult:
    """One (student arch, teacher budget, arm): gains over the twin, pooled and per draw."""

    arch: str
    teacher_epochs: int | None
    arm: str | None
    pairs: list[Pair]

    @property
    def teacher_accuracy(self) -> float | None:
        known = [p.teacher_accuracy for p in self.pairs if p.teacher_accuracy is not None]
        return statistics.fmean(known) if known else None

    def gains(self, key: str, draw: int | None = None) -> list[float]:
        gains = []
        for pair in self.pairs:
            student, twin = metric(pair.student, key), metric(pair.twin, key)
            if student is not None and twin is not None and draw in (None, pair.draw):
                gains.append(student - twin)
        return gains

    def over_teacher(self) -> list[float]:
        """The student's best validation accuracy minus its teacher's (final) one."""
        return [best - p.teacher_accuracy for p in self.pairs
                if p.teacher_accuracy is not None and (best := best_value(p.student)) is not None]

    def epochs_saved(self) -> tuple[list[float], int]:
        """Per pair, the twin's epoch of its best minus the student's first epoch reaching it (a student
        that never does counts as its budget + 1: censored); and how many pairs reached it."""
        saved, reached = [], 0
        for pair in self.pairs:
            target = best_value(pair.twin)
            twin_epoch = epochs_to_reach(pair.twin, target)
            student_epoch = epochs_to_reach(pair.student, target)
            if twin_epoch is None:
                continue
            reached += student_epoch is not None
            budget = pair.student.planned_epochs or twin_epoch
            saved.append(float(twin_epoch - (student_epoch if student_epoch is not None else budget + 1)))
        return saved, reached


def cells(pairs: Sequence[Pair]) -> list[CellResult]:
    by_cell: dict[tuple[str, int | None, str | None], list[Pair]] = {}
    for pair in pairs:
        by_cell.setdefault(pair.cell, []).append(pair)
    ordered = sorted(by_cell, key=lambda c: (arch_rank(c[0]), c[2] or "", c[1] or 0))
    return [CellResult(arch, budget, arm, by_cell[(arch, budget, arm)]) for arch, budget, arm in ordered]


def mean_interval(values: Sequence[float], scale: float = 100.0, digits: int = 1) -> str:
    """'+4.2 [+1.0, +7.4] (n=6)' — the mean of paired differences and its 95% interval."""
    if not values:
        return "—"
    mean = statistics.fmean(values) * scale
    interval = ci95(values)
    shown = f"{mean:+.{digits}f}"
    if interval is not None:
        shown += f" [{interval[0] * scale:+.{digits}f}, {interval[1] * scale:+.{digits}f}]"
    return f"{shown} (n={len(values)})"


def verdict(values: Sequence[float]) -> str:
    interval = ci95(values)
    if interval is None:
        return "undecided (fewer than 2 pairs)"
    if interval[0] > 0:
        return "holds"
    if interval[1] < 0:
        return "fails (the opposite holds)"
    return "undecided (the interval crosses 0)"


def plot_gains(results: Sequence[CellResult], out_dir: Path) -> Path:
    """Per student architecture, the gain over the twin against the teacher's validation accuracy:
    one line per metric over the teacher budgets of the default arm, a band for its 95% interval,
    and the named arms as markers with error bars."""
    archs = sorted({r.arch for r in results}, key=arch_rank)
    fig = MplFigure(figsize=(5.2 * len(archs), 4.0))
    axes = fig.subplots(1, len(archs), squeeze=False)[0]
    styles = {"best_pretext": "o-", "linear": "s--", "knn": "^:"}
    for ax, arch in zip(axes, archs):
        default = [r for r in results if r.arch == arch and r.arm is None and r.teacher_accuracy is not None]
        default.sort(key=lambda r: r.teacher_accuracy)
        for key, label in GAIN_METRICS:
            points = [(100 * r.teacher_accuracy, r.gains(key)) for r in default if r.gains(key)]
            if not points:
                continue
            x = np.array([p[0] for p in points])
            mean = np.array([100 * statistics.fmean(g) for _, g in points])
            bands = [ci95(g) or [statistics.fmean(g)] * 2 for _, g in points]
            line, = ax.plot(x, mean, styles[key], label=label)
            ax.fill_between(x, [100 * b[0] for b in bands], [100 * b[1] for b in bands], alpha=0.12,
                            color=line.get_color())
        for r in results:
            if r.arch == arch and r.arm is not None and r.teacher_accuracy is not None and r.gains("linear"):
                gains, interval = r.gains("linear"), ci95(r.gains("linear"))
                mean = 100 * statistics.fmean(gains)
                err = [[mean - 100 * interval[0]], [100 * interval[1] - mean]] if interval else None
                ax.errorbar([100 * r.teacher_accuracy], [mean], yerr=err, fmt="D", capsize=3,
                            label=f"linear probe, {r.arm} arm")
        ax.axhline(0, color="grey", lw=0.8)
        ax.set_title(f"{ARCH_NAMES.get(arch, arch)} student", color=arch_colour(arch))
        ax.set_xlabel("teacher's validation pretext accuracy (%)")
        ax.set_ylabel("student − twin (points)")
        ax.legend(fontsize=7)
    return save_figure(fig, out_dir, "kd_study_gain")


def _teacher_rows(teachers: dict[tuple[int, int, str, int], Run]) -> list[list[str]]:
    """Per teacher architecture and budget: final validation accuracy and where its curve stopped rising."""
    rows = []
    for arch, budget in sorted({(k[2], k[3]) for k in teachers}, key=lambda k: (arch_rank(k[0]), k[1])):
        members = [run for key, run in teachers.items() if key[2:] == (arch, budget)]
        finals = [v for run in members if (v := final_value(run)) is not None]
        plateaus = [plateau_epoch(run) for run in members]
        found = [p for p in plateaus if p is not None]
        plateau = (f"epoch {min(found)}–{max(found)} ({len(found)}/{len(plateaus)} runs)" if found
                   else f"still rising ({len(plateaus)} runs)")
        rows.append([ARCH_NAMES.get(arch, arch), str(budget), _mean_sd(finals), plateau])
    return rows


def _mean_sd(values: Sequence[float]) -> str:
    if not values:
        return "—"
    sd = f" ± {100 * statistics.stdev(values):.1f}" if len(values) > 1 else ""
    return f"{100 * statistics.fmean(values):.1f}{sd} (n={len(values)})"


def _cell_label(result: CellResult) -> str:
    """'R3D 8 ep ← R3D 32 ep (relational)': the student, its budget, its teacher's and the arm."""
    student_epochs, teacher = result.pairs[0].student.planned_epochs, result.pairs[0].student.teacher_arch
    budget = f"{result.teacher_epochs} ep" if result.teacher_epochs is not None else "baseline"
    return (f"{ARCH_NAMES.get(result.arch, result.arch)} {student_epochs} ep ← {ARCH_NAMES.get(teacher, teacher)} "
            f"{budget}{f' ({result.arm})' if result.arm else ''}")


def gain_rows(results: Sequence[CellResult]) -> list[list[str]]:
    rows = []
    for r in results:
        saved, reached = r.epochs_saved()
        rows.append([_cell_label(r), _pct(r.teacher_accuracy), *[mean_interval(r.gains(key)) for key, _ in GAIN_METRICS],
                     f"{mean_interval(saved, scale=1.0)}; {reached}/{len(saved)} reach it",
                     mean_interval(r.over_teacher())])
    return rows


def per_draw_rows(results: Sequence[CellResult]) -> list[list[str]]:
    draws = sorted({p.draw for r in results for p in r.pairs})
    return [[_cell_label(r), str(draw), *[mean_interval(r.gains(key, draw)) for key, _ in GAIN_METRICS]]
            for r in results for draw in draws]


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{100 * value:.1f}"


CLAIMS = (
    ("The student learns the pretext task better than the same network trained alone (best validation "
     "accuracy above its twin's)", lambda r: r.gains("best_pretext")),
    ("The student converges faster: it reaches its twin's best validation accuracy in fewer epochs",
     lambda r: r.epochs_saved()[0]),
    ("The student beats its teacher (best validation accuracy above the teacher's)", lambda r: r.over_teacher()),
    ("Distillation gives better features: linear probe above the twin's", lambda r: r.gains("linear")),
    ("Distillation gives better features: kNN above the twin's", lambda r: r.gains("knn")),
)


def claim_blocks(results: Sequence[CellResult]) -> list[str]:
    """For each claim of the paper, its verdict in every regime (teacher budget, arm) of each student."""
    blocks = []
    for claim, values_of in CLAIMS:
        scale = 1.0 if "epochs" in claim else 100.0
        bullets = [f"- {_cell_label(r)} (teacher at {_pct(r.teacher_accuracy)}%): {verdict(values_of(r))}, "
                   f"{mean_interval(values_of(r), scale=scale)}" for r in results]
        blocks.append(f"**{claim}.**\n\n" + "\n".join(bullets))
    return blocks


def is_study_directory(directory: Path) -> bool:
    """A multi-draw experiment directory: draw directories, no plan of its own."""
    return not runs.plan_path(directory).is_file() and any(True for _ in runs.iter_draw_dirs(directory))


def study_summary(results: Sequence[CellResult]) -> dict:
    """The study's numbers as JSON: per cell, the teacher's accuracy and each gain with its interval."""
    def entry(values: Sequence[float]) -> dict:
        return {"mean": statistics.fmean(values) if values else None, "ci95": ci95(values), "n": len(values)}
    return {"cells": [{"arch": r.arch, "teacher_epochs": r.teacher_epochs, "arm": r.arm,
                       "teacher_accuracy": r.teacher_accuracy,
                       **{key: entry(r.gains(key)) for key, _ in GAIN_METRICS},
                       "epochs_saved": entry(r.epochs_saved()[0]), "over_teacher": entry(r.over_teacher())}
                      for r in results]}


def build_study_sections(directory: Path, report_dir: Path) -> tuple[list[Section], dict]:
    pairs, teachers = read_pairs(directory)
    results = cells(pairs)
    draws = sorted({p.draw for p in pairs})
    seeds = sorted({p.seed for p in pairs})
    timing = _read_timing(directory)
    setup = Section("Setup", [
        f"Draws of the synthetic dataset {draws}, seeds {seeds}: {len(pairs)} student–twin pairs. A student's twin is "
        "the from-scratch baseline of its architecture, seed and budget; gains are paired differences "
        "(student − twin, points) with 95% t-intervals over every (draw, seed).",
        f"Training and evaluation took {format_seconds(sum(timing.values()))} over every invocation "
        f"({', '.join(f'{k}: {format_seconds(v)}' for k, v in timing.items())})." if timing else
        "No timing was recorded."])
    teacher_section = Section("Teachers", [
        f"A teacher's accuracy is its final validation pretext accuracy (the teacher students use). The plateau is "
        f"the first epoch after which the {PLATEAU_SMOOTHING}-epoch moving average never rises "
        f"{100 * PLATEAU_RISE:.0f} points (about one standard error of a value) again.",
        Table(["teacher", "epochs", "final val pretext acc. (%)", "plateau"], _teacher_rows(teachers))])
    figure = plot_gains(results, report_dir / FIGURES_DIR) if results else None
    gains = Section("Gains over the twin", [
        Table(["student", "teacher acc. (%)", *[label for _, label in GAIN_METRICS],
               "epochs saved to the twin's best", "student − teacher (val acc.)"], gain_rows(results)),
        *([Figure(figure, "Student − twin against the teacher's validation accuracy, mean and 95% band over "
                          "(draw, seed) pairs")] if figure else []),
        "Per draw:",
        Table(["student", "draw", *[label for _, label in GAIN_METRICS]], per_draw_rows(results))])
    claims = Section("The paper's claims, by regime", claim_blocks(results))
    return [setup, teacher_section, gains, claims], study_summary(results)


def _read_timing(directory: Path) -> dict[str, float]:
    path = runs.timing_path(directory)
    timing = read_json(path, []) if path.is_file() else {}
    return {k: float(v) for k, v in timing.items() if isinstance(v, (int, float))} if isinstance(timing, dict) else {}
