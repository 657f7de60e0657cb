"""What a backbone costs: parameters, FLOPs per clip, CPU latency per clip.

Each (arch, width, input shape) is measured once and cached in a JSON file, so a report can be
rebuilt as often as needed without timing the networks again.
"""

from __future__ import annotations

import json
import logging
import statistics
import time
from pathlib import Path
from typing import Any, Sequence

import torch

from vidkd.models import build_backbone, count_flops, count_parameters
from vidkd.utils.io import atomic_write_json

log = logging.getLogger("vidkd.report")

LATENCY_THREADS = 1  # one thread: reproducible on a shared machine, and comparable across networks
LATENCY_WARMUP = 2
LATENCY_MIN_RUNS = 3
LATENCY_MAX_RUNS = 10
LATENCY_BUDGET_S = 3.0  # stop timing once this much was spent (after LATENCY_MIN_RUNS)


def efficiency_key(arch: str, width: float, input_shape: Sequence[int]) -> str:
    """Cache key, e.g. 'r3d|w1|3x16x112x112'."""
    return f"{arch}|w{float(width):g}|{'x'.join(str(int(s)) for s in input_shape)}"


def measure_latency_ms(model: torch.nn.Module, input_shape: Sequence[int], threads: int = LATENCY_THREADS) -> float:
    """Median CPU milliseconds of one batch-1 forward (eval, no_grad, `threads` threads) after warm-up runs."""
    clip = torch.randn(1, *input_shape)
    times: list[float] = []
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with torch.no_grad():
            for _ in range(LATENCY_WARMUP):
                model(clip)
            while len(times) < LATENCY_MAX_RUNS and (len(times) < LATENCY_MIN_RUNS or sum(times) < LATENCY_BUDGET_S):
                start = time.perf_counter()
                model(clip)
                times.append(time.perf_counter() - start)
    finally:
        torch.set_num_threads(previous_threads)
    return 1000.0 * statistics.median(times)


def measure_efficiency(arch: str, width: float, input_shape: Sequence[int]) -> dict[str, Any]:
    """Parameters, GFLOPs and CPU latency of `build_backbone(arch, width)` on one clip of `input_shape` (C, T, H, W)."""
    model = build_backbone(arch, width=width, in_channels=int(input_shape[0])).eval()
    return {
        "arch": arch,
        "width": float(width),
        "input_shape": [int(s) for s in input_shape],
        "params": int(count_parameters(model)),
        "gflops": count_flops(model, input_shape) / 1e9,
        "cpu_latency_ms": measure_latency_ms(model, input_shape),
        "cpu_threads": LATENCY_THREADS,
        "torch": torch.__version__,
    }


def load_or_measure(cache_path: Path, wanted: Sequence[tuple[str, float, Sequence[int]]]) -> dict[str, dict[str, Any]]:
    """Efficiency of every (arch, width, input_shape) in `wanted`, measuring only those not cached yet.

    A network that cannot be built (an unknown arch in an old plan) gets an entry with an "error"
    (not cached, so it is tried again next time) and is reported as missing rather than failing the report.
    """
    cache_path = Path(cache_path)
    cache: dict[str, dict[str, Any]] = {}
    if cache_path.is_file():
        try:
            cache = json.loads(cache_path.read_text())
        except json.JSONDecodeError:
            log.warning("ignoring unreadable efficiency cache %s; measuring again", cache_path)
    results = dict(cache)
    measured = False
    for arch, width, shape in wanted:
        key = efficiency_key(arch, width, shape)
        if key in results:
            continue
        log.info("measuring %s", key)
        try:
            results[key] = cache[key] = measure_efficiency(arch, width, shape)
            measured = True
        except Exception as exc:  # a report must not die on one network; say why instead
            results[key] = {"arch": arch, "width": float(width), "input_shape": list(shape),
                            "error": f"{type(exc).__name__}: {exc}".splitlines()[0][:200]}
    if measured:
        atomic_write_json(cache_path, cache)
    return results
