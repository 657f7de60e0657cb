"""Dataset layouts -> lists of (path, label, group): UCF101, HMDB51 and a plain class-folder tree.

UCF101: ROOT/videos/<Class>/v_<Class>_gGG_cCC.avi, ROOT/splits/classInd.txt ("1 ApplyEyeMakeup"),
        trainlist0{1,2,3}.txt ("Class/v_Class_g08_c01.avi 1"), testlist0{1,2,3}.txt ("Class/...avi").
HMDB51: ROOT/videos/<class>/<name>.avi, ROOT/splits/<class>_test_split{1,2,3}.txt
        ("<name>.avi 1" train, "2" test, "0" unused).
folder: ROOT/<Class>/*.{mp4,avi,mkv,webm,mov}; a seeded hold-out of whole groups per class.
Labels are 0-based. See docs/data.md.
"""

from __future__ import annotations

import json
import logging
import os
import re
import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Iterable

import numpy as np
from tqdm import tqdm

from vidkd.data.video import VideoInfo, probe_video
from vidkd.errors import DatasetError, VideoDecodeError

log = logging.getLogger("vidkd.data")

VIDEO_EXTENSIONS = (".mp4", ".avi", ".mkv", ".webm", ".mov")
LAYOUTS = ("ucf101", "hmdb51", "folder")
_GROUP_RE = re.compile(r"_(g\d+)_", re.IGNORECASE)
CACHE_DIR_NAME = ".vidkd_cache"


@dataclass(frozen=True)
class VideoRecord:
    """One video of a split. `group` ties together clips of one recording (never split apart)."""

    path: Path
    label: int
    group: str
    num_frames: int | None = None


@dataclass
class VideoSplit:
    """The videos of one subset (train or test) of one split, with the class names."""

    records: list[VideoRecord]
    class_names: list[str]
    root: Path
    layout: str
    subset: str = "train"
    split: int = 1
    missing: list[str] = field(default_factory=list)  # listed in a split file but not on disk

    def __len__(self) -> int:
        return len(self.records)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


def detect_layout(root: str | Path) -> str:
    """'ucf101' (splits/classInd.txt), 'hmdb51' (splits/*_test_split*.txt) or 'folder' (ROOT/<Class>/videos)."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"dataset root {root} is not a directory; pass the folder that holds videos/ and splits/")
    splits = root / "splits"
    if (splits / "classInd.txt").is_file():
        return "ucf101"
    if splits.is_dir() and any(splits.glob("*_test_split*.txt")):
        return "hmdb51"
    if any(_folder_videos(d) for d in _class_dirs(root)):
        return "folder"
    raise DatasetError(
        f"no dataset found at {root}: expected splits/classInd.txt (UCF101), splits/*_test_split1.txt (HMDB51) "
        f"or one sub-folder of videos per class; see docs/data.md")


def load_split(root: str | Path, subset: str = "train", split: int = 1, layout: str = "auto", seed: int = 0,
               test_fraction: float = 0.3) -> VideoSplit:
    """The records of `subset` ('train' or 'test') of official split `split` (1, 2 or 3).

    For the folder layout, `seed`, `split` and `test_fraction` define the group-aware hold-out.
    """
    root = Path(root)
    if subset not in ("train", "test"):
        raise DatasetError(f"subset must be 'train' or 'test', got {subset!r}")
    if split not in (1, 2, 3):
        raise DatasetError(f"split must be 1, 2 or 3, got {split!r}")
    if layout == "auto":
        layout = detect_layout(root)
    elif not root.is_dir():
        raise DatasetError(f"dataset root {root} is not a directory")
    if layout == "ucf101":
        result = _load_ucf101(root, subset, split)
    elif layout == "hmdb51":
        result = _load_hmdb51(root, subset, split)
    elif layout == "folder":
        result = _load_folder(root, subset, split, seed, test_fraction)
    else:
        raise DatasetError(f"unknown layout {layout!r}; use one of auto, {', '.join(LAYOUTS)}")
    if not result.records:
        raise DatasetError(f"{root}: the {subset} subset of split {split} ({layout}) has no videos")
    return result


def group_of(name: str) -> str:
    """UCF-style group ('g08' in 'v_Run_g08_c01') or, without one, the file stem."""
    match = _GROUP_RE.search(name)
    return match.group(1).lower() if match else Path(name).stem


def _read_lines(path: Path, what: str) -> list[tuple[int, str]]:
    if not path.is_file():
        raise DatasetError(f"missing {what} {path}; get the official split files (see docs/data.md)")
    lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    return [(n, line.strip()) for n, line in enumerate(lines, 1) if line.strip()]


def _check_missing(root: Path, subset: str, listed: int, missing: list[str]) -> None:
    """A few listed-but-absent videos are a warning; most of them absent means a wrong root."""
    if not missing:
        return
    if len(missing) * 2 > listed:
        raise DatasetError(f"{len(missing)} of {listed} {subset} videos listed in {root / 'splits'} are not under "
                           f"{root / 'videos'} (first: {missing[0]}); is ROOT the folder holding videos/ and splits/?")
    log.warning("%d of %d listed %s videos are missing under %s (first: %s); continuing without them",
                len(missing), listed, subset, root / "videos", missing[0])


def _load_ucf101(root: Path, subset: str, split: int) -> VideoSplit:
    class_file = root / "splits" / "classInd.txt"
    if not class_file.is_file() and any((root / "splits").glob("*_test_split*.txt")):
        raise DatasetError(f"{root} has HMDB51 split files (splits/*_test_split*.txt) but no UCF101 classInd.txt; "
                           "set data.layout=hmdb51 (or auto)")
    index: dict[str, int] = {}
    for n, line in _read_lines(class_file, "class index"):
        parts = line.split()
        if len(parts) != 2 or not parts[0].isdigit():
            raise DatasetError(f"{class_file}:{n}: expected '<number> <ClassName>', got {line!r}")
        index[parts[1]] = int(parts[0]) - 1
    if sorted(index.values()) != list(range(len(index))):
        raise DatasetError(f"{class_file}: class numbers must run 1..{len(index)} without gaps or repeats")
    class_names = sorted(index, key=index.get)

    list_file = root / "splits" / f"{subset}list0{split}.txt"
    records, missing = [], []
    lines = _read_lines(list_file, f"{subset} list")
    for n, line in lines:
        parts = line.split()
        where = f"{list_file}:{n}"
        if len(parts) not in (1, 2) or "/" not in parts[0]:
            raise DatasetError(f"{where}: expected 'Class/video.avi{' label' if subset == 'train' else ''}', got {line!r}")
        rel = parts[0]
        class_name = rel.split("/")[0]
        if class_name not in index:
            raise DatasetError(f"{where}: class {class_name!r} is not in {class_file.name}")
        label = index[class_name]
        if len(parts) == 2:
            if not parts[1].isdigit():
                raise DatasetError(f"{where}: label {parts[1]!r} is not a number")
            if int(parts[1]) - 1 != label:
                raise DatasetError(f"{where}: label {parts[1]} disagrees with folder {class_name!r} "
                                   f"(class {label + 1} in {class_file.name})")
        path = root / "videos" / rel
        if not path.is_file():
            missing.append(rel)
            continue
        records.append(VideoRecord(path=path, label=label, group=group_of(path.name)))
    _check_missing(root, subset, len(lines), missing)
    return VideoSplit(records, class_names, root, "ucf101", subset, split, missing)


def _load_hmdb51(root: Path, subset: str, split: int) -> VideoSplit:
    splits = root / "splits"
    files = sorted(splits.glob(f"*_test_split{split}.txt"))
    if not files:
        raise DatasetError(f"no {splits}/*_test_split{split}.txt files; get the official HMDB51 splits (see docs/data.md)")
    suffix = f"_test_split{split}.txt"
    class_names = sorted(f.name[: -len(suffix)] for f in files)
    wanted = "1" if subset == "train" else "2"
    records, missing, listed = [], [], 0
    for label, class_name in enumerate(class_names):
        split_file = splits / f"{class_name}{suffix}"
        for n, line in _read_lines(split_file, "split file"):
            parts = line.split()
            if len(parts) != 2 or parts[1] not in ("0", "1", "2"):
                raise DatasetError(f"{split_file}:{n}: expected '<video>.avi <0|1|2>', got {line!r}")
            if parts[1] != wanted:
                continue
            listed += 1
            path = root / "videos" / class_name / parts[0]
            if not path.is_file():
                missing.append(f"{class_name}/{parts[0]}")
                continue
            # HMDB51 has no actor groups; each video is its own group.
            records.append(VideoRecord(path=path, label=label, group=Path(parts[0]).stem))
    _check_missing(root, subset, listed, missing)
    return VideoSplit(records, class_names, root, "hmdb51", subset, split, missing)


def _class_dirs(root: Path) -> list[Path]:
    return sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))


def _folder_videos(class_dir: Path) -> list[Path]:
    return sorted(p for p in class_dir.iterdir() if p.is_file() and p.suffix.lower() in VIDEO_EXTENSIONS)


def _load_folder(root: Path, subset: str, split: int, seed: int, test_fraction: float) -> VideoSplit:
    """Per class, a seeded `test_fraction` of its groups goes to test; groups never straddle."""
    if not 0.0 < test_fraction < 1.0:
        raise DatasetError(f"test_fraction must be between 0 and 1, got {test_fraction}")
    classes = [(d.name, _folder_videos(d)) for d in _class_dirs(root)]
    classes = [(name, videos) for name, videos in classes if videos]
    if not classes:
        raise DatasetError(f"{root}: no class folders with videos ({', '.join(VIDEO_EXTENSIONS)})")
    class_names = [name for name, _ in classes]
    records = []
    for label, (_, videos) in enumerate(classes):
        groups = sorted({group_of(v.name) for v in videos})
        # The split number enters the seed, so splits 1/2/3 hold out different groups.
        rng = np.random.default_rng([seed, split, label])
        n_test = int(round(test_fraction * len(groups)))
        n_test = min(max(n_test, 1), len(groups) - 1) if len(groups) > 1 else 0
        test_groups = {groups[i] for i in rng.permutation(len(groups))[:n_test]}
        for video in videos:
            group = group_of(video.name)
            if (group in test_groups) == (subset == "test"):
                records.append(VideoRecord(path=video, label=label, group=group))
    return VideoSplit(records, class_names, root, "folder", subset, split)


# ---------------------------------------------------------------------------------------------
# Probing many videos, with an optional on-disk cache keyed by path, size and mtime.

ProbeResult = VideoInfo | str  # a VideoInfo, or the reason the video cannot be used


def probe_videos(paths: Iterable[Path], cache_dir: Path | None = None, progress: bool = True,
                 desc: str = "probing videos") -> dict[Path, ProbeResult]:
    """`probe_video` for every path; failures come back as a reason string instead of raising.

    With `cache_dir`, results are stored in `cache_dir/probes.json` (keyed by absolute path, size
    and mtime), so the next run only opens new or changed files. An unwritable cache is ignored.
    """
    paths = list(paths)
    cache = _load_cache(cache_dir)
    results: dict[Path, ProbeResult] = {}
    todo = []
    for path in paths:
        key = _cache_key(path)
        if key is not None and key in cache:
            entry = cache[key]
            results[path] = VideoInfo(**entry) if isinstance(entry, dict) else str(entry)
        else:
            todo.append((path, key))
    bar = tqdm(todo, desc=desc, unit="video", disable=not progress or len(todo) < 200, leave=False)
    for path, key in bar:
        try:
            result: ProbeResult = probe_video(path)
        except VideoDecodeError as exc:
            result = _reason(exc)
        results[path] = result
        if key is not None:
            cache[key] = result.__dict__ if isinstance(result, VideoInfo) else result
    if todo and cache_dir is not None:
        _save_cache(cache_dir, cache)
    return results


def _reason(exc: VideoDecodeError) -> str:
    """The message without the leading path (reports print the path separately)."""
    text = str(exc)
    return text.split(": ", 1)[1] if ": " in text else text


def default_cache_dir(root: Path) -> Path:
    return Path(root) / CACHE_DIR_NAME


def _cache_key(path: Path) -> str | None:
    try:
        stat = path.stat()
    except OSError:
        return None
    return f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}"


def _load_cache(cache_dir: Path | None) -> dict:
    if cache_dir is None:
        return {}
    try:
        return json.loads((cache_dir / "probes.json").read_text())
    except (OSError, ValueError):
        return {}


def _save_cache(cache_dir: Path, cache: dict) -> None:
    """Write atomically (several ranks or workers may probe at once); skip if not writable."""
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=cache_dir, suffix=".tmp")
        with os.fdopen(fd, "w") as f:
            json.dump(cache, f)
        os.replace(tmp, cache_dir / "probes.json")
    except OSError as exc:
        log.debug("probe cache not written to %s: %s", cache_dir, exc)


def with_frame_counts(records: list[VideoRecord], infos: dict[Path, ProbeResult]) -> list[VideoRecord]:
    """Records whose probe succeeded, with `num_frames` filled in."""
    return [replace(r, num_frames=infos[r.path].num_frames) for r in records if isinstance(infos[r.path], VideoInfo)]
