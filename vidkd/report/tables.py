"""What the report shows: Sections of prose, Tables and Figures, built from an Experiment.

`build_sections` writes the figures (`figures.py`) and the efficiency cache (`efficiency.py`) as a
side effect; turning the sections into Markdown or HTML is `render.py`'s work.
"""

from __future__ import annotations

import datetime as dt
import math
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from vidkd import runs
from vidkd.protocol_specs import PROTOCOL_SPECS, RETRIEVAL_METRICS, ProtocolSpec
from vidkd.report import figures, published
from vidkd.report.efficiency import efficiency_key, load_or_measure
from vidkd.report.results import ARCH_NAMES, MAIN_METRIC, Experiment, Group, Run, arch_rank, group_runs
from vidkd.report.summary import KdRow, SslRow
from vidkd.report.stats import (
    MISSING,
    baseline_group,
    experiment_time,
    format_epochs,
    format_percent,
    format_seconds,
    seeds_phrase,
    summarise_run,
    target_accuracy,
    training_share,
)
from vidkd.result_record import ResultRecord
from vidkd.utils.checkpoint import WEIGHTS_FILE

FIGURES_DIR = "figures"  # under the report directory
EFFICIENCY_FILE = "efficiency.json"  # under the report directory


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


def _evaluation_setting(exp: Experiment) -> str:
    """' on split 2, 25% of the labels' when the evaluations are not split 1 with every label."""
    parts = []
    if exp.split != 1:
        parts.append(f"split {exp.split}")
    if exp.fraction < 1:
        parts.append(f"{100 * exp.fraction:g}% of the labels")
    if exp.finetune_fraction != exp.fraction:
        parts.append(f"fine-tuning on {100 * exp.finetune_fraction:g}% of the labels")
    return f" (evaluated on {', '.join(parts)})" if parts else ""


def _header_section(exp: Experiment, groups: list[Group]) -> Section:
    seeds = sorted({r.seed for r in exp.runs if r.seed is not None})
    status = [r.status for r in exp.runs]
    done = sum(s == "done" for s in status)
    started = dt.datetime.fromtimestamp(runs.plan_path(exp.directory).stat().st_mtime) if not exp.single_run else None
    lines = [
        f"**Dataset:** {exp.dataset} · **epochs planned:** {exp.epochs or MISSING} · "
        f"**seeds:** {', '.join(map(str, seeds)) or MISSING} · **runs:** {len(exp.runs)} "
        f"({done} done) in {len(groups)} configurations · "
        f"**evaluations planned:** {', '.join(exp.plan.evaluations) or 'none'}"
        + (f" (students: {', '.join(students) or 'none'})"
           if (students := exp.plan.student_evaluations) is not None
           and students != exp.plan.evaluations else "")
        + _evaluation_setting(exp),
        (f"Experiment planned {started:%Y-%m-%d %H:%M}; " if started else "")
        + f"report written {dt.datetime.now():%Y-%m-%d %H:%M} from `{exp.directory}`.",
    ]
    missing = []
    for run in exp.runs:
        if run.status != "done":
            missing.append(f"run `{run.name}`: {run.status}")
        planned = exp.plan.evaluations_of(run.kind)
        absent = [p for p in planned if p not in run.evals]
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


def _result_record(exp: Experiment, run: Run, protocol: str) -> ResultRecord | None:
    """The whole result record of `protocol` for `run` in the experiment's setting (None if absent)."""
    return run.records.get(protocol)


def _published_comparison(exp: Experiment, group: Group, protocol: str) -> published.Comparison:
    """How `group`'s result of `protocol` relates to the published ones: its config.yaml and result settings."""
    run = next((r for r in group.runs if protocol in r.evals), group.runs[0])
    config = next((r.config for r in group.runs if r.config), {})
    setting = published.run_setting(config, _result_record(exp, run, protocol), random_init=group.kind == "random",
                                    dataset=exp.dataset, split=exp.split,
                                    fraction=exp.finetune_fraction if protocol == "finetune" else 1.0, width=group.width)
    return published.compare(protocol, group.arch, setting)


def _published_column(exp: Experiment, groups: list[Group], protocol: str, metric: str, headers: list[str],
                      rows: list[list[str]], title: str) -> tuple[bool, str]:
    """Append the published column (`title`, with `{dataset}` filled in) when some group's setting matches a
    published one, the value in that group's row only; return (any match, a note on every group with a
    result but no match)."""
    comparisons = [_published_comparison(exp, g, protocol) if any(protocol in r.evals for r in g.runs) else None
                   for g in groups]
    matched = any(c is not None and c.matches for c in comparisons)
    if matched:
        datasets = dict.fromkeys(c.published.dataset.upper() for c in comparisons if c is not None and c.matches
                                 and c.published is not None)
        headers.append(title.format(dataset="/".join(datasets)))
        for row, comparison in zip(rows, comparisons):
            value = comparison.value(metric) if comparison is not None else None
            row.append(f"{value:.1f}" if value is not None else MISSING)
    others = [f"{g.label}: {c.describe(protocol, g.arch, metric)}" for g, c in zip(groups, comparisons)
              if c is not None and not c.matches]
    note = ""
    if others:
        note = (f"{'Not set beside a published number' if matched else 'Published numbers not set beside ours'} "
                f"({protocol}; only a result whose whole setting matches is): " + "; ".join(others) + ".")
    return matched, note


_OWN_SECTIONS = ("retrieval", "finetune", "knn", "linear")  # the protocols `_evaluation_sections` lays out by hand


def _protocol_section(spec: ProtocolSpec, groups: list[Group]) -> Section:
    """Any other protocol: its metrics (`ProtocolSpec.metrics`, headline first) as percentages."""
    rows = [[g.label, str(len(g.runs)), *(format_percent(_eval_values(g, spec.name, m)) for m in spec.metrics)]
            for g in groups]
    return Section(f"{spec.name} (%)", [Table(["model", "seeds", *spec.metrics], rows)])


def _evaluation_sections(exp: Experiment, trained: list[Group]) -> list[Section]:
    groups = trained + exp.random_init
    sections = []
    planned = set(exp.plan.evaluations)
    any_published = False

    def shown(*protocols: str) -> bool:  # planned, or present in some run
        return any(p in planned or any(p in r.evals for g in groups for r in g.runs) for p in protocols)

    if shown("retrieval"):
        headers = ["model", "seeds", *RETRIEVAL_METRICS]
        rows = [[group.label, str(len(group.runs))]
                + [format_percent(_eval_values(group, "retrieval", k)) for k in RETRIEVAL_METRICS] for group in groups]
        headline = PROTOCOL_SPECS["retrieval"].headline
        matched, note = _published_column(exp, groups, "retrieval", headline, headers, rows,
                                           f"PCL {headline} (published)")
        any_published |= matched
        sections.append(Section("Retrieval (R@k %, test clips query train clips)",
                                [Table(headers, rows)] + ([note] if note else [])))

    if shown("finetune"):
        headers = ["model", "seeds", "video top-1 %", "clip top-1 %"]
        video, clip = PROTOCOL_SPECS["finetune"].metrics  # the headline first
        rows = [[group.label, str(len(group.runs)), format_percent(_eval_values(group, "finetune", video)),
                 format_percent(_eval_values(group, "finetune", clip))] for group in groups]
        matched, note = _published_column(exp, groups, "finetune", video, headers, rows,
                                           "PCL video top-1 on {dataset} (published)")
        any_published |= matched
        repeats = max((len(r.evals.get("finetune", {}).get("repeats", [])) for g in groups for r in g.runs),
                      default=0)
        notes = [f"Each value is the mean of {repeats} fine-tunings of the network, each on its own draw of the "
                 "labelled videos." if repeats > 1 else "", note]
        sections.append(Section("Fine-tuning (top-1 %)", [Table(headers, rows)] + [n for n in notes if n]))

    if shown("knn", "linear"):
        rows = [[g.label, str(len(g.runs)), format_percent(_eval_values(g, "knn", PROTOCOL_SPECS["knn"].headline)),
                 format_percent(_eval_values(g, "linear", PROTOCOL_SPECS["linear"].headline))] for g in groups]
        sections.append(Section("Frozen-feature probes (top-1 %)",
                                [Table(["model", "seeds", "kNN top-1 %", "linear probe top-1 %"], rows)]))
    sections += [_protocol_section(spec, groups) for name, spec in PROTOCOL_SPECS.items()
                 if name not in _OWN_SECTIONS and shown(name)]

    if any_published:
        note = (f"Published numbers: {published.PCL_SOURCE}; set beside ours only where the whole setting matches "
                "(backbone, width, pretraining method, modality, epochs, dataset and split, clip size, evaluation "
                "protocol, evaluation dataset and split, labelled fraction; read from each run's config.yaml and "
                "result file).")
    else:
        note = (f"Published PCL numbers are not shown: no result of this experiment ({exp.dataset}) was measured in "
                "a published setting (PCL (VCP) pretrained for 200 epochs on residual 16×112×112 clips of UCF101 "
                "split 1 at full width, evaluated with eval.protocol pcl on split 1 with every label), so its numbers "
                "are not comparable with them; what differs is listed under each table. "
                f"Source for the published numbers: {published.PCL_SOURCE}.")
    if not sections:
        sections.append(Section("Evaluations", ["No evaluation was planned or found."]))
    sections[-1].blocks.append(note)
    return sections


def _efficiency_section(exp: Experiment, groups: list[Group], cache_path: Path) -> Section:
    sizes: dict[tuple[str, float, tuple[int, ...]], list[Group]] = {}
    unknown = []
    for group in groups:
        if group.input_shape is None:
            unknown.append(group.label)
            continue
        sizes.setdefault((group.arch, group.width or 1.0, group.input_shape), []).append(group)
    costs = load_or_measure(cache_path, list(sizes))
    rows = []
    for (arch, width, shape), members in sorted(sizes.items(), key=lambda kv: (arch_rank(kv[0][0]), -kv[0][1])):
        cost = costs[efficiency_key(arch, width, shape)]
        weights = next((b for g in members for r in g.runs if (b := r.weights_bytes()) is not None), None)
        trained = []
        for g in members:
            bests = [max(v) for r in g.runs if (v := r.series(MAIN_METRIC)[1])]
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
               f"{WEIGHTS_FILE} (MB)", "trained as: best val pretext %"], rows),
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


def claims_section(summary: dict) -> Section:
    """What pretraining buys and the KD paper's claims, decided over seeds (report/summary.json has the numbers)."""
    shown = {True: "yes", False: "no", None: "undecided"}
    rows = [[c["claim"], shown[c["holds"]], c["evidence"]] for c in summary["claims"]]
    return Section("The claims, here", [
        "Each claim holds only if the 95% interval over seeds of every paired difference lies on its side of 0 "
        "(for the 10-point bar: above 0, with a mean gain of at least 10 points; it fails when the interval lies "
        "below 10 points); with one seed nothing is decided. `summary.json` beside this report has every number.",
        Table(["claim", "holds", "evidence"], rows)])


def _interval(interval: list[float] | None, scale: float = 100.0) -> str:
    return MISSING if interval is None else f"[{scale * interval[0]:+.1f}, {scale * interval[1]:+.1f}]"


def ssl_section(summary: dict) -> Section:
    """Floor, SSL and ceiling side by side: each pretrained network against itself at random init."""
    rows, ssl_rows = [], [SslRow.from_json(r) for r in summary["ssl_vs_random"]]
    for r in ssl_rows:
        closed = r.gap_closed
        name = ARCH_NAMES.get(r.arch, r.arch)
        if r.width not in (None, 1.0):
            name += f" ×{r.width:g}"
        rows.append([name, r.protocol, _pct(r.random_init), _pct(r.pretrained),
                     _pct(r.supervised), _interval(r.difference_ci95),
                     MISSING if closed is None else f"{100 * closed:.0f}%", str(len(r.seeds))])
    ceiling_seeds = sorted({seed for r in ssl_rows for seed in r.supervised_seeds or [] if seed is not None})
    all_seeds = sorted({seed for r in ssl_rows for seed in r.seeds if seed is not None})
    of_seeds = f" ({seeds_phrase(ceiling_seeds)} only)" if ceiling_seeds and ceiling_seeds != all_seeds else ""
    return Section("What pretraining buys: random init, pretrained, supervised", [
        "Top-1 % on the test split (unseen actors), mean over seeds; the difference is pretrained minus random "
        "init, paired by seed, with its 95% interval in points. Supervised: the random network fine-tuned on every "
        f"training label{of_seeds}. Gap closed: the share of the random-to-supervised gap the pretrained features "
        "close.",
        Table(["backbone", "protocol", "random init", "pretrained", "supervised", "difference (95%)", "gap closed",
               "seeds"], rows)])


def kd_section(summary: dict) -> Section:
    """Every student against its same-seed, same-budget from-scratch twin."""
    names = {"best_val_pretext_acc": "best val pretext %", "epochs_to_twin_best": "epochs to the twin's best"}
    rows = []
    for r in map(KdRow.from_json, summary["kd_vs_twin"]):
        value = (lambda v: f"{v:.1f}") if r.in_epochs else _pct
        rows.append([f"{ARCH_NAMES.get(r.teacher, r.teacher)} → {ARCH_NAMES.get(r.student, r.student)}",
                     names.get(r.metric, r.metric.replace("_", " ") + " %"), value(r.student_value),
                     value(r.twin), _interval(r.difference_ci95, 1.0 if r.in_epochs else 100.0),
                     str(len(r.seeds))])
    return Section("Students against their twins", [
        "Mean over seeds; the difference is student minus twin, paired by seed, with its 95% interval.",
        Table(["teacher → student", "metric", "student", "twin", "difference (95%)", "seeds"], rows)])


def time_section(exp: Experiment) -> Section:
    """Where the experiment's time went (training steps first: the time that learns)."""
    parts, total = experiment_time(exp)
    rows = [[name, format_seconds(seconds), f"{100 * seconds / total:.0f}%" if total else MISSING]
            for name, seconds in parts.items()]
    return Section("Where the time went", [Table(["work", "time", "share"], rows), training_share(parts, total) + "."])


def build_sections(exp: Experiment, report_dir: Path, summary: dict | None = None) -> list[Section]:
    """Everything the report shows, in order (writes the figures and the efficiency cache)."""
    groups = group_runs(exp.runs)
    sections = [_header_section(exp, groups), _pretraining_section(groups),
                _figures_section(groups, report_dir / FIGURES_DIR)]
    if summary is not None and summary["ssl_vs_random"]:
        sections.append(ssl_section(summary))
    if summary is not None and (summary["ssl_vs_random"] or any(group.kind == "student" for group in groups)):
        sections.append(claims_section(summary))
    if summary is not None and any(group.kind == "student" for group in groups):
        if summary["kd_vs_twin"]:
            sections.append(kd_section(summary))
    sections += _evaluation_sections(exp, groups)
    sections.append(_efficiency_section(exp, groups, report_dir / EFFICIENCY_FILE))
    sections.append(_runs_section(groups))
    sections.append(time_section(exp))
    sections.append(Section("Reading this report", [READING_GUIDE]))
    return sections

