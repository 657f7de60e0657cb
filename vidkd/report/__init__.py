"""Reports of experiments and runs: figures and a Markdown + HTML document (`write_report`).

    results.py     reading an experiment / a run directory into Run, Group, Experiment
    stats.py       mean ± std over seeds, first epoch reaching a target, run summaries
    tables.py      the report's sections, tables and prose
    figures.py     matplotlib curves
    efficiency.py  parameters, FLOPs and CPU latency per network (cached)
    published.py   published PCL numbers and when they are comparable
    render.py      Markdown and HTML rendering, `write_report(directory) -> Path`

Directory and file names of runs and experiments come from `vidkd.runs`.
"""

from vidkd.report.render import render_html, render_markdown, write_report
from vidkd.report.results import Experiment, Group, Run, group_runs, load_experiment, load_run
from vidkd.report.stats import (
    RunSummary,
    baseline_group,
    first_epoch_reaching,
    format_epochs,
    format_percent,
    format_seconds,
    format_values,
    mean_std,
    summarise_run,
    target_accuracy,
    total_wall_seconds,
)
from vidkd.report.tables import Figure, Section, Table, build_sections

__all__ = [
    "Experiment",
    "Figure",
    "Group",
    "Run",
    "RunSummary",
    "Section",
    "Table",
    "baseline_group",
    "build_sections",
    "first_epoch_reaching",
    "format_epochs",
    "format_percent",
    "format_seconds",
    "format_values",
    "group_runs",
    "load_experiment",
    "load_run",
    "mean_std",
    "render_html",
    "render_markdown",
    "summarise_run",
    "target_accuracy",
    "total_wall_seconds",
    "write_report",
]
