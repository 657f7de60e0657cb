"""torch Datasets over a VideoSplit: a method's tuples of clips, single random clips, evenly spaced test clips.

Every item is a dict, so the default collate gives batches (`clips`: (B, tuple_len, C, T, H, W)).
A DataLoader fetches a batch with `__getitems__`: every item makes its random draws as
`dataset[i]` would, then the clips of the whole batch go through the transform together (the same
values bit for bit, a fraction of the tensor operations).

Bad files. At construction every video is probed (header only, cached in ROOT/.vidkd_cache/);
unreadable, empty and too-short videos are left out, counted in `.skipped` (reason -> paths) and
summarised in one log line. More than half of them unusable raises DatasetError. A video that
fails later while decoding is skipped in `__getitem__`: a warning once per file, and the next
usable video takes its place (deterministically), so one bad file never stops training; when
failures pile up (over half of at least 20 attempts in a process) DatasetError stops the run.

Randomness. Each item draws from its own `np.random.Generator`, seeded from
`(seed, epoch, index)` after `set_epoch(epoch)` (reproducible and independent of the number of
workers), from `(seed, index)` with `fixed=True` (validation: the same tuples every epoch), and,
if `set_epoch` is never called, from torch's per-worker seed plus a draw counter so that epochs
still differ.
"""

from __future__ import annotations

import dataclasses
import logging
from collections import OrderedDict, defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset, default_collate
from tqdm import tqdm

from vidkd.data.datasets import VideoRecord, VideoSplit, default_cache_dir, probe_videos, with_frame_counts
from vidkd.data.samplers import ClipSampler, Sample
from vidkd.data.sampling import clip_indices, evenly_spaced_starts, random_clip_start
from vidkd.data.transforms import ClipParams, ClipTransform, resize_frames
from vidkd.data.video import VideoReader
from vidkd.errors import DatasetError, VideoDecodeError

log = logging.getLogger("vidkd.data")

MAX_FAILURE_RATE = 0.5
MIN_ATTEMPTS_FOR_RATE = 20
MAX_CONSECUTIVE_SUBSTITUTES = 20


class DecodedVideos:
    """Videos decoded once per process (uint8, resized), shared by every dataset that preloads them.

    A demo or a grid builds many datasets over the same files (each run's training tuples, every
    evaluation's clips); each would decode them again. Entries are keyed by path, file size,
    modification time and size, so a changed file is decoded anew; the least recently used ones
    go first beyond `budget_bytes`.
    """

    def __init__(self, budget_bytes: int = 4 * 1024**3):
        self.budget_bytes = budget_bytes
        self._frames: OrderedDict[tuple, np.ndarray] = OrderedDict()
        self._bytes = 0

    @staticmethod
    def key(path: Path, resize: tuple[int, int]) -> tuple | None:
        try:
            stat = Path(path).stat()
        except OSError:
            return None
        return (str(path), stat.st_size, stat.st_mtime_ns, tuple(resize))

    def get(self, key: tuple | None) -> np.ndarray | None:
        if key is None or key not in self._frames:
            return None
        self._frames.move_to_end(key)
        return self._frames[key]

    def put(self, key: tuple | None, frames: np.ndarray) -> None:
        if key is None or frames.nbytes > self.budget_bytes:
            return
        frames.setflags(write=False)  # shared by every dataset: nobody may change it in place
        if key in self._frames:
            self._bytes -= self._frames.pop(key).nbytes
        self._frames[key] = frames
        self._bytes += frames.nbytes
        while self._bytes > self.budget_bytes:
            _, dropped = self._frames.popitem(last=False)
            self._bytes -= dropped.nbytes

    def clear(self) -> None:
        self._frames.clear()
        self._bytes = 0


DECODED = DecodedVideos()  # the process's store (`data.preload`)


@dataclass
class _Draw:
    """One item's frames and random choices: everything it draws before any tensor work."""

    index: int
    label: int
    frames: list[np.ndarray]  # one (T, H, W, 3) array per clip; a sampler's extra clips come last
    params: list[ClipParams]
    target: int = 0  # the sampler's label for the item (`pretext_label`)
    task: Any = None  # what the sampler's `arrange` needs (see vidkd/data/samplers.py)


class _VideoDataset(Dataset):
    """Shared part: the usable records, their frame counts, bad-file bookkeeping, per-item RNG."""

    def __init__(self, split: VideoSplit, min_frames: int, seed: int = 0, fixed: bool = False,
                 cache: bool = True, progress: bool = True):
        self.split = split
        self.class_names = split.class_names
        self.seed = seed
        self.fixed = fixed
        self.min_frames = min_frames
        self.skipped: dict[str, list[Path]] = defaultdict(list)
        self.records = self._index(split, cache, progress)
        self._epoch: int | None = None
        self._draws = 0
        self._attempts = 0
        self._failures = 0
        self._bad: set[int] = set()

    def _index(self, split: VideoSplit, cache: bool, progress: bool) -> list[VideoRecord]:
        cache_dir = default_cache_dir(split.root) if cache else None
        infos = probe_videos([r.path for r in split.records], cache_dir=cache_dir, progress=progress)
        probed = with_frame_counts(split.records, infos)
        for record in split.records:
            if isinstance(infos[record.path], str):
                self.skipped["unreadable"].append(record.path)
        usable = []
        for record in probed:
            if record.num_frames < self.min_frames:
                cut = infos[record.path].truncated  # the header promised more: a damaged file, not a short clip
                self.skipped["damaged (cut short)" if cut else "too short"].append(record.path)
            else:
                usable.append(record)
        total = len(split.records)
        if self.skipped:
            parts = ", ".join(f"{len(paths)} {reason}" for reason, paths in self.skipped.items())
            log.warning("skipped %d of %d videos (%s); run `vidkd data check %s` for the list",
                        total - len(usable), total, parts, split.root)
        if len(usable) * 2 < total or not usable:
            raise DatasetError(f"only {len(usable)} of {total} {split.subset} videos under {split.root} are usable "
                               f"(need >= {self.min_frames} readable frames); run `vidkd data check {split.root}`")
        return usable

    def __len__(self) -> int:
        return len(self.records)

    @property
    def labels(self) -> list[int]:
        return [r.label for r in self.records]

    def set_epoch(self, epoch: int) -> None:
        """Call at the start of every epoch (before creating the DataLoader iterator)."""
        self._epoch = int(epoch)

    def _rng(self, index: int) -> np.random.Generator:
        if self.fixed:
            return np.random.default_rng([self.seed, index])
        if self._epoch is not None:
            return np.random.default_rng([self.seed, self._epoch, index])
        self._draws += 1
        return np.random.default_rng([self.seed, index, torch.initial_seed() % 2**63, self._draws])

    def __getitem__(self, index: int) -> dict:
        """Item `index`; if its file fails to decode, the next usable video stands in."""
        return self._make_items([self._draw_usable(index)])[0]

    def __getitems__(self, indices: list[int]) -> list[dict]:
        """A DataLoader batch (torch calls this when it exists): the items `__getitem__` gives one by
        one, bit for bit, with the clips of all of them transformed together."""
        return self._make_items([self._draw_usable(index) for index in indices])

    def _draw_usable(self, index: int) -> _Draw:
        n = len(self.records)
        candidate = index
        for _ in range(MAX_CONSECUTIVE_SUBSTITUTES):
            if candidate not in self._bad:
                self._attempts += 1
                try:
                    return self._draw(candidate, self._rng(candidate))
                except VideoDecodeError as exc:
                    self._record_failure(candidate, exc)
            candidate = (candidate + 1) % n
        raise DatasetError(f"{MAX_CONSECUTIVE_SUBSTITUTES} videos in a row after {self.records[index].path} failed to "
                           f"decode; run `vidkd data check {self.split.root}`")

    def _record_failure(self, index: int, exc: VideoDecodeError) -> None:
        self._failures += 1
        self._bad.add(index)
        self.skipped["decode error"].append(self.records[index].path)
        log.warning("skipping a video that failed to decode: %s", exc)
        if self._attempts >= MIN_ATTEMPTS_FOR_RATE and self._failures > MAX_FAILURE_RATE * self._attempts:
            raise DatasetError(f"{self._failures} of {self._attempts} videos failed to decode; the dataset under "
                               f"{self.split.root} looks broken (run `vidkd data check {self.split.root}`)")

    def _draw(self, index: int, rng: np.random.Generator) -> _Draw:
        """Read item `index`'s frames and make all its random choices (every draw of its generator)."""
        raise NotImplementedError

    def _make_items(self, draws: list[_Draw]) -> list[dict]:
        """The items of `draws`, their clips transformed together."""
        raise NotImplementedError

    # ------------------------------------------------------------------ decoded frames in memory
    def preload(self, resize: tuple[int, int] | None, budget_bytes: int = 4 * 1024**3, progress: bool = True) -> bool:
        """Decode every usable video once and keep its frames in memory (uint8, resized to `resize`
        exactly as `ClipTransform.apply` resizes them, so samples are bit-identical); later items
        only crop and colour. Videos another dataset of this process decoded already come from
        `DECODED`. Skipped (False) when the frames would take more than `budget_bytes`."""
        if getattr(self, "_frames", None) is not None:
            return True
        sizes = [r.num_frames * 3 * (resize[0] * resize[1] if resize else 0) for r in self.records]
        if not resize or sum(sizes) > budget_bytes:
            log.info("not preloading %d videos (%.1f GB decoded; budget %.1f GB)", len(self.records),
                     sum(sizes) / 1024**3, budget_bytes / 1024**3)
            return False
        antialias = bool(getattr(self.transform, "antialias", False))  # resized as the transform resizes
        keys = [DECODED.key(record.path, resize) for record in self.records]
        keys = [key + ("antialias",) if key is not None and antialias else key for key in keys]
        frames = {index: shared for index, key in enumerate(keys) if (shared := DECODED.get(key)) is not None}
        missing = [index for index in range(len(self.records)) if index not in frames]
        for index in tqdm(missing, desc="decoding into memory", unit="video", disable=not progress or not missing,
                          leave=False):
            record = self.records[index]
            try:
                with VideoReader(record.path) as reader:
                    video = reader.read(list(range(record.num_frames)))
            except VideoDecodeError as exc:
                self._record_failure(index, exc)
                continue
            x = torch.from_numpy(video)
            if tuple(x.shape[1:3]) != tuple(resize):
                x = resize_frames(x, resize, antialias)
            frames[index] = x.contiguous().numpy()
            DECODED.put(keys[index], frames[index])
        self._frames = frames
        return True

    def _read(self, index: int, indices: list[int], threads: bool = False) -> np.ndarray:
        """Frames `indices` of video `index`: from memory when preloaded, else decoded now."""
        cached = getattr(self, "_frames", None)
        if cached is not None and index in cached:
            return cached[index][indices]
        with VideoReader(self.records[index].path, threads=threads) as reader:
            frames = reader.read(indices)
            self.frames_decoded = getattr(self, "frames_decoded", 0) + reader.frames_decoded
        return frames


class TupleDataset(_VideoDataset):
    """Items of a method's `ClipSampler`: `{"clips": (sampler.clips, C, T, H, W), "pretext_label", "label",
    "index"}` (`pretext_label`: the sampler's target). Videos shorter than `sampler.min_frames` are
    left out; the data layer reads and augments the frames the sampler asks for, the sampler's
    `arrange` finishes them (a pretext transformation, an order)."""

    def __init__(self, split: VideoSplit, sampler: ClipSampler, transform: ClipTransform, seed: int = 0,
                 fixed: bool = False, cache: bool = True, progress: bool = True, deferred: bool = False):
        super().__init__(split, sampler.min_frames, seed=seed, fixed=fixed, cache=cache, progress=progress)
        self.sampler = sampler
        self.transform = transform
        # items hold uint8 crops and `collate` the rest of the work, which `batch_clips` does on the device
        self.deferred = deferred
        # FFmpeg threading buys nothing measurable for 320x240 frames (docs/benchmarks.md), and
        # DataLoader workers already run in parallel: off, and only the benchmark turns it on.
        self.decode_threads = False
        self.frames_decoded = 0  # in this process; the benchmark reads it with num_workers=0

    def _draw(self, index: int, rng: np.random.Generator) -> _Draw:
        record = self.records[index]
        sample: Sample = self.sampler.sample(
            record.num_frames, rng, lambda frames: self._read(index, frames, threads=self.decode_threads),
            lambda size: self.transform.sample_params(rng, size))
        return _Draw(index, record.label, sample.frames, sample.params, sample.target, sample.task)

    def _make_items(self, draws: list[_Draw]) -> list[dict]:
        if self.deferred:  # decode and crop only: the rest is done batched on the model's device
            return [{"crops": self.transform.crop_many(d.frames, d.params), "draw": dataclasses.replace(d, frames=[]),
                     "pretext_label": d.target, "label": d.label, "index": d.index} for d in draws]
        pending = PendingTuples.of(self.transform, self.sampler, draws)
        n = self.sampler.clips
        frames = shown_then_extras([d.frames for d in draws], n)
        # no autograd bookkeeping for the many small tensor ops; the modality step, outside the mode,
        # gives the caller ordinary tensors
        with torch.inference_mode():
            x = pending.arrange(self.transform.apply_many(frames, pending.params, modality=False))
        clips = pending.to_modality(x)
        return [{"clips": clips[b], "pretext_label": d.target, "label": d.label, "index": d.index}
                for b, d in enumerate(draws)]

    def collate(self, items: list[dict]) -> dict:
        """The DataLoader's batch: default collation, or, for deferred items, their crops in the order
        `PendingTuples` finishes them (every item's shown clips, then the extra clips)."""
        if "crops" not in items[0]:
            return default_collate(items)
        n = self.sampler.clips
        draws = [item["draw"] for item in items]
        crops = [item["crops"][:n] for item in items] + [item["crops"][n:] for item in items if len(item["crops"]) > n]
        return {"crops": torch.cat(crops), "pending": PendingTuples.of(self.transform, self.sampler, draws),
                **{key: torch.tensor([item[key] for item in items]) for key in ("pretext_label", "label", "index")}}


@dataclass
class PendingTuples:
    """What turns a batch of tuples' crops into its clips: the augmentation past the crop, the
    sampler's `arrange` and the input modality. Picklable, so a DataLoader worker can hand it to the
    training loop."""

    transform: ClipTransform
    sampler: ClipSampler
    params: list[ClipParams]  # every item's shown clips in order, then the extra clips
    tasks: list[Any]
    extras: list[int]  # extra clips per item

    @classmethod
    def of(cls, transform: ClipTransform, sampler: ClipSampler, draws: list[_Draw]) -> PendingTuples:
        n = sampler.clips
        params = shown_then_extras([d.params for d in draws], n)
        return cls(transform, sampler, params, [d.task for d in draws], [len(d.params) - n for d in draws])

    def finish(self, crops: torch.Tensor) -> torch.Tensor:
        """(B, clips, C, T, H, W) clips from `collate`'s crops, on the crops' device."""
        with torch.no_grad():
            return self.to_modality(self.arrange(self.transform.finish_many(crops, self.params, modality=False)))

    def arrange(self, x: torch.Tensor) -> torch.Tensor:
        return self.sampler.arrange(x, self.tasks, self.extras)

    def to_modality(self, x: torch.Tensor) -> torch.Tensor:
        clips = self.transform.to_modality(x)
        if clips.is_inference():  # rgb: no modality step made a new tensor
            clips = clips.clone()
        return clips.view(len(self.tasks), self.sampler.clips, *clips.shape[1:])


def shown_then_extras(per_item: list[list], shown: int) -> list:
    """Every item's first `shown` entries, then every item's extra ones: the order batched clips take."""
    return [x for entries in per_item for x in entries[:shown]] + [x for entries in per_item for x in entries[shown:]]


def batch_clips(batch: dict, device: torch.device | str) -> torch.Tensor:
    """A batch's clips on `device`; a batch whose augmentation was deferred (`data.transform_device:
    model`) is finished there, once (the clips replace its crops in the batch)."""
    if "clips" not in batch:
        batch["clips"] = batch.pop("pending").finish(batch.pop("crops").to(device, non_blocking=True))
    return batch["clips"].to(device, non_blocking=True)


class ClipDataset(_VideoDataset):
    """One random clip per video for supervised fine-tuning: `{"clip": (C, T, H, W), "label", "index"}`.

    A video shorter than `clip_len` is padded by repeating its last frame.
    """

    def __init__(self, split: VideoSplit, clip_len: int, transform: ClipTransform, seed: int = 0, fixed: bool = False,
                 cache: bool = True, progress: bool = True):
        super().__init__(split, 1, seed=seed, fixed=fixed, cache=cache, progress=progress)
        self.clip_len = clip_len
        self.transform = transform

    def _draw(self, index: int, rng: np.random.Generator) -> _Draw:
        record = self.records[index]
        start = random_clip_start(record.num_frames, self.clip_len, rng)
        frames = self._read(index, clip_indices(start, self.clip_len, record.num_frames))
        return _Draw(index, record.label, [frames], [self.transform.sample_params(rng, frames.shape[1:3])])

    def _make_items(self, draws: list[_Draw]) -> list[dict]:
        clips = self.transform.apply_many([d.frames[0] for d in draws], [d.params[0] for d in draws])
        return [{"clip": clip, "label": d.label, "index": d.index} for clip, d in zip(clips, draws)]


class MultiClipDataset(_VideoDataset):
    """`num_clips` evenly spaced clips per video (retrieval, kNN, fine-tuning evaluation):
    `{"clips": (num_clips, C, T, H, W), "label", "index"}`; `num_clips=1` gives the centre clip.

    The transform should be an eval transform (centre crop); a train transform would draw its
    random choices from a generator seeded by `(seed, index)`, the same every pass.
    """

    def __init__(self, split: VideoSplit, num_clips: int, clip_len: int, transform: ClipTransform, seed: int = 0,
                 cache: bool = True, progress: bool = True):
        super().__init__(split, 1, seed=seed, fixed=True, cache=cache, progress=progress)
        self.num_clips = num_clips
        self.clip_len = clip_len
        self.transform = transform
        shortest = min((r.num_frames for r in self.records if r.num_frames), default=None)
        if shortest is not None and num_clips > max(1, shortest - clip_len + 1):
            log.warning("eval.num_clips=%d is more than the %d distinct clip positions of the shortest video (%d "
                        "frames, clips of %d): clips repeat; lower eval.num_clips", num_clips,
                        max(1, shortest - clip_len + 1), shortest, clip_len)

    def _draw(self, index: int, rng: np.random.Generator) -> _Draw:
        record = self.records[index]
        starts = evenly_spaced_starts(record.num_frames, self.clip_len, self.num_clips)
        clip_rows = [clip_indices(s, self.clip_len, record.num_frames) for s in starts]
        needed = sorted({f for rows in clip_rows for f in rows})
        frames = self._read(index, needed)
        row = {frame: i for i, frame in enumerate(needed)}
        return _Draw(index, record.label, [frames[[row[f] for f in rows]] for rows in clip_rows],
                     [self.transform.sample_params(rng, frames.shape[1:3]) for _ in clip_rows])

    def _make_items(self, draws: list[_Draw]) -> list[dict]:
        clips = self.transform.apply_many([f for d in draws for f in d.frames], [p for d in draws for p in d.params])
        clips = clips.view(len(draws), self.num_clips, *clips.shape[1:])
        return [{"clips": clip, "label": d.label, "index": d.index} for clip, d in zip(clips, draws)]


class MaterializedDataset(Dataset):
    """The items of a deterministic dataset (fixed validation tuples, evaluation clips), decoded once.

    Epoch after epoch the same clips are scored; keeping them in memory turns every evaluation
    after the first from decode-bound into compute-bound. Only for datasets that fit: see
    `materialized_bytes`.
    """

    in_memory = True

    def __init__(self, dataset: Dataset, num_workers: int = 0):
        loader = torch.utils.data.DataLoader(dataset, batch_size=8, num_workers=num_workers, collate_fn=_as_list)
        self.items = [item for batch in loader for item in batch]
        for name in ("split", "class_names", "records", "skipped"):
            if hasattr(dataset, name):
                setattr(self, name, getattr(dataset, name))

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict:
        return self.items[index]


def _as_list(batch: list) -> list:
    return batch


def materialized_bytes(num_items: int, clips_per_item: int, clip_len: int, crop: int) -> int:
    """Memory the float32 clips of `num_items` items take (3 channels)."""
    return num_items * clips_per_item * 3 * clip_len * crop * crop * 4
