"""Indexing a big dataset: the first build (probing every video) and the cached re-open.

    python benchmarks/bench_index.py [--sizes 10000 100000] [--workers N] [--dir DIR] [--keep]

Writes 4 real videos (150 frames, 320x240, MPEG-4 in AVI like UCF101's) and hard-links them
into a UCF101 tree of N videos (101 classes, videos/<Class>/v_<Class>_gGG_cCC.avi, splits/
classInd.txt, trainlist01.txt with ~70% of the groups, testlist01.txt with the rest). For each N:

  cold    the first build as training does it: `load_split` of train and test, then the
          datasets' `_index` (probe every video with the `.vidkd_cache` probe cache, keep the
          records with enough frames), from an empty cache;
  cached  the same again with the cache written by the cold build (best of 3);
  memory  bytes per video record: the records `load_split` returns, and the records the
          dataset keeps (with frame counts), measured with tracemalloc.

Hard links share one inode, so every probe reads page-cached bytes: the numbers are the CPU cost
of indexing, not of a cold disk or a network file system. It ends with a projection for 240k
videos (Kinetics-700 scale) on 16 processes.
"""

from __future__ import annotations

import argparse
import gc
import logging
import os
import platform
import resource
import shutil
import statistics
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np

from vidkd.data.datasets import default_cache_dir, load_split, probe_videos, with_frame_counts
from vidkd.data.loaders import _VideoDataset
from vidkd.data.video import write_video

NUM_CLASSES, GROUPS, TRAIN_FROM_GROUP = 101, 25, 8  # UCF101: groups 1-7 test, 8-25 train (split 1)
NUM_FRAMES, HEIGHT, WIDTH = 150, 240, 320
PROJECT_VIDEOS, PROJECT_PROCS = 240_000, 16


def source_videos(folder: Path, count: int = 4) -> list[Path]:
    """`count` moving-pattern videos: a drifting sinusoid background and a bright moving square."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    yy, xx = np.mgrid[0:HEIGHT, 0:WIDTH].astype(np.float32)
    for k in range(count):
        path = folder / f"source{k}.avi"
        if not path.is_file():
            def frames(k=k):
                for t in range(NUM_FRAMES):
                    base = 127 + 60 * np.sin((xx + 2 * t) / (11 + 3 * k)) * np.cos(yy / (13 + k))
                    frame = np.repeat(base[..., None], 3, axis=2)
                    y, x = 40 + (t + 17 * k) % 150, 40 + (2 * t) % 230
                    frame[y:y + 30, x:x + 30] = (240, 200, 60)
                    yield frame.clip(0, 255).astype(np.uint8)
            write_video(path, frames())
        paths.append(path)
    return paths


def make_tree(root: Path, num_videos: int, sources: list[Path]) -> None:
    """A UCF101 layout of `num_videos` hard links to `sources`."""
    classes = [f"Action{c:03d}" for c in range(1, NUM_CLASSES + 1)]
    splits = root / "splits"
    splits.mkdir(parents=True, exist_ok=True)
    (splits / "classInd.txt").write_text("".join(f"{i} {name}\n" for i, name in enumerate(classes, 1)))
    train, test = [], []
    for i in range(num_videos):
        label = i % NUM_CLASSES
        k = i // NUM_CLASSES  # k-th video of its class
        group, clip = k % GROUPS + 1, k // GROUPS + 1
        name = classes[label]
        rel = f"{name}/v_{name}_g{group:02d}_c{clip:02d}.avi"
        target = root / "videos" / rel
        if k < GROUPS:  # the first pass over the groups creates the folders
            target.parent.mkdir(parents=True, exist_ok=True)
        os.link(sources[i % len(sources)], target)
        if group >= TRAIN_FROM_GROUP:
            train.append(f"{rel} {label + 1}\n")
        else:
            test.append(f"{rel}\n")
    (splits / "trainlist01.txt").write_text("".join(train))
    (splits / "testlist01.txt").write_text("".join(test))


def build(root: Path, workers: int | None) -> dict[str, float]:
    """The dataset build of training, timed: wall seconds of load_split and of the datasets' index,
    CPU seconds of this process and of the probing processes it started, and the videos kept."""
    wall, cpu, children = time.perf_counter(), time.process_time(), _children_cpu()
    splits = [load_split(root, subset) for subset in ("train", "test")]
    split_s = time.perf_counter() - wall
    kept = 0
    for split in splits:
        if workers is None:
            kept += len(_VideoDataset(split, min_frames=64, progress=False).records)
        else:  # the same steps as _VideoDataset._index, with an explicit process count
            infos = probe_videos([r.path for r in split.records], cache_dir=default_cache_dir(root),
                                 progress=False, workers=workers)
            kept += sum(r.num_frames >= 64 for r in with_frame_counts(split.records, infos))
    return {"wall": time.perf_counter() - wall, "load_split": split_s, "cpu": time.process_time() - cpu,
            "children_cpu": _children_cpu() - children, "kept": kept}


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def memory_per_record(root: Path) -> tuple[float, float]:
    """Bytes per record held by a loaded split, and by a dataset's records (with frame counts)."""
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    split = load_split(root, "train")
    gc.collect()
    after_split = tracemalloc.get_traced_memory()[0]
    dataset = _VideoDataset(split, min_frames=64, progress=False)
    records = dataset.records
    del dataset
    split_bytes = (after_split - before) / len(split.records)
    del split  # the dataset's records share nothing with the split's list but the Paths
    gc.collect()
    after_dataset = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    n = len(records)
    del records
    return split_bytes, (after_dataset - before) / n


def serial_probe_cost(root: Path, sample: int = 1000) -> float:
    """Seconds per video of one process probing (no cache): the work the first build spreads out."""
    paths = sorted((root / "videos").rglob("*.avi"))[:sample]
    t0 = time.process_time()
    probe_videos(paths, cache_dir=None, progress=False, workers=1)
    return (time.process_time() - t0) / len(paths)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--workers", type=int, default=None, help="probe processes (default: the usable CPUs)")
    parser.add_argument("--dir", type=Path, default=None, help="where to build the trees (default: a temp dir)")
    parser.add_argument("--keep", action="store_true", help="keep the trees")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    base = args.dir or Path(tempfile.mkdtemp(prefix="vidkd_bench_index_"))
    cpus = len(os.sched_getaffinity(0))
    workers = args.workers or cpus
    print(f"machine: {platform.processor() or platform.machine()}, {cpus} usable CPUs, python {platform.python_version()}; "
          f"probe processes: {workers}")
    sources = source_videos(base / "sources")
    per_file = None
    results = []
    try:
        for n in args.sizes:
            root = base / f"ucf_{n}"
            if root.exists():
                shutil.rmtree(root)
            t0 = time.perf_counter()
            make_tree(root, n, sources)
            print(f"\n{n} videos: tree written in {time.perf_counter() - t0:.1f} s")
            if per_file is None:
                per_file = serial_probe_cost(root)
                print(f"  one process probes {1 / per_file:.0f} videos/s ({per_file * 1e3:.2f} ms CPU per video)")
            cold = build(root, args.workers)
            print(f"  cold build   {cold['wall']:7.2f} s wall (load_split {cold['load_split']:.2f} s) = "
                  f"{cold['wall'] / n * 1e6:.0f} us per video; CPU: this process {cold['cpu']:.2f} s "
                  f"({cold['cpu'] / n * 1e6:.0f} us per video), probing processes {cold['children_cpu']:.2f} s; "
                  f"{cold['kept']} videos kept")
            cache_file = default_cache_dir(root) / "probes.json"
            size = cache_file.stat().st_size
            print(f"  cache file   {size / 1e6:.1f} MB ({size / n:.0f} B per video)")
            warm = sorted((build(root, args.workers) for _ in range(3)), key=lambda r: r["wall"])
            best = warm[0]
            print(f"  cached build {best['wall']:7.2f} s wall (load_split {best['load_split']:.2f} s) = "
                  f"{best['wall'] / n * 1e6:.1f} us per video (best of 3; median {warm[1]['wall']:.2f} s; "
                  f"CPU {best['cpu']:.2f} s)")
            split_b, dataset_b = memory_per_record(root)
            print(f"  memory       {split_b:.0f} B per record after load_split, {dataset_b:.0f} B per dataset record")
            results.append((n, cold, best, dataset_b))
            if not args.keep:
                shutil.rmtree(root)
        n, cold, cached, dataset_b = results[-1]
        parent = cold["cpu"] / n if cold["children_cpu"] > 0 else max(cold["cpu"] / n - per_file, cached["cpu"] / n)
        probe = cold["children_cpu"] / n if cold["children_cpu"] > 0 else per_file
        projected = PROJECT_VIDEOS * (parent + probe / PROJECT_PROCS)
        print(f"\nprojection for {PROJECT_VIDEOS} videos on {PROJECT_PROCS} free cores (from the {n}-video run; "
              f"CPU-bound, files in the page cache):")
        print(f"  first build  ~{projected:.0f} s  ({probe * 1e3:.2f} ms CPU of probing per video / {PROJECT_PROCS} "
              f"+ {parent * 1e6:.0f} us per video in the main process)")
        print(f"  cached open  ~{PROJECT_VIDEOS * cached['wall'] / n:.1f} s wall "
              f"(~{PROJECT_VIDEOS * cached['cpu'] / n:.1f} s of CPU, what it takes on an idle core)")
        print(f"  records      ~{PROJECT_VIDEOS * dataset_b / 2**20:.0f} MiB per dataset "
              f"(DataLoader workers share it copy-on-write)")
    finally:
        if not args.keep and args.dir is None:
            shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
