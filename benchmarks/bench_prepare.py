"""`vidkd data prepare`: size, time, and the cost of a random 16-frame clip before and after.

    python benchmarks/bench_prepare.py [--src DIR] [--videos 20] [--workers N] [--clips 40] [--compare]

Without --src, writes (or reuses) a UCF101-sized synthetic dataset: 320x240 at 25 fps, 175
frames (7 s) per video, MPEG-4 in AVI like UCF101's Xvid files (vidkd's synthetic writer). Then
runs `prepare_dataset` (short side 128, default codec and keyframe interval) into a fresh
directory and prints: bytes before/after and their ratio, seconds per video, and the time to open
a video and read a random 16-frame clip with vidkd's VideoReader (threads off, as the training
loaders do) on the original and the prepared files (median over --clips reads, best of 5
interleaved rounds, since the CPU may be shared), with the frames that had to be decoded.

--compare also encodes the first few videos with each candidate codec / keyframe interval
(`encode_video`) and prints the same clip cost and size per candidate: the numbers behind the
defaults (docs/data.md#preparing-a-dataset).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import av
import numpy as np
from av.video.reformatter import VideoReformatter

from vidkd.data.prepare import EncodeSettings, encode_video, prepare_dataset
from vidkd.data.video import VideoReader
from vidkd.synthetic import SyntheticSpec, write_synthetic_dataset

CLIP_LEN = 16
WIDTH, HEIGHT, FRAMES = 320, 240, 175


def make_source(root: Path, videos: int) -> Path:
    """A synthetic UCF101-layout dataset with about `videos` videos (2 actors x 2 clips per class)."""
    classes = min(12, max(2, round(videos / 4)))
    write_synthetic_dataset(root, SyntheticSpec(classes=classes, groups=2, clips_per_group=2, frames=FRAMES,
                                                size=(WIDTH, HEIGHT)), progress=False)
    return root


def video_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.suffix.lower() in (".avi", ".mp4", ".mkv", ".webm", ".mov"))


def clip_cost(paths: list[Path], clips: int, seed: int = 0) -> tuple[float, float]:
    """(median ms, mean frames decoded) of opening a video and reading a random 16-frame clip.

    The median: the CPU is shared, and a few slow reads should not move the number.
    """
    rng = np.random.default_rng(seed)
    times, decoded = [], 0
    for k in range(clips):
        path = paths[k % len(paths)]
        started = time.perf_counter()
        with VideoReader(path, threads=False) as reader:
            start = int(rng.integers(0, reader.num_frames - CLIP_LEN + 1))
            reader.read(list(range(start, start + CLIP_LEN)))
            decoded += reader.frames_decoded
        times.append(time.perf_counter() - started)
    return 1000 * float(np.median(times)), decoded / clips


def psnr(reference: list[Path], prepared: list[Path], frames: int = 48) -> float:
    """PSNR (dB, RGB) of the prepared frames against the source frames scaled the same way
    (area filter): what re-encoding costs, on top of the downscale itself."""
    values = []
    for ref, out in zip(reference, prepared):
        with VideoReader(ref, threads=False) as a, VideoReader(out, threads=False) as b:
            n = min(frames, a.num_frames, b.num_frames)
            x = a.read(list(range(n)))
            y = b.read(list(range(n))).astype(np.float64)
            scaler = VideoReformatter()
            x = np.stack([scaler.reformat(av.VideoFrame.from_ndarray(f, format="rgb24"), width=b.width,
                                          height=b.height, interpolation="AREA").to_ndarray() for f in x])
            mse = np.mean((x.astype(np.float64) - y) ** 2)
            values.append(10 * np.log10(255 ** 2 / max(mse, 1e-10)))
    return float(np.mean(values))


def compare(src_videos: list[Path], out: Path, clips: int, rounds: int = 5) -> None:
    """Encode `src_videos` with each candidate, then time the clip reads of all candidates in
    `rounds` interleaved rounds and keep each one's best round (the CPU may be shared)."""
    candidates = [("mpeg4", ".avi", q, 16) for q in (3, 4, 5, 7)]
    candidates += [("mpeg4", ".avi", 4, g) for g in (8, 32, 250)]
    candidates += [("libx264", ".mp4", 23, g) for g in (8, 16, 32, 250)]
    rows = [("original (320x240)", src_videos, sum(p.stat().st_size for p in src_videos), None, None)]
    for codec, suffix, quality, gop in candidates:
        folder = out / f"{codec}_q{quality}_g{gop}"
        folder.mkdir(parents=True, exist_ok=True)
        started = time.perf_counter()
        outs = []
        for path in src_videos:
            target = folder / (path.stem + suffix)
            encode_video(path, target, EncodeSettings(short_side=128, gop=gop, codec=codec, quality=quality, threads=1))
            outs.append(target)
        encode = (time.perf_counter() - started) / len(src_videos)
        name = f"{codec}{suffix} {'qscale' if codec == 'mpeg4' else 'crf'} {quality} gop {gop}"
        rows.append((name, outs, sum(p.stat().st_size for p in outs), encode, psnr(src_videos, outs)))
    best = [float("inf")] * len(rows)
    frames = [0.0] * len(rows)
    for _ in range(rounds):
        for i, (_, paths, *_rest) in enumerate(rows):
            ms, frames[i] = clip_cost(paths, clips)
            best[i] = min(best[i], ms)
    before = rows[0][2]
    print(f"{'candidate':34s} {'size':>9s} {'ratio':>6s} {'encode s/video':>14s} {'clip ms':>8s} {'frames/clip':>11s} "
          f"{'PSNR dB':>7s}")
    for (name, paths, size, encode, quality), ms, decoded in zip(rows, best, frames):
        print(f"{name:34s} {size / len(paths) / 1024:7.0f}kB {size / before:6.2f} "
              f"{'' if encode is None else f'{encode:.2f}':>14s} {ms:8.2f} {decoded:11.1f} "
              f"{'' if quality is None else f'{quality:.1f}':>7s}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--src", type=Path, help="a dataset to prepare (default: a synthetic UCF101-sized one)")
    parser.add_argument("--work", type=Path, help="where to write the synthetic source and the output "
                        "(default: a temporary directory, the source kept in ~/.cache/vidkd/bench_prepare)")
    parser.add_argument("--videos", type=int, default=20, help="videos of the synthetic source")
    parser.add_argument("--workers", type=int, default=None, help="prepare processes (default: one per CPU)")
    parser.add_argument("--clips", type=int, default=40, help="random clips read per measurement")
    parser.add_argument("--compare", action="store_true", help="also measure codec / keyframe-interval candidates")
    args = parser.parse_args()

    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "vidkd" / "bench_prepare"
    src = args.src or make_source((args.work or cache) / f"src_{args.videos}", args.videos)
    with tempfile.TemporaryDirectory(dir=args.work) as tmp:
        dst = Path(tmp) / "prepared"
        summary = prepare_dataset(src, dst, workers=args.workers, progress=False)
        before, after = summary.bytes_before, summary.bytes_after
        workers = args.workers or len(os.sched_getaffinity(0))
        print(f"source     {src} ({summary.layout}, {summary.videos} videos)")
        print(f"prepared   {summary.prepared} videos, {len(summary.failed)} failed; {summary.codec}, "
              f"short side {summary.short_side}, keyframe every {summary.gop} frames")
        print(f"bytes      {before:,} -> {after:,}  (ratio {after / max(before, 1):.3f}, target <= 0.333)")
        print(f"prepare    {summary.seconds / max(summary.prepared, 1):.3f} s per video (wall, {workers} workers); "
              f"{summary.seconds * min(workers, max(summary.prepared, 1)) / max(summary.prepared, 1):.3f} "
              "core-s per video")
        originals = [src / rel for rel in (p.relative_to(dst) for p in video_files(dst))]
        sets = {"original": originals, "prepared": video_files(dst)}
        best = {name: (float("inf"), 0.0) for name in sets}
        for _ in range(5):  # interleaved rounds, the best kept: the CPU may be shared
            for name, paths in sets.items():
                ms, frames = clip_cost(paths, args.clips)
                best[name] = (min(best[name][0], ms), frames)
        for name, (ms, frames) in best.items():
            print(f"clip read  {name:9s} {ms:6.2f} ms per random 16-frame clip (open + read, median of "
                  f"{args.clips}, best of 5 rounds), {frames:.1f} frames decoded")
        if args.compare:
            compare(originals[:min(6, len(originals))], Path(tmp) / "compare", args.clips)


if __name__ == "__main__":
    main()
