"""Render docs/images/synthetic_classes.png, and check that the synthetic classes need motion.

    python benchmarks/render_synthetic_preview.py                      # the preview image
    python benchmarks/render_synthetic_preview.py --separability DIR   # single frames vs motion

The preview is decoded from written video files, so it shows what the data loader sees. The
separability check fits nearest-centroid and 1-nearest-neighbour classifiers on split 1 of a
dataset written by `vidkd synth DIR`, once on single frames and once on motion features; single
frames should sit near chance, motion well above it.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

from vidkd.synthetic import CLASS_NAMES, SyntheticSpec, decode_video_frames, render_preview, write_synthetic_dataset

REPO = Path(__file__).resolve().parents[1]


def write_preview(out_png: Path, size: tuple[int, int] = (128, 96)) -> Path:
    with tempfile.TemporaryDirectory() as tmp:
        write_synthetic_dataset(Path(tmp) / "data", SyntheticSpec(classes=len(CLASS_NAMES), groups=4,
                                                                  clips_per_group=1, frames=96, size=size))
        render_preview(Path(tmp) / "data", out_png, columns=6)
    print(f"wrote {out_png} ({out_png.stat().st_size / 1024:.0f} KB)")
    return out_png


def _read_split(root: Path, listfile: str, names: list[str]) -> list[tuple[str, int]]:
    items = []
    for line in (root / "splits" / listfile).read_text().splitlines():
        relative = line.split(" ")[0]
        items.append((relative, names.index(relative.split("/")[0])))
    return items


def _shrink(image: np.ndarray, width: int, height: int) -> np.ndarray:
    return np.asarray(Image.fromarray(image.astype(np.float32)).resize((width, height), Image.Resampling.BILINEAR))


def _figure_box(gray: np.ndarray) -> tuple[slice, slice]:
    """A square box around where things move (mostly the figure)."""
    change = np.abs(np.diff(gray, axis=0))
    energy = np.where(change > 12, change, 0).mean(0)
    height, width = energy.shape
    ys, xs = np.mgrid[:height, :width]
    total = energy.sum() + 1e-6
    cy, cx = (energy * ys).sum() / total, (energy * xs).sum() / total
    half = height // 2
    y0 = int(np.clip(cy - half, 0, height - 2 * half))
    x0 = int(np.clip(cx - half, 0, width - 2 * half))
    return slice(y0, y0 + 2 * half), slice(x0, x0 + 2 * half)


def single_frame(gray: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return _shrink(gray[rng.integers(len(gray))], 32, 24).ravel()


def single_frame_centred(gray: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    rows, cols = _figure_box(gray)
    frame = _shrink(gray[rng.integers(len(gray)), rows, cols], 16, 16).ravel()
    return (frame - frame.mean()) / (frame.std() + 1e-6)


def motion_energy(gray: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return _shrink(np.abs(np.diff(gray, axis=0)).mean(0), 32, 24).ravel()


def motion_energy_centred(gray: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Where the figure moves (a motion-energy image around it) and how fast (spectrum)."""
    rows, cols = _figure_box(gray)
    change = np.abs(np.diff(gray, axis=0))[:, rows, cols]
    change = np.where(change > 12, change, 0)
    image = _shrink(change.mean(0), 16, 16).ravel()
    over_time = change.reshape(len(change), -1).mean(1)
    spectrum = np.abs(np.fft.rfft(over_time - over_time.mean()))[:12]
    return np.concatenate([image / (image.std() + 1e-6), 10 * spectrum / (spectrum.sum() + 1e-6)])


def separability(root: Path, split: int = 1) -> None:
    names = [line.split(" ")[1] for line in (root / "splits" / "classInd.txt").read_text().splitlines()]
    train = _read_split(root, f"trainlist0{split}.txt", names)
    test = _read_split(root, f"testlist0{split}.txt", names)
    videos = {rel: decode_video_frames(root / "videos" / rel).astype(np.float32).mean(-1) for rel, _ in train + test}
    print(f"{root}: {len(names)} classes, {len(train)} train / {len(test)} test videos (split {split}), "
          f"chance {1 / len(names):.3f}")
    for title, feature in (("single frame", single_frame), ("single frame, centred on the figure", single_frame_centred),
                           ("mean |frame difference|", motion_energy),
                           ("centred motion energy + temporal spectrum", motion_energy_centred)):
        rng = np.random.default_rng(0)
        x_train = np.stack([feature(videos[rel], rng) for rel, _ in train])
        x_test = np.stack([feature(videos[rel], rng) for rel, _ in test])
        y_train, y_test = np.array([y for _, y in train]), np.array([y for _, y in test])
        mean, std = x_train.mean(0), x_train.std(0) + 1e-6
        x_train, x_test = (x_train - mean) / std, (x_test - mean) / std
        centroids = np.stack([x_train[y_train == c].mean(0) for c in range(len(names))])
        nearest_centroid = (((x_test[:, None] - centroids[None]) ** 2).sum(-1).argmin(1) == y_test).mean()
        nearest_video = (y_train[((x_test[:, None] - x_train[None]) ** 2).sum(-1).argmin(1)] == y_test).mean()
        print(f"  {title:45s} nearest-centroid {nearest_centroid:.3f}   1-NN {nearest_video:.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "images" / "synthetic_classes.png")
    parser.add_argument("--separability", type=Path, metavar="DIR", help="check a dataset written by vidkd synth")
    args = parser.parse_args()
    if args.separability:
        separability(args.separability)
    else:
        write_preview(args.out)


if __name__ == "__main__":
    main()
