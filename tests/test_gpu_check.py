"""benchmarks/gpu_check.py without a GPU: one line and exit 0; `--dry-run-cpu` runs every row on the CPU."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "gpu_check.py"
DOC = ROOT / "docs" / "gpu.md"


def _run(*args: str, timeout: int) -> subprocess.CompletedProcess:
    # no GPU even where there is one; one thread: the dry run's tensors are tiny and the machine may be shared
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, str(SCRIPT), *args], env=env, capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT)


def test_without_cuda_it_says_so_in_one_line_and_exits_0(tmp_path):
    out = tmp_path / "gpu.md"
    result = _run("--out", str(out), timeout=60)
    assert result.returncode == 0, result.stderr[-2000:]
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 1, result.stdout
    assert "no CUDA device found" in lines[0] and "--dry-run-cpu" in lines[0]
    assert not out.exists()


def test_dry_run_cpu_runs_every_row_and_writes_the_report_elsewhere(tmp_path):
    doc_before = DOC.read_bytes() if DOC.exists() else None
    out = tmp_path / "gpu.md"
    result = _run("--dry-run-cpu", "--out", str(out), timeout=120)  # about 40 s on 2 busy cores
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    text = out.read_text()
    rows = [line for line in text.splitlines() if line.startswith("| ") and "(cpu, tiny)" in line]
    for arch in ("c3d", "r3d", "r21d"):
        for precision in ("fp32", "bf16"):
            mine = [r for r in rows if r.startswith(f"| {arch} (cpu, tiny) | {precision}")]
            kinds = [r.split(" | ")[3] for r in mine]
            assert kinds.count("bare step") == 2, mine  # two batch sizes
            assert "loop, original videos" in kinds and "loop, prepared copy" in kinds, mine
            assert all(" — | — | — |" not in r or "skipped" in r for r in mine), mine
    assert any("torchrun" in r and "| exit 0 |" in r for r in rows), rows
    assert any("--resume" in r and "| identical |" in r for r in rows), rows  # bit-identical on the CPU
    assert any("augmentation on cpu" in r and "| within float tolerance |" in r for r in rows), rows
    assert "CPU dry run" in text and "python benchmarks/gpu_check.py --dry-run-cpu" in text
    assert "| c3d (cpu, tiny) |" in result.stdout  # the table is printed too
    assert (DOC.read_bytes() if DOC.exists() else None) == doc_before  # docs/gpu.md is not touched
