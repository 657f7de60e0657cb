"""`vidkd demo`: the whole pipeline, small, on the built-in synthetic dataset.

Writes the dataset (reused when present), runs the reduced grid of the `demo_synthetic` preset
(baselines, one teacher and three students, evaluations), and writes the report. Running it
again skips everything that is finished. Steps are reported through `on_step`, so the CLI can
print them; the library itself prints nothing.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

from vidkd.apps.grid import run_experiment
from vidkd.report import write_report
from vidkd.synthetic import format_summary, is_synthetic_dataset, write_synthetic_dataset

DEMO_PRESET = "demo_synthetic"


def run_demo(out: Path, data_root: Path | None = None, overrides: list[str] | None = None,
             on_step: Callable[[str], None] = lambda message: None) -> Path:
    """Run the demo into `out`; returns the path of the report (Markdown; HTML beside it)."""
    start = time.perf_counter()
    out = Path(out)
    data_root = Path(data_root) if data_root is not None else out / "data"
    if is_synthetic_dataset(data_root) or not data_root.exists():
        on_step(f"[1/3] synthetic dataset at {data_root}")
        on_step(format_summary(write_synthetic_dataset(data_root)))
    else:  # any dataset in the UCF101 layout
        on_step(f"[1/3] using the dataset at {data_root}")
    on_step(f"[2/3] training and evaluating the demo grid in {out}")
    run_experiment(DEMO_PRESET, out, overrides=[f"base.data.root={data_root}", *(overrides or [])])
    on_step("[3/3] writing the report")
    report = write_report(out)
    on_step(f"\ndemo finished in {(time.perf_counter() - start) / 60:.1f} min. Report: {report}\n"
            f"  (HTML: {report.with_suffix('.html')}; figures in {report.parent / 'figures'})")
    return report
