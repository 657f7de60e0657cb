"""Two vidkd trainings on one machine: torch's default threads against `configure_threads` with one core each.

    python benchmarks/bench_concurrent.py [--steps 30] [--variants alone,two-default,two-pinned,...]

Every process runs the same short CPU pretraining: the preset pcl_r3d_synthetic (R3D x0.25, batch 8
tuples of 3 clips of 8x48x48, videos decoded into memory, no DataLoader worker) on the default synthetic
dataset, one warm-up epoch of 2 steps and then one timed epoch of --steps steps (`Trainer.train_one_epoch`,
as bench_train.py's loop). The processes of a variant start together and wait for each other after their
warm-up, so their timed epochs overlap. Variants:

  alone            one process, torch's default thread count (the CPUs of its affinity mask)
  alone-planned    one process, `configure_threads` (the same on an unrestricted machine: no regression)
  two-default      two processes at once, torch's default threads each: the oversubscription
  two-planned      two at once, `configure_threads`, no mask: it cannot know about the other process
  two-pinned       two at once, each started on its own core (as `taskset -c K`), `configure_threads`
  two-pinned-late  two at once, each pinning itself to its own core after torch sized its thread pool, no
                   `configure_threads`: what a mask set inside the process costs without it
  alone-room       one process, torch threads = usable CPUs less one per DataLoader worker: with
                   `--set data.preload=false data.num_workers=1` against alone-planned (every usable CPU),
                   it measures whether the main process should leave room for its workers (it should not:
                   configure_threads keeps every CPU)

Prints clips/s per process and their sum. Other processes on the machine change every number; run it
on a quiet machine and more than once.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
VARIANTS = {  # name: (processes, threads: default | plan | room, pin before start, pin after import)
    "alone": (1, "default", False, False),
    "alone-planned": (1, "plan", False, False),
    "two-default": (2, "default", False, False),
    "two-planned": (2, "plan", False, False),
    "two-pinned": (2, "plan", True, False),
    "two-pinned-late": (2, "default", False, True),
    "alone-room": (1, "room", False, False),
}
DEFAULT_VARIANTS = [name for name in VARIANTS if name != "alone-room"]


# ----------------------------------------------------------------------------- one training process
def child(args: argparse.Namespace) -> None:
    import torch  # noqa: F401  (sizes its thread pool now, from the mask the process started with)

    if args.pin_late is not None:
        os.sched_setaffinity(0, {args.pin_late})
    sys.path.insert(0, str(HERE))
    import bench_train as bt
    from vidkd.utils.runtime import configure_threads, keep_freed_memory, usable_cpus

    keep_freed_memory()
    bt.quiet_vidkd()
    cfg = bt.preset_config(args.data, "r3d", args.steps, *args.set)
    line = configure_threads(cfg.data.num_workers).describe() if args.threads == "plan" else ""
    if args.threads == "room":
        torch.set_num_threads(max(1, usable_cpus() - cfg.data.num_workers))
    threads = torch.get_num_threads()
    with tempfile.TemporaryDirectory(prefix="vidkd_bench_concurrent_") as tmp:
        trainer = bt.open_trainer(cfg, Path(tmp) / "run")
        try:
            bt.timed_epoch(trainer, 1, 2)  # warm-up: allocator, oneDNN kernels
            (args.barrier / f"ready.{os.getpid()}").touch()
            deadline = time.monotonic() + 600
            while len(list(args.barrier.glob("ready.*"))) < args.processes and time.monotonic() < deadline:
                time.sleep(0.05)
            seconds = bt.timed_epoch(trainer, 2, args.steps)
            steps = trainer.steps_per_epoch
        finally:
            bt.close_trainer(trainer)
    clips = steps * bt.batch_shape(cfg)[0]
    print(json.dumps({"clips_per_second": clips / seconds, "seconds": seconds, "threads": threads,
                      "affinity": len(os.sched_getaffinity(0)), "plan": line}))


# ----------------------------------------------------------------------------- the variants
def run_variant(name: str, data: Path, steps: int, overrides: list[str]) -> list[dict]:
    processes, plan, pin, pin_late = VARIANTS[name]
    cpus = sorted(os.sched_getaffinity(0))
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}  # torch's default or the plan
    with tempfile.TemporaryDirectory(prefix="vidkd_barrier_") as barrier:
        procs = []
        for i in range(processes):
            core = cpus[i % len(cpus)]
            command = [sys.executable, __file__, "--child", "--data", str(data), "--steps", str(steps),
                       "--barrier", barrier, "--processes", str(processes), "--threads", plan]
            command += ["--set", *overrides] if overrides else []
            command += ["--pin-late", str(core)] if pin_late else []
            preexec = (lambda core=core: os.sched_setaffinity(0, {core})) if pin else None  # as taskset -c core
            procs.append(subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                          text=True, preexec_fn=preexec))
        results = []
        for proc in procs:
            try:
                out, err = proc.communicate(timeout=900)
            except subprocess.TimeoutExpired:
                for other in procs:
                    other.kill()
                raise
            if proc.returncode != 0:
                raise SystemExit(f"{name}: a training process failed:\n{err[-3000:]}")
            results.append(json.loads(out.strip().splitlines()[-1]))
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=30, help="timed training steps per process (default 30)")
    parser.add_argument("--repeats", type=int, default=1, help="runs of each variant, in turn; medians (default 1)")
    parser.add_argument("--variants", default=",".join(DEFAULT_VARIANTS),
                        help=f"comma-separated, of {', '.join(VARIANTS)} (default: all but alone-room)")
    parser.add_argument("--set", nargs="+", default=[], metavar="KEY=VALUE",
                        help="override keys of the preset in every process (e.g. data.preload=false data.num_workers=1)")
    parser.add_argument("--data", type=Path, default=None, help="a synthetic dataset (default: bench_train's)")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--threads", default="default", help=argparse.SUPPRESS)
    parser.add_argument("--pin-late", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--barrier", type=Path, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--processes", type=int, default=1, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return
    names = [n.strip() for n in args.variants.split(",") if n.strip()]
    unknown = [n for n in names if n not in VARIANTS]
    if unknown:
        parser.error(f"unknown variant(s) {unknown}; choose from {list(VARIANTS)}")
    sys.path.insert(0, str(HERE))
    import bench_data
    import bench_train as bt

    data = bt.prepare_data(args.data)
    print(f"pcl_r3d_synthetic{' with ' + ' '.join(args.set) if args.set else ''}, {args.steps} timed steps per process; {bench_data.machine()}; "
          f"load average before: {os.getloadavg()[0]:.2f}", flush=True)
    runs: dict[str, list[list[dict]]] = {n: [] for n in names}
    for _ in range(args.repeats):
        for name in names:
            runs[name].append(run_variant(name, data, args.steps, args.set))
            r = runs[name][-1]
            print(f"  {name}: " + ", ".join(f"{p['clips_per_second']:.1f}" for p in r) + " clips/s "
                  f"(threads {[p['threads'] for p in r]}, affinity {[p['affinity'] for p in r]}; "
                  f"load {os.getloadavg()[0]:.2f})" + (f"  {r[0]['plan']}" if r[0]["plan"] else ""), flush=True)
    print("\n| variant | processes | intra-op threads each | clips/s each | clips/s total |\n|---|---:|---|---|---:|")
    for name in names:
        per = [statistics.median(run[i]["clips_per_second"] for run in runs[name]) for i in range(VARIANTS[name][0])]
        threads = "/".join(str(p["threads"]) for p in runs[name][0])
        print(f"| {name} | {len(per)} | {threads} | {' / '.join(f'{c:.1f}' for c in per)} | {sum(per):.1f} |")


if __name__ == "__main__":
    main()
