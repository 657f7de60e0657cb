"""GPU check: what vidkd does on one CUDA GPU, in one command of at most about 5 minutes (H100).

    python benchmarks/gpu_check.py [--out docs/gpu.md] [--dry-run-cpu]

For C3D, R3D and R(2+1)D at full width (the pcl_{arch}_ucf101 presets: 16x112x112 clips, tuples of 3,
memory-bank NCE, SGD), in fp32 and with bf16 autocast (train.amp=bf16):
  a. bare: `Trainer.train_step` (model, heads, loss, backward, optimizer) on a random batch already on
     the GPU, batch 16 and 32 tuples (OOM is reported, not fatal): the PCL tuples/s without data;
  b. loop: `Trainer.train_one_epoch` on a small synthetic dataset written at 320x240
     (`vidkd.synthetic.write_synthetic_dataset`, resized to 128x171 and cropped to 112 as the presets
     do, data.num_workers DataLoader workers), batch 16, tuples/s over the steps after a warm-up
     (the epoch's DataLoader start is given in the note); on the original videos and, when
     `vidkd.data.prepare.prepare_dataset` exists, on a prepared copy;
  c. the peak GPU memory of every row (`torch.cuda.max_memory_allocated`);
  d. `torchrun --standalone --nproc_per_node=1 -m vidkd.cli pretrain ...`: one short epoch, exit code;
  e. resume: 2 epochs straight against 1 epoch, an interruption (as Ctrl-C) and `--resume`; the final
     `checkpoints/last/model.safetensors` compared tensor by tensor, bit for bit. vidkd sets no
     determinism flags, so it is tried as the CLI runs first; if that differs, again with
     `torch.backends.cudnn.deterministic`, `torch.use_deterministic_algorithms(True)` and
     CUBLAS_WORKSPACE_CONFIG=:4096:8.

Prints one table and writes it to --out (default docs/gpu.md) with the machine, date and command.
Needs only a CUDA build of torch and vidkd. Without a CUDA device it says so in one line and exits 0.
`--dry-run-cpu` runs the same code on the CPU at tiny sizes (width 0.125, 8x32x32 clips, 1-3 steps;
rows marked "cpu, tiny", bf16 falls back to fp32 there as in the Trainer) to test the script itself;
its numbers say nothing about a GPU.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import gc
import logging
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

try:  # written by someone else at the same time: the prepared-copy rows are skipped while it is missing
    from vidkd.data.prepare import EncodeSettings, prepare_dataset
    PREPARE_MISSING = ""
except ImportError as _exc:  # noqa: N816
    prepare_dataset = None
    PREPARE_MISSING = f"vidkd.data.prepare.prepare_dataset not available ({_exc})"

DEFAULT_OUT = ROOT / "docs" / "gpu.md"
ARCHS = ("c3d", "r3d", "r21d")
PRECISIONS = ("fp32", "bf16")
NO_CUDA = ("gpu_check: no CUDA device found (torch {version}, CUDA build: {cuda}); run it on a machine with an "
           "NVIDIA GPU and a CUDA build of torch (pip install torch --index-url https://download.pytorch.org/whl/cu128), "
           "or pass --dry-run-cpu to test this script on the CPU")


@dataclass(frozen=True)
class Sizes:
    label: str  # "" on the GPU; "cpu, tiny" marks every row of the dry run
    device: str
    width: float
    clip_len: int
    interval: int
    resize: tuple[int, int]
    crop: int
    video: tuple[int, int]  # (width, height) of the written synthetic videos
    frames: int
    groups: int  # actors: 10 classes x groups videos, a quarter of the groups held out
    bare_batches: tuple[int, ...]
    bare_warmup: int
    bare_steps: int
    loop_batch: int
    loop_warmup: int
    loop_steps: int
    workers: int
    short_steps: int  # steps per epoch of the torchrun and resume runs
    short_batch: int


GPU = Sizes(label="", device="cuda", width=1.0, clip_len=16, interval=8, resize=(128, 171), crop=112,
            video=(320, 240), frames=96, groups=8, bare_batches=(16, 32), bare_warmup=3, bare_steps=8,
            loop_batch=16, loop_warmup=4, loop_steps=16, workers=8, short_steps=3, short_batch=8)
CPU_TINY = Sizes(label="cpu, tiny", device="cpu", width=0.125, clip_len=8, interval=4, resize=(36, 48), crop=32,
                 video=(64, 48), frames=48, groups=4, bare_batches=(2, 4), bare_warmup=1, bare_steps=1,
                 loop_batch=2, loop_warmup=1, loop_steps=2, workers=1, short_steps=1, short_batch=2)


# ----------------------------------------------------------------------------- configs and data
def overrides(sizes: Sizes, data_root: Path, *extra: str) -> list[str]:
    """The `--set` values every run of the check shares (on top of a pcl_{arch}_ucf101 preset)."""
    return [f"data.root={data_root}", f"data.clip_len={sizes.clip_len}", f"data.interval={sizes.interval}",
            f"data.resize=[{sizes.resize[0]},{sizes.resize[1]}]", f"data.crop={sizes.crop}",
            f"data.num_workers={sizes.workers}", f"model.width={sizes.width}", f"train.device={sizes.device}",
            "train.knn_every=0", "train.val_tuples_per_video=1",
            "data.min_video_frames=0",  # speed, not the recipe: the dry run's tiny videos are shorter than 64 frames
            *extra]


def write_data(sizes: Sizes, root: Path) -> Path:
    from vidkd.synthetic import SyntheticSpec, write_synthetic_dataset

    write_synthetic_dataset(root, SyntheticSpec(classes=10, groups=sizes.groups, clips_per_group=1,
                                                frames=sizes.frames, size=sizes.video),
                            progress=False, overwrite=True)
    return root


def prepare_copy(src: Path, dst: Path, sizes: Sizes) -> tuple[Path | None, str]:
    """The prepared copy's root and a note; (None, why) when prepare_dataset is missing or fails."""
    if prepare_dataset is None:
        return None, PREPARE_MISSING
    kwargs = {"settings": EncodeSettings(short_side=sizes.resize[0]), "progress": False}
    start = time.perf_counter()
    try:
        result = prepare_dataset(src, dst, **kwargs)
    except Exception as exc:  # noqa: BLE001 - a new module: report it, do not stop the check
        return None, f"prepare_dataset({src}, {dst}, {kwargs}) failed: {type(exc).__name__}: {str(exc)[:200]}"
    root = Path(getattr(result, "dst", None) or dst)
    failed = getattr(result, "failed", None)
    if failed:
        return None, f"prepare_dataset failed on {len(failed)} video(s), e.g. {failed[0]}"
    settings = ", ".join(f"{key}={value}" for key, value in kwargs.items() if key != "progress")
    return root, f"prepared ({settings}) in {time.perf_counter() - start:.1f} s"


class Repeated(torch.utils.data.Dataset):
    """`times` passes over a dataset in one epoch, so a small dataset gives as many steps as the loop timing needs."""

    def __init__(self, dataset, times: int) -> None:
        self.dataset, self.times = dataset, times

    def __len__(self) -> int:
        return len(self.dataset) * self.times

    def __getitem__(self, index: int):
        return self.dataset[index % len(self.dataset)]

    def __getitems__(self, indices: list[int]):
        inner = [i % len(self.dataset) for i in indices]
        if hasattr(self.dataset, "__getitems__"):
            return self.dataset.__getitems__(inner)
        return [self.dataset[i] for i in inner]

    def set_epoch(self, epoch: int) -> None:
        if hasattr(self.dataset, "set_epoch"):
            self.dataset.set_epoch(epoch)


# ----------------------------------------------------------------------------- measurements
def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)


def peak_gib(device: torch.device) -> float | None:
    return torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None


def free_memory() -> None:
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def open_trainer(arch: str, sizes: Sizes, data_root: Path, run_dir: Path, precision: str, batch: int):
    from vidkd.apps.pretrain import build_trainer
    from vidkd.config import load_config

    amp = "bf16" if precision == "bf16" else "none"
    cfg = load_config(f"pcl_{arch}_ucf101", overrides(sizes, data_root, f"train.amp={amp}",
                                                      f"train.batch_size={batch}"))
    trainer = build_trainer(cfg, run_dir)
    trainer.options = dataclasses.replace(trainer.options, progress=False)
    logging.getLogger("vidkd").setLevel(logging.ERROR)  # the Trainer turns INFO on for its log file
    return trainer, cfg


def close_trainer(trainer) -> None:
    if getattr(trainer, "writer", None) is not None:
        trainer.writer.close()
    trainer.close()


def bare_row(trainer, cfg, batch: int, sizes: Sizes) -> dict:
    """Trainer.train_step on one random batch of `batch` tuples on the device: no data pipeline."""
    device = trainer.device
    data = cfg.data
    clips = torch.randn(batch, data.tuple_len, 3, data.clip_len, data.crop, data.crop, device=device)
    item = {"clips": clips, "pretext_label": torch.randint(0, 5, (batch,), device=device),
            "index": torch.randint(0, len(trainer.train_set), (batch,), device=device)}
    trainer.method.train_mode()
    reset_peak(device)
    try:
        for step in range(sizes.bare_warmup):
            trainer.train_step(item, 0, step)
        sync(device)
        start = time.perf_counter()
        for step in range(sizes.bare_steps):
            trainer.train_step(item, 0, step)
        sync(device)
        seconds = time.perf_counter() - start
    except torch.cuda.OutOfMemoryError:
        del clips, item
        free_memory()
        return {"tuples": None, "clips": None, "peak": None, "note": "out of memory"}
    tuples = batch * sizes.bare_steps / seconds
    return {"tuples": tuples, "clips": tuples * data.tuple_len, "peak": peak_gib(device),
            "note": f"{sizes.bare_steps} steps after {sizes.bare_warmup} warm-up"}


def loop_row(trainer, cfg, sizes: Sizes, epoch: int) -> dict:
    """Trainer.train_one_epoch; tuples/s between the end of the warm-up steps and the last step."""
    device = trainer.device
    steps = sizes.loop_warmup + sizes.loop_steps
    per_pass = max(1, len(trainer.train_set) // cfg.train.batch_size)
    trainer.train_set = Repeated(trainer.train_set, -(-steps // per_pass) + 1)
    trainer.steps_per_epoch = steps
    stamps: list[float] = []
    original = trainer.train_step

    def timed_step(batch, epoch_, step):
        out = original(batch, epoch_, step)
        sync(device)
        stamps.append(time.perf_counter())
        return out

    trainer.train_step = timed_step
    reset_peak(device)
    try:
        start = time.perf_counter()
        trainer.train_one_epoch(epoch)
        total = time.perf_counter() - start
    finally:
        del trainer.train_step
        trainer.train_set = trainer.train_set.dataset
    counted = len(stamps) - 1 - sizes.loop_warmup
    tuples = cfg.train.batch_size * counted / (stamps[-1] - stamps[sizes.loop_warmup])
    epoch_rate = cfg.train.batch_size * len(stamps) / total
    return {"tuples": tuples, "clips": tuples * cfg.data.tuple_len, "peak": peak_gib(device),
            "note": f"{counted} steps after {sizes.loop_warmup}; whole epoch {epoch_rate:.1f} tuples/s "
                    f"({cfg.data.num_workers} workers)"}


def throughput_rows(sizes: Sizes, data_root: Path, prepared: Path | None, prepared_note: str, work: Path,
                    log) -> list[dict]:
    rows = []
    for arch in ARCHS:
        for precision in PRECISIONS:
            trainer, cfg = open_trainer(arch, sizes, data_root, work / f"{arch}_{precision}", precision,
                                        sizes.loop_batch)
            try:
                for batch in sizes.bare_batches:
                    rows.append({"arch": arch, "precision": precision, "batch": batch, "what": "bare step",
                                 **bare_row(trainer, cfg, batch, sizes)})
                    log(rows[-1])
                rows.append({"arch": arch, "precision": precision, "batch": sizes.loop_batch,
                             "what": "loop, original videos", **loop_row(trainer, cfg, sizes, 1)})
                log(rows[-1])
            finally:
                close_trainer(trainer)
                del trainer
                free_memory()
            row = {"arch": arch, "precision": precision, "batch": sizes.loop_batch, "what": "loop, prepared copy"}
            if prepared is None:
                rows.append({**row, "tuples": None, "clips": None, "peak": None, "note": "skipped: " + prepared_note})
            else:
                try:
                    trainer, cfg = open_trainer(arch, sizes, prepared, work / f"{arch}_{precision}_prepared",
                                                precision, sizes.loop_batch)
                except Exception as exc:  # noqa: BLE001 - the prepared copy is new: report, go on
                    rows.append({**row, "tuples": None, "clips": None, "peak": None,
                                 "note": f"failed: {type(exc).__name__}: {str(exc)[:160]}"})
                else:
                    try:
                        rows.append({**row, **loop_row(trainer, cfg, sizes, 1)})
                        rows[-1]["note"] += f"; {prepared_note}"
                    finally:
                        close_trainer(trainer)
                        del trainer
                        free_memory()
                log(rows[-1])
    return rows


# ----------------------------------------------------------------------------- subprocess runs (d, e)
# vidkd's CLI in a fresh process, optionally with determinism flags and an interruption (as Ctrl-C) at the
# start of one epoch; argv: mode (plain|deterministic), epoch to interrupt at (0: none), then the CLI's argv
RUN_CLI = r"""
import sys
mode, interrupt = sys.argv[1], int(sys.argv[2])
import torch
if mode == "deterministic":
    torch.backends.cudnn.benchmark = False
    torch.backends.cudnn.deterministic = True
    torch.use_deterministic_algorithms(True)
if interrupt:
    from vidkd.engine.trainer import Trainer
    original = Trainer.train_one_epoch
    def stop(self, epoch):
        if epoch == interrupt:
            raise KeyboardInterrupt
        return original(self, epoch)
    Trainer.train_one_epoch = stop
from vidkd.cli import main
sys.exit(main(sys.argv[3:]))
"""


def child_env(deterministic: bool = False) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    if deterministic:
        env["CUBLAS_WORKSPACE_CONFIG"] = ":4096:8"
    return env


def run(command: list[str], env: dict[str, str], timeout: int = 240) -> tuple[int, float, str]:
    start = time.perf_counter()
    try:
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=timeout, cwd=ROOT)
    except subprocess.TimeoutExpired:
        return 124, time.perf_counter() - start, f"timed out after {timeout} s"
    lines = [line for line in done.stderr.splitlines() if line.strip() and "%|" not in line]
    return done.returncode, time.perf_counter() - start, (lines[-1] if lines else "")


def short_args(sizes: Sizes, data_root: Path, epochs: int) -> list[str]:
    return ["--config", "pcl_r3d_ucf101", "--set",
            *overrides(sizes, data_root, f"train.epochs={epochs}", f"train.steps_per_epoch={sizes.short_steps}",
                       f"train.batch_size={sizes.short_batch}")]


def torchrun_row(sizes: Sizes, data_root: Path, work: Path) -> dict:
    out = work / "torchrun"
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=1",
               "-m", "vidkd.cli", "pretrain", *short_args(sizes, data_root, 1), "--out", str(out)]
    rc, seconds, last = run(command, child_env())
    written = (out / "checkpoints" / "last" / "model.safetensors").is_file()
    note = f"{seconds:.0f} s; checkpoint {'written' if written else 'MISSING'}"
    if rc != 0:
        note += f"; {last[:200]}"
    return {"check": "torchrun --standalone --nproc_per_node=1 -m vidkd.cli pretrain (R3D, 1 epoch)",
            "result": f"exit {rc}", "ok": rc == 0 and written, "note": note}


def compare_weights(a: Path, b: Path) -> tuple[bool, str]:
    from vidkd.utils.io import load_weights

    wa, wb = load_weights(a), load_weights(b)
    if wa.keys() != wb.keys():
        return False, "different tensor names"
    differ = [key for key in wa if not torch.equal(wa[key], wb[key])]
    if not differ:
        return True, f"all {len(wa)} tensors bit-identical"
    worst = max((wa[k].double() - wb[k].double()).abs().max().item() for k in differ)
    return False, f"{len(differ)} of {len(wa)} tensors differ (max |diff| {worst:.2e}, e.g. {differ[0]})"


def resume_attempt(sizes: Sizes, data_root: Path, work: Path, mode: str) -> tuple[bool | None, str]:
    """(identical, what happened) for one mode; None when a run failed."""
    env = child_env(deterministic=mode == "deterministic")
    straight, interrupted = work / f"resume_{mode}_straight", work / f"resume_{mode}_interrupted"
    cli = [sys.executable, "-c", RUN_CLI, mode]
    args = short_args(sizes, data_root, 2)
    rc, _, last = run([*cli, "0", "pretrain", *args, "--out", str(straight)], env)
    if rc != 0:
        return None, f"the straight run failed (exit {rc}): {last[:200]}"
    rc, _, last = run([*cli, "2", "pretrain", *args, "--out", str(interrupted)], env)
    if rc != 130:
        return None, f"the interrupted run ended with exit {rc}, not 130: {last[:200]}"
    rc, _, last = run([*cli, "0", "pretrain", "--resume", str(interrupted)], env)
    if rc != 0:
        return None, f"--resume failed (exit {rc}): {last[:200]}"
    last_weights = Path("checkpoints") / "last" / "model.safetensors"
    return compare_weights(straight / last_weights, interrupted / last_weights)


def resume_rows(sizes: Sizes, data_root: Path, work: Path, started: float, budget_s: float) -> list[dict]:
    check = "2 epochs straight == 1 epoch, interrupted, --resume (R3D, final weights)"
    identical, note = resume_attempt(sizes, data_root, work, "plain")
    rows = [{"check": check + ", as the CLI runs", "result": {True: "identical", False: "DIFFERENT",
                                                             None: "failed"}[identical],
             "ok": identical is True, "note": note}]
    if identical is True:
        return rows
    if time.perf_counter() - started > budget_s:
        rows.append({"check": check + ", deterministic flags", "result": "not run", "ok": False,
                     "note": f"skipped: past the {budget_s:.0f} s budget"})
        return rows
    identical, note = resume_attempt(sizes, data_root, work, "deterministic")
    rows.append({"check": check + ", cudnn.deterministic + use_deterministic_algorithms",
                 "result": {True: "identical", False: "DIFFERENT", None: "failed"}[identical],
                 "ok": identical is True, "note": note})
    return rows


def augmentation_row(sizes: Sizes, data_root: Path) -> dict:
    """`data.transform_device: model` on this device against the CPU path, from the same draws: the
    reference preset's augmentation (PIL-style jitter, blur, VCP, residual) of 8 tuples."""
    from vidkd.config import load_config
    from vidkd.data.datasets import load_split
    from vidkd.data.loaders import TupleDataset
    from vidkd.data.sampling import TupleSpec
    from vidkd.data.transforms import transforms_from_config
    from vidkd.methods.vcp import VcpSampler

    cfg = load_config("pcl_r3d_ucf101", overrides(sizes, data_root))
    transform, _ = transforms_from_config(cfg.data)
    spec = TupleSpec(cfg.data.clip_len, cfg.data.interval, cfg.data.tuple_len, starts=cfg.data.tuple_starts)
    dataset = TupleDataset(load_split(data_root, "train"), VcpSampler(spec), transform, seed=0, progress=False, deferred=True)
    dataset.set_epoch(1)
    batch = dataset.collate(dataset.__getitems__(list(range(min(8, len(dataset))))))
    on_cpu = batch["pending"].finish(batch["crops"])
    on_device = batch["pending"].finish(batch["crops"].to(sizes.device)).cpu()
    difference = (on_cpu - on_device).abs()
    level = 1.0 / 255 / min(cfg.data.std)  # one 8-bit level after normalisation
    ok = float(difference.mean()) < 1e-4 and float(difference.max()) <= 2 * level + 1e-6
    return {"check": f"augmentation on {sizes.device} == on the CPU (same draws, reference preset, 8 tuples)",
            "result": "within float tolerance" if ok else "DIFFERENT", "ok": ok,
            "note": f"max |diff| {float(difference.max()):.2e} (one 8-bit level: {level:.3f}), mean "
                    f"{float(difference.mean()):.2e}, {float((difference > 1e-4).float().mean()) * 100:.3f}% of values "
                    "beyond 1e-4"}


# ----------------------------------------------------------------------------- output
def fmt(value: float | None, digits: int = 1) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def table(rows: list[dict], checks: list[dict], sizes: Sizes) -> list[str]:
    mark = f" ({sizes.label})" if sizes.label else ""
    lines = ["| backbone | precision | batch (tuples) | measurement | tuples/s | clips/s | peak GPU GiB | note |",
             "|---|---|---:|---|---:|---:|---:|---|"]
    for r in rows:
        precision = r["precision"] + (" (cpu: fp32)" if sizes.device == "cpu" and r["precision"] == "bf16" else "")
        lines.append(f"| {r['arch']}{mark} | {precision} | {r['batch']} | {r['what']} | {fmt(r['tuples'])} "
                     f"| {fmt(r['clips'])} | {fmt(r['peak'], 2)} | {r['note']} |")
    lines += ["", "| check | result | note |", "|---|---|---|"]
    for c in checks:
        lines.append(f"| {c['check']}{mark} | {c['result']} | {c['note']} |")
    return lines


def machine(sizes: Sizes) -> str:
    cpu = f"{os.cpu_count()} CPUs, torch intra-op threads {torch.get_num_threads()}, Python {platform.python_version()}"
    if sizes.device == "cuda":
        props = torch.cuda.get_device_properties(0)
        return (f"{torch.cuda.get_device_name(0)} ({props.total_memory / 2**30:.0f} GiB), torch {torch.__version__}, "
                f"CUDA {torch.version.cuda}, cuDNN {torch.backends.cudnn.version()} (TF32 convolutions "
                f"{'on' if torch.backends.cudnn.allow_tf32 else 'off'}, TF32 matmul "
                f"{'on' if torch.backends.cuda.matmul.allow_tf32 else 'off'}); {cpu}")
    return f"CPU only (dry run), torch {torch.__version__}; {cpu}"


def write_doc(out: Path, lines: list[str], sizes: Sizes, seconds: float) -> None:
    command = " ".join(["python", "benchmarks/gpu_check.py", *sys.argv[1:]])
    title = "# GPU check" if sizes.device == "cuda" else "# GPU check — CPU dry run (cpu, tiny: not a GPU measurement)"
    body = [
        title, "",
        f"Command: `{command}` ({seconds / 60:.1f} min). Date: {datetime.date.today().isoformat()}.",
        f"Machine: {machine(sizes)}.", "",
        f"Presets pcl_{{c3d,r3d,r21d}}_ucf101 at width {sizes.width}: tuples of 3 clips of "
        f"{sizes.clip_len}x{sizes.crop}x{sizes.crop} (a tuple/s is 3 clips/s), memory-bank NCE, SGD. "
        "*bare step*: `Trainer.train_step` (forward, PCL loss, backward, optimizer) on a random batch already on the "
        "device. *loop*: `Trainer.train_one_epoch` on the synthetic dataset written at "
        f"{sizes.video[0]}x{sizes.video[1]} (10 classes x {sizes.groups} actors, {sizes.frames} frames), resized to "
        f"{sizes.resize[0]}x{sizes.resize[1]} and cropped, {sizes.workers} DataLoader workers, tuples/s between the "
        "end of the warm-up steps and the last step. fp32 = no autocast, with torch's default TF32 settings (machine line); "
        "bf16 = `train.amp=bf16` (autocast; the contrastive term stays fp32). "
        "Peak = `torch.cuda.max_memory_allocated` during the row.", "",
        *lines, "",
        "Resume: vidkd sets no determinism flags (no `cudnn.deterministic` or `use_deterministic_algorithms` in "
        "vidkd/); the check first runs as the CLI does and only if the weights differ again with those flags "
        "(and CUBLAS_WORKSPACE_CONFIG=:4096:8).", "",
    ]
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(body))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"the report to write (default {DEFAULT_OUT})")
    parser.add_argument("--dry-run-cpu", action="store_true",
                        help="the same code on the CPU at tiny sizes (rows marked 'cpu, tiny'): tests the script")
    parser.add_argument("--budget-s", type=float, default=200,
                        help="skip the deterministic resume retry once this many seconds have passed (default 200)")
    parser.add_argument("--keep", type=Path, default=None, help="work in this directory and keep it (default: a temp dir)")
    args = parser.parse_args(argv)
    if not args.dry_run_cpu and not torch.cuda.is_available():
        print(NO_CUDA.format(version=torch.__version__, cuda=torch.version.cuda or "none"))
        return 0
    sizes = CPU_TINY if args.dry_run_cpu else GPU
    started = time.perf_counter()

    def log(row: dict) -> None:
        print(f"  [{time.perf_counter() - started:5.0f} s] {row['arch']} {row['precision']} b{row['batch']} "
              f"{row['what']}: {fmt(row['tuples'])} tuples/s, peak {fmt(row['peak'], 2)} GiB  {row['note']}", flush=True)

    logging.basicConfig(level=logging.ERROR)
    logging.getLogger("vidkd").setLevel(logging.ERROR)
    work = args.keep or Path(tempfile.mkdtemp(prefix="vidkd_gpu_check_"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        print(f"gpu_check: {machine(sizes)}; working in {work}", flush=True)
        data_root = write_data(sizes, work / "synthetic")
        print(f"  [{time.perf_counter() - started:5.0f} s] synthetic data written", flush=True)
        prepared, prepared_note = prepare_copy(data_root, work / "synthetic_prepared", sizes)
        print(f"  [{time.perf_counter() - started:5.0f} s] prepared copy: {prepared or 'none'} ({prepared_note})",
              flush=True)
        rows = throughput_rows(sizes, data_root, prepared, prepared_note, work, log)
        checks = [torchrun_row(sizes, data_root, work)]
        print(f"  [{time.perf_counter() - started:5.0f} s] {checks[-1]['result']}: {checks[-1]['note']}", flush=True)
        checks += resume_rows(sizes, data_root, work, started, args.budget_s)
        checks.append(augmentation_row(sizes, data_root))
        for c in checks[1:]:
            print(f"  [{time.perf_counter() - started:5.0f} s] {c['result']}: {c['note']}", flush=True)
        lines = table(rows, checks, sizes)
        print("\n".join(lines))
        seconds = time.perf_counter() - started
        write_doc(args.out, lines, sizes, seconds)
        print(f"wrote {args.out} ({seconds:.0f} s)")
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
