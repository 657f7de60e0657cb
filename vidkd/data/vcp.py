"""Video Cloze Procedure (VCP): the five transformations whose label the pretext head predicts.

Labels: 0 unchanged; 1 spatial rotation by 90, 180 or 270 degrees; 2 spatial permutation (the
four quadrants reordered by a non-identity permutation); 3 temporal shuffle (T cut into 4 chunks,
two of them swapped); 4 the clip replaced by a "remote" clip from elsewhere in the video.
Clips are (C, T, H, W) tensors; every random choice comes from the caller's generator.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
import torch

VCP_CLASSES = 5
TEMPORAL_CHUNKS = 4
_QUADRANT_PERMUTATIONS = [p for p in itertools.permutations(range(4)) if p != (0, 1, 2, 3)]
REFERENCE_QUADRANT_ORDER = (3, 2, 1, 0)  # PCL's one fixed permutation: [[D, C], [B, A]]


def sample_vcp_label(rng: np.random.Generator, remote_available: bool) -> int:
    """Uniform over the 5 labels, or over 0..3 when no remote clip can be drawn."""
    return int(rng.integers(VCP_CLASSES if remote_available else VCP_CLASSES - 1))


@dataclass(frozen=True)
class VcpDraw:
    """A VCP transformation with its random choice made: quarter turns (label 1), a quadrant
    order (2) or the two swapped chunks (3); labels 0 and 4 choose nothing."""

    label: int
    choice: tuple[int, ...] = ()

    def apply(self, clip: torch.Tensor, remote: torch.Tensor | None = None) -> torch.Tensor:
        """The (C, T, H, W) `clip` transformed; label 4 returns `remote`, a clip of the same shape."""
        if clip.ndim != 4:
            raise ValueError(f"expected a (C, T, H, W) clip, got shape {tuple(clip.shape)}")
        if self.label == 0:
            return clip
        if self.label == 1:
            return rotate(clip, self.choice[0])
        if self.label == 2:
            return permute_quadrants(clip, self.choice)
        if self.label == 3:
            return swap_chunks(clip, *self.choice)
        if remote is None:
            raise ValueError("VCP label 4 replaces the clip by a remote clip; pass remote=...")
        if remote.shape != clip.shape:
            raise ValueError(f"remote clip shape {tuple(remote.shape)} differs from the clip's {tuple(clip.shape)}")
        return remote


def draw_vcp(label: int, rng: np.random.Generator, quadrant_order: str = "random") -> VcpDraw:
    """Make VCP `label`'s random choice now, from the caller's generator.

    `quadrant_order`: "random" draws one of the 23 non-identity quadrant permutations (vidkd);
    "reference" always uses PCL's fixed order (3, 2, 1, 0).
    """
    if label in (0, 4):
        return VcpDraw(label)
    if label == 1:
        return VcpDraw(1, (int(rng.integers(1, 4)),))
    if label == 2:
        if quadrant_order == "reference":
            return VcpDraw(2, REFERENCE_QUADRANT_ORDER)
        return VcpDraw(2, _QUADRANT_PERMUTATIONS[int(rng.integers(len(_QUADRANT_PERMUTATIONS)))])
    if label == 3:
        return VcpDraw(3, tuple(int(v) for v in rng.choice(TEMPORAL_CHUNKS, size=2, replace=False)))
    raise ValueError(f"VCP label must be in 0..{VCP_CLASSES - 1}, got {label}")


def apply_vcp(clip: torch.Tensor, label: int, rng: np.random.Generator, remote: torch.Tensor | None = None,
              quadrant_order: str = "random") -> torch.Tensor:
    """Transform a (C, T, H, W) clip according to VCP `label` (`draw_vcp`, then its `apply`)."""
    return draw_vcp(label, rng, quadrant_order).apply(clip, remote)


def rotate(clip: torch.Tensor, quarter_turns: int) -> torch.Tensor:
    """Rotate every frame by `quarter_turns` x 90 degrees (counter-clockwise); needs H == W."""
    if clip.shape[-1] != clip.shape[-2]:
        raise ValueError(f"VCP rotation needs square frames, got {clip.shape[-2]}x{clip.shape[-1]}")
    return torch.rot90(clip, quarter_turns, dims=(-2, -1))


def permute_quadrants(clip: torch.Tensor, order: tuple[int, ...]) -> torch.Tensor:
    """Quadrant k of the output (0 top-left, 1 top-right, 2 bottom-left, 3 bottom-right) is input
    quadrant order[k]. Needs even H and W."""
    height, width = clip.shape[-2:]
    if height % 2 or width % 2:
        raise ValueError(f"VCP spatial permutation needs even frame sizes, got {height}x{width}")
    h, w = height // 2, width // 2
    quads = [clip[..., :h, :w], clip[..., :h, w:], clip[..., h:, :w], clip[..., h:, w:]]
    top = torch.cat([quads[order[0]], quads[order[1]]], dim=-1)
    bottom = torch.cat([quads[order[2]], quads[order[3]]], dim=-1)
    return torch.cat([top, bottom], dim=-2)


def chunk_bounds(num_frames: int, chunks: int = TEMPORAL_CHUNKS) -> list[tuple[int, int]]:
    """(begin, end) of `chunks` near-equal chunks of T (4 frames each for T=16)."""
    if num_frames < chunks:
        raise ValueError(f"VCP temporal shuffle needs at least {chunks} frames, got {num_frames}")
    edges = [round(k * num_frames / chunks) for k in range(chunks + 1)]
    return list(zip(edges[:-1], edges[1:]))


def swap_chunks(clip: torch.Tensor, first: int, second: int) -> torch.Tensor:
    """Swap temporal chunks `first` and `second` of a (C, T, H, W) clip (dim 1 is time)."""
    if first == second:
        raise ValueError("temporal shuffle needs two different chunks")
    bounds = chunk_bounds(clip.shape[1])
    bounds[first], bounds[second] = bounds[second], bounds[first]
    order = [t for begin, end in bounds for t in range(begin, end)]
    return clip[:, order]
