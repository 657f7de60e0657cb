"""The cost of distillation: epoch time of a KD run over that of its from-scratch twin.

    python benchmarks/bench_kd.py [--steps 22] [--repeats 3] [--threads N] [--write-docs]

At the CPU preset size (configs/pcl_r3d_synthetic.yaml), in one process: a teacher checkpoint
of the teacher architecture (random weights: they do not change the cost) is saved with
`save_checkpoint`, then a from-scratch `Trainer` and a KD `Trainer` (`teacher.path` set,
otherwise the same config) each run `--steps` training steps, alternating scratch, KD,
scratch, KD, ... so that a busy machine hurts both alike; medians are compared.

Where the ratio should be: a training step is a forward+backward of the student, about 3
student forwards (3S FLOPs); KD adds one teacher forward without gradients (T FLOPs), so

    floor = 1 + T / (3 S)      (4/3 for a teacher of the student's size)

"bare" is the same ratio for the backbones alone on a random batch (student forward+backward,
then also a `no_grad` eval-mode teacher forward): what this machine gives for the compute alone.
Pairs: r3d -> r3d (same size) and c3d -> r3d (a larger teacher of another family).
`--write-docs` puts the table under "## Cost of distillation" in docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch

from bench_train import (add_common_arguments, batch_shape, check_arguments, close_trainer, command_line,
                         forward_flops_per_clip, machine, open_trainer, prepare_data, preset_config, quiet_vidkd,
                         timed_epoch, write_docs_section)
from vidkd.config import Config
from vidkd.engine.trainer import CHECKPOINT_FORMAT
from vidkd.methods.pcl import pcl_meta, pcl_model
from vidkd.utils.checkpoint import save_checkpoint
from vidkd.models import build_backbone

PAIRS = [("r3d", "r3d"), ("c3d", "r3d")]  # (teacher, student)


def save_teacher(cfg: Config, directory: Path) -> Path:
    """A PCL checkpoint of `cfg.model.arch` with random weights, loadable as `teacher.path`."""
    meta = {"format": CHECKPOINT_FORMAT, **pcl_meta(cfg), "epoch": 1, "metrics": {}, "config": cfg.to_dict()}
    save_checkpoint(directory, pcl_model(cfg).state_dict(), meta)
    return directory


def bare_seconds(student: torch.nn.Module, teacher: torch.nn.Module | None, shape: tuple[int, ...],
                 steps: int) -> float:
    """Seconds for `steps` student forward+backward passes, each with a teacher forward if given."""
    clips = torch.randn(shape)
    start = time.perf_counter()
    for _ in range(steps):
        student.zero_grad(set_to_none=True)
        if teacher is not None:
            with torch.no_grad():
                teacher(clips)
        student(clips).sum().backward()
    return time.perf_counter() - start


def bare_ratio(teacher_arch: str, cfg: Config, steps: int, repeats: int) -> float:
    shape = batch_shape(cfg)
    student = build_backbone(cfg.model.arch, width=cfg.model.width).train()
    teacher = build_backbone(teacher_arch, width=cfg.model.width).eval().requires_grad_(False)
    bare_seconds(student, teacher, shape, 1)  # warm-up
    scratch, kd = [], []
    for _ in range(repeats):
        scratch.append(bare_seconds(student, None, shape, steps))
        kd.append(bare_seconds(student, teacher, shape, steps))
    return statistics.median(kd) / statistics.median(scratch)


def measure_pair(teacher_arch: str, student_arch: str, data_root: Path, steps: int, repeats: int,
                 tmp: Path) -> dict[str, float]:
    scratch_cfg = preset_config(data_root, student_arch, steps)
    teacher_dir = save_teacher(preset_config(data_root, teacher_arch, steps), tmp / f"teacher_{teacher_arch}")
    kd_cfg = preset_config(data_root, student_arch, steps, f"teacher.path={teacher_dir}")
    student_flops = forward_flops_per_clip(scratch_cfg)
    teacher_flops = forward_flops_per_clip(scratch_cfg, teacher_arch)

    run = tmp / f"{teacher_arch}_to_{student_arch}"
    scratch, kd = open_trainer(scratch_cfg, run / "scratch"), open_trainer(kd_cfg, run / "kd")
    try:
        steps = scratch.steps_per_epoch  # --steps, or one pass over the data if that is shorter
        timed_epoch(scratch, 1, 1)  # warm-up: oneDNN kernels, allocator, dataset caches
        timed_epoch(kd, 1, 1)
        scratch_runs, kd_runs = [], []
        for repeat in range(repeats):
            scratch_runs.append(timed_epoch(scratch, repeat + 2, steps))
            kd_runs.append(timed_epoch(kd, repeat + 2, steps))
    finally:
        close_trainer(scratch)
        close_trainer(kd)
    scratch_s, kd_s = statistics.median(scratch_runs), statistics.median(kd_runs)
    return {"steps": steps, "floor": 1 + teacher_flops / (3 * student_flops),
            "bare": bare_ratio(teacher_arch, scratch_cfg, steps, repeats),
            "scratch_s": scratch_s, "kd_s": kd_s, "ratio": kd_s / scratch_s,
            "teacher_gflops": teacher_flops / 1e9, "student_gflops": student_flops / 1e9}


def table(rows: dict[tuple[str, str], dict[str, float]]) -> list[str]:
    lines = ["| teacher -> student | fwd GFLOPs/clip (T / S) | floor 1 + T/3S | bare ratio | scratch s | KD s "
             "| KD / scratch | over floor |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for (teacher, student), r in rows.items():
        lines.append(f"| {teacher} -> {student} | {r['teacher_gflops']:.3f} / {r['student_gflops']:.3f} "
                     f"| {r['floor']:.3f} | {r['bare']:.3f} | {r['scratch_s']:.2f} | {r['kd_s']:.2f} "
                     f"| {r['ratio']:.3f} | {100 * (r['ratio'] / r['floor'] - 1):+.0f}% |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_arguments(parser, steps=22, repeats=3)
    args = parser.parse_args()
    check_arguments(parser, args)
    pairs = PAIRS[:1] if args.quick else PAIRS

    quiet_vidkd()
    torch.set_num_threads(args.threads)
    data_root = prepare_data(args.data)
    print(f"CPU preset, {args.steps} steps per run, {args.repeats} run(s) per side; {machine(args.threads)}",
          flush=True)
    rows = {}
    with tempfile.TemporaryDirectory(prefix="vidkd_bench_kd_") as tmp:
        for teacher, student in pairs:
            rows[teacher, student] = measure_pair(teacher, student, data_root, args.steps, args.repeats, Path(tmp))
            r = rows[teacher, student]
            print(f"  {teacher} -> {student}: scratch {r['scratch_s']:.2f} s, KD {r['kd_s']:.2f} s "
                  f"({r['steps']} steps)", flush=True)
    lines = table(rows)
    print("\n".join(lines))
    if args.write_docs:
        cfg = preset_config(data_root, "r3d", args.steps)
        steps = next(iter(rows.values()))["steps"]
        write_docs_section("Cost of distillation", [
            f"`{command_line()}`: epoch time of a KD run over its from-scratch twin at the CPU preset",
            f"(configs/pcl_r3d_synthetic.yaml, batch {cfg.train.batch_size} x {cfg.data.tuple_len} clips of "
            f"{'x'.join(map(str, batch_shape(cfg)[1:]))}, width {cfg.model.width}), logit KD",
            f"(teacher.alpha={cfg.teacher.alpha}, the default). {steps} steps per `train_one_epoch`, scratch and KD",
            f"alternating in one process, medians of {args.repeats} runs each. A step costs about 3 student forwards",
            "(forward+backward) and KD adds one teacher forward without gradients, so the compute-bound",
            "floor is 1 + T/(3S) with T, S the forward FLOPs per clip of teacher and student: 4/3 for a",
            "same-size teacher. *Bare ratio*: the same for the backbones alone on a random batch (student",
            "forward+backward with and without an eval-mode `no_grad` teacher forward) on this machine.",
            "The loop's data loading and optimizer step are paid once per step either way, which pulls the",
            "measured ratio below the compute floor when they are not small.",
            "",
            f"Machine: {machine(args.threads)}.",
            "",
            *lines,
        ])


if __name__ == "__main__":
    main()
