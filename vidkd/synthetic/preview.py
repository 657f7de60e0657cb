"""A preview grid of a written synthetic dataset, decoded from its video files."""

from __future__ import annotations

import json
from pathlib import Path

import av
import numpy as np
from PIL import Image, ImageDraw, ImageFont

from vidkd.synthetic.writer import video_name


def decode_video_frames(path: str | Path) -> np.ndarray:
    """Every frame of the video at `path`, decoded to (T, H, W, 3) uint8 RGB."""
    with av.open(str(path)) as container:
        return np.stack([frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)])


def render_preview(root: str | Path, out_png: str | Path, columns: int = 6, clip: int = 1) -> Path:
    """Save a grid (one row per class, `columns` frames spread over the clip) decoded from the
    written videos, so it shows what the decoder sees. Rows cycle through the actors."""
    root, out_png = Path(root), Path(out_png)
    params = json.loads((root / "synthetic.json").read_text())["parameters"]
    width, height = params["size"]
    label_width, pad = 104, 2
    font = ImageFont.load_default()
    grid = Image.new("RGB", (label_width + columns * (width + pad), len(params["classes"]) * (height + pad)), "white")
    draw = ImageDraw.Draw(grid)
    for row, name in enumerate(params["classes"]):
        group = row % params["groups"] + 1
        video = decode_video_frames(root / "videos" / name / video_name(name, group, clip))
        picks = np.linspace(0, len(video) - 1, columns).round().astype(int)
        y = row * (height + pad)
        draw.text((4, y + height // 2 - 12), name, fill="black", font=font)
        draw.text((4, y + height // 2 + 2), f"actor g{group:02d}", fill="gray", font=font)
        for col, index in enumerate(picks):
            grid.paste(Image.fromarray(video[index]), (label_width + col * (width + pad), y))
    out_png.parent.mkdir(parents=True, exist_ok=True)
    # A 256-colour palette halves the PNG of these noisy frames (to about 300 KB) with no visible loss.
    grid.quantize(colors=256, method=Image.Quantize.FASTOCTREE).save(out_png, optimize=True)
    return out_png
