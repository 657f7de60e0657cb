"""The PCL reference code's data path, rebuilt for benchmarking: JPEG frames read with PIL, a
torchvision-style transform applied frame by frame.

What it reproduces (PCL, BestJuly/Pretext-Contrastive-Learning, on the two-stream-fusion
release's frames, see ../shared/DESIGN.md "The reference loader's data"):

- data: `jpegs_256/<video_id>/frame%06d.jpg`, one 341x256 JPEG per frame, numbered from 1;
- per clip of a tuple: 16 JPEGs opened with PIL (torchvision's `pil_loader`: open, `.convert("RGB")`);
- per frame, one random draw per clip (the reference re-seeds Python's `random` with the clip's
  seed before every frame, so all frames of a clip get the same choices; drawing once per clip is
  the same thing): Resize((128, 171)) (PIL bilinear, antialiased as PIL's resize is) ->
  RandomCrop(112) -> RandomApply([ColorJitter(0.4, 0.4, 0.4, 0.1)], p=0.8) (the four adjustments
  in a random order, as torchvision's ColorJitter) -> RandomGrayscale(p=0.2) ->
  RandomApply([GaussianBlur(sigma in [0.1, 2])], p=0.5) (PCL's, PIL's ImageFilter.GaussianBlur)
  -> RandomHorizontalFlip -> ToTensor -> Normalize (ImageNet mean/std);
- a clip is `torch.stack(frames).permute(1, 0, 2, 3)` (C, T, H, W), a tuple the stack of its clips.

torchvision is not a dependency: the PIL steps use PIL.Image / ImageEnhance / ImageFilter the way
torchvision's functional PIL backend does, the tensor steps plain torch. The residual
(`roll(x, 1, T) - x`) is computed by the reference in its training loop, not in the loader, so it is
not part of this loader. Pillow is required (`pip install pillow`); accimage is not used.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from PIL import Image, ImageEnhance, ImageFilter

JPEG_SIZE = (341, 256)  # (width, height) of the two-stream-fusion frames
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
COMPLETE = ".complete"  # marker: every frame of a video directory is written


def frame_path(video_dir: Path, index: int) -> Path:
    """The JPEG of 0-based frame `index` (the files are numbered from 1)."""
    return video_dir / f"frame{index + 1:06d}.jpg"


def write_jpeg_frames(frames: np.ndarray, video_dir: str | Path, size: tuple[int, int] = JPEG_SIZE,
                      quality: int = 75) -> int:
    """Write uint8 RGB frames (T, H, W, 3) as `video_dir/frame%06d.jpg`, each resized to `size`
    (width, height; PIL bilinear) and saved by PIL at JPEG `quality` (4:2:0 chroma, PIL's default
    for this quality). Returns the bytes written. Skipped (returns the existing size) when the
    directory is already complete."""
    video_dir = Path(video_dir)
    if (video_dir / COMPLETE).is_file():
        return directory_bytes(video_dir)
    video_dir.mkdir(parents=True, exist_ok=True)
    for index, frame in enumerate(frames):
        image = Image.fromarray(np.ascontiguousarray(frame), "RGB")
        if image.size != tuple(size):
            image = image.resize(tuple(size), Image.Resampling.BILINEAR)
        image.save(frame_path(video_dir, index), format="JPEG", quality=quality)
    (video_dir / COMPLETE).write_text(f"{len(frames)} frames, {size[0]}x{size[1]}, quality {quality}\n")
    return directory_bytes(video_dir)


def directory_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in Path(folder).iterdir() if p.suffix == ".jpg")


def pil_loader(path: Path) -> Image.Image:
    """torchvision.datasets.folder.pil_loader."""
    with open(path, "rb") as f:
        image = Image.open(f)
        return image.convert("RGB")


@dataclass(frozen=True)
class FrameParams:
    """One clip's random choices (the reference draws them again for every frame from the same seed)."""

    top: int
    left: int
    jitter: tuple[float, float, float, float] | None  # brightness, contrast, saturation, hue
    jitter_order: tuple[int, ...]
    grayscale: bool
    blur_sigma: float | None
    flip: bool


class ReferenceTransform:
    """The reference's per-frame train transform (see the module docstring), PIL image -> (3, crop, crop)."""

    def __init__(self, resize: Sequence[int] = (128, 171), crop: int = 112, color_jitter: float = 0.8,
                 grayscale: float = 0.2, blur: float = 0.5, flip: bool = True,
                 mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD):
        self.resize = (int(resize[0]), int(resize[1]))  # (H, W), torchvision's order
        self.crop = int(crop)
        self.color_jitter, self.grayscale, self.blur, self.flip = color_jitter, grayscale, blur, flip
        self.mean = torch.tensor(mean, dtype=torch.float32).view(3, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).view(3, 1, 1)

    def sample(self, rng: random.Random) -> FrameParams:
        """Draws in the order the Compose makes them: crop, jitter (factors, order), grayscale, blur, flip."""
        height, width = self.resize
        top = rng.randint(0, height - self.crop)
        left = rng.randint(0, width - self.crop)
        jitter, order = None, (0, 1, 2, 3)
        if rng.random() < self.color_jitter:
            jitter = (rng.uniform(0.6, 1.4), rng.uniform(0.6, 1.4), rng.uniform(0.6, 1.4), rng.uniform(-0.1, 0.1))
            order = tuple(rng.sample(range(4), 4))
        gray = rng.random() < self.grayscale
        sigma = rng.uniform(0.1, 2.0) if rng.random() < self.blur else None
        flip = self.flip and rng.random() < 0.5
        return FrameParams(top, left, jitter, order, gray, sigma, flip)

    def __call__(self, image: Image.Image, p: FrameParams) -> torch.Tensor:
        height, width = self.resize
        image = image.resize((width, height), Image.Resampling.BILINEAR)  # torchvision Resize on PIL
        image = image.crop((p.left, p.top, p.left + self.crop, p.top + self.crop))
        if p.jitter is not None:
            for step in p.jitter_order:
                factor = p.jitter[step]
                if step == 0:
                    image = ImageEnhance.Brightness(image).enhance(factor)
                elif step == 1:
                    image = ImageEnhance.Contrast(image).enhance(factor)
                elif step == 2:
                    image = ImageEnhance.Color(image).enhance(factor)
                else:
                    image = adjust_hue(image, factor)
        if p.grayscale:  # torchvision to_grayscale(num_output_channels=3)
            luma = np.array(image.convert("L"), dtype=np.uint8)
            image = Image.fromarray(np.dstack([luma, luma, luma]), "RGB")
        if p.blur_sigma is not None:
            image = image.filter(ImageFilter.GaussianBlur(radius=p.blur_sigma))
        if p.flip:
            image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        # ToTensor, then Normalize
        x = torch.from_numpy(np.array(image, np.uint8, copy=True)).permute(2, 0, 1).contiguous()
        x = x.to(torch.float32).div(255)
        return x.sub(self.mean).div(self.std)


def adjust_hue(image: Image.Image, hue_factor: float) -> Image.Image:
    """torchvision's PIL adjust_hue: shift the H channel of HSV by hue_factor * 255 (uint8 wrap-around)."""
    mode = image.mode
    h, s, v = image.convert("HSV").split()
    np_h = np.array(h, dtype=np.uint8)
    np_h += np.uint8(int(hue_factor * 255) % 256)  # wraps around, as the reference's uint8 sum does
    h = Image.fromarray(np_h, "L")
    return Image.merge("HSV", (h, s, v)).convert(mode)


class ReferenceTupleLoader:
    """A tuple as the reference's `__getitem__` builds it from JPEG frames: for every clip start,
    `clip_len` JPEGs opened and transformed one by one; returns (tuple_len, 3, clip_len, crop, crop)."""

    def __init__(self, transform: ReferenceTransform | None = None, clip_len: int = 16):
        self.transform = transform or ReferenceTransform()
        self.clip_len = clip_len

    def load_tuple(self, video_dir: str | Path, clip_starts: Sequence[int], num_frames: int,
                   rng: random.Random) -> torch.Tensor:
        video_dir = Path(video_dir)
        clips = []
        for start in clip_starts:
            params = self.transform.sample(rng)
            frames = [self.transform(pil_loader(frame_path(video_dir, min(start + j, num_frames - 1))), params)
                      for j in range(self.clip_len)]
            clips.append(torch.stack(frames).permute(1, 0, 2, 3))
        return torch.stack(clips)

    @staticmethod
    def read_frames(video_dir: str | Path, indices: Sequence[int]) -> np.ndarray:
        """The JPEG frames at `indices` as uint8 (N, 256, 341, 3): decode only, no transform."""
        return np.stack([np.asarray(pil_loader(frame_path(Path(video_dir), i))) for i in indices])
