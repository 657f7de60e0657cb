"""Where clips come from in a video: PCL tuples, the remote clip, random and evenly spaced clips.

All positions are 0-based frame indices; a clip starting at `s` covers frames `s .. s+clip_len-1`.

Tuple arithmetic (defaults clip_len=16, interval=8, tuple_len=3): clip i starts at
`start + i * (clip_len + interval)`, so the tuple covers `span = 3*16 + 2*8 = 64` frames and
`start` is drawn uniformly from `0 .. num_frames - span`.

Short videos: a video with fewer than `span` frames shrinks the interval to the largest value that
fits (`fit_interval`); a video that cannot hold `tuple_len` back-to-back clips (interval 0) cannot
give a tuple and the loaders exclude it when they index the dataset (`min_tuple_frames`).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class TupleSpec:
    """Shape of a PCL tuple: `tuple_len` clips of `clip_len` frames, `interval` frames apart."""

    clip_len: int = 16
    interval: int = 8
    tuple_len: int = 3
    starts: str = "vidkd"  # vidkd: clips clip_len + interval apart | reference: tuple_len + interval apart (PCL)

    def __post_init__(self) -> None:
        if self.clip_len < 1 or self.tuple_len < 1 or self.interval < 0:
            raise ValueError(f"invalid TupleSpec {self}: clip_len and tuple_len must be >= 1, interval >= 0")
        if self.starts not in ("vidkd", "reference"):
            raise ValueError(f"TupleSpec.starts must be 'vidkd' or 'reference', got {self.starts!r}")

    @property
    def span(self) -> int:
        """Frames covered from the first frame of clip 0 to the last frame of the last clip."""
        return self.tuple_len * self.clip_len + (self.tuple_len - 1) * self.interval


@dataclass(frozen=True)
class TuplePositions:
    """Start frame of each clip of a tuple, and of the remote clip (None: none drawn/possible)."""

    clip_starts: list[int]
    remote_start: int | None = None


def tuple_clip_starts(start: int, spec: TupleSpec) -> list[int]:
    """Start frames of the clips of a tuple beginning at `start`.

    vidkd: `clip_len + interval` apart (no overlap, as VCOP). reference: `tuple_len + interval`
    apart, as PCL's `datasets/ucf101.py` writes it (clips overlap; its published numbers come
    from this), while the start range still assumes the full `span`.
    """
    step = spec.clip_len + spec.interval if spec.starts == "vidkd" else spec.tuple_len + spec.interval
    return [start + i * step for i in range(spec.tuple_len)]


def min_tuple_frames(spec: TupleSpec) -> int:
    """The fewest frames a video needs to give a tuple (interval shrunk to 0)."""
    return spec.tuple_len * spec.clip_len


def fit_interval(num_frames: int, spec: TupleSpec) -> int:
    """The interval a video of `num_frames` can use: `spec.interval`, or less for a short video.

    Raises ValueError when even interval 0 does not fit (the loaders exclude such videos).
    """
    if num_frames >= spec.span:
        return spec.interval
    if num_frames < min_tuple_frames(spec):
        raise ValueError(f"a {spec.tuple_len}x{spec.clip_len}-frame tuple needs at least "
                         f"{min_tuple_frames(spec)} frames, the video has {num_frames}")
    if spec.tuple_len == 1:
        return 0
    return (num_frames - spec.tuple_len * spec.clip_len) // (spec.tuple_len - 1)


def remote_positions(num_frames: int, tuple_start: int, span: int, clip_len: int) -> list[int]:
    """Every valid remote clip start: the clip ends >= clip_len frames before the tuple, or
    starts >= clip_len frames after it (so at least clip_len frames lie between them)."""
    before = range(0, tuple_start - 2 * clip_len + 1)
    after = range(tuple_start + span + clip_len, num_frames - clip_len + 1)
    return list(before) + list(after)


def sample_tuple(num_frames: int, spec: TupleSpec, rng: np.random.Generator,
                 need_remote: bool = False) -> TuplePositions:
    """Draw a tuple (and, if `need_remote`, a remote clip) from a video of `num_frames` frames.

    The start is uniform over `0 .. num_frames - span`. With `need_remote`, the start is uniform
    over the starts that leave room for a remote clip (when the video has any), and the remote clip
    is uniform over all valid positions on both sides; `remote_start` is None when the video is
    too short for one (or when no remote clip was asked for). Short videos use `fit_interval`.
    """
    interval = fit_interval(num_frames, spec)
    fitted = TupleSpec(spec.clip_len, interval, spec.tuple_len, spec.starts)
    last_start = num_frames - fitted.span
    if need_remote:
        starts = [s for s in range(last_start + 1) if _has_remote(num_frames, s, fitted)]
        if starts:
            start = int(starts[rng.integers(len(starts))])
            options = remote_positions(num_frames, start, fitted.span, spec.clip_len)
            return TuplePositions(tuple_clip_starts(start, fitted), int(options[rng.integers(len(options))]))
    start = int(rng.integers(last_start + 1))
    return TuplePositions(tuple_clip_starts(start, fitted), None)


REFERENCE_REMOTE_GAP = 16  # PCL's `dist`


def sample_tuple_reference(num_frames: int, spec: TupleSpec, rng: np.random.Generator,
                           label: int) -> tuple[TuplePositions, int]:
    """PCL's own draw (datasets/ucf101.py): the start is uniform whatever the label; the remote
    clip (label 4) needs room on BOTH sides of the tuple (16 + clip_len frames before, 16 + 16
    after), else the label is redrawn from 0..3, which makes label 4 rarer than the others. The
    remote clip is drawn before or after the tuple with equal probability. Returns (positions, label).
    """
    interval = fit_interval(num_frames, spec)
    fitted = TupleSpec(spec.clip_len, interval, spec.tuple_len, spec.starts)
    start = int(rng.integers(num_frames - fitted.span + 1))
    starts = tuple_clip_starts(start, fitted)
    if label != 4:
        return TuplePositions(starts, None), label
    before_room = start - REFERENCE_REMOTE_GAP - spec.clip_len
    after_room = num_frames - start - fitted.span - REFERENCE_REMOTE_GAP - spec.clip_len
    if before_room < 0 or after_room < 0:
        return TuplePositions(starts, None), int(rng.integers(4))
    if rng.random() < 0.5:
        remote = int(rng.integers(0, before_room + 1))
    else:
        remote = int(rng.integers(start + fitted.span + REFERENCE_REMOTE_GAP, num_frames - spec.clip_len + 1))
    return TuplePositions(starts, remote), 4


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


def clip_indices(start: int, clip_len: int, num_frames: int) -> list[int]:
    """Frame indices of a clip; past the end of a short video the last frame repeats (padding)."""
    return [min(start + j, num_frames - 1) for j in range(clip_len)]


def frames_needed(positions: TuplePositions, spec: TupleSpec, num_frames: int | None = None) -> list[int]:
    """Sorted, unique frame indices of all clips of `positions` (remote clip included)."""
    starts = list(positions.clip_starts)
    if positions.remote_start is not None:
        starts.append(positions.remote_start)
    frames: set[int] = set()
    for s in starts:
        if num_frames is None:
            frames.update(range(s, s + spec.clip_len))
        else:
            frames.update(clip_indices(s, spec.clip_len, num_frames))
    return sorted(frames)


def random_clip_start(num_frames: int, clip_len: int, rng: np.random.Generator) -> int:
    """Uniform start in `0 .. num_frames - clip_len`; 0 for a video shorter than a clip (padded)."""
    return int(rng.integers(max(num_frames - clip_len, 0) + 1))


def evenly_spaced_starts(num_frames: int, clip_len: int, n: int) -> list[int]:
    """`n` clip starts spread from the first to the last possible clip; n=1 gives the centre clip.

    A video shorter than `clip_len` gives `n` starts at 0; `clip_indices` pads those clips by
    repeating the last frame.
    """
    if n < 1:
        raise ValueError(f"need at least one clip, got n={n}")
    last = max(num_frames - clip_len, 0)
    if n == 1:
        return [last // 2]
    return [int(round(v)) for v in np.linspace(0, last, n)]


def clip_orders(tuple_len: int) -> list[tuple[int, ...]]:
    """Every order of `tuple_len` clips, chronological first (VCOP's classes: itertools order)."""
    return list(itertools.permutations(range(tuple_len)))
