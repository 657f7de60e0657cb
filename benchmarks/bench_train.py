"""Training throughput: the real PCL loop against the bare forward+backward of its backbone.

    python benchmarks/bench_train.py [--steps 22] [--repeats 3] [--threads N] [--all] [--default-malloc] [--write-docs]

For each backbone at the CPU preset size (configs/pcl_r3d_synthetic.yaml: batch 8 tuples of 3
clips of 3x8x48x48, width 0.25), in one process and with one torch thread count:
  - bare: `backbone(x).sum().backward()` on a random batch of the same shape (24 clips), no
    data, no heads, no loss, no optimizer;
  - loop: `Trainer.train_one_epoch` on the synthetic dataset with `train.steps_per_epoch=--steps`
    (DataLoader, transforms, VCP, PCL heads and loss, memory bank, AdamW, bookkeeping);
  - overhead = 1 - loop clips/s / bare clips/s: what the loop costs on top of the model's compute.
Bare and loop runs alternate (bare, loop, bare, loop, ...) and each reports its median, which
keeps a busy machine from favouring one side. Achieved GFLOP/s counts a forward+backward as 3x
the forward FLOPs of `vidkd.models.count_flops` (the usual approximation: the backward is two
convolutions' worth per convolution). `--write-docs` puts the table under
"## Training throughput" in docs/benchmarks.md.

`bench_kd.py` imports the shared helpers below (preset config, dataset, quiet Trainer, machine line).
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

import bench_data  # noqa: E402  (benchmarks/ is on sys.path when run as a script)
from vidkd.config import Config, load_config
from vidkd.apps.pretrain import build_trainer
from vidkd.engine.trainer import Trainer
from vidkd.synthetic import write_synthetic_dataset
from vidkd.models import build_backbone, count_flops, count_parameters
from vidkd.utils.runtime import keep_freed_memory, resolve_memory_format

ROOT = Path(__file__).resolve().parents[1]
PRESET = "pcl_r3d_synthetic"
PRESET_OVERRIDES: list[str] = []  # --set KEY=VALUE, applied to every configuration
DEFAULT_DATA = Path(tempfile.gettempdir()) / "vidkd_bench_synthetic"
DOCS = ROOT / "docs" / "benchmarks.md"
BACKBONES = ["c3d", "r3d", "r21d"]
EXTRA_BACKBONES = ["r3d_18", "r2plus1d_18"]


# ----------------------------------------------------------------------------- shared helpers
def quiet_vidkd() -> None:
    """No INFO lines in the benchmark's output (progress bars are off per trainer: `open_trainer`)."""
    logging.getLogger("vidkd").setLevel(logging.WARNING)


def prepare_data(data: Path | None) -> Path:
    """The default synthetic dataset (written once, then reused) unless `data` is given."""
    if data is not None:
        return data
    # the benchmark's own scratch directory: one written with older defaults is replaced
    write_synthetic_dataset(DEFAULT_DATA, progress=False, overwrite=True)
    return DEFAULT_DATA


def preset_config(data_root: Path, arch: str, steps: int, *extra: str) -> Config:
    """The CPU preset with `arch`, `steps` steps per epoch, no kNN probe and no validation cost."""
    return load_config(PRESET, [f"data.root={data_root}", f"model.arch={arch}", f"train.steps_per_epoch={steps}",
                                "train.knn_every=0", "train.device=cpu", *PRESET_OVERRIDES, *extra])


def batch_shape(cfg: Config) -> tuple[int, int, int, int, int]:
    """(clips, C, T, H, W) of one training batch: batch_size x tuple_len clips."""
    data = cfg.data
    channels = 3  # RGB and the RGB frame difference ("residual") both have 3 channels
    return (cfg.train.batch_size * data.tuple_len, channels, data.clip_len, data.crop, data.crop)


def forward_flops_per_clip(cfg: Config, arch: str | None = None) -> int:
    backbone = build_backbone(arch or cfg.model.arch, width=cfg.model.width)
    return count_flops(backbone, batch_shape(cfg)[1:])


def open_trainer(cfg: Config, out_dir: Path) -> Trainer:
    trainer = build_trainer(cfg, out_dir)
    trainer.options = dataclasses.replace(trainer.options, progress=False)
    logging.getLogger("vidkd").setLevel(logging.WARNING)  # the Trainer turns INFO on for its log file
    return trainer


def close_trainer(trainer: Trainer) -> None:
    if trainer.writer is not None:
        trainer.writer.close()
    trainer.close()


def timed_epoch(trainer: Trainer, epoch: int, steps: int) -> float:
    """Seconds of one `train_one_epoch` of `steps` steps (DataLoader start included, as in a real run)."""
    trainer.steps_per_epoch = steps
    return trainer.train_one_epoch(epoch)["epoch_seconds"]


def machine(threads: int) -> str:
    return f"{bench_data.machine()}; torch intra-op threads {threads}"


def command_line() -> str:
    return " ".join(["python", f"benchmarks/{Path(sys.argv[0]).name}", *sys.argv[1:]])


def write_docs_section(title: str, body: list[str]) -> None:
    """Replace (or append) the section `## title` of docs/benchmarks.md; other sections stay as they are."""
    section = "\n".join([f"## {title}", "", *body, ""])
    text = DOCS.read_text() if DOCS.exists() else "# Benchmarks\n\n"
    pattern = re.compile(rf"## {re.escape(title)}\n.*?(?=\n## |\Z)", re.S)
    if pattern.search(text):
        text = pattern.sub(lambda _: section, text)
    else:
        text = text.rstrip("\n") + "\n\n" + section
    DOCS.write_text(text)
    print(f"wrote section '{title}' of {DOCS}")


def add_common_arguments(parser: argparse.ArgumentParser, steps: int, repeats: int) -> None:
    parser.add_argument("--steps", type=int, default=steps, help=f"training steps per timed run (default {steps})")
    parser.add_argument("--repeats", type=int, default=repeats,
                        help=f"timed runs per side, alternating; medians are reported (default {repeats})")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(),
                        help=f"torch intra-op threads for every measurement (default {torch.get_num_threads()}, "
                             "torch's default: the cores it sees)")
    parser.add_argument("--data", type=Path, default=None,
                        help=f"a synthetic dataset in the UCF101 layout (default: written once to {DEFAULT_DATA})")
    parser.add_argument("--quick", action="store_true",
                        help="a smoke run: 2 steps, 1 repeat, one configuration; prints only")
    parser.add_argument("--write-docs", action="store_true", help="write the table into docs/benchmarks.md")
    parser.add_argument("--default-malloc", action="store_true",
                        help="keep glibc's default malloc settings (the vidkd CLI keeps freed memory for reuse: "
                             "vidkd.utils.runtime.keep_freed_memory)")
    parser.add_argument("--set", action="append", nargs="+", default=[], metavar="KEY=VALUE",
                        help="override a key of the CPU preset (e.g. data.preload=false data.num_workers=1)")


def check_arguments(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    args.set = [item for group in args.set for item in group]
    if not args.default_malloc:
        keep_freed_memory()  # as the CLI does, so the numbers are those of `vidkd pretrain`
    PRESET_OVERRIDES[:] = args.set
    if args.quick:
        args.steps, args.repeats = 2, 1
        if args.write_docs:
            parser.error("--quick numbers are too rough for the docs; drop --write-docs or --quick")
    if args.steps < 1 or args.repeats < 1 or args.threads < 1:
        parser.error("--steps, --repeats and --threads must be at least 1")


# ----------------------------------------------------------------------------- measurements
def bare_seconds(backbone: torch.nn.Module, shape: tuple[int, ...], steps: int) -> float:
    """Seconds for `steps` forward+backward passes of `backbone` on one random (contiguous) batch."""
    clips = torch.randn(shape)
    start = time.perf_counter()
    for _ in range(steps):
        backbone.zero_grad(set_to_none=True)
        backbone(clips).sum().backward()
    return time.perf_counter() - start


def measure_backbone(arch: str, data_root: Path, steps: int, repeats: int) -> dict[str, float]:
    cfg = preset_config(data_root, arch, steps)
    shape = batch_shape(cfg)
    # in the memory format the Trainer gives its model (train.memory_format), so both sides run the same kernels
    memory_format = resolve_memory_format(cfg.train.memory_format, torch.device("cpu"))
    backbone = build_backbone(arch, width=cfg.model.width).train().to(memory_format=memory_format)
    flops = forward_flops_per_clip(cfg)
    bare_runs, loop_runs = [], []
    with tempfile.TemporaryDirectory(prefix="vidkd_bench_train_") as tmp:
        trainer = open_trainer(cfg, Path(tmp) / arch)
        try:
            steps = trainer.steps_per_epoch  # --steps, or one pass over the data if that is shorter
            bare_seconds(backbone, shape, 1)  # warm-up: allocator, oneDNN kernels
            timed_epoch(trainer, 1, 1)
            for repeat in range(repeats):
                bare_runs.append(bare_seconds(backbone, shape, steps))
                loop_runs.append(timed_epoch(trainer, repeat + 2, steps))
        finally:
            close_trainer(trainer)
    clips = steps * shape[0]
    bare = clips / statistics.median(bare_runs)
    loop = clips / statistics.median(loop_runs)
    return {"params": count_parameters(backbone), "gflops": flops / 1e9, "steps": steps,
            "bare": bare, "loop": loop, "bare_gflops_s": bare * 3 * flops / 1e9,
            "loop_gflops_s": loop * 3 * flops / 1e9, "overhead": 1 - loop / bare}


def table(rows: dict[str, dict[str, float]]) -> list[str]:
    lines = ["| backbone | params | GFLOPs/clip (fwd) | bare clips/s | loop clips/s | bare GFLOP/s "
             "| loop GFLOP/s | loop overhead |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for arch, r in rows.items():
        lines.append(f"| {arch} | {r['params'] / 1e6:.2f} M | {r['gflops']:.3f} | {r['bare']:.1f} | {r['loop']:.1f} "
                     f"| {r['bare_gflops_s']:.1f} | {r['loop_gflops_s']:.1f} | {100 * r['overhead']:.0f}% |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_arguments(parser, steps=22, repeats=3)
    parser.add_argument("--all", action="store_true", help="also the 18-layer torchvision-style backbones")
    args = parser.parse_args()
    check_arguments(parser, args)
    backbones = ["r3d"] if args.quick else BACKBONES + (EXTRA_BACKBONES if args.all else [])

    quiet_vidkd()
    torch.set_num_threads(args.threads)
    data_root = prepare_data(args.data)
    cfg = preset_config(data_root, backbones[0], args.steps)
    shape = batch_shape(cfg)
    print(f"CPU preset: batch {cfg.train.batch_size} tuples x {cfg.data.tuple_len} clips of {shape[1:]} "
          f"(width {cfg.model.width}); {args.steps} steps per run, {args.repeats} run(s) per side; "
          f"{machine(args.threads)}", flush=True)
    rows = {}
    for arch in backbones:
        rows[arch] = measure_backbone(arch, data_root, args.steps, args.repeats)
        print(f"  {arch}: bare {rows[arch]['bare']:.1f} clips/s, loop {rows[arch]['loop']:.1f} clips/s", flush=True)
    lines = table(rows)
    print("\n".join(lines))
    if args.write_docs:
        write_docs(lines, cfg, next(iter(rows.values()))["steps"], args)


def write_docs(lines: list[str], cfg: Config, steps: int, args: argparse.Namespace) -> None:
    shape = batch_shape(cfg)
    write_docs_section("Training throughput", [
        f"`{command_line()}`: the CPU preset (configs/pcl_r3d_synthetic.yaml: batch {cfg.train.batch_size} tuples",
        f"x {cfg.data.tuple_len} clips of {shape[1]}x{shape[2]}x{shape[3]}x{shape[4]}, width {cfg.model.width}, AdamW, "
        f"DataLoader with {cfg.data.num_workers} worker(s), videos {'decoded once into memory' if cfg.data.preload else 'decoded per sample'}) on the default",
        "synthetic dataset. *Bare*: `backbone(x).sum().backward()` on a random batch of the same 24 clips",
        "(no data, heads, loss or optimizer). *Loop*: `Trainer.train_one_epoch` of",
        f"{steps} steps (DataLoader start included, as in every real epoch). Medians of {args.repeats} runs per side,",
        "bare and loop alternating in one process. GFLOP/s counts forward+backward as 3x the forward FLOPs",
        "(`vidkd.models.count_flops`; 1 MAC = 2 FLOPs). Overhead = 1 - loop / bare clips/s. The DataLoader",
        "worker decodes and transforms on the same cores as the torch threads, so on a small machine the",
        "overhead is mostly the data pipeline's share of the CPU.",
        "",
        f"Machine: {machine(args.threads)}.",
        "",
        *lines,
    ])


if __name__ == "__main__":
    main()
