"""`vidkd data prepare SRC DST`: a copy of a dataset, re-encoded at the training resolution.

Every video of SRC (any file with a video extension, wherever it lies in the layout) is decoded,
scaled so that its short side is `short_side` (default 128, as the reference code's 128x171
frames; never upscaled; even width and height, the aspect ratio kept) and encoded again with a
short keyframe interval (`gop`), so that a random 16-frame clip costs few decoded frames. Every
frame is kept, in order, at the source's frame rate, so training reads the same frame indices.
Every other file (split files, class index, READMEs) is copied unchanged, after the videos. The
output keeps each file's relative path and name, so the split files still point at the videos.

Each video is written to a hidden temporary name next to its final name and renamed only after
decoding it back: its header frame count and the number of frames that decode must equal the
frames written, the decoded frames' timestamps must give the indices 0..N-1 in order, and its size
must be the target size. A re-run skips outputs already under their final name and finishes the
rest; a run that is interrupted leaves no partial file under a final name (temporary files are
removed, or cleaned up by the next run). Settings are stored in `DST/.vidkd_prepare.json`; a
re-run with other settings is refused. See docs/data.md.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field, replace
from fractions import Fraction
from pathlib import Path
from typing import Callable, Iterator

import av
from av.video.reformatter import VideoReformatter
from tqdm import tqdm

from vidkd.data.datasets import CACHE_DIR_NAME, VIDEO_EXTENSIONS, detect_layout
from vidkd.data.video import END_TOLERANCE, probe_video
from vidkd.errors import DatasetError, VidkdError, VideoDecodeError
from vidkd.utils.runtime import usable_cpus, worker_context

MANIFEST = ".vidkd_prepare.json"
FORMAT_VERSION = 1
DEFAULT_SHORT_SIDE = 128
DEFAULT_GOP = 16  # keyframe interval: see docs/data.md#preparing-a-dataset for the measurements
DEFAULT_QSCALE = 4  # mpeg4 quantiser, 2 (best) .. 31: 35.6 dB PSNR against the scaled source
DEFAULT_CRF = 23  # libx264 constant-rate factor (lower = larger, better), for codec="libx264"
X264_PRESET = "fast"
_TMP_SUFFIX = ".part"
# container (by file extension) -> FFmpeg muxer name; webm holds only VP8/VP9/AV1
_MUXERS = {".avi": "avi", ".mp4": "mp4", ".mkv": "matroska", ".webm": "webm", ".mov": "mov"}


@dataclass
class PrepareSummary:
    """What `prepare_dataset` did. Sizes count the videos now in DST (prepared + skipped) and
    their sources; `failed` lists (path relative to SRC, one-line reason)."""

    src: Path
    dst: Path
    layout: str
    short_side: int
    gop: int
    codec: str  # the encoder per container, e.g. "mpeg4 (.avi)"
    prepared: int = 0
    skipped_existing: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)
    copied_files: int = 0  # non-video files copied (split files, ...); unchanged ones are not counted
    bytes_before: int = 0
    bytes_after: int = 0
    seconds: float = 0.0

    @property
    def videos(self) -> int:
        return self.prepared + self.skipped_existing + len(self.failed)

    def add(self, rel: Path, result: tuple[str, str, int, int]) -> None:
        """Count one video's outcome (`_prepare_video`'s); a disk that cannot be written stops the run."""
        status, reason, before, after = result
        if status == "abort":
            raise VidkdError(f"cannot write {self.dst / rel}: {reason}; free space or fix the directory, then run the "
                             f"same command again ({self.prepared + self.skipped_existing} videos are done "
                             "and will be kept)")
        if status == "failed":
            self.failed.append((rel.as_posix(), reason))
            return
        if status == "prepared":
            self.prepared += 1
        else:
            self.skipped_existing += 1
        self.bytes_before += before
        self.bytes_after += after


@dataclass(frozen=True)
class EncodeSettings:
    """How each video is re-encoded (`encode_video`, `prepare_dataset`, `vidkd data prepare`)."""

    short_side: int = DEFAULT_SHORT_SIDE  # pixels of the short side (even; never enlarged)
    gop: int = DEFAULT_GOP  # keyframe interval in frames
    codec: str | None = None  # None: by container (see `codec_for`)
    quality: int | None = None  # mpeg4 qscale / libx264 crf; None: the codec's default
    threads: int = 1  # FFmpeg threads per video (`prepare_dataset` shares the CPUs among its workers)


def codec_for(suffix: str, codec: str | None = None) -> str:
    """The encoder for a `suffix` (.avi, .mp4, ...) file: `codec`, or by container when None.

    By default mpeg4 (MPEG-4 Part 2, UCF101's and HMDB51's own codec family), .webm files VP8 (all
    a .webm holds that is bundled). Measured on 320x240 videos scaled to 170x128 (docs/data.md):
    libx264 files are about half the size but a random 16-frame clip takes ~1.8x as long to read
    and encoding ~3x as long; and FFmpeg's AVI demuxer gives H.264 frames timestamps shifted by one
    frame, which would shift every frame index, so libx264 is refused for .avi files.
    """
    suffix = suffix.lower()
    if codec is None:
        return "libvpx" if suffix == ".webm" else "mpeg4"
    if suffix == ".avi" and codec in ("libx264", "h264"):
        raise DatasetError("H.264 in .avi files decodes with timestamps shifted by one frame in FFmpeg; "
                           "use codec mpeg4 (the default) for this dataset")
    if suffix == ".webm" and codec not in ("libvpx", "libvpx-vp9", "libaom-av1", "libsvtav1"):
        raise DatasetError(f"a .webm file cannot hold {codec}; leave the codec to vidkd")
    return codec


def _default_quality(codec: str) -> int:
    return {"mpeg4": DEFAULT_QSCALE, "libx264": DEFAULT_CRF}.get(codec, 31)


def target_size(width: int, height: int, short_side: int) -> tuple[int, int]:
    """(width, height) with the short side scaled to `short_side` (never up), both even."""
    short = min(width, height)
    scale = min(1.0, short_side / short)

    def even(x: float) -> int:
        return max(2, 2 * int(round(x / 2)))

    return even(width * scale), even(height * scale)


# ----------------------------------------------------------------------------------- one video


def _tmp_name(final: Path) -> Path:
    return final.with_name(f".{final.name}.{os.getpid()}{_TMP_SUFFIX}")


def _remove_stale(dst: Path) -> int:
    """Remove the temporary files an interrupted run left under `dst`; returns how many."""
    removed = 0
    for folder, _, files in os.walk(dst):
        for name in files:
            if name.startswith(".") and name.endswith(_TMP_SUFFIX):
                Path(folder, name).unlink(missing_ok=True)
                removed += 1
    return removed


def _source_frames(container: av.container.InputContainer, stream, src: Path) -> Iterator[av.VideoFrame]:
    """The decoded frames; any decoding failure becomes a VideoDecodeError (the source is bad)."""
    frames = container.decode(stream)
    while True:
        try:
            frame = next(frames)
        except StopIteration:
            return
        except (av.FFmpegError, OSError, ValueError) as exc:
            raise VideoDecodeError(f"{src}: decoding failed ({exc.__class__.__name__}: {exc})") from None
        yield frame


def _configure_encoder(encoder, codec: str, quality: int, gop: int, threads: int) -> None:
    """yuv420p, a keyframe every `gop` frames, no B-frames, and the codec's quality setting."""
    encoder.pix_fmt = "yuv420p"
    encoder.gop_size = gop
    encoder.codec_context.max_b_frames = 0  # display order = decode order: simple, exact seeking
    encoder.thread_count = threads
    if codec == "libx264":
        encoder.options = {"crf": str(quality), "preset": X264_PRESET, "x264-params": f"keyint={gop}:bframes=0"}
    elif codec == "mpeg4":
        # a constant quantiser: PyAV's `qscale` flag alone leaves the quantiser at its minimum (2)
        encoder.options = {"qmin": str(quality), "qmax": str(quality)}
    elif codec.startswith("libvpx"):
        encoder.options = {"crf": str(quality), "b": "0"}


def encode_video(src: str | Path, out: str | Path, settings: EncodeSettings = EncodeSettings(),
                 suffix: str | None = None) -> tuple[int, tuple[int, int], Fraction]:
    """Decode `src`, scale its short side to `settings.short_side` (never up), encode every frame into `out`.

    `suffix` is the container (default: `out`'s); returns (frames written, (width, height), frame
    rate). Source problems raise VideoDecodeError; output problems (disk full, ...) raise OSError.
    No check of the output: `prepare_dataset` decodes it back before using it.
    """
    src, out = Path(src), Path(out)
    suffix = (suffix or out.suffix).lower()
    if suffix not in _MUXERS:
        raise DatasetError(f"{out}: unknown video container {suffix!r}; use one of {', '.join(_MUXERS)}")
    codec = codec_for(suffix, settings.codec)
    quality = _default_quality(codec) if settings.quality is None else settings.quality
    short_side, gop, threads = settings.short_side, settings.gop, settings.threads
    try:
        source = av.open(str(src), mode="r")
    except (av.FFmpegError, OSError, ValueError) as exc:
        raise VideoDecodeError(f"{src}: cannot open ({exc.__class__.__name__}: {exc})") from None
    with source:
        if not source.streams.video:
            raise VideoDecodeError(f"{src}: no video stream")
        stream = source.streams.video[0]
        stream.thread_count = threads
        rate = stream.average_rate or stream.base_rate or stream.guessed_rate
        if not rate:
            raise VideoDecodeError(f"{src}: the video stream has no frame rate")
        rate = Fraction(rate)
        width, height = target_size(stream.codec_context.width, stream.codec_context.height, short_side)
        scaler = VideoReformatter()
        count = 0
        with av.open(str(out), mode="w", format=_MUXERS[suffix]) as container:
            encoder = container.add_stream(codec, rate=rate)
            encoder.width, encoder.height = width, height
            _configure_encoder(encoder, codec, quality, gop, threads)
            time_base = Fraction(1) / rate
            for frame in _source_frames(source, stream, src):
                scaled = scaler.reformat(frame, width=width, height=height, format="yuv420p", interpolation="AREA")
                # A fresh frame: a decoded one carries its picture type and quantiser, which the
                # encoder would copy (the source's keyframes and quality instead of gop/quality).
                scaled = av.VideoFrame.from_ndarray(scaled.to_ndarray(), format="yuv420p")
                scaled.pts = count
                scaled.time_base = time_base
                for packet in encoder.encode(scaled):
                    container.mux(packet)
                count += 1
            for packet in encoder.encode():
                container.mux(packet)
    if count == 0:
        raise VideoDecodeError(f"{src}: no frame decodes")
    return count, (width, height), rate


def _verify(out: Path, frames: int, size: tuple[int, int], rate: Fraction) -> None:
    """Decode `out` completely: header count, decoded count, timestamp order and size must be right."""
    info = probe_video(out)  # what training's loaders will see
    if info.num_frames != frames:
        raise VideoDecodeError(f"output check failed: header says {info.num_frames} frames, {frames} written")
    if (info.width, info.height) != size:
        raise VideoDecodeError(f"output check failed: {info.width}x{info.height}, expected {size[0]}x{size[1]}")
    if abs(info.fps - float(rate)) > 1e-3:
        raise VideoDecodeError(f"output check failed: {info.fps:g} fps, source has {float(rate):g}")
    with av.open(str(out), mode="r") as container:
        stream = container.streams.video[0]
        start = stream.start_time or 0
        ticks = Fraction(stream.time_base) * Fraction(stream.average_rate or rate)
        count = 0
        for frame in container.decode(stream):
            if frame.pts is not None and int(round((frame.pts - start) * ticks)) != count:
                raise VideoDecodeError(f"output check failed: frame {count} has the timestamp of frame "
                                       f"{int(round((frame.pts - start) * ticks))}")
            count += 1
    if count != frames:
        raise VideoDecodeError(f"output check failed: {count} frames decode, {frames} written")


def _existing_ok(src: Path, final: Path, short_side: int) -> bool:
    """A finished output (renamed only after its check) whose size and frame count fit the source."""
    try:
        out, source = probe_video(final), probe_video(src)
    except VideoDecodeError:
        return False
    return ((out.width, out.height) == target_size(source.width, source.height, short_side)
            and abs(out.num_frames - source.num_frames) <= END_TOLERANCE)


def _prepare_video(src: Path, final: Path, settings: EncodeSettings) -> tuple[str, str, int, int]:
    """(status, reason, bytes before, bytes after); status: prepared | skipped | failed | abort.

    Runs in a worker process: it never raises for a bad source ('failed') and reports an output
    that cannot be written ('abort': disk full, permissions) instead of raising.
    """
    before = src.stat().st_size if src.exists() else 0
    if final.exists() and _existing_ok(src, final, settings.short_side):
        return "skipped", "", before, final.stat().st_size
    tmp = _tmp_name(final)
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
        info = probe_video(src)
        if info.truncated:  # as `vidkd data check` says: a cut-off copy would hide the damage
            raise VideoDecodeError(f"damaged: cut short ({info.num_frames} of the {info.header_frames} frames "
                                   "its header announces)")
        frames, size, rate = encode_video(src, tmp, settings, suffix=final.suffix)
        if frames + END_TOLERANCE < info.num_frames:
            raise VideoDecodeError(f"only {frames} of its {info.num_frames} frames decode (corrupt)")
        _verify(tmp, frames, size, rate)
        os.replace(tmp, final)
        return "prepared", "", before, final.stat().st_size
    except VideoDecodeError as exc:
        return "failed", _one_line(exc, src), before, 0
    except av.FFmpegError as exc:
        if isinstance(exc, OSError):
            return "abort", _os_reason(exc), before, 0
        return "failed", f"encoding failed ({exc.__class__.__name__}: {exc})", before, 0
    except OSError as exc:
        return "abort", _os_reason(exc), before, 0
    finally:
        tmp.unlink(missing_ok=True)


def _one_line(exc: Exception, src: Path) -> str:
    text = " ".join(str(exc).split()).replace(f": '{src}'", "")
    return text[len(str(src)) + 2:] if text.startswith(f"{src}: ") else text


def _os_reason(exc: OSError) -> str:
    if exc.errno == errno.ENOSPC:
        return "no space left on device"
    return exc.strerror or str(exc)


# ----------------------------------------------------------------------------------- the dataset


def _is_within(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def _check_paths(src: Path, dst: Path) -> str:
    """The layout of SRC; refuses a DST that overlaps SRC or that holds something else."""
    layout = detect_layout(src)  # DatasetError (one line) when SRC is not a dataset
    real_src, real_dst = src.resolve(), dst.resolve()
    if real_dst == real_src:
        raise DatasetError(f"DST {dst} is SRC; choose a new directory outside {src}, e.g. {src}_{DEFAULT_SHORT_SIDE}")
    if _is_within(real_dst, real_src):
        raise DatasetError(f"DST {dst} is inside SRC {src}; choose a directory outside it, "
                           f"e.g. {src.parent / (src.name + '_' + str(DEFAULT_SHORT_SIDE))}")
    if _is_within(real_src, real_dst):
        raise DatasetError(f"SRC {src} is inside DST {dst}; choose a new directory for DST")
    if dst.exists() and not dst.is_dir():
        raise DatasetError(f"DST {dst} is a file; choose a directory")
    return layout


def _check_manifest(dst: Path, params: dict) -> None:
    """A DST that is empty, or was written by an earlier run with the same settings."""
    path = dst / MANIFEST
    if path.is_file():
        try:
            stored = json.loads(path.read_text())
        except (OSError, ValueError):
            stored = {}
        stored = {k: stored.get(k) for k in params if k != "source"}
        wanted = {k: v for k, v in params.items() if k != "source"}
        if stored != wanted:
            was = ", ".join(f"{k} {'default' if v is None else v}" for k, v in stored.items() if k != "format_version")
            raise DatasetError(f"{dst} was prepared with other settings ({was}); run with the same options "
                               "or choose another DST")
    elif dst.is_dir() and any(dst.iterdir()):
        raise DatasetError(f"DST {dst} is not empty and was not written by vidkd data prepare; "
                           "choose a new or empty directory")


def _write_json(path: Path, data: dict) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}{_TMP_SUFFIX}")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    os.replace(tmp, path)


def _scan(src: Path) -> tuple[list[Path], list[Path]]:
    """(videos, other files) under SRC, relative, sorted; the probe cache and temporary files are left out."""
    videos, others = [], []
    for folder, dirs, files in os.walk(src):
        dirs[:] = sorted(d for d in dirs if d != CACHE_DIR_NAME)
        base = Path(folder).relative_to(src)
        for name in sorted(files):
            if name.endswith(_TMP_SUFFIX) or (folder == str(src) and name == MANIFEST):
                continue
            rel = base / name
            (videos if Path(name).suffix.lower() in VIDEO_EXTENSIONS else others).append(rel)
    return videos, others


def _copy_file(src: Path, dst: Path) -> bool:
    """Copy (atomically) unless an identical-looking copy (size, mtime) is there; True if copied."""
    if dst.is_file():
        a, b = src.stat(), dst.stat()
        if a.st_size == b.st_size and a.st_mtime_ns == b.st_mtime_ns:
            return False
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_name(dst)
    try:
        shutil.copy2(src, tmp)
        os.replace(tmp, dst)
    finally:
        tmp.unlink(missing_ok=True)
    return True


def prepare_dataset(src: str | Path, dst: str | Path, settings: EncodeSettings = EncodeSettings(),
                    workers: int | None = None, progress: bool = True,
                    on_progress: Callable[[int, int], None] | None = None) -> PrepareSummary:
    """Copy the dataset at `src` to `dst` in the same layout, every video re-encoded with `settings`.

    `settings.codec` None picks one per container (`codec_for`: mpeg4, VP8 for .webm);
    `settings.quality` is mpeg4's qscale or libx264's crf (None: DEFAULT_QSCALE / DEFAULT_CRF).
    `workers` processes encode the videos (default: one per CPU this process may use; 0 or 1:
    in this process). `on_progress(done, total)` is called after each video; `progress` shows a
    tqdm bar. Bad source videos are skipped and listed in `failed`; a disk that fills up stops the
    run with a VidkdError (finished videos are kept; the same call finishes the rest).
    """
    started = time.perf_counter()
    src, dst = Path(src), Path(dst)
    short_side, gop, codec, quality = settings.short_side, settings.gop, settings.codec, settings.quality
    if short_side < 16 or short_side % 2:
        raise DatasetError(f"short side must be even and at least 16 (the codec needs even sizes); got {short_side}")
    if gop < 1:
        raise DatasetError(f"the keyframe interval (gop) must be at least 1; got {gop}")
    if codec is not None and codec not in av.codecs_available:
        raise DatasetError(f"codec {codec!r} is not in this FFmpeg build; leave the codec to vidkd")
    layout = _check_paths(src, dst)
    params = {"format_version": FORMAT_VERSION, "source": str(src.resolve()), "short_side": short_side, "gop": gop,
              "codec": codec or "auto", "quality": quality}
    _check_manifest(dst, params)
    videos, others = _scan(src)
    codecs = sorted({f"{codec_for(rel.suffix, codec)} ({rel.suffix.lower()})" for rel in videos})  # refuses misfits
    dst.mkdir(parents=True, exist_ok=True)
    _write_json(dst / MANIFEST, params)
    _remove_stale(dst)

    workers = usable_cpus() if workers is None else workers
    workers = max(1, min(workers, len(videos)))
    settings = replace(settings, threads=max(1, usable_cpus() // workers))
    summary = PrepareSummary(src=src, dst=dst, layout=layout, short_side=short_side, gop=gop,
                             codec=", ".join(codecs) or "none")
    jobs = [(rel, src / rel, dst / rel) for rel in videos]
    _encode_all(jobs, settings, workers, summary.add, progress, on_progress)

    # Split files and everything else last: a DST with its split files is a finished one.
    for rel in others:
        try:
            summary.copied_files += _copy_file(src / rel, dst / rel)
        except OSError as exc:
            raise VidkdError(f"cannot write {dst / rel}: {_os_reason(exc)}; free space or fix the directory, "
                             "then run the same command again") from None
    summary.failed.sort()
    summary.seconds = time.perf_counter() - started
    return summary


def _encode_all(jobs: list[tuple[Path, Path, Path]], settings: EncodeSettings, workers: int,
                done: Callable[[Path, tuple[str, str, int, int]], None], progress: bool,
                on_progress: Callable[[int, int], None] | None) -> None:
    """`_prepare_video` for every (relative path, source, destination), in `workers` processes;
    `done(rel, result)` is called with each outcome as it arrives."""
    count = 0
    with tqdm(total=len(jobs), desc="prepare", unit="video", disable=not progress) as bar:
        def step(rel: Path, result: tuple[str, str, int, int]) -> None:
            nonlocal count
            done(rel, result)
            count += 1
            bar.update(1)
            if on_progress is not None:
                on_progress(count, len(jobs))

        if workers <= 1:
            for rel, source, target in jobs:
                step(rel, _prepare_video(source, target, settings))
            return
        pool = ProcessPoolExecutor(workers, mp_context=worker_context())
        try:
            futures = {pool.submit(_prepare_video, source, target, settings): rel for rel, source, target in jobs}
            for future in as_completed(futures):
                step(futures[future], future.result())
        finally:
            # on an error or Ctrl-C: drop what has not started; running workers clean up their temp files
            pool.shutdown(wait=True, cancel_futures=True)


def format_summary(summary: PrepareSummary) -> str:
    """The lines `vidkd data prepare` prints."""
    mb = 1024 * 1024
    ratio = f" ({summary.bytes_after / summary.bytes_before:.0%})" if summary.bytes_before else ""
    lines = [
        f"prepared  {summary.src} -> {summary.dst}  (layout {summary.layout}, short side {summary.short_side}, "
        f"{summary.codec}, keyframe every {summary.gop} frames)",
        f"videos    {summary.prepared} prepared, {summary.skipped_existing} already done, {len(summary.failed)} failed"
        f"; {summary.copied_files} other files copied",
        f"size      {summary.bytes_before / mb:.1f} MB -> {summary.bytes_after / mb:.1f} MB{ratio}",
        f"time      {summary.seconds:.1f} s",
    ]
    if summary.failed:
        lines.append(f"failed videos ({len(summary.failed)}, not in DST):")
        lines += [f"  {rel}: {reason}" for rel, reason in summary.failed]
    return "\n".join(lines)


def summary_dict(summary: PrepareSummary) -> dict:
    """The summary as plain JSON-able data."""
    data = asdict(summary)
    data.update(src=str(summary.src), dst=str(summary.dst), failed=[list(f) for f in summary.failed])
    return data
