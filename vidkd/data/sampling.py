"""Where clips come from in a video: tuples of clips, random and evenly spaced clips (the positions;
what a method does with them is its sampler's business: vidkd/data/samplers.py).

All positions are 0-based frame indices; a clip starting at `s` covers frames `s .. s+clip_len-1`.

Tuple arithmetic (defaults clip_len=16, interval=8, tuple_len=3): clip i starts at
`start + i * (clip_len + interval)`, so the tuple covers `span = 3*16 + 2*8 = 64` frames and
`start` is drawn uniformly from `0 .. num_frames - span`.

Short videos: a video with fewer than `span` frames shrinks the interval to the largest value that
fits (`fit_interval`); a video that cannot hold `tuple_len` back-to-back clips (interval 0) cannot
give a tuple and the loaders exclude it when they index the dataset (`min_tuple_frames`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class TupleSpec:
    """Shape of a tuple: `tuple_len` clips of `clip_len` frames, `interval` frames apart."""

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
    """Start frame of each clip of a tuple."""

    clip_starts: list[int]


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


def fitted_spec(num_frames: int, spec: TupleSpec) -> TupleSpec:
    """`spec` with the interval a video of `num_frames` frames can use (`fit_interval`)."""
    return TupleSpec(spec.clip_len, fit_interval(num_frames, spec), spec.tuple_len, spec.starts)


def sample_tuple(num_frames: int, spec: TupleSpec, rng: np.random.Generator) -> TuplePositions:
    """Draw a tuple from a video of `num_frames` frames: the start is uniform over
    `0 .. num_frames - span`. Short videos use `fit_interval`."""
    fitted = fitted_spec(num_frames, spec)
    start = int(rng.integers(num_frames - fitted.span + 1))
    return TuplePositions(tuple_clip_starts(start, fitted))


def clip_indices(start: int, clip_len: int, num_frames: int) -> list[int]:
    """Frame indices of a clip; past the end of a short video the last frame repeats (padding)."""
    return [min(start + j, num_frames - 1) for j in range(clip_len)]


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
