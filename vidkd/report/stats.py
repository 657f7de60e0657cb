"""Statistics over seeds and epochs: mean ± std, the first epoch reaching a target, run summaries."""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import Any, Sequence

from vidkd import runs
from vidkd.report.results import MAIN_METRIC, SUPERVISED, Experiment, Group, Run, read_json

NEAR_FRACTION = 0.95  # "converged": within 95% of the target accuracy
MISSING = "—"


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
    epochs, pretext = run.series(MAIN_METRIC)
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


def teacher_group(groups: Sequence[Group], student: Group) -> Group | None:
    """The group of a student's teacher: the teacher run of its budget in a teacher-strength study,
    else (and for a budget equal to the baselines') the from-scratch baseline of the teacher's arch."""
    if student.teacher_epochs is not None:
        budget = next((g for g in groups if g.kind == "teacher" and g.arch == student.teacher_arch
                       and g.teacher_epochs == student.teacher_epochs), None)
        if budget is not None:
            return budget
    return baseline_group(groups, student.teacher_arch or "", None)


def teacher_label(student: Group) -> str:
    """'r3d', or 'r3d e32 (relational)' for a student of a budget or an arm of a study."""
    budget = f" e{student.teacher_epochs}" if student.teacher_epochs is not None else ""
    return f"{student.teacher_arch or '?'}{budget}{f' ({student.arm})' if student.arm else ''}"


def target_accuracy(baseline: Group | None) -> float | None:
    """The baseline's best val pretext accuracy, averaged over its seeds."""
    if baseline is None:
        return None
    bests = [max(vals) for run in baseline.runs if (vals := run.series(MAIN_METRIC)[1])]
    return statistics.fmean(bests) if bests else None


FINETUNING = ("finetune", SUPERVISED)  # evaluations that train a network
TRAINING_STEPS = "training steps"  # of pretraining
FINETUNING_STEPS = "training steps of fine-tuning evaluations"
FINETUNING_PART = "fine-tuning evaluations: setup and testing"
GRID_PARTS = (TRAINING_STEPS, FINETUNING_STEPS, "validation and probes", FINETUNING_PART,
              "evaluation")  # measured inside the grid


def time_breakdown(experiment_runs: Sequence[Run], random_runs: Sequence[Run] = (),
                   outside: dict[str, float] | None = None) -> dict[str, float]:
    """Seconds by kind of work: training steps and validation (from every run's metrics), the training
    steps of fine-tuning evaluations and the rest of them (their result records: `train_seconds`
    of `seconds`), the other evaluations, and `outside` (e.g. data writing, measured by the caller)."""
    steps = finetune_steps = validation = finetuning = evaluation = 0.0
    for run in list(experiment_runs) + list(random_runs):
        for m in run.metrics:
            steps += float(m.get("epoch_seconds") or 0.0)
            validation += float(m.get("val_seconds") or 0.0) + float(m.get("probe_seconds") or 0.0)
        for protocol, seconds in run.eval_seconds.items():
            if protocol in FINETUNING:
                trained = float(run.evals.get(protocol, {}).get("train_seconds") or 0.0)
                finetune_steps += trained
                finetuning += float(seconds) - trained
            else:
                evaluation += float(seconds)
    parts = {**(outside or {}), TRAINING_STEPS: steps}
    if finetune_steps:
        parts[FINETUNING_STEPS] = finetune_steps
    parts["validation and probes"] = validation
    if finetuning:
        parts[FINETUNING_PART] = finetuning
    parts["evaluation"] = evaluation
    return parts


OTHER_PART = "other (setup, data probing, loaders)"


def experiment_time(exp: Experiment) -> tuple[dict[str, float], float]:
    """Seconds by kind of work over the whole experiment, and their total, whichever invocations did it.

    The timing file holds the wall time of the grid summed over invocations (`vidkd demo` adds to
    it); what it has beyond the measured parts is setup. A total below the parts (an invocation
    killed before it could add its time) counts no setup rather than a negative one.
    """
    path = runs.timing_path(exp.directory)
    outside = read_json(path, []) if path.is_file() else {}
    outside = outside if isinstance(outside, dict) else {}
    measured = {k: float(v) for k, v in outside.items() if isinstance(v, (int, float)) and k != "grid"}
    parts = time_breakdown(exp.runs, [r for g in exp.random_init for r in g.runs], measured)
    grid = outside.get("grid")
    if isinstance(grid, (int, float)):
        parts[OTHER_PART] = max(0.0, float(grid) - sum(v for k, v in parts.items() if k in GRID_PARTS))
    return parts, sum(parts.values())


def training_share(parts: dict[str, float], total: float) -> str:
    """'77% of the time is training steps (pretraining 54%, fine-tuning evaluations 23%)': every
    optimizer step counts, the fine-tuning evaluations' as well as the pretraining's."""
    pretraining, finetuning = parts.get(TRAINING_STEPS, 0.0), parts.get(FINETUNING_STEPS, 0.0)
    if total <= 0:
        return "no time was measured"
    return (f"{100 * (pretraining + finetuning) / total:.0f}% of the time is training steps (pretraining "
            f"{100 * pretraining / total:.0f}%, fine-tuning evaluations {100 * finetuning / total:.0f}%)")


def seeds_phrase(seeds: Sequence[int]) -> str:
    """'seed 0' or 'seeds 0, 2'."""
    return f"seed{'s' if len(seeds) > 1 else ''} {', '.join(map(str, seeds))}"
