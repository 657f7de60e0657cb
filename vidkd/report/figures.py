"""The report's figures (matplotlib): curves per epoch, mean over seeds with a min-max band.

Colour tells the architecture, line style the kind: a from-scratch baseline (a teacher) is solid,
a distilled student dashed; a network at reduced width gets round markers.

Figures are built with matplotlib's object API (`Figure`, rendered by Agg when saved), never
through pyplot: importing or using this module changes no global backend and opens no window.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from vidkd.report.results import MAIN_METRIC

if TYPE_CHECKING:
    from vidkd.report.results import Group

ARCH_COLOURS = {"c3d": "tab:blue", "r3d": "tab:orange", "r21d": "tab:green", "r3d_18": "tab:red",
                "mc3_18": "tab:purple", "r2plus1d_18": "tab:brown"}
_SPARE_COLOURS = ["tab:pink", "tab:gray", "tab:olive", "tab:cyan"]

METRIC_LABELS = {
    "val_pretext_acc": "val pretext accuracy (%)",
    MAIN_METRIC: "val pretext accuracy (%)",  # a method's main metric: CVRL's pretext task is instance discrimination
    "val_knn_top1": "kNN top-1 (%)",
    "train_pretext_acc": "train pretext accuracy (%)",
    "train_loss": "train loss",
    "train_kd_loss": "train KD loss",
}
PERCENT_METRICS = (MAIN_METRIC, "val_pretext_acc", "val_knn_top1", "train_pretext_acc")


def second_metric(groups: Sequence["Group"]) -> str:
    """kNN top-1 beside the pretext accuracy; the train pretext accuracy when no run probed kNN
    (`train.knn_every: 0`), rather than an empty panel."""
    probed = any(len(run.series("val_knn_top1")[0]) for group in groups for run in group.runs)
    return "val_knn_top1" if probed else "train_pretext_acc"


def panel_title(metric: str) -> str:
    """A metric's axis label without its unit, for a panel title ("kNN top-1")."""
    return METRIC_LABELS[metric].removesuffix(" (%)")


def arch_colour(arch: str) -> str:
    if arch in ARCH_COLOURS:
        return ARCH_COLOURS[arch]
    return _SPARE_COLOURS[sum(map(ord, arch)) % len(_SPARE_COLOURS)]


def mean_curve(group: "Group", key: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(epochs, mean, min, max) of `key` over the group's seeds, at every epoch some seed logged it."""
    by_epoch: dict[int, list[float]] = {}
    for run in group.runs:
        for epoch, value in zip(*run.series(key)):
            by_epoch.setdefault(epoch, []).append(value)
    epochs = np.array(sorted(by_epoch), dtype=float)
    values = [np.array(by_epoch[int(e)]) for e in epochs]
    scale = 100.0 if key in PERCENT_METRICS else 1.0
    mean = np.array([v.mean() for v in values]) * scale
    low = np.array([v.min() for v in values]) * scale
    high = np.array([v.max() for v in values]) * scale
    return epochs, mean, low, high


def _plot_group(ax: Axes, group: "Group", key: str) -> bool:
    epochs, mean, low, high = mean_curve(group, key)
    if len(epochs) == 0:
        return False
    colour = arch_colour(group.arch)
    style = "-" if group.kind == "baseline" else "--"
    marker = "o" if (group.width or 1.0) < 1.0 else None
    seeds = len([r for r in group.runs if r.series(key)[0]])
    label = group.label + (f" ({seeds} seeds)" if seeds > 1 else "")
    ax.plot(epochs, mean, style, color=colour, marker=marker, markersize=3, label=label)
    if seeds > 1:
        ax.fill_between(epochs, low, high, color=colour, alpha=0.15, linewidth=0)
    return True


def _panel(ax: Axes, groups: Sequence["Group"], key: str, title: str) -> None:
    drawn = [_plot_group(ax, g, key) for g in groups]
    ax.set_title(title, fontsize=10)
    ax.set_xlabel("epoch")
    ax.set_ylabel(METRIC_LABELS.get(key, key))
    ax.grid(alpha=0.3)
    if any(drawn):
        ax.legend(fontsize=8)
    else:
        ax.text(0.5, 0.5, "no data yet", ha="center", va="center", transform=ax.transAxes, color="gray")


def save_figure(fig: Figure, out_dir: Path, stem: str) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    png = out_dir / f"{stem}.png"
    fig.savefig(png, dpi=110)
    fig.savefig(out_dir / f"{stem}.svg")
    return png


def plot_baselines(baselines: Sequence["Group"], out_dir: Path) -> Path:
    """Every from-scratch baseline side by side: val pretext accuracy and kNN top-1 per epoch
    (train pretext accuracy when no run probed kNN)."""
    fig = Figure(figsize=(11, 4))
    axes = fig.subplots(1, 2)
    second = second_metric(baselines)
    _panel(axes[0], baselines, MAIN_METRIC, "Baselines: val pretext accuracy")
    _panel(axes[1], baselines, second, f"Baselines: {panel_title(second)}")
    return save_figure(fig, out_dir, "baselines")


def plot_teacher_students(teacher: "Group", students: Sequence["Group"], out_dir: Path) -> Path:
    """One teacher against its students: the same-architecture student first, then all of them."""
    same_arch = [s for s in students if s.arch == teacher.arch]
    rows = [(f"{teacher.label} vs same-architecture student", same_arch)] if same_arch else []
    rows.append((f"{teacher.label} vs all its students", list(students)))
    fig = Figure(figsize=(11, 4 * len(rows)))
    axes = fig.subplots(len(rows), 2, squeeze=False)
    second = second_metric([teacher, *students])
    for (title, shown), ax_row in zip(rows, axes):
        _panel(ax_row[0], [teacher, *shown], MAIN_METRIC, f"{title}: val pretext accuracy")
        _panel(ax_row[1], [teacher, *shown], second, f"{title}: {panel_title(second)}")
    return save_figure(fig, out_dir, f"teacher_{teacher.slug}")


def plot_train_loss(groups: Sequence["Group"], out_dir: Path) -> Path:
    """Train loss of every configuration; a second panel with the KD term when students exist."""
    students = [g for g in groups if g.kind == "student"]
    panels = 2 if students else 1
    fig = Figure(figsize=(5.5 * panels, 4))
    axes = fig.subplots(1, panels, squeeze=False)
    _panel(axes[0][0], groups, "train_loss", "Train loss (PCL, + KD for students)")
    if students:
        _panel(axes[0][1], students, "train_kd_loss", "Students: KD term")
    return save_figure(fig, out_dir, "train_loss")
