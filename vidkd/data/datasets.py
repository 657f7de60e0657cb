"""Dataset layouts -> lists of (path, label, group): UCF101, HMDB51 and a plain class-folder tree.

UCF101: ROOT/videos/<Class>/v_<Class>_gGG_cCC.avi, ROOT/splits/classInd.txt ("1 ApplyEyeMakeup"),
        trainlist0{1,2,3}.txt ("Class/v_Class_g08_c01.avi 1"), testlist0{1,2,3}.txt ("Class/...avi").
HMDB51: ROOT/videos/<class>/<name>.avi, ROOT/splits/<class>_test_split{1,2,3}.txt
        ("<name>.avi 1" train, "2" test, "0" unused).
folder: ROOT/<Class>/*.{mp4,avi,mkv,webm,mov}; a seeded hold-out of whole groups per class.
kinetics: ROOT/annotations/{train,validate}.csv, ROOT/videos/...; ssv2: ROOT/labels.json, train.json,
        validation.json, ROOT/videos/<id>.webm (both read by vidkd.data.layouts).
Labels are 0-based. See docs/data.md.
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import os
import re
import signal
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator

import numpy as np
from tqdm import tqdm

from vidkd.data import layouts
from vidkd.data.records import VIDEO_EXTENSIONS, VideoRecord, VideoSplit, layout_on_disk, looks_like, parent_hint
from vidkd.data.textfiles import inside, read_lines
from vidkd.data.video import VideoInfo, probe_video
from vidkd.errors import DatasetError, VideoDecodeError
from vidkd.layout_specs import LAYOUT_SPECS, LAYOUTS
from vidkd.utils.runtime import usable_cpus, worker_context

log = logging.getLogger("vidkd.data")

_GROUP_RE = re.compile(r"_(g\d+)_", re.IGNORECASE)
CACHE_DIR_NAME = ".vidkd_cache"


def detect_layout(root: str | Path) -> str:
    """'ucf101' (splits/classInd.txt), 'hmdb51' (splits/*_test_split*.txt), 'kinetics' (annotations/train.csv),
    'ssv2' (labels.json + train.json) or 'folder' (ROOT/<Class>/videos)."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"dataset root {root} is not a directory; pass the folder that holds videos/ and splits/")
    hint = parent_hint(root)
    if hint:
        raise DatasetError(hint)
    layout = layout_on_disk(root)
    if layout:
        return layout
    if any(_folder_videos(d) for d in _class_dirs(root)):
        return "folder"
    expected = ", ".join(f"{spec.marker} ({spec.title})" for spec in LAYOUT_SPECS.values())
    raise DatasetError(f"no dataset found at {root}: expected one of {expected}; see docs/data.md")


def load_split(root: str | Path, subset: str = "train", split: int = 1, layout: str = "auto", seed: int = 0,
               test_fraction: float = 0.3) -> VideoSplit:
    """The records of `subset` ('train' or 'test') of official split `split` (1, 2 or 3).

    For the folder layout, `seed`, `split` and `test_fraction` define the group-aware hold-out.
    Every path in a split file must stay inside ROOT/videos (DatasetError naming the line).
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
    elif layout not in LOADERS:
        raise DatasetError(f"unknown layout {layout!r}; use one of auto, {', '.join(LAYOUTS)}")
    elif LAYOUT_SPECS[layout].inner_folders and parent_hint(root):
        raise DatasetError(parent_hint(root))
    if LAYOUT_SPECS[layout].one_split and split != 1:
        raise DatasetError(f"{LAYOUT_SPECS[layout].title} has one official split (train and validation); split must "
                           f"be 1, got {split}")
    result = LOADERS[layout](root, subset, split, Holdout(seed, test_fraction))
    if not result.records:
        raise DatasetError(f"{root}: the {subset} subset of split {split} ({layout}) has no videos")
    return result


@dataclass(frozen=True)
class Holdout:
    """How a layout without official test lists (folder) holds out test groups: seeded, a fraction per class."""

    seed: int = 0
    test_fraction: float = 0.3


# each layout's loader (the registry is vidkd.layout_specs): (root, subset, split, holdout) -> VideoSplit
LOADERS: dict[str, Callable[[Path, str, int, Holdout], VideoSplit]] = {
    "ucf101": lambda root, subset, split, _: _load_ucf101(root, subset, split),
    "hmdb51": lambda root, subset, split, _: _load_hmdb51(root, subset, split),
    "folder": lambda root, subset, split, holdout: _load_folder(root, subset, split, holdout.seed, holdout.test_fraction),
    "kinetics": lambda root, subset, split, _: layouts.load_kinetics(root, subset),
    "ssv2": lambda root, subset, split, _: layouts.load_ssv2(root, subset),
}
assert tuple(LOADERS) == LAYOUTS  # one loader per registered layout


def group_of(name: str) -> str:
    """UCF-style group ('g08' in 'v_Run_g08_c01') or, without one, the file stem."""
    match = _GROUP_RE.search(name)
    return sys.intern(match.group(1).lower()) if match else _stem(name)  # 25 groups, not one string per video


def _stem(name: str) -> str:
    """Path(name).stem without building a Path (this runs once per video of a split)."""
    dot = name.rfind(".")
    return name[:dot] if 0 < dot < len(name) - 1 else name


def _read_lines(path: Path, what: str) -> list[tuple[int, str]]:
    return read_lines(path, what, hint="get the official split files (see docs/data.md)")


def _check_missing(root: Path, subset: str, listed: int, missing: list[str]) -> None:
    """A few listed-but-absent videos are a warning; most of them absent means a wrong root.

    (Kinetics and Something-Something v2 have their own rule: vidkd.data.layouts.check_missing.)
    """
    if not missing:
        return
    if len(missing) * 2 > listed:
        raise DatasetError(f"{len(missing)} of {listed} {subset} videos listed in {root / 'splits'} are not under "
                           f"{root / 'videos'} (first: {missing[0]}); is ROOT the folder holding videos/ and splits/?")
    log.warning("%d of %d listed %s videos are missing under %s (first: %s); continuing without them",
                len(missing), listed, subset, root / "videos", missing[0])


class _FileIndex:
    """Which files exist under a folder, one directory listing per sub-folder instead of a stat per file.

    A name the listing lacks is checked with a stat (a case-insensitive file system finds
    'HandStandPushups/...' in 'HandstandPushups/'; the official UCF101 lists spell it so).
    """

    def __init__(self, base: Path):
        self.base = os.fspath(base)
        self._listings: dict[str, frozenset[str]] = {}

    def path_if_file(self, rel: str) -> str | None:
        """The full path of `rel` ('a/b/c.avi', normalised) when it is a file (symlinks followed)."""
        folder, _, name = rel.rpartition("/")
        names = self._listings.get(folder)
        if names is None:
            names = self._listings[folder] = self._list(os.path.join(self.base, folder) if folder else self.base)
        full = f"{self.base}/{rel}"
        if name in names or os.path.isfile(full):
            return full
        return None

    @staticmethod
    def _list(folder: str) -> frozenset[str]:
        try:
            with os.scandir(folder) as entries:
                return frozenset(e.name for e in entries if e.is_file())
        except OSError:
            return frozenset()


def _load_ucf101(root: Path, subset: str, split: int) -> VideoSplit:
    class_file = root / "splits" / "classInd.txt"
    if not class_file.is_file() and layout_on_disk(root) == "hmdb51":
        raise DatasetError(f"{root} looks like HMDB51 (it has splits/*_test_split*.txt but no UCF101 classInd.txt); "
                           "set data.layout=hmdb51 (or auto)")
    if not class_file.is_file() and looks_like(root, "ucf101"):
        raise DatasetError(looks_like(root, "ucf101"))
    index: dict[str, int] = {}
    name_line: dict[str, int] = {}
    number_line: dict[int, tuple[int, str]] = {}
    for n, line in _read_lines(class_file, "class index"):
        parts = line.split()
        if len(parts) != 2 or not parts[0].isdigit():
            raise DatasetError(f"{class_file}:{n}: expected '<number> <ClassName>', got {line!r}")
        number, name = int(parts[0]), parts[1]
        if name in name_line:
            raise DatasetError(f"{class_file}:{n}: class {name!r} is listed twice (lines {name_line[name]} and {n}); "
                               "each class must appear once")
        if number in number_line:
            first, other = number_line[number]
            raise DatasetError(f"{class_file}:{n}: number {number} is given to both {other!r} (line {first}) "
                               f"and {name!r}; each class needs its own number")
        name_line[name], number_line[number] = n, (n, name)
        index[name] = number - 1
    if sorted(index.values()) != list(range(len(index))):
        raise DatasetError(f"{class_file}: class numbers must run 1..{len(index)} without gaps or repeats")
    class_names = sorted(index, key=index.get)

    list_file = root / "splits" / f"{subset}list0{split}.txt"
    videos = root / "videos"
    files = _FileIndex(videos)
    records, missing = [], []
    lines = _read_lines(list_file, f"{subset} list")
    for n, line in lines:
        parts = line.split()
        where = f"{list_file}:{n}"
        if len(parts) not in (1, 2):
            raise DatasetError(f"{where}: expected 'Class/video.avi{' label' if subset == 'train' else ''}', got {line!r}")
        rel = inside(parts[0], where, "ROOT/videos")
        if "/" not in rel:
            raise DatasetError(f"{where}: expected 'Class/video.avi{' label' if subset == 'train' else ''}', got {line!r}")
        class_name = rel.split("/", 1)[0]
        if class_name not in index:
            raise DatasetError(f"{where}: class {class_name!r} is not in {class_file.name}")
        label = index[class_name]
        if len(parts) == 2:
            if not parts[1].isdigit():
                raise DatasetError(f"{where}: label {parts[1]!r} is not a number")
            if int(parts[1]) - 1 != label:
                raise DatasetError(f"{where}: label {parts[1]} disagrees with folder {class_name!r} "
                                   f"(class {label + 1} in {class_file.name})")
        full = files.path_if_file(rel)
        if full is None:
            missing.append(rel)
            continue
        records.append(VideoRecord(path=Path(full), label=label, group=group_of(rel.rpartition("/")[2])))
    _check_missing(root, subset, len(lines), missing)
    return VideoSplit(records, class_names, root, "ucf101", subset, split, missing)


def _load_hmdb51(root: Path, subset: str, split: int) -> VideoSplit:
    splits = root / "splits"
    files = sorted(splits.glob(f"*_test_split{split}.txt"))
    if not files:
        if layout_on_disk(root) == "ucf101":
            raise DatasetError(f"{root} looks like UCF101 (it has splits/classInd.txt and no HMDB51 "
                               f"*_test_split{split}.txt files); set data.layout=ucf101 (or auto)")
        if looks_like(root, "hmdb51"):
            raise DatasetError(looks_like(root, "hmdb51"))
        raise DatasetError(f"no {splits}/*_test_split{split}.txt files; get the official HMDB51 splits (see docs/data.md)")
    suffix = f"_test_split{split}.txt"
    class_names = sorted(f.name[: -len(suffix)] for f in files)
    wanted = "1" if subset == "train" else "2"
    videos = _FileIndex(root / "videos")
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
            name = inside(parts[0], f"{split_file}:{n}", f"ROOT/videos/{class_name}")
            full = videos.path_if_file(f"{class_name}/{name}")
            if full is None:
                missing.append(f"{class_name}/{name}")
                continue
            # HMDB51 has no actor groups; each video is its own group.
            records.append(VideoRecord(path=Path(full), label=label, group=_stem(name.rpartition("/")[2])))
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
    inner = {name for spec in LAYOUT_SPECS.values() for name in spec.inner_folders}
    if not classes or all(name in inner for name, _ in classes):  # Kinetics' or SSv2's flat videos/ is no class
        hint = looks_like(root, "folder")
        if hint:
            raise DatasetError(hint)
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
# Probing many videos: in parallel processes the first time, from an on-disk cache afterwards.

ProbeResult = VideoInfo | str  # a VideoInfo, or the reason the video cannot be used

CACHE_FILE = "probes.json"
CACHE_FORMAT = "vidkd probe cache"
CACHE_VERSION = 2
PARALLEL_MIN = 100  # fewer videos to probe than this: one process is quicker than starting a pool
_CHUNK = 64  # videos per task sent to a probing process
_SAVE_EVERY_S = 60.0  # a long first build writes what it has this often (an interrupted build keeps it)


def probe_videos(paths: Iterable[Path], cache_dir: Path | None = None, progress: bool = True,
                 desc: str = "probing videos", workers: int | None = None) -> dict[Path, ProbeResult]:
    """`probe_video` for every path; failures come back as a reason string instead of raising.

    With `cache_dir`, results are kept in `cache_dir/probes.json`, keyed by the path (relative to
    the cache folder's parent, so a dataset moved with its cache keeps it), file size and
    modification time: the next run opens only new or changed files. Videos not in the cache are
    probed by `workers` processes (default: the CPUs this process may use; 1 = in this process).
    A cache that cannot be read is rebuilt, one that cannot be written is skipped (a log line each).
    """
    paths = list(paths)
    cache = _ProbeCache(cache_dir)
    entries = cache.entries
    results: dict[Path, ProbeResult] = {}
    shared: dict[tuple, VideoInfo] = {}  # equal probe results share one VideoInfo
    todo: list[tuple[Path, str | None, int, int]] = []  # (path, cache key, size, mtime_ns)
    for path in paths:
        name = os.fspath(path)
        try:
            stat = os.stat(name)
        except (OSError, ValueError):  # missing: probing says so; not cached
            todo.append((path, None, 0, 0))
            continue
        key = cache.key(name)
        entry = entries.get(key)
        if entry is not None:
            try:
                if entry[0] == stat.st_size and entry[1] == stat.st_mtime_ns:
                    results[path] = _from_entry(entry, shared)
                    continue
            except (TypeError, ValueError, KeyError, IndexError):  # a damaged entry: probe again
                pass
        todo.append((path, key, stat.st_size, stat.st_mtime_ns))
    if not todo:
        return results
    workers = usable_cpus() if workers is None else max(1, int(workers))
    bar = tqdm(total=len(todo), desc=desc, unit="video", disable=not progress or len(todo) < 200, leave=False)
    last_save = time.monotonic()
    try:
        for i, result in _probe_all([os.fspath(t[0]) for t in todo], workers):
            path, key, size, mtime = todo[i]
            results[path] = result
            if key is not None:
                entries[key] = _to_entry(size, mtime, result)
            bar.update(1)
            if cache_dir is not None and time.monotonic() - last_save > _SAVE_EVERY_S:
                cache.save()
                last_save = time.monotonic()
    finally:
        bar.close()
        if cache_dir is not None:
            cache.save()  # also after Ctrl-C: the next run starts from what was probed
    return {path: results[path] for path in paths}  # in the order given, whichever process finished first


def _probe_one(name: str) -> ProbeResult:
    try:
        return probe_video(name)
    except VideoDecodeError as exc:
        return _reason(exc)


def _probe_chunk(first: int, names: list[str]) -> list[tuple[int, ProbeResult]]:
    return [(first + k, _probe_one(name)) for k, name in enumerate(names)]


def _ignore_sigint() -> None:
    """In a probing process: Ctrl-C is the parent's to handle (it stops the pool)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _probe_all(names: list[str], workers: int) -> Iterator[tuple[int, ProbeResult]]:
    """(index, result) for every name, in any order; over `workers` processes when that pays."""
    workers = min(workers, -(-len(names) // _CHUNK))
    if workers <= 1 or len(names) < PARALLEL_MIN or multiprocessing.current_process().daemon:
        for i, name in enumerate(names):
            yield i, _probe_one(name)
        return
    done: set[int] = set()
    pool = ProcessPoolExecutor(workers, mp_context=worker_context(), initializer=_ignore_sigint)
    try:
        futures = [pool.submit(_probe_chunk, first, names[first:first + _CHUNK])
                   for first in range(0, len(names), _CHUNK)]
        for future in as_completed(futures):
            for i, result in future.result():
                done.add(i)
                yield i, result
    except BrokenProcessPool:
        # a probing process died (killed for memory, or FFmpeg crashed on a file): go on in this process
        log.warning("a video-probing process died; probing the remaining %d videos in this process",
                    len(names) - len(done))
        for i, name in enumerate(names):
            if i not in done:
                yield i, _probe_one(name)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _to_entry(size: int, mtime_ns: int, result: ProbeResult) -> list:
    if isinstance(result, VideoInfo):
        return [size, mtime_ns, result.num_frames, result.height, result.width, result.fps, result.header_frames]
    return [size, mtime_ns, str(result)]


def _from_entry(entry: list, shared: dict[tuple, VideoInfo]) -> ProbeResult:
    if len(entry) == 3 and isinstance(entry[2], str):
        return entry[2]
    if len(entry) != 7:
        raise ValueError("not a probe entry")
    fields = tuple(entry[2:])
    info = shared.get(fields)
    if info is None:
        num_frames, height, width, fps, header_frames = fields
        if not all(type(v) is int for v in (num_frames, height, width, header_frames)) or \
                not isinstance(fps, (int, float)):
            raise ValueError("not a probe entry")
        info = shared[fields] = VideoInfo(num_frames, height, width, float(fps), header_frames)
    return info


def _reason(exc: VideoDecodeError) -> str:
    """The message without the leading path (reports print the path separately)."""
    text = str(exc)
    return text.split(": ", 1)[1] if ": " in text else text


def default_cache_dir(root: Path) -> Path:
    return Path(root) / CACHE_DIR_NAME


class _ProbeCache:
    """`cache_dir/probes.json`: {"format", "version", "entries": {key: [size, mtime_ns, ...result]}}.

    Keys are paths relative to the cache folder's parent (the dataset root for the default cache)
    when the video lies under it, else absolute; both lexical (no symlink resolution: a stat, not
    a walk of every path component, per video).
    """

    def __init__(self, cache_dir: Path | None):
        self.cache_dir = cache_dir
        self.entries: dict[str, list] = {}
        self._base = self._abs_base = ""
        if cache_dir is None:
            return
        base = os.fspath(Path(cache_dir).parent)
        self._base = "" if base == "." else base.rstrip(os.sep) + os.sep
        self._abs_base = os.path.abspath(base).rstrip(os.sep) + os.sep
        self.entries = self._load(Path(cache_dir) / CACHE_FILE)

    def key(self, name: str) -> str | None:
        if self.cache_dir is None:
            return None
        if self._base and name.startswith(self._base) and ".." not in name:
            return name[len(self._base):]
        name = os.path.abspath(name)
        return name[len(self._abs_base):] if name.startswith(self._abs_base) else name

    @staticmethod
    def _load(path: Path) -> dict[str, list]:
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return {}
        except OSError as exc:
            log.warning("probe cache %s cannot be read (%s); probing every video again", path, exc.strerror or exc)
            return {}
        try:
            cache = json.loads(data.decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError) as exc:
            log.warning("probe cache %s is damaged (%s); rebuilding it", path, exc.__class__.__name__)
            return {}
        if isinstance(cache, dict) and cache.get("format") == CACHE_FORMAT and cache.get("version") == CACHE_VERSION \
                and isinstance(cache.get("entries"), dict):
            return cache["entries"]
        if isinstance(cache, dict) and ("format" in cache or "version" in cache or all("|" in k for k in cache)):
            log.info("probe cache %s is from another vidkd version; rebuilding it", path)
        else:
            log.warning("probe cache %s is not a vidkd probe cache (a JSON %s); rebuilding it",
                        path, type(cache).__name__)
        return {}

    def save(self) -> None:
        """Write atomically (several ranks or workers may probe at once); skip if not writable."""
        if self.cache_dir is None:
            return
        cache_dir = Path(self.cache_dir)
        tmp = None
        try:
            text = json.dumps({"format": CACHE_FORMAT, "version": CACHE_VERSION, "entries": self.entries},
                              separators=(",", ":"))
            cache_dir.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=cache_dir, prefix=".probes.", suffix=".tmp")
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(text)
            os.replace(tmp, cache_dir / CACHE_FILE)
            tmp = None
        except OSError as exc:
            log.info("probe cache not written to %s: %s", cache_dir, exc.strerror or exc)
        finally:
            if tmp is not None:
                try:
                    os.unlink(tmp)
                except OSError:
                    pass


def with_frame_counts(records: list[VideoRecord], infos: dict[Path, ProbeResult]) -> list[VideoRecord]:
    """Records whose probe succeeded, with `num_frames` filled in."""
    out = []
    for r in records:
        info = infos[r.path]
        if type(info) is not str:
            out.append(VideoRecord(r.path, r.label, r.group, info.num_frames))
    return out
