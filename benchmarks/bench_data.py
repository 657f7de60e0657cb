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

Decoders and the reference loader, per core (issue 24; docs/decoders.md):

    python benchmarks/bench_data.py --compare [--videos 30] [--repeats 7] [--decoders pyav,decord,torchcodec]
                                    [--workdir DIR] [--out FILE] [--tuple-starts vidkd|reference]

(any of --videos, --repeats, --decoders, --workdir, --out, --tuple-starts implies --compare).
Writes (or reuses, under --workdir) UCF101-like originals with vidkd's synthetic writer (320x240,
25 fps, 175 frames = 7 s, MPEG-4 part 2 in AVI, keyframe every 12 frames), their prepared copy
(`vidkd.data.prepare.prepare_dataset`: short side 128, so 170x128, keyframe every 16 frames) and
the reference's JPEG frames (`jpegs_256/<video_id>/frame%06d.jpg`, 341x256, PIL JPEG quality 75).
Each video gets one PCL tuple per repeat, drawn with `vidkd.data.sampling.sample_tuple` from a
generator seeded by (0, video, repeat), so every row reads the same frame indices. One process,
`torch.set_num_threads(1)`, decoders single-threaded (see `DECODER_SETUP`); rows interleaved
within each repeat; ms per tuple is the median over repeats of (time for all videos) / videos.
Before timing, every decoder's frames are compared with a full sequential PyAV decode (max and
mean absolute difference, and the frame offset that matches best: anything but 0 disqualifies).
Files are in the page cache (just written or read in the warm-up): disk reads are not measured.
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import random
import re
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Callable

import av
from av.video.reformatter import VideoReformatter
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from vidkd.data.datasets import load_split
from vidkd.data.loaders import TupleDataset
from vidkd.data.prepare import prepare_dataset
from vidkd.data.sampling import TupleSpec, clip_indices, sample_tuple
from vidkd.data.transforms import ClipTransform, transforms_from_config
from vidkd.methods.vcp import VcpSampler, apply_vcp, remote_possible, sample_vcp_label, vcp_positions
from vidkd.data.video import VideoReader, probe_video, write_video
from vidkd.synthetic import CLASS_NAMES, SyntheticSpec, write_synthetic_dataset

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
        self.records, self.spec, self.transform = reference.records, reference.sampler.spec, reference.transform
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
        positions = vcp_positions(len(video), spec, rng, label)
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



# ----------------------------------------------------------- decoders and the reference loader (--compare)

ORIGINAL_SIZE, ORIGINAL_FRAMES = (320, 240), 175  # UCF101-like: 320x240, 25 fps, 7 s
PCL_CONFIG = ROOT / "configs" / "pcl_r3d_ucf101.yaml"  # the reference PCL settings (data: section)
DECODERS = ("pyav", "decord", "torchcodec")
DECODER_SETUP = {
    "pyav": "vidkd.data.video.VideoReader(path, threads=False).read(indices): one seek to the keyframe before the "
            "first needed frame, decode forward, RGB through one reused swscale context; FFmpeg threading as PyAV "
            "leaves it (thread_type SLICE, thread_count 0), which the MPEG-4 part 2 decoder does not use: 1 thread",
    "decord": "decord.VideoReader(path, ctx=decord.cpu(0), num_threads=1).get_batch(indices).asnumpy()",
    "torchcodec": "torchcodec.decoders.VideoDecoder(path, device='cpu', num_ffmpeg_threads=1, seek_mode='exact', "
                  "dimension_order='NHWC').get_frames_at(indices).data",
}
TARGET_SPEEDUP = 2.0  # vidkd prepared + full transform over the reference JPEG loader
TARGET_DECODE_CROP = 60.0  # tuples/s per core, prepared decode + uint8 crop


def make_decoder(name: str) -> Callable[[Path, list[int]], np.ndarray]:
    """`read(path, indices) -> uint8 (N, H, W, 3)` RGB, opening the video each call; raises when the
    decoder does not import or load here."""
    if name == "pyav":
        def read(path: Path, indices: list[int]) -> np.ndarray:
            with VideoReader(path, threads=False) as reader:
                return reader.read(indices)
        return read
    if name == "decord":
        import decord

        def read(path: Path, indices: list[int]) -> np.ndarray:
            reader = decord.VideoReader(str(path), ctx=decord.cpu(0), num_threads=1)
            return reader.get_batch(list(indices)).asnumpy()
        return read
    if name == "torchcodec":
        from torchcodec.decoders import VideoDecoder

        def read(path: Path, indices: list[int]) -> np.ndarray:
            decoder = VideoDecoder(str(path), device="cpu", num_ffmpeg_threads=1, seek_mode="exact",
                                   dimension_order="NHWC")
            return decoder.get_frames_at(indices=list(indices)).data.numpy()
        return read
    raise ValueError(f"unknown decoder {name!r}; choose from {', '.join(DECODERS)}")


def decoder_version(name: str) -> str:
    try:
        if name == "pyav":
            return f"PyAV {av.__version__} (libavcodec {'.'.join(map(str, av.library_versions['libavcodec']))})"
        if name == "decord":
            import decord
            return f"decord {decord.__version__}"
        if name == "torchcodec":
            import torchcodec
            return f"torchcodec {torchcodec.__version__}"
    except Exception:  # noqa: BLE001 - a version string is only informative
        pass
    return name


@dataclass
class BenchData:
    originals: list[Path]
    prepared: list[Path]
    jpeg_dirs: list[Path] | None  # None: Pillow missing
    num_frames: list[int]
    sizes: dict[str, tuple[int, int]] = field(default_factory=dict)  # name -> (apparent bytes, allocated bytes)
    jpeg_quality: int = 75


def _synthetic_layout(videos: int) -> tuple[int, int]:
    """(classes, actors) of a synthetic dataset with at least `videos` videos (2 clips per actor)."""
    classes = min(len(CLASS_NAMES), max(2, math.ceil(videos / 4)))
    return classes, max(2, math.ceil(videos / (2 * classes)))


def _file_bytes(paths: list[Path]) -> tuple[int, int]:
    stats = [p.stat() for p in paths]
    return sum(s.st_size for s in stats), sum(s.st_blocks * 512 for s in stats)


def write_bench_data(workdir: Path, videos: int, jpeg_quality: int, with_jpegs: bool) -> BenchData:
    """Originals, their prepared copy and (with Pillow) the reference's JPEG frames under `workdir`;
    whatever is already there and complete is reused."""
    classes, groups = _synthetic_layout(videos)
    tag = f"c{classes}_g{groups}"
    src, dst = workdir / f"originals_{tag}", workdir / f"prepared_{tag}"
    started = time.perf_counter()
    write_synthetic_dataset(src, SyntheticSpec(classes=classes, groups=groups, clips_per_group=2,
                                               frames=ORIGINAL_FRAMES, size=ORIGINAL_SIZE), progress=False)
    prepare_dataset(src, dst, progress=False)
    every = sorted((src / "videos").rglob("*.avi"))
    pick = sorted({int(round(i)) for i in np.linspace(0, len(every) - 1, videos)})  # spread over the classes
    originals = [every[i] for i in pick]
    prepared = [dst / p.relative_to(src) for p in originals]
    num_frames = [probe_video(p).num_frames for p in originals]
    data = BenchData(originals, prepared, None, num_frames, jpeg_quality=jpeg_quality)
    data.sizes["original videos (MPEG-4 AVI, 320x240)"] = _file_bytes(originals)
    data.sizes["prepared videos (MPEG-4 AVI, 170x128)"] = _file_bytes(prepared)
    if with_jpegs:
        import reference_loader as ref
        jpeg_root = workdir / f"reference_{tag}_q{jpeg_quality}" / "jpegs_256"
        data.jpeg_dirs = [jpeg_root / p.stem for p in originals]
        for path, folder, n in zip(originals, data.jpeg_dirs, num_frames):
            if not (folder / ref.COMPLETE).is_file():
                with VideoReader(path, threads=False) as reader:
                    ref.write_jpeg_frames(reader.read(list(range(n))), folder, quality=jpeg_quality)
        data.sizes[f"reference JPEG frames (jpegs_256, 341x256, quality {jpeg_quality})"] = _file_bytes(
            [f for folder in data.jpeg_dirs for f in sorted(folder.glob("*.jpg"))])
    print(f"data under {workdir} ready in {time.perf_counter() - started:.1f}s: {len(originals)} videos, "
          f"{num_frames[0]} frames each")
    return data


def draw_tuple(video: int, repeat: int, num_frames: int, spec: TupleSpec):
    """The tuple of (video, repeat): clip starts, each clip's frame indices, the sorted unique
    indices to decode, and the generator (positioned after the draw) for the augmentation."""
    rng = np.random.default_rng([0, video, repeat])
    positions = sample_tuple(num_frames, spec, rng)
    clips = [clip_indices(s, spec.clip_len, num_frames) for s in positions.clip_starts]
    return positions.clip_starts, clips, sorted({frame for clip in clips for frame in clip}), rng


def sequential_frames(path: Path) -> np.ndarray:
    """Every frame by plain sequential PyAV decode (no seeking): the ground truth for the frame check."""
    with av.open(str(path)) as container:
        rgb = VideoReformatter()
        return np.stack([rgb.reformat(f, format="rgb24").to_ndarray() for f in container.decode(video=0)])


@dataclass
class FrameCheck:
    frames: int = 0
    max_abs: int = 0
    sum_abs: float = 0.0
    shifted: int = 0  # frames that match a neighbour (index +-1, +-2) better than their own index
    shifts: set = field(default_factory=set)
    errors: list = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.shifted and not self.errors and self.frames > 0

    def summary(self) -> str:
        if self.errors:
            return f"FAILED: {self.errors[0]}"
        mean = self.sum_abs / max(1, self.frames)
        verdict = ("identical frames" if self.max_abs == 0 else "same frames (colour conversion differs)") \
            if self.ok else f"DISQUALIFIED: {self.shifted} of {self.frames} frames are other frames " \
                            f"(offsets {sorted(self.shifts)})"
        return f"{self.frames} frames, max abs diff {self.max_abs}, mean abs diff {mean:.3f}: {verdict}"


def check_frames(read, paths: list[Path], truths: list[np.ndarray], index_sets: list[list[list[int]]]) -> FrameCheck:
    check = FrameCheck()
    for path, truth, sets in zip(paths, truths, index_sets):
        for indices in sets:
            try:
                got = read(path, indices)
            except Exception as exc:  # noqa: BLE001 - reported as the decoder's failure
                check.errors.append(f"{path.name} {indices[:3]}...: {exc.__class__.__name__}: {exc}")
                continue
            if got.shape != (len(indices), *truth.shape[1:]) or got.dtype != np.uint8:
                check.errors.append(f"{path.name}: shape {got.shape} {got.dtype}, expected "
                                    f"{(len(indices), *truth.shape[1:])} uint8")
                continue
            diff = np.abs(got.astype(np.int16) - truth[indices].astype(np.int16))
            check.frames += len(indices)
            check.max_abs = max(check.max_abs, int(diff.max()))
            check.sum_abs += float(diff.mean(axis=(1, 2, 3)).sum())
            for k, i in enumerate(indices):
                best, best_offset = float(diff[k].mean()), 0
                for offset in (-2, -1, 1, 2):
                    j = i + offset
                    if 0 <= j < len(truth) and not np.array_equal(truth[j], truth[i]):
                        other = float(np.abs(got[k].astype(np.int16) - truth[j].astype(np.int16)).mean())
                        if other < best:
                            best, best_offset = other, offset
                if best_offset:
                    check.shifted += 1
                    check.shifts.add(best_offset)
    return check


@dataclass
class Row:
    name: str
    data: str
    run: Callable[[int, int], object]
    wall: list[float] = field(default_factory=list)  # seconds per tuple, one per repeat
    cpu: list[float] = field(default_factory=list)

    @property
    def ms(self) -> float:
        return 1000 * statistics.median(self.wall)

    @property
    def core_ms(self) -> float:
        """CPU milliseconds per tuple where the row kept more than one core busy, else wall (a loaded
        machine makes CPU < wall); median over repeats."""
        return 1000 * statistics.median(max(w, c) for w, c in zip(self.wall, self.cpu))

    @property
    def cpu_ratio(self) -> float:
        return sum(self.cpu) / sum(self.wall)


def _warm_page_cache(paths: list[Path]) -> None:
    for path in paths:
        with open(path, "rb") as f:
            while f.read(1 << 20):
                pass


def compare(args: argparse.Namespace) -> None:
    torch.set_num_threads(1)
    started = time.perf_counter()
    videos = args.videos if args.videos is not None else 30
    repeats = args.repeats if args.repeats is not None else 7
    if videos < 1 or repeats < 1:
        raise SystemExit("--videos and --repeats must be at least 1")
    workdir = args.workdir or Path(tempfile.gettempdir()) / "vidkd_bench_decoders"
    wanted = [d.strip() for d in (args.decoders or ",".join(DECODERS)).split(",") if d.strip()]
    for name in wanted:
        if name not in DECODERS:
            raise SystemExit(f"unknown decoder {name!r}; choose from {', '.join(DECODERS)}")
    notes: list[str] = []

    import yaml
    data_cfg = yaml.safe_load(PCL_CONFIG.read_text())["data"]
    spec = TupleSpec(data_cfg["clip_len"], data_cfg["interval"], data_cfg["tuple_len"],
                     starts=args.tuple_starts or "vidkd")
    transform, _ = transforms_from_config(SimpleNamespace(**data_cfg))  # vidkd's train transform, reference settings
    crop = int(data_cfg["crop"])

    try:
        import reference_loader as ref
        reference = ref.ReferenceTupleLoader(ref.ReferenceTransform(
            resize=data_cfg["resize"], crop=crop, color_jitter=data_cfg["color_jitter"],
            grayscale=data_cfg["grayscale"], blur=data_cfg["blur"], flip=data_cfg["flip"],
            mean=data_cfg["mean"], std=data_cfg["std"]), clip_len=spec.clip_len)
    except ImportError as exc:
        reference = None
        notes.append(f"reference JPEG loader skipped: {exc} (`pip install pillow`)")
        print(notes[-1])

    decoders: dict[str, Callable] = {}
    for name in wanted:
        try:
            decoders[name] = make_decoder(name)
        except Exception as exc:  # noqa: BLE001 - ImportError, or OSError when its shared libraries are missing
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else exc.__class__.__name__
            if exc.__cause__ is not None:  # torchcodec: "Could not load this library" <- the missing dependency
                first += f" <- {str(exc.__cause__).strip().splitlines()[0]}"
            hint = {"decord": "pip install decord2", "torchcodec": "pip install torchcodec; needs FFmpeg 4-8 shared "
                    "libraries on the system and a torch build it matches"}.get(name, "")
            notes.append(f"decoder {name} skipped: {exc.__class__.__name__}: {first[:300]} ({hint})")
            print(notes[-1])

    data = write_bench_data(workdir, videos, args.jpeg_quality, with_jpegs=reference is not None)
    n = len(data.originals)
    print(f"tuple: {spec.tuple_len} clips x {spec.clip_len} frames, interval {spec.interval}, starts "
          f"'{spec.starts}' (sample_tuple, seed (0, video, repeat)); vidkd transform: {transform!r}")

    # ---- frame check: every decoder against a sequential PyAV decode, on the timed indices and the edges
    checks: dict[tuple[str, str], FrameCheck] = {}
    for label, paths in (("original", data.originals), ("prepared", data.prepared)):
        truths = [sequential_frames(p) for p in paths]
        for v, truth in enumerate(truths):
            if len(truth) != data.num_frames[v]:
                notes.append(f"{paths[v].name}: sequential decode gives {len(truth)} frames, probe {data.num_frames[v]}")
        sets = [[draw_tuple(v, r, data.num_frames[v], spec)[2] for r in range(repeats)]
                + [[0, 1, 2, data.num_frames[v] // 2, data.num_frames[v] - 2, data.num_frames[v] - 1]]
                for v in range(n)]
        for name, read in decoders.items():
            checks[name, label] = check_frames(read, paths, truths, sets)
            print(f"frame check {name:10s} {label:8s}: {checks[name, label].summary()}")
    if reference is not None:
        # the JPEGs against the original frames scaled the same way: what JPEG costs (information only)
        truth = sequential_frames(data.originals[0])[:8]
        from PIL import Image
        scaled = np.stack([np.asarray(Image.fromarray(f).resize(ref.JPEG_SIZE, Image.Resampling.BILINEAR))
                           for f in truth])
        jpeg = ref.ReferenceTupleLoader.read_frames(data.jpeg_dirs[0], range(8))
        mse = float(np.mean((jpeg.astype(np.float64) - scaled) ** 2))
        notes.append(f"the reference's JPEG frames (PIL quality {data.jpeg_quality}) against the original frames "
                     f"scaled to 341x256 the same way: PSNR {10 * math.log10(255 ** 2 / max(mse, 1e-12)):.1f} dB")
        print(notes[-1])

    # ---- the timed rows
    pyav = decoders.get("pyav") or make_decoder("pyav")

    def vidkd_full(paths: list[Path]):
        def run(v: int, r: int):
            _, clips, needed, rng = draw_tuple(v, r, data.num_frames[v], spec)
            frames = pyav(paths[v], needed)
            row = {f: i for i, f in enumerate(needed)}
            clip_frames = [frames[[row[f] for f in c]] for c in clips]
            params = [transform.sample_params(rng, frames.shape[1:3]) for _ in clips]
            with torch.inference_mode():  # as TupleDataset._make_items
                x = transform.apply_many(clip_frames, params, modality=False)
            out = transform.to_modality(x)
            return out.clone() if out.is_inference() else out
        return run

    def decode_crop(paths: list[Path]):
        def run(v: int, r: int):
            _, clips, needed, rng = draw_tuple(v, r, data.num_frames[v], spec)
            frames = pyav(paths[v], needed)
            row = {f: i for i, f in enumerate(needed)}
            height, width = frames.shape[1:3]
            out = np.empty((len(clips), spec.clip_len, crop, crop, 3), np.uint8)
            for k, c in enumerate(clips):
                top, left = int(rng.integers(height - crop + 1)), int(rng.integers(width - crop + 1))
                out[k] = frames[[row[f] for f in c], top:top + crop, left:left + crop]
            return torch.from_numpy(out)  # uint8 (clips, T, crop, crop, 3): flip, colour, float on the GPU
        return run

    def decode_only(read, paths: list[Path]):
        def run(v: int, r: int):
            return read(paths[v], draw_tuple(v, r, data.num_frames[v], spec)[2])
        return run

    rows: list[Row] = []
    if reference is not None:
        def reference_run(v: int, r: int):
            starts = draw_tuple(v, r, data.num_frames[v], spec)[0]
            return reference.load_tuple(data.jpeg_dirs[v], starts, data.num_frames[v], random.Random(v * 1_000_003 + r))
        rows.append(Row("reference: PIL JPEG 341x256 + full transform", "JPEG frames", reference_run))
    rows.append(Row("vidkd: decode + full transform", "original", vidkd_full(data.originals)))
    rows.append(Row("vidkd: decode + full transform", "prepared", vidkd_full(data.prepared)))
    rows.append(Row(f"vidkd: decode + {crop}x{crop} uint8 crop only", "prepared", decode_crop(data.prepared)))
    for name, read in decoders.items():
        for label, paths in (("original", data.originals), ("prepared", data.prepared)):
            tag = "" if checks[name, label].ok else " (DISQUALIFIED: other frames)"
            rows.append(Row(f"decode only: {name}{tag}", label, decode_only(read, paths)))

    _warm_page_cache(data.originals + data.prepared
                     + ([f for d in data.jpeg_dirs for f in d.glob("*.jpg")] if data.jpeg_dirs else []))
    for row in rows:  # warm-up: one untimed tuple each (imports, first-call allocations)
        row.run(0, repeats)
    for r in range(repeats):
        for row in rows:
            wall, cpu = time.perf_counter(), time.process_time()
            for v in range(n):
                row.run(v, r)
            row.wall.append((time.perf_counter() - wall) / n)
            row.cpu.append((time.process_time() - cpu) / n)
        print(f"repeat {r + 1}/{repeats} done ({time.perf_counter() - started:.0f}s)")

    # ---- report
    table = ["| loader | data | ms / tuple (wall) | tuples/s per core | CPU / wall |", "|---|---|---:|---:|---:|"]
    for row in rows:
        flag = " *" if row.cpu_ratio > 1.1 else ""
        table.append(f"| {row.name} | {row.data} | {row.ms:.1f} | {1000 / row.core_ms:.1f}{flag} | "
                     f"{row.cpu_ratio:.2f} |")
    if any(row.cpu_ratio > 1.1 for row in rows):
        table += ["", "\\* more than one thread busy (CPU time above wall time): tuples/s per core from the "
                  "CPU time, 1000 / CPU ms per tuple; the others from the wall time"]
    by = {(row.name, row.data): row for row in rows}
    summary = []
    prepared_full = by["vidkd: decode + full transform", "prepared"]
    original_full = by["vidkd: decode + full transform", "original"]
    crop_row = by[f"vidkd: decode + {crop}x{crop} uint8 crop only", "prepared"]
    if reference is not None:
        ref_row = rows[0]
        speedup = ref_row.core_ms / prepared_full.core_ms
        summary.append(f"vidkd prepared + full transform vs the reference JPEG loader: {speedup:.2f}x "
                       f"({1000 / prepared_full.core_ms:.1f} vs {1000 / ref_row.core_ms:.1f} tuples/s per core; "
                       f"target >= {TARGET_SPEEDUP:.0f}x: {'met' if speedup >= TARGET_SPEEDUP else 'NOT met'}); "
                       f"vidkd original + full transform: {ref_row.core_ms / original_full.core_ms:.2f}x")
    rate = 1000 / crop_row.core_ms
    summary.append(f"vidkd prepared decode + crop: {rate:.1f} tuples/s per core (target >= {TARGET_DECODE_CROP:.0f}: "
                   f"{'met' if rate >= TARGET_DECODE_CROP else 'NOT met'})")
    sizes = ["| data | MB (file sizes) | MB on disk (blocks) | per video, kB | vs originals |", "|---|---:|---:|---:|---:|"]
    base = next(iter(data.sizes.values()))[0]
    for name, (apparent, allocated) in data.sizes.items():
        sizes.append(f"| {name} | {apparent / 1e6:.2f} | {allocated / 1e6:.2f} | {apparent / n / 1e3:.0f} | "
                     f"{apparent / base:.2f}x |")
    check_lines = [f"- {name}, {label}: {check.summary()}" for (name, label), check in checks.items()]
    setup_lines = [f"- {name} ({decoder_version(name)}): {DECODER_SETUP[name]}" for name in decoders]
    settings = (f"{n} videos ({ORIGINAL_SIZE[0]}x{ORIGINAL_SIZE[1]}, 25 fps, {data.num_frames[0]} frames), "
                f"{repeats} repeats (one tuple per video per repeat; ms/tuple = median over repeats); tuple "
                f"{spec.tuple_len} x {spec.clip_len} frames, interval {spec.interval}, starts '{spec.starts}'; "
                f"torch threads {torch.get_num_threads()}; one process")
    print("\n" + "\n".join(table))
    print("\n" + "\n".join(sizes))
    print("\n" + "\n".join(summary))
    for note in notes:
        print(f"note: {note}")
    print(f"total {time.perf_counter() - started:.0f}s")
    if args.out:
        command = " ".join(["python", "benchmarks/bench_data.py", *sys.argv[1:]])
        text = "\n".join([
            "# Decoders and the reference loader, per core", "",
            f"`{command}`", "",
            f"Machine: {machine()}.", "",
            f"Settings: {settings}. vidkd transform: `{transform!r}` (configs/pcl_r3d_ucf101.yaml `data:`); "
            f"the reference: PIL per frame (benchmarks/reference_loader.py), JPEG quality {data.jpeg_quality}.", "",
            *table, "",
            *summary, "",
            "Disk:", "", *sizes, "",
            "Decoders (frames compared with a sequential PyAV decode of the same file):", "",
            *setup_lines, *check_lines, "",
            *([f"Notes:", "", *[f"- {note}" for note in notes], ""] if notes else []),
        ])
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text)
        print(f"wrote {args.out}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=None,
                        help=f"DataLoader table: dataset directory (default {tempfile.gettempdir()}/vidkd_bench_data)")
    parser.add_argument("--tuples", type=int, default=None,
                        help="DataLoader table: tuples timed per configuration after one batch (default 64)")
    parser.add_argument("--write-docs", action="store_true", help="DataLoader table: update docs/benchmarks.md")
    group = parser.add_argument_group("decoders and the reference loader, per core (implied by any option here)")
    group.add_argument("--compare", action="store_true", help="run this comparison instead of the DataLoader table")
    group.add_argument("--videos", type=int, default=None, help="videos (one tuple each per repeat; default 30)")
    group.add_argument("--repeats", type=int, default=None, help="passes over the videos (default 7)")
    group.add_argument("--decoders", default=None, help="comma-separated from pyav,decord,torchcodec (default all; "
                       "those that do not import are skipped with a note)")
    group.add_argument("--workdir", type=Path, default=None,
                       help=f"where the data is written, reused when there (default {tempfile.gettempdir()}/vidkd_bench_decoders)")
    group.add_argument("--out", type=Path, default=None, help="also write the tables as Markdown to this file")
    group.add_argument("--tuple-starts", choices=("vidkd", "reference"), default=None,
                       help="clip starts: vidkd (clips 24 frames apart, 64-frame span; default) or the reference's "
                            "overlapping clips (11 frames apart, 38 frames)")
    group.add_argument("--jpeg-quality", type=int, default=75, help="quality of the reference's JPEG frames (PIL)")
    args = parser.parse_args()
    if args.compare or any(getattr(args, k) is not None for k in ("videos", "repeats", "decoders", "workdir", "out",
                                                                  "tuple_starts")):
        if args.write_docs or args.data is not None or args.tuples is not None:
            parser.error("--data, --tuples and --write-docs belong to the DataLoader table, not to --compare")
        compare(args)
        return
    args.data = args.data or Path(tempfile.gettempdir()) / "vidkd_bench_data"
    args.tuples = 64 if args.tuples is None else args.tuples
    torch.set_num_threads(1)  # DataLoader workers run single-threaded too; keep num_workers=0 comparable

    t0 = time.perf_counter()
    root = write_dataset(args.data)
    print(f"dataset {root} ready in {time.perf_counter() - t0:.1f}s")
    split = load_split(root, "train")
    spec = TupleSpec()
    transform = ClipTransform()  # the PCL training transform: resize 128x171, random crop 112, jitter...

    # Frames decoded per tuple (num_workers=0 keeps the counter in this process).
    probe = TupleDataset(split, VcpSampler(spec), transform, progress=False)
    probe.set_epoch(0)
    for i in range(len(probe)):
        probe[i]
    decoded_per_tuple = probe.frames_decoded / len(probe)
    needed = 3 * spec.clip_len  # frames that end up in a tuple (plus 16 for a remote clip, 1 in 5)

    def threaded() -> TupleDataset:
        dataset = TupleDataset(split, VcpSampler(spec), transform, progress=False)
        dataset.decode_threads = True
        return dataset

    rows = []
    for name, dataset_fn, frames in [
        ("vidkd, FFmpeg threads", threaded, decoded_per_tuple),
        ("vidkd, single-threaded decode (default)",
         lambda: TupleDataset(split, VcpSampler(spec), transform, progress=False), decoded_per_tuple),
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
