"""Writing the synthetic dataset in the UCF101 layout: actor-disjoint splits, videos, `synthetic.json`.

Train and test never share a group (actor), as in UCF101. The same seed gives byte-identical
files; `synthetic.json`, written last, marks a complete dataset so that it can be reused.
"""

from __future__ import annotations

import json
import re
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from vidkd.data.video import write_video
from vidkd.errors import DatasetError
from vidkd.synthetic.kinematics import DEFAULT_ACTION_SET, class_names
from vidkd.synthetic.render import make_actor, render_clip
from vidkd.utils.runtime import usable_cpus, worker_context

FPS = 25
FORMAT_VERSION = 2  # bump when the rendering changes, so old datasets are not reused (2: faster actions, larger actor)
TEST_FRACTION = 0.25  # UCF101 tests 7 of 25 groups per split
DEFAULT_GROUPS = 16  # 12 actors to train on and 4 to test on (6 and 2 gave uneven generalisation)
DEFAULT_CLIPS_PER_GROUP = 2


# ----------------------------------------------------------------------------- splits and writing


def held_out_groups(groups: int, split: int) -> list[int]:
    """The 1-based groups held out for testing in `split` (1, 2 or 3): consecutive blocks of
    about 25% of the groups, rotating like UCF101's 7-of-25 (wrapping when groups are few)."""
    per_split = max(1, round(groups * TEST_FRACTION))
    first = (split - 1) * per_split
    return sorted({(first + i) % groups + 1 for i in range(per_split)})


def video_name(class_name: str, group: int, clip: int) -> str:
    return f"v_{class_name}_g{group:02d}_c{clip:02d}.avi"


def _validate(classes: int, groups: int, clips_per_group: int, frames: int, size, actions: str) -> tuple[int, int]:
    class_names(classes, actions)
    if not 2 <= groups <= 99:
        raise DatasetError(f"--groups must be between 2 and 99 (train and test need different actors); got {groups}")
    if not 1 <= clips_per_group <= 99:
        raise DatasetError(f"--clips-per-group must be between 1 and 99; got {clips_per_group}")
    if frames < 8:
        raise DatasetError(f"--frames must be at least 8 (a PCL tuple needs 64); got {frames}")
    try:
        width, height = (int(v) for v in size)
    except (TypeError, ValueError):
        raise DatasetError(f"--size must be WIDTHxHEIGHT, e.g. 128x96; got {size!r}") from None
    if width < 32 or height < 32 or width % 2 or height % 2:
        raise DatasetError(f"--size must be even and at least 32x32 (the video codec needs even sizes); "
                           f"got {width}x{height}")
    return width, height


def _parameters(names: list[str], groups: int, clips_per_group: int, frames: int,
                size: tuple[int, int], seed: int, actions: str) -> dict:
    params = {"format_version": FORMAT_VERSION, "classes": names, "groups": groups,
              "clips_per_group": clips_per_group, "frames": frames, "size": list(size), "fps": FPS,
              "seed": seed}
    # No key for the default set: datasets written before there were two sets stay reusable, and
    # a manifest without it reads as cyclic. Being part of the parameters, the set is compared
    # before a directory is reused.
    if actions != DEFAULT_ACTION_SET:
        params["actions"] = actions
    return params


def _split_lines(names: list[str], groups: int, clips_per_group: int, split: int) -> tuple[list[str], list[str]]:
    held_out = set(held_out_groups(groups, split))
    train, test = [], []
    for label, name in enumerate(names, start=1):
        for group in range(1, groups + 1):
            for clip in range(1, clips_per_group + 1):
                relative = f"{name}/{video_name(name, group, clip)}"
                if group in held_out:
                    test.append(relative)
                else:
                    train.append(f"{relative} {label}")
    return train, test


def _write_splits(root: Path, names: list[str], groups: int, clips_per_group: int) -> None:
    splits_dir = root / "splits"
    splits_dir.mkdir(parents=True, exist_ok=True)
    (splits_dir / "classInd.txt").write_text("".join(f"{i} {n}\n" for i, n in enumerate(names, start=1)))
    for split in (1, 2, 3):
        train, test = _split_lines(names, groups, clips_per_group, split)
        (splits_dir / f"trainlist0{split}.txt").write_text("".join(line + "\n" for line in train))
        (splits_dir / f"testlist0{split}.txt").write_text("".join(line + "\n" for line in test))


def _split_counts(names: list[str], groups: int, clips_per_group: int) -> dict[int, dict]:
    counts = {}
    for split in (1, 2, 3):
        train, test = _split_lines(names, groups, clips_per_group, split)
        counts[split] = {"train": len(train), "test": len(test), "test_groups": held_out_groups(groups, split)}
    return counts


MANIFEST = "synthetic.json"
WRITING_MARKER = ".vidkd-synthetic"  # written first: the directory is vidkd's even before it is complete
SPLIT_FILES = ("classInd.txt", *(f"{kind}list0{s}.txt" for kind in ("train", "test") for s in (1, 2, 3)))


def is_synthetic_dataset(root: Path) -> bool:
    """`root` holds (at least the manifest of) a dataset written by `write_synthetic_dataset`."""
    return (Path(root) / MANIFEST).is_file()


def _is_complete(root: Path, params: dict) -> bool:
    """True if `root` holds every file of a dataset written with exactly `params`."""
    try:
        stored = json.loads((root / MANIFEST).read_text())
    except (OSError, ValueError):
        return False
    if stored.get("parameters") != params:
        return False
    names = params["classes"]
    expected = [root / "videos" / n / video_name(n, g, c) for n in names
                for g in range(1, params["groups"] + 1) for c in range(1, params["clips_per_group"] + 1)]
    split_files = [root / "splits" / f for f in SPLIT_FILES]
    return all(path.is_file() and path.stat().st_size > 0 for path in expected + split_files)


def _stored_action_set(root: Path) -> str | None:
    """The action set of the manifest at `root` (None without a readable one)."""
    try:
        return json.loads((root / MANIFEST).read_text())["parameters"].get("actions", DEFAULT_ACTION_SET)
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


def _remove_written_files(root: Path) -> None:
    """Remove the videos and split files a `vidkd synth` wrote at `root`, nothing else: `--overwrite`
    pointed at a real dataset by mistake must not delete it.

    Raises:
        DatasetError: `root` was not written by vidkd.
    """
    if not (root / MANIFEST).is_file() and not (root / WRITING_MARKER).is_file():
        raise DatasetError(f"{root} was not written by `vidkd synth` (no {MANIFEST}); --overwrite replaces only a "
                           "synthetic dataset and never deletes other files: choose a new or empty directory")
    videos = root / "videos"
    for class_dir in (videos.iterdir() if videos.is_dir() else []):
        written = re.compile(rf"v_{re.escape(class_dir.name)}_g\d+_c\d+\.avi")
        for path in (class_dir.iterdir() if class_dir.is_dir() else []):
            if path.is_file() and written.fullmatch(path.name):
                path.unlink()
    for name in SPLIT_FILES:
        (root / "splits" / name).unlink(missing_ok=True)
    for directory in [*(videos.iterdir() if videos.is_dir() else []), videos, root / "splits"]:
        if directory.is_dir() and not any(directory.iterdir()):
            directory.rmdir()
    (root / MANIFEST).unlink(missing_ok=True)


def _write_group(root: Path, names: list[str], group: int, clips_per_group: int, frames: int,
                 size: tuple[int, int], seed: int, actions: str) -> int:
    """Every video of actor `group` (all actions and clips); returns how many were written."""
    actor = make_actor(seed, group, size)
    for index, name in enumerate(names):
        for clip in range(1, clips_per_group + 1):
            path = root / "videos" / name / video_name(name, group, clip)
            write_video(path, render_clip(index, group, clip, frames, size, seed, actor, actions), fps=FPS)
    return len(names) * clips_per_group


def _clear_for_writing(root: Path, actions: str, overwrite: bool) -> None:
    """Make `root` ready for a new dataset: refuse a directory vidkd did not write, or (without
    `overwrite`) one holding another synthetic dataset; then mark it as being written."""
    if root.is_dir() and any(root.iterdir()):
        ours = (root / MANIFEST).exists() or (root / WRITING_MARKER).exists()
        if not ours:
            raise DatasetError(f"{root} is not empty and was not written by `vidkd synth`; choose a new or empty "
                               "directory (--overwrite replaces only a synthetic dataset)")
        if not overwrite:
            stored = _stored_action_set(root)
            what = (f"the {stored} actions, not the {actions} ones" if stored not in (None, actions)
                    else "an unfinished synthetic dataset or one written with other parameters")
            raise DatasetError(f"{root} holds {what}; pass --overwrite to replace it or choose another directory")
        _remove_written_files(root)
    root.mkdir(parents=True, exist_ok=True)
    (root / WRITING_MARKER).write_text("written by vidkd synth; `--overwrite` removes only the files vidkd wrote\n")


def _write_groups(group_jobs: list[tuple], num_videos: int, workers: int, progress: bool) -> None:
    """Run `_write_group` for every job, in this process (`workers` <= 1) or in a process pool."""
    with tqdm(total=num_videos, desc="synth", unit="video", disable=not progress) as bar:
        if workers <= 1:
            for job in group_jobs:
                bar.update(_write_group(*job))
            return
        # one actor per task: every video is rendered from (seed, action, actor, clip) alone, so
        # the files are the same bytes whichever process writes them
        with ProcessPoolExecutor(workers, mp_context=worker_context()) as pool:
            for done in as_completed([pool.submit(_write_group, *job) for job in group_jobs]):
                bar.update(done.result())


@dataclass(frozen=True)
class SyntheticSpec:
    """What a synthetic dataset is: the same spec writes the same bytes (`write_synthetic_dataset`)."""

    classes: int = 10
    groups: int = DEFAULT_GROUPS  # actors; train and test never share one
    clips_per_group: int = DEFAULT_CLIPS_PER_GROUP
    frames: int = 96
    size: tuple[int, int] = (128, 96)  # (width, height)
    seed: int = 0
    actions: str = DEFAULT_ACTION_SET  # a key of ACTION_SETS: "cyclic" or "directed" (docs/synthetic.md)


def write_synthetic_dataset(out: str | Path, spec: SyntheticSpec = SyntheticSpec(), overwrite: bool = False,
                            progress: bool = True, workers: int | None = None) -> dict:
    """Write the synthetic action dataset `spec` to `out` in the UCF101 layout and return a summary.

    `workers` processes write the videos, one actor at a time (default: one per usable core; 0 or
    1 writes them in this process). The files do not depend on it.

    A directory that already holds the same dataset (same parameters in `synthetic.json`, every
    file present) is reused without rewriting; any other non-empty directory is refused unless
    `overwrite=True`, which replaces its `videos/` and `splits/`.
    """
    classes, groups, clips_per_group, frames = spec.classes, spec.groups, spec.clips_per_group, spec.frames
    size, seed, actions = spec.size, spec.seed, spec.actions
    started = time.perf_counter()
    root = Path(out)
    size = _validate(classes, groups, clips_per_group, frames, size, actions)
    names = class_names(classes, actions)
    params = _parameters(names, groups, clips_per_group, frames, size, seed, actions)
    summary = {"root": str(root), "actions": actions, "classes": names, "groups": groups,
               "clips_per_group": clips_per_group, "frames": frames, "size": list(size), "fps": FPS, "seed": seed,
               "num_videos": len(names) * groups * clips_per_group}

    if root.exists() and not root.is_dir():
        raise DatasetError(f"{root} is a file; choose a directory for the synthetic dataset")
    if _is_complete(root, params):
        summary.update(splits=_split_counts(names, groups, clips_per_group), reused=True,
                       seconds=time.perf_counter() - started)
        return summary
    _clear_for_writing(root, actions, overwrite)
    group_jobs = [(root, names, group, clips_per_group, frames, size, seed, actions) for group in range(1, groups + 1)]
    _write_groups(group_jobs, summary["num_videos"], min(groups, usable_cpus()) if workers is None else workers,
                  progress)
    _write_splits(root, names, groups, clips_per_group)
    seconds = time.perf_counter() - started
    # Written last: its presence (with matching parameters) marks a complete dataset. No
    # timings in it, so that the same seed gives byte-identical directories.
    (root / MANIFEST).write_text(json.dumps(
        {"parameters": params, "description": "vidkd synthetic actions: stick figures told apart by motion"},
        indent=2) + "\n")
    summary.update(splits=_split_counts(names, groups, clips_per_group), reused=False, seconds=seconds)
    return summary


def format_summary(summary: dict) -> str:
    """What `vidkd synth` prints: where, what, how long, and the next command."""
    width, height = summary["size"]
    if summary.get("reused"):
        head = f"reused the synthetic dataset at {summary['root']} (same parameters; nothing rewritten)"
    else:
        head = f"wrote the synthetic dataset to {summary['root']} in {summary['seconds']:.1f} s"
    names = summary["classes"]
    actions = summary.get("actions", DEFAULT_ACTION_SET)
    kind = "" if actions == DEFAULT_ACTION_SET else f" ({actions} actions)"
    lines = [
        head,
        f"  {len(names)} classes{kind}: {', '.join(names)}",
        f"  {summary['num_videos']} videos ({len(names)} classes x {summary['groups']} actors x "
        f"{summary['clips_per_group']} clips), {summary['frames']} frames each, {width}x{height} at {summary['fps']} fps",
    ]
    for split, count in summary["splits"].items():
        held_out = ", ".join(f"g{g:02d}" for g in count["test_groups"])
        lines.append(f"  split {split}: {count['train']} train / {count['test']} test videos (test actors {held_out})")
    lines.append(f"next: vidkd data check {summary['root']}")
    return "\n".join(lines)
