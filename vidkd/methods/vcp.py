"""Video Cloze Procedure (VCP), PCL's pretext task: the five transformations whose label the pretext
head predicts, and `VcpSampler`, PCL's tuples with the remote clip label 4 needs.

Labels: 0 unchanged; 1 spatial rotation by 90, 180 or 270 degrees; 2 spatial permutation (the
four quadrants reordered by a non-identity permutation); 3 temporal shuffle (T cut into 4 chunks,
two of them swapped); 4 the clip replaced by a "remote" clip from elsewhere in the video.
Clips are (C, T, H, W) tensors; every random choice comes from the caller's generator.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from vidkd.data.samplers import DrawParams, ReadFrames, Sample, TupleSampler, read_clips
from vidkd.data.sampling import TupleSpec, fit_interval, fitted_spec, sample_tuple, tuple_clip_starts

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


# ----------------------------------------------------------------------------- the remote clip (label 4)
REFERENCE_REMOTE_GAP = 16  # PCL's `dist`


@dataclass(frozen=True)
class VcpPositions:
    """Start frame of each clip of a tuple, and of the remote clip (None: none drawn/possible)."""

    clip_starts: list[int]
    remote_start: int | None = None


def remote_positions(num_frames: int, tuple_start: int, span: int, clip_len: int) -> list[int]:
    """Every valid remote clip start: the clip ends >= clip_len frames before the tuple, or
    starts >= clip_len frames after it (so at least clip_len frames lie between them)."""
    before = range(0, tuple_start - 2 * clip_len + 1)
    after = range(tuple_start + span + clip_len, num_frames - clip_len + 1)
    return list(before) + list(after)


def _has_remote(num_frames: int, start: int, spec: TupleSpec) -> bool:
    room_before = start - 2 * spec.clip_len >= 0
    room_after = start + spec.span + 2 * spec.clip_len <= num_frames
    return room_before or room_after


def remote_possible(num_frames: int, spec: TupleSpec) -> bool:
    """Whether some tuple position in this video leaves room for a remote clip."""
    try:
        interval = fit_interval(num_frames, spec)
    except ValueError:
        return False
    return num_frames >= TupleSpec(spec.clip_len, interval, spec.tuple_len, spec.starts).span + 2 * spec.clip_len


def sample_tuple_with_remote(num_frames: int, spec: TupleSpec, rng: np.random.Generator) -> VcpPositions:
    """A tuple and a remote clip: the start is uniform over the starts that leave room for a remote
    clip, the remote clip uniform over all valid positions on both sides; a video too short for one
    gets a plain tuple (`remote_start` None). Short videos use `fit_interval`."""
    fitted = fitted_spec(num_frames, spec)
    starts = [s for s in range(num_frames - fitted.span + 1) if _has_remote(num_frames, s, fitted)]
    if starts:
        start = int(starts[rng.integers(len(starts))])
        options = remote_positions(num_frames, start, fitted.span, spec.clip_len)
        return VcpPositions(tuple_clip_starts(start, fitted), int(options[rng.integers(len(options))]))
    return VcpPositions(sample_tuple(num_frames, spec, rng).clip_starts)


def vcp_positions(num_frames: int, spec: TupleSpec, rng: np.random.Generator, label: int) -> VcpPositions:
    """The tuple of VCP `label` (vidkd's rule): with a remote clip for label 4."""
    if label == 4:
        return sample_tuple_with_remote(num_frames, spec, rng)
    return VcpPositions(sample_tuple(num_frames, spec, rng).clip_starts)


def sample_tuple_reference(num_frames: int, spec: TupleSpec, rng: np.random.Generator,
                           label: int) -> tuple[VcpPositions, int]:
    """PCL's own draw (datasets/ucf101.py): the start is uniform whatever the label; the remote
    clip (label 4) needs room on BOTH sides of the tuple (16 + clip_len frames before, 16 + 16
    after), else the label is redrawn from 0..3, which makes label 4 rarer than the others. The
    remote clip is drawn before or after the tuple with equal probability. Returns (positions, label).
    """
    fitted = fitted_spec(num_frames, spec)
    start = int(rng.integers(num_frames - fitted.span + 1))
    starts = tuple_clip_starts(start, fitted)
    if label != 4:
        return VcpPositions(starts), label
    before_room = start - REFERENCE_REMOTE_GAP - spec.clip_len
    after_room = num_frames - start - fitted.span - REFERENCE_REMOTE_GAP - spec.clip_len
    if before_room < 0 or after_room < 0:
        return VcpPositions(starts), int(rng.integers(4))
    if rng.random() < 0.5:
        remote = int(rng.integers(0, before_room + 1))
    else:
        remote = int(rng.integers(start + fitted.span + REFERENCE_REMOTE_GAP, num_frames - spec.clip_len + 1))
    return VcpPositions(starts, remote), 4


# ----------------------------------------------------------------------------- PCL's sampler
REMOTE_RULES = ("vidkd", "reference")


@dataclass(frozen=True)
class VcpSampler(TupleSampler):
    """PCL's tuples: the middle clip (`tuple_len // 2`) carries a VCP transformation whose label is
    the item's target; label 4 (remote clip) is only drawn for videos long enough for one."""

    quadrant_order: str = "random"  # VCP label 2: "random" or PCL's fixed "reference" order
    remote_rule: str = "vidkd"  # VCP label 4: "vidkd" or PCL's "reference" draw (sample_tuple_reference)

    def __post_init__(self) -> None:
        if self.remote_rule not in REMOTE_RULES:
            raise ValueError(f"remote_rule must be 'vidkd' or 'reference', got {self.remote_rule!r}")

    def sample(self, num_frames: int, rng: np.random.Generator, read: ReadFrames, draw_params: DrawParams) -> Sample:
        spec = self.spec
        if self.remote_rule == "reference":
            positions, label = sample_tuple_reference(num_frames, spec, rng, int(rng.integers(VCP_CLASSES)))
        else:
            label = sample_vcp_label(rng, remote_possible(num_frames, spec))
            positions = vcp_positions(num_frames, spec, rng, label)
        remote = [positions.remote_start] if positions.remote_start is not None else []
        frames = read_clips(read, positions.clip_starts + remote, spec.clip_len, num_frames)
        draw = self.params_drawer(draw_params, frames[0].shape[1:3])
        # in the generator's order: each clip's augmentation, and right after the middle clip's its
        # remote clip's (shown last) and its VCP choice
        params, remote_params, vcp = [], [], None
        for i in range(spec.tuple_len):
            params.append(draw())
            if i == spec.tuple_len // 2 and label:
                if label == 4:
                    remote_params.append(draw())
                vcp = draw_vcp(label, rng, self.quadrant_order)
        return Sample(frames, params + remote_params, target=label, task=vcp)

    def arrange(self, x: torch.Tensor, tasks: Sequence[VcpDraw | None], extras: Sequence[int]) -> torch.Tensor:
        """VCP applied to each middle clip (a remote clip replaces it)."""
        n, middle = self.spec.tuple_len, self.spec.tuple_len // 2
        remote = len(tasks) * n
        for b, (vcp, extra) in enumerate(zip(tasks, extras)):
            if vcp is not None:
                x[b * n + middle] = vcp.apply(x[b * n + middle], remote=x[remote] if extra else None)
                remote += extra
        return x[:len(tasks) * n]
