"""Small real videos for the data tests: every frame encodes its own index, so decoding can be checked."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from tiny_runs import make_tiny_dataset
from vidkd.data.loaders import TupleDataset
from vidkd.data.samplers import TupleSampler
from vidkd.data.video import write_video
from vidkd.methods.vcop import OrderSampler
from vidkd.methods.vcp import VcpSampler

INDEX_BITS = 8  # frames 0..255 can be told apart
_ROWS, _COLS = 2, 4  # the 8 bits as big black/white blocks: robust to lossy mpeg4


def index_frame(i: int, height: int = 64, width: int = 96) -> np.ndarray:
    """An RGB frame whose 2x4 grid of blocks spells `i` in binary (white = 1)."""
    frame = np.zeros((height, width, 3), np.uint8)
    bh, bw = height // _ROWS, width // _COLS
    for bit in range(INDEX_BITS):
        if (i >> bit) & 1:
            r, c = divmod(bit, _COLS)
            frame[r * bh:(r + 1) * bh, c * bw:(c + 1) * bw] = 255
    return frame


def decode_index(frame: np.ndarray) -> int:
    """Inverse of `index_frame` (reads the centre of each block)."""
    height, width = frame.shape[:2]
    bh, bw = height // _ROWS, width // _COLS
    value = 0
    for bit in range(INDEX_BITS):
        r, c = divmod(bit, _COLS)
        block = frame[r * bh + bh // 4:(r + 1) * bh - bh // 4, c * bw + bw // 4:(c + 1) * bw - bw // 4]
        if block.mean() > 127:
            value |= 1 << bit
    return value


def write_index_video(path: Path, num_frames: int, height: int = 64, width: int = 96, gop: int = 12,
                      codec: str = "mpeg4") -> Path:
    """Write a video whose frame i shows the number i (see `index_frame`)."""
    write_video(path, (index_frame(i, height, width) for i in range(num_frames)), gop=gop, codec=codec)
    return path


def write_ucf_layout(root: Path, classes: dict[str, int], groups: int = 2, clips: int = 2, num_frames: int = 80,
                     test_groups: int = 1, height: int = 32, width: int = 48) -> list[str]:
    """A tiny UCF101 tree: `classes` maps class name -> 1-based label. Returns the video list lines.

    Groups 1..test_groups go to the test lists (like the official split 1), the rest to train.
    """
    (root / "splits").mkdir(parents=True, exist_ok=True)
    names = sorted(classes, key=classes.get)
    (root / "splits" / "classInd.txt").write_text("".join(f"{classes[c]} {c}\r\n" for c in names))
    train, test, lines = [], [], []
    for name in names:
        for g in range(1, groups + 1):
            for c in range(1, clips + 1):
                rel = f"{name}/v_{name}_g{g:02d}_c{c:02d}.avi"
                write_index_video(root / "videos" / rel, num_frames, height=height, width=width)
                lines.append(rel)
                if g <= test_groups:
                    test.append(f"{rel}\r\n")
                else:
                    train.append(f"{rel} {classes[name]}\r\n")
    for s in (1, 2, 3):
        (root / "splits" / f"trainlist0{s}.txt").write_text("".join(train))
        (root / "splits" / f"testlist0{s}.txt").write_text("".join(test))
    return lines


@pytest.fixture
def single_thread(monkeypatch):
    """Tiny tensors on a shared CPU: torch's intra-op threads cost far more than they save.
    OMP_NUM_THREADS=1 too, so `configure_threads` (the CLI in-process, child processes) keeps the one thread."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def index_video(tmp_path_factory) -> Path:
    """150 frames at 96x64, GOP 12 (keyframes at 0, 12, 24, ...)."""
    return write_index_video(tmp_path_factory.mktemp("video") / "index.avi", 150)


def tuple_dataset(split, spec, transform, pretext: str = "vcp", shared_augmentation: bool = False,
                  quadrant_order: str = "random", remote_rule: str = "vidkd", min_frames: int = 0,
                  **dataset_options) -> TupleDataset:
    """A TupleDataset with the sampler of `pretext`: PCL's "vcp", VCOP's "order", or "none" (plain tuples)."""
    plain = dict(shared_augmentation=shared_augmentation, min_video_frames=min_frames)
    sampler = {"none": TupleSampler(spec, **plain), "order": OrderSampler(spec, **plain),
               "vcp": VcpSampler(spec, **plain, quadrant_order=quadrant_order, remote_rule=remote_rule)}[pretext]
    return TupleDataset(split, sampler, transform, **dataset_options)


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> Path:
    """The tiny synthetic dataset (tests/tiny_runs.py), written once per test module."""
    return make_tiny_dataset(tmp_path_factory.mktemp("data") / "synthetic")
