"""What a method asks of a video: the clips of one training item, and how they are shown.

The data layer decodes, reads the frames a sampler asks for and augments them; it knows no pretext
task. A method hands its datasets a `ClipSampler`: `sample` draws an item's clip positions (and its
own choices: a VCP transformation, a clip order, a second view) from the item's generator,
`arrange` finishes a batch of augmented clips (applies the pretext transformation, reorders).

`TupleSampler` is the plain one: `tuple_len` clips `interval` frames apart, shown in order.
"""

from __future__ import annotations

import abc
import dataclasses
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np
import torch

from vidkd.data.sampling import TupleSpec, clip_indices, min_tuple_frames, sample_tuple
from vidkd.data.transforms import ClipParams

ReadFrames = Callable[[list[int]], np.ndarray]  # frame indices -> (N, H, W, 3) uint8 frames of the video
DrawParams = Callable[[Sequence[int]], ClipParams]  # frame size (H, W) -> one clip's augmentation draw


@dataclass
class Sample:
    """One item's clips and random choices, before any tensor work."""

    frames: list[np.ndarray]  # one (T, H, W, 3) array per clip: the clips shown, then the sampler's extra clips
    params: list[ClipParams]  # the augmentation of each clip, in the same order
    target: int = 0  # what the item asks the model (`pretext_label`)
    task: Any = None  # what `arrange` needs to finish the item (a VCP draw, a clip order)


class ClipSampler(abc.ABC):
    """A method's choice of clips per item. Picklable (DataLoader workers hand `arrange` work on)."""

    clips: int  # clips shown per item: the item's `clips` is (clips, C, T, H, W)

    @property
    @abc.abstractmethod
    def min_frames(self) -> int:
        """Videos with fewer frames are left out of the dataset."""

    @abc.abstractmethod
    def sample(self, num_frames: int, rng: np.random.Generator, read: ReadFrames, draw_params: DrawParams) -> Sample:
        """One item of a video of `num_frames` frames; every random choice from `rng`, in a fixed order."""

    def for_validation(self) -> ClipSampler:
        """The sampler of the fixed validation items (default: this one)."""
        return self

    def arrange(self, x: torch.Tensor, tasks: Sequence[Any], extras: Sequence[int]) -> torch.Tensor:
        """Augmented clips (every item's shown clips, then their extra clips: `extras[b]` of item b)
        -> the (B * clips, C, T, H, W) clips the model sees, item by item."""
        return x[:len(tasks) * self.clips]


def read_clips(read: ReadFrames, starts: Sequence[int], clip_len: int, num_frames: int) -> list[np.ndarray]:
    """The frames of clips starting at `starts`, read in one pass (each frame once, in order)."""
    rows = [clip_indices(start, clip_len, num_frames) for start in starts]
    needed = sorted({frame for clip in rows for frame in clip})
    frames = read(needed)
    position = {frame: i for i, frame in enumerate(needed)}
    return [frames[[position[frame] for frame in clip]] for clip in rows]


@dataclass(frozen=True)
class TupleSampler(ClipSampler):
    """`spec.tuple_len` clips of a tuple (vidkd/data/sampling.py), shown in order; target 0."""

    spec: TupleSpec
    # one crop / flip / colour draw for all clips of a tuple (PCL draws one per clip)
    shared_augmentation: bool = False
    min_video_frames: int = 0  # leave out videos a tuple could still use (the reference lists keep >= 64)

    @property
    def clips(self) -> int:  # type: ignore[override]
        return self.spec.tuple_len

    @property
    def min_frames(self) -> int:
        return max(min_tuple_frames(self.spec), self.min_video_frames)

    def for_validation(self) -> TupleSampler:
        return dataclasses.replace(self, shared_augmentation=False)  # a training choice

    def sample(self, num_frames: int, rng: np.random.Generator, read: ReadFrames, draw_params: DrawParams) -> Sample:
        frames = read_clips(read, sample_tuple(num_frames, self.spec, rng).clip_starts, self.spec.clip_len,
                            num_frames)
        draw = self.params_drawer(draw_params, frames[0].shape[1:3])
        return Sample(frames, [draw() for _ in frames])

    def params_drawer(self, draw_params: DrawParams, size: Sequence[int]) -> Callable[[], ClipParams]:
        """Each call: the next clip's augmentation (with `shared_augmentation`, one draw made now for all)."""
        if self.shared_augmentation:
            shared = draw_params(size)
            return lambda: shared
        return lambda: draw_params(size)
