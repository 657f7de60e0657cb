"""Data-loading throughput: PCL tuples from real 320x240 videos, vs decoding whole videos.

    python benchmarks/bench_data.py [--data DIR] [--tuples 64] [--write-docs]

Writes (or reuses) ~20 moving-pattern videos of 150 frames at 320x240 (UCF101's frame size),
MPEG-4 in AVI with a keyframe every 12 frames, then measures tuples/second through a
DataLoader (batch 8) for num_workers 0, 1, 2:
  - vidkd: TupleDataset (one seek, decode only up to the last needed frame, RGB conversion only
    of the needed frames), with and without FFmpeg threading;
  - naive: decode every frame of the video to RGB with PyAV, then cut the same tuple from the array.
Both use the same sampler and the same train transform (resize 128x171, crop 112, jitter...).
`--write-docs` puts the table under "## Data loading" in docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import tempfile
import time
from pathlib import Path

import av
from av.video.reformatter import VideoReformatter
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from vidkd.data.datasets import load_split
from vidkd.data.loaders import TupleDataset
from vidkd.data.sampling import TupleSpec, clip_indices, remote_possible, sample_tuple
from vidkd.data.transforms import ClipTransform
from vidkd.data.vcp import apply_vcp, sample_vcp_label
from vidkd.data.video import write_video

ROOT = Path(__file__).resolve().parents[1]
NUM_VIDEOS, NUM_FRAMES, WIDTH, HEIGHT = 20, 150, 320, 240


def moving_pattern(seed: int) -> np.ndarray:
    """A smooth textured background drifting sideways plus a bright moving disc (cheap to encode,
    like real footage, unlike noise)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:HEIGHT, 0:WIDTH + NUM_FRAMES * 2].astype(np.float32)
    background = np.stack([127 + 60 * np.sin(xx / rng.uniform(9, 30) + c) * np.cos(yy / rng.uniform(9, 30))
                           for c in range(3)], axis=-1)
    frames = []
    cy, cx = rng.uniform(60, 180), rng.uniform(60, 260)
    vy, vx = rng.uniform(-1, 1, 2)
    for t in range(NUM_FRAMES):
        frame = background[:, 2 * t:2 * t + WIDTH].copy()
        mask = (yy[:, :WIDTH] - (cy + vy * t)) ** 2 + (xx[:, :WIDTH] - (cx + vx * t)) ** 2 < 30 ** 2
        frame[mask] = (240, 200, 60)
        frames.append(frame.clip(0, 255).astype(np.uint8))
    return np.stack(frames)


def write_dataset(root: Path) -> Path:
    """UCF101 layout with 2 classes; reused when already there."""
    if (root / "splits" / "trainlist01.txt").is_file():
        return root
    (root / "splits").mkdir(parents=True, exist_ok=True)
    (root / "splits" / "classInd.txt").write_text("1 Drift\n2 Bounce\n")
    lines = []
    for k in range(NUM_VIDEOS):
        name = ("Drift", "Bounce")[k % 2]
        rel = f"{name}/v_{name}_g{k // 2 + 1:02d}_c01.avi"
        write_video(root / "videos" / rel, moving_pattern(k), gop=12)
        lines.append(f"{rel} {k % 2 + 1}\n")
    for s in (1, 2, 3):
        (root / "splits" / f"trainlist0{s}.txt").write_text("".join(lines))
        (root / "splits" / f"testlist0{s}.txt").write_text("".join(line.split()[0] + "\n" for line in lines))
    return root


class NaiveTupleDataset(Dataset):
    """Baseline: decode the whole video, then sample. Same sampler, transform and VCP as vidkd."""

    def __init__(self, reference: TupleDataset, reuse_reformatter: bool = False):
        self.records, self.spec, self.transform = reference.records, reference.spec, reference.transform
        self.reuse_reformatter = reuse_reformatter

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> dict:
        record, spec = self.records[index], self.spec
        rng = np.random.default_rng([1, index])
        with av.open(str(record.path)) as container:
            if self.reuse_reformatter:  # the conversion vidkd uses, to isolate the cost of decoding more
                rgb = VideoReformatter()
                video = np.stack([rgb.reformat(f, format="rgb24").to_ndarray() for f in container.decode(video=0)])
            else:  # the usual PyAV idiom
                video = np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])
        label = sample_vcp_label(rng, remote_possible(len(video), spec))
        positions = sample_tuple(len(video), spec, rng, need_remote=label == 4)
        clips = []
        for i, start in enumerate(positions.clip_starts):
            clip = self.transform(video[clip_indices(start, spec.clip_len, len(video))], rng)
            if i == spec.tuple_len // 2 and label:
                remote = None
                if label == 4:
                    remote = self.transform(video[clip_indices(positions.remote_start, spec.clip_len, len(video))], rng)
                clip = apply_vcp(clip, label, rng, remote)
            clips.append(clip)
        return {"clips": torch.stack(clips), "pretext_label": label, "label": record.label, "index": index}


def tuples_per_second(dataset: Dataset, workers: int, tuples: int, batch_size: int = 8) -> float:
    indices = [i % len(dataset) for i in range(tuples)]
    loader = DataLoader(torch.utils.data.Subset(dataset, indices), batch_size=batch_size, num_workers=workers,
                        shuffle=False, persistent_workers=False)
    iterator = iter(loader)
    next(iterator)  # worker start-up and the first batch are not counted
    start = time.perf_counter()
    count = 0
    for batch in iterator:
        count += batch["clips"].shape[0]
    return count / (time.perf_counter() - start)


def machine() -> str:
    cpu = "unknown CPU"
    try:
        match = re.search(r"model name\s*:\s*(.+)", Path("/proc/cpuinfo").read_text())
        cpu = match.group(1).strip() if match else cpu
    except OSError:
        pass
    return (f"{cpu}, {os.cpu_count()} cores visible; Python {platform.python_version()}, torch {torch.__version__}, "
            f"PyAV {av.__version__} (FFmpeg libavcodec {'.'.join(map(str, av.library_versions['libavcodec']))})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path(tempfile.gettempdir()) / "vidkd_bench_data")
    parser.add_argument("--tuples", type=int, default=64, help="tuples timed per configuration (after one batch)")
    parser.add_argument("--write-docs", action="store_true", help="update docs/benchmarks.md")
    args = parser.parse_args()
    torch.set_num_threads(1)  # DataLoader workers run single-threaded too; keep num_workers=0 comparable

    t0 = time.perf_counter()
    root = write_dataset(args.data)
    print(f"dataset {root} ready in {time.perf_counter() - t0:.1f}s")
    split = load_split(root, "train")
    spec = TupleSpec()
    transform = ClipTransform()  # the PCL training transform: resize 128x171, random crop 112, jitter...

    # Frames decoded per tuple (num_workers=0 keeps the counter in this process).
    probe = TupleDataset(split, spec, transform, progress=False)
    probe.set_epoch(0)
    for i in range(len(probe)):
        probe[i]
    decoded_per_tuple = probe.frames_decoded / len(probe)
    needed = 3 * spec.clip_len  # frames that end up in a tuple (plus 16 for a remote clip, 1 in 5)

    rows = []
    for name, dataset_fn, frames in [
        ("vidkd, FFmpeg threads",
         lambda: TupleDataset(split, spec, transform, progress=False, decode_threads=True), decoded_per_tuple),
        ("vidkd, single-threaded decode (default)",
         lambda: TupleDataset(split, spec, transform, progress=False), decoded_per_tuple),
        ("naive: decode all, then sample", lambda: NaiveTupleDataset(probe), float(NUM_FRAMES)),
        ("naive, reused RGB converter", lambda: NaiveTupleDataset(probe, reuse_reformatter=True), float(NUM_FRAMES)),
    ]:
        for workers in ((0, 2) if name.startswith("naive,") else (0, 1, 2)):
            dataset = dataset_fn()
            if hasattr(dataset, "set_epoch"):
                dataset.set_epoch(0)
            rate = tuples_per_second(dataset, workers, args.tuples)
            rows.append((name, workers, rate, frames))
            print(f"{name:40s} workers={workers}  {rate:6.1f} tuples/s  {frames:6.1f} frames decoded/tuple")

    table = ["| loader | num_workers | tuples/s | frames decoded per tuple |", "|---|---:|---:|---:|"]
    table += [f"| {name} | {w} | {rate:.1f} | {frames:.1f} |" for name, w, rate, frames in rows]
    best = {name: max(r for n, _, r, _ in rows if n == name) for name, *_ in rows}
    vidkd_best = max(best["vidkd, FFmpeg threads"], best["vidkd, single-threaded decode (default)"])
    speedup = vidkd_best / best["naive: decode all, then sample"]
    speedup_fair = vidkd_best / best["naive, reused RGB converter"]
    print("\n" + "\n".join(table))
    print(f"\nframes in a tuple: {needed} (+16 with a remote clip); decoded per tuple: {decoded_per_tuple:.1f}; "
          f"speed-up over naive (best of each): {speedup:.2f}x, over naive with vidkd's RGB conversion: "
          f"{speedup_fair:.2f}x; total {time.perf_counter() - t0:.0f}s")
    if args.write_docs:
        write_docs(table, decoded_per_tuple, speedup, speedup_fair, args.tuples)


def write_docs(table: list[str], decoded_per_tuple: float, speedup: float, speedup_fair: float, tuples: int) -> None:
    section = "\n".join([
        "## Data loading",
        "",
        "`python benchmarks/bench_data.py --write-docs`: PCL tuples (3 clips x 16 frames, interval 8, so a",
        f"64-frame span) from {NUM_VIDEOS} videos of {NUM_FRAMES} frames at {WIDTH}x{HEIGHT} (MPEG-4 AVI, keyframe",
        "every 12 frames), PCL train transform (resize 128x171, random crop 112, colour jitter, grayscale,",
        f"flip) and VCP; DataLoader batch 8, {tuples} tuples timed per row after the first batch;",
        "torch intra-op threads 1. Naive = decode every frame of the video to RGB, then sample.",
        "",
        f"Machine: {machine()}. On a shared machine (other jobs running) rows vary by about",
        "+-30% between runs; compare rows of one run.",
        "",
        *table,
        "",
        f"vidkd decodes {decoded_per_tuple:.1f} frames per tuple (48 frames are used, 64 span the tuple, plus",
        "up to 11 frames from the keyframe before the start and a remote clip for 1 tuple in 5); the naive",
        f"loader decodes all {NUM_FRAMES}. Best vidkd row / best naive row: {speedup:.2f}x; against the naive loader",
        f"given vidkd's RGB conversion (one swscale context per video, only needed frames): {speedup_fair:.2f}x.",
        "`frame.to_ndarray(format=\"rgb24\")` builds a new swscale context for every frame, which is why",
        "the plain naive loader is slower still. Transforms cost about as much as decoding; torch's uint8",
        "bilinear resize (used by ClipTransform) is ~5x faster than resizing float frames. FFmpeg's own",
        "threading (`thread_type=AUTO`) makes no consistent difference at this frame size, so the",
        "loaders leave it off and get their parallelism from DataLoader workers.",
        "",
    ])
    path = ROOT / "docs" / "benchmarks.md"
    text = path.read_text() if path.exists() else "# Benchmarks\n\n"
    pattern = re.compile(r"## Data loading\n.*?(?=\n## |\Z)", re.S)
    text = pattern.sub(lambda _: section, text) if pattern.search(text) else text.rstrip("\n") + "\n\n" + section
    path.write_text(text)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
