"""`vidkd demo`: the whole pipeline, small, on the built-in synthetic dataset.

Writes the dataset (reused when present), runs the reduced grid of the `demo_synthetic` preset
(baselines, students of one teacher, random-init and supervised references, evaluations, 3
seeds), and writes the report. Running it again skips everything that is finished. Steps are
reported through `on_step`, so the CLI can print them; the library itself prints nothing.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

from vidkd import runs
from vidkd.apps.grid import add_time, run_experiment
from vidkd.errors import DatasetError
from vidkd.report import write_report
from vidkd.report.results import load_experiment
from vidkd.report.stats import experiment_time, training_share
from vidkd.synthetic import format_summary, write_synthetic_dataset
from vidkd.utils.io import atomic_write_json

DEMO_PRESET = "demo_synthetic"


def run_demo(out: Path, data_root: Path | None = None, overrides: list[str] | None = None,
             on_step: Callable[[str], None] = lambda message: None) -> Path:
    """Run the demo into `out`; returns the path of the report (Markdown; HTML beside it)."""
    with runs.one_writer(Path(out), "demo directory"):
        return _run_demo(Path(out), data_root, overrides, on_step)


def _run_demo(out: Path, data_root: Path | None, overrides: list[str] | None,
              on_step: Callable[[str], None]) -> Path:
    start = time.perf_counter()
    given = data_root is not None
    data_root = Path(data_root) if given else runs.demo_data_dir(out)
    if not given or not data_root.exists():  # the built-in dataset, written once and reused
        on_step(f"[1/3] synthetic dataset at {data_root}")
        try:
            on_step(format_summary(write_synthetic_dataset(data_root)))
        except DatasetError:
            # e.g. a demo of an older vidkd: its runs were trained on other videos, never mix them in
            raise DatasetError(f"{data_root} holds another dataset than this version's synthetic one (a demo of an "
                               f"older vidkd?); remove {out} to run the demo again there, or pass another --out") from None
    else:  # a dataset of the user's, in the UCF101 layout (the synthetic one included), used as it is
        on_step(f"[1/3] using the dataset at {data_root}")
    data_seconds = time.perf_counter() - start
    on_step(f"[2/3] training and evaluating the demo grid in {out}")
    grid_start = time.perf_counter()
    run_experiment(DEMO_PRESET, out, overrides=[f"base.data.root={data_root}", *(overrides or [])])
    timing = add_time(runs.timing_path(out), {"writing data": data_seconds, "grid": time.perf_counter() - grid_start})
    on_step("[3/3] writing the report")
    report_start = time.perf_counter()
    report = write_report(out)
    timing["report"] = time.perf_counter() - report_start  # the report is rewritten whole: its last time counts
    atomic_write_json(runs.timing_path(out), timing)
    parts, total = experiment_time(load_experiment(out))
    lines = [f"  {name:<46s} {seconds / 60:5.1f} min  {100 * seconds / total:3.0f}%" for name, seconds in parts.items()]
    on_step(f"\ndemo finished in {(time.perf_counter() - start) / 60:.1f} min. Report: {report}\n"
            f"  (HTML: {report.with_suffix('.html')}; figures in {report.parent / 'figures'})\n"
            f"where the experiment's time went ({total / 60:.1f} min over every invocation):\n"
            + "\n".join(lines) + f"\n  {training_share(parts, total)}")
    return report
