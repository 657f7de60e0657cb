"""`vidkd demo`: the whole pipeline, small, on the built-in synthetic dataset.

Writes the dataset (reused when present), runs the reduced grid of `configs/demo_synthetic.yaml`
(baselines, one teacher and three students, evaluations), and writes the report. Running it
again skips everything that is finished.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from vidkd.errors import ConfigError

log = logging.getLogger("vidkd.demo")

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
DEMO_CONFIG = CONFIGS / "demo_synthetic.yaml"


def run_demo(out: Path, data_root: Path | None = None, overrides: list[str] | None = None) -> int:
    from vidkd.data.synthetic import format_summary, write_synthetic_dataset
    from vidkd.experiments.grid import run_experiment
    from vidkd.experiments.report import write_report

    if not DEMO_CONFIG.is_file():
        raise ConfigError(f"the demo config is missing ({DEMO_CONFIG}); run the demo from a clone of the vidkd "
                          "repository (make demo)")
    start = time.perf_counter()
    out = Path(out)
    data_root = Path(data_root) if data_root else out / "data"
    print(f"[1/3] synthetic dataset at {data_root}")
    print(format_summary(write_synthetic_dataset(data_root)))
    print(f"[2/3] training and evaluating the demo grid in {out}")
    run_experiment(DEMO_CONFIG, out, overrides=[f"base.data.root={data_root}", *(overrides or [])])
    print("[3/3] writing the report")
    report = write_report(out)
    minutes = (time.perf_counter() - start) / 60
    print(f"\ndemo finished in {minutes:.1f} min. Report: {report}")
    print(f"  (HTML: {report.with_suffix('.html')}; figures in {report.parent / 'figures'})")
    return 0
