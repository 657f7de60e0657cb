"""`vidkd data check ROOT`: what a dataset holds and which of its videos cannot be used."""

from __future__ import annotations

import statistics
from collections import Counter
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from vidkd.data.datasets import VideoRecord, default_cache_dir, detect_layout, load_split, probe_videos
from vidkd.data.video import VideoInfo, VideoReader
from vidkd.errors import DatasetError, VideoDecodeError
from vidkd.utils.runtime import usable_cpus

SUBSETS = ("train", "test")


@dataclass
class DataReport:
    """Everything `format_report` prints; `fatal` is True when training on the dataset cannot work."""

    root: Path
    layout: str | None
    split: int
    min_frames: int
    class_names: list[str] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)  # subset -> listed videos found on disk
    per_class: dict[str, dict[str, int]] = field(default_factory=dict)  # class -> subset -> videos
    missing: dict[str, list[str]] = field(default_factory=dict)  # subset -> listed but not on disk
    frame_counts: list[int] = field(default_factory=list)  # of readable videos
    sizes: Counter = field(default_factory=Counter)  # "WxH" -> videos
    fps: Counter = field(default_factory=Counter)
    problems: list[tuple[Path, str]] = field(default_factory=list)  # (path, reason)
    errors: list[str] = field(default_factory=list)  # layout / split-file errors
    usable: int = 0
    total: int = 0
    full: bool = False  # every frame decoded, not only the headers and the first and last frames

    @property
    def fatal(self) -> bool:
        return bool(self.errors) or self.usable == 0 or self.usable * 2 < self.total


def check_dataset(root: str | Path, layout: str = "auto", split: int = 1, min_frames: int = 64,
                  decode: bool = True, progress: bool = True, full: bool = False,
                  workers: int | None = None) -> DataReport:
    """Load both subsets of `split`, probe every video, and (with `decode`) decode its first and
    last frame, which finds files that open but do not decode or end early. `full` decodes every
    frame, in `workers` processes (default: one per usable CPU), which also finds damage inside."""
    root = Path(root)
    report = DataReport(root=root, layout=None, split=split, min_frames=min_frames, full=full)
    try:
        report.layout = detect_layout(root) if layout == "auto" else layout
    except DatasetError as exc:
        report.errors.append(str(exc))
        return report
    records: dict[str, list[VideoRecord]] = {}
    for subset in SUBSETS:
        try:
            loaded = load_split(root, subset=subset, split=split, layout=report.layout)
        except DatasetError as exc:
            report.errors.append(f"{subset}: {exc}")
            continue
        report.class_names = report.class_names or loaded.class_names
        records[subset] = loaded.records
        report.counts[subset] = len(loaded.records)
        report.missing[subset] = loaded.missing
        for record in loaded.records:
            name = loaded.class_names[record.label]
            report.per_class.setdefault(name, {s: 0 for s in SUBSETS})[subset] += 1

    paths = sorted({r.path for subset_records in records.values() for r in subset_records})
    report.total = len(paths)
    infos = probe_videos(paths, cache_dir=default_cache_dir(root), progress=progress, desc="probing")
    damage = _decode_every_frame([p for p in paths if not isinstance(infos[p], str)], workers, progress) if full else {}
    for path in tqdm(paths, desc="decoding", unit="video", disable=not progress or len(paths) < 200, leave=False):
        info = infos[path]
        reason = info if isinstance(info, str) else damage.get(path)
        if reason is None and decode and not full:
            reason = _decode_ends(path, info)
        if reason is None and info.truncated:
            reason = f"damaged: cut short ({info.num_frames} of the {info.header_frames} frames its header announces)"
        elif reason is None and info.num_frames < min_frames:
            reason = f"too short ({info.num_frames} frames < {min_frames})"
        if reason is not None:
            report.problems.append((path, reason))
        if isinstance(info, VideoInfo):
            report.frame_counts.append(info.num_frames)
            report.sizes[f"{info.width}x{info.height}"] += 1
            report.fps[round(info.fps, 2)] += 1
    report.usable = report.total - len(report.problems)
    return report


def _first_damaged_frame(path: Path) -> str | None:
    try:
        with VideoReader(path, threads=False) as reader:
            found = reader.first_damaged_frame()
    except VideoDecodeError as exc:
        text = str(exc)
        return text.split(": ", 1)[1] if ": " in text else text
    return None if found is None else f"damaged: from frame {found[0]}, {found[1]}"


def _decode_every_frame(paths: list[Path], workers: int | None, progress: bool) -> dict[Path, str]:
    """{path: why} of the videos whose frames do not all decode."""
    workers = workers or usable_cpus()
    found: dict[Path, str] = {}
    with tqdm(total=len(paths), desc="decoding every frame", unit="video", disable=not progress) as bar:
        if workers <= 1 or len(paths) < 2:
            results = map(_first_damaged_frame, paths)
            for path, reason in zip(paths, results):
                if reason:
                    found[path] = reason
                bar.update()
            return found
        with ProcessPoolExecutor(min(workers, len(paths))) as pool:
            futures = {pool.submit(_first_damaged_frame, path): path for path in paths}
            for future in as_completed(futures):
                if future.result():
                    found[futures[future]] = future.result()
                bar.update()
    return found


def _decode_ends(path: Path, info: VideoInfo) -> str | None:
    try:
        with VideoReader(path) as reader:
            reader.read([0])
            reader.read([info.num_frames - 1])
    except VideoDecodeError as exc:
        text = str(exc)
        return text.split(": ", 1)[1] if ": " in text else text
    return None


def format_report(report: DataReport, max_problems: int = 200) -> str:
    """A plain-text summary for the terminal."""
    lines = [f"dataset   {report.root}" + (f"  (layout {report.layout}, split {report.split})" if report.layout else "")]
    if report.class_names:
        lines.append(f"classes   {len(report.class_names)}")
    if report.counts:
        counts = ", ".join(f"{subset} {n}" for subset, n in report.counts.items())
        missing = sum(len(m) for m in report.missing.values())
        lines.append(f"videos    {counts}" + (f"  ({missing} listed but missing on disk)" if missing else ""))
    if report.frame_counts:
        frames = report.frame_counts
        lines.append(f"frames    min {min(frames)} / median {statistics.median(frames):g} / max {max(frames)}")
        lines.append("sizes     " + ", ".join(f"{size} ({n})" for size, n in report.sizes.most_common(3))
                     + (f", {len(report.sizes) - 3} more" if len(report.sizes) > 3 else ""))
        lines.append("fps       " + ", ".join(f"{fps:g} ({n})" for fps, n in report.fps.most_common(3)))
    if report.per_class:
        lines.append("per class (train/test):")
        cells = [f"{name[:24]:<24} {n['train']:>4}/{n['test']:<4}" for name, n in report.per_class.items()]
        for i in range(0, len(cells), 3):
            lines.append("  " + "   ".join(cells[i:i + 3]))
    for subset, missing in report.missing.items():
        for rel in missing[:10]:
            lines.append(f"missing   {subset}: {rel}")
        if len(missing) > 10:
            lines.append(f"missing   {subset}: ... and {len(missing) - 10} more")
    if report.problems:
        lines.append(f"unusable videos ({len(report.problems)}):")
        for path, reason in report.problems[:max_problems]:
            lines.append(f"  {_relative(path, report.root)}: {reason}")
        if len(report.problems) > max_problems:
            lines.append(f"  ... and {len(report.problems) - max_problems} more")
    for error in report.errors:
        lines.append(f"error     {error}")
    lines.append("check     " + ("full: every frame decoded" if report.full else
                                 "headers and first and last frames (--full decodes every frame)"))
    if report.fatal:
        why = "fix the errors above" if report.errors else f"only {report.usable} of {report.total} videos usable"
        lines.append(f"result    NOT USABLE: {why} (see docs/data.md)")
    else:
        lines.append(f"result    OK: {report.usable} of {report.total} videos usable"
                     + (f" (min_frames {report.min_frames})" if report.problems else ""))
    return "\n".join(lines)


def _relative(path: Path, root: Path) -> str:
    try:
        return str(path.relative_to(root))
    except ValueError:
        return str(path)
