"""Video files through PyAV: write, probe, and read only the frames a sample needs.

A PCL tuple needs 64 consecutive-ish frames out of a 150-frame UCF101 video. Decoding the whole
file for it wastes most of the work, so `VideoReader.read` seeks once to the keyframe before the
first needed frame and decodes forward only until the last needed frame; frames in between are
decoded (the codec needs them) but not converted to RGB.

Frame indices are 0-based positions in display order. A decoded frame's index comes from its
presentation timestamp: ``round((pts - start_time) * time_base * average_rate)``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Iterable, Sequence

import av
import numpy as np
from av.video.reformatter import VideoReformatter

from vidkd.errors import VideoDecodeError

log = logging.getLogger("vidkd.data")

# The container header may promise a few frames more than the decoder delivers (a truncated last
# packet, an encoder that counted a dropped frame). Up to this many missing frames at the end are
# filled with the last real frame; a bigger shortfall means a broken file (VideoDecodeError).
END_TOLERANCE = 4


def write_video(path: str | Path, frames: Iterable[np.ndarray], fps: int = 25, codec: str = "mpeg4",
                gop: int = 12, quality: int = 4) -> int:
    """Encode uint8 RGB frames (H, W, 3) to `path`; returns the number of frames written.

    `mpeg4` in an `.avi` matches UCF101's Xvid files. The encoder runs single-threaded so that
    the same frames always give the same bytes.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    count = 0
    with av.open(str(path), mode="w") as container:
        stream = None
        for frame in frames:
            frame = np.ascontiguousarray(frame, dtype=np.uint8)
            if stream is None:
                height, width = frame.shape[:2]
                stream = container.add_stream(codec, rate=fps)
                stream.width, stream.height = width, height
                stream.pix_fmt = "yuv420p"
                stream.gop_size = gop
                stream.thread_count = 1
                if codec == "mpeg4":
                    stream.options = {"qscale": str(quality)}
                    stream.codec_context.qscale = quality
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
            count += 1
        if stream is not None:
            for packet in stream.encode():
                container.mux(packet)
    return count


@dataclass(frozen=True)
class VideoInfo:
    """What a cheap probe (no full decode) tells about a video."""

    num_frames: int
    height: int
    width: int
    fps: float
    header_frames: int = field(default=0, compare=False)  # the header's count; above num_frames: cut short

    @property
    def truncated(self) -> bool:
        return self.header_frames > self.num_frames + 1


def _open(path: str | Path) -> av.container.InputContainer:
    """Open a container, turning every failure into a VideoDecodeError."""
    path = Path(path)
    if not path.is_file():
        raise VideoDecodeError(f"{path}: no such file")
    if path.stat().st_size == 0:
        raise VideoDecodeError(f"{path}: empty file (0 bytes)")
    try:
        return av.open(str(path), mode="r")
    except (av.FFmpegError, OSError, ValueError) as exc:
        raise VideoDecodeError(f"{path}: cannot open ({exc.__class__.__name__}: {exc})") from None


def _video_stream(container: av.container.InputContainer, path: str | Path) -> av.video.stream.VideoStream:
    if not container.streams.video:
        raise VideoDecodeError(f"{path}: no video stream")
    return container.streams.video[0]


def _frame_rate(stream: av.video.stream.VideoStream) -> Fraction:
    rate = stream.average_rate or stream.base_rate or stream.guessed_rate
    if not rate:
        raise VideoDecodeError("the video stream has no frame rate")
    return Fraction(rate)


def _count_frames(container: av.container.InputContainer, stream: av.video.stream.VideoStream) -> int:
    """Frame count from the header when it agrees with the duration, else by demuxing packets.

    Demuxing reads the file but decodes nothing. A truncated AVI keeps the original frame count in
    its header while its (rebuilt) duration is shorter; the disagreement sends it to demuxing.
    Trailing packets flagged corrupt (cut off by the truncation) do not count.
    """
    rate = _frame_rate(stream)
    header = stream.frames or 0
    from_duration = None
    if stream.duration is not None and stream.time_base is not None:
        from_duration = round(stream.duration * stream.time_base * rate)
    if header > 0 and (from_duration is None or abs(header - from_duration) <= 1):
        return header
    count = complete = 0
    for packet in container.demux(stream):
        if packet.size:
            count += 1
            if not packet.is_corrupt:  # a cut-off last packet is flagged corrupt: not a frame
                complete = count
    container.seek(0)
    return complete


def probe_video(path: str | Path) -> VideoInfo:
    """Frame count, size and fps of a video without decoding it; VideoDecodeError if unusable."""
    with _open(path) as container:
        stream = _video_stream(container, path)
        try:
            num_frames = _count_frames(container, stream)
        except (av.FFmpegError, OSError) as exc:
            raise VideoDecodeError(f"{path}: cannot read packets ({exc})") from None
        width, height = stream.codec_context.width, stream.codec_context.height
        if num_frames <= 0:
            raise VideoDecodeError(f"{path}: the video stream has no frames")
        if width <= 0 or height <= 0:
            raise VideoDecodeError(f"{path}: the video stream has no frame size")
        return VideoInfo(num_frames=num_frames, height=height, width=width, fps=float(_frame_rate(stream)),
                         header_frames=int(stream.frames or 0))


class VideoReader:
    """One open video; `read(indices)` decodes only the range the indices span.

    Use as a context manager (or call `close()`). `frames_decoded` counts every frame the codec
    produced, including the ones decoded only to reach a needed frame.
    """

    def __init__(self, path: str | Path, threads: bool = True):
        self.path = Path(path)
        self._container = _open(self.path)
        try:
            self._stream = _video_stream(self._container, self.path)
            self._rate = _frame_rate(self._stream)
            self._frames_per_tick = Fraction(self._stream.time_base) * self._rate  # pts units -> frames
            self._start_pts = self._stream.start_time or 0
            self.num_frames = _count_frames(self._container, self._stream)
            self.width = self._stream.codec_context.width
            self.height = self._stream.codec_context.height
            self.fps = float(self._rate)
        except VideoDecodeError:
            self.close()
            raise
        except (av.FFmpegError, OSError) as exc:
            self.close()
            raise VideoDecodeError(f"{self.path}: cannot read packets ({exc})") from None
        if self.num_frames <= 0:
            self.close()
            raise VideoDecodeError(f"{self.path}: the video stream has no frames")
        if threads:
            # Frame + slice threading; see docs/benchmarks.md for what it buys on small frames.
            self._stream.thread_type = "AUTO"
        # One reformatter per reader keeps its swscale context; `frame.to_ndarray(format=...)` would
        # build a new one for every frame.
        self._to_rgb = VideoReformatter()
        self.frames_decoded = 0

    def __enter__(self) -> "VideoReader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        if self._container is not None:
            self._container.close()
            self._container = None

    @property
    def info(self) -> VideoInfo:
        return VideoInfo(self.num_frames, self.height, self.width, self.fps)

    def _rgb(self, frame: av.VideoFrame) -> np.ndarray:
        return self._to_rgb.reformat(frame, format="rgb24").to_ndarray()

    def _index_to_pts(self, index: int) -> int:
        return self._start_pts + int(round(index / self._frames_per_tick))

    def _pts_to_index(self, pts: int | None) -> int | None:
        if pts is None:
            return None
        return int(round((pts - self._start_pts) * self._frames_per_tick))

    def read(self, indices: Sequence[int]) -> np.ndarray:
        """Frames at `indices` (any order, duplicates allowed) as uint8 (N, H, W, 3) RGB."""
        if self._container is None:
            raise ValueError("read() on a closed VideoReader")
        if len(indices) == 0:
            return np.zeros((0, self.height, self.width, 3), np.uint8)
        wanted = sorted({int(i) for i in indices})
        if wanted[0] < 0 or wanted[-1] >= self.num_frames:
            raise IndexError(f"{self.path}: frame indices {wanted[0]}..{wanted[-1]} outside 0..{self.num_frames - 1}")
        frames = self._decode(wanted)
        missing = [i for i in wanted if i not in frames]
        if missing:
            last = max(frames) if frames else -1
            if not frames or missing[0] <= last or self.num_frames - (last + 1) > END_TOLERANCE:
                raise VideoDecodeError(
                    f"{self.path}: decoding stopped at frame {last + 1} of {self.num_frames} (truncated or corrupt file)")
            # The header over-counted by a few frames: repeat the last real frame.
            log.debug("%s: only %d of %d frames decode; padding with the last one", self.path, last + 1, self.num_frames)
            self.num_frames = last + 1
            for i in missing:
                frames[i] = frames[last]
        return np.stack([frames[int(i)] for i in indices])

    def _decode(self, wanted: list[int]) -> dict[int, np.ndarray]:
        """Decode from the keyframe before wanted[0] up to wanted[-1]; RGB only for wanted frames."""
        first, last = wanted[0], wanted[-1]
        wanted_set = set(wanted)
        out: dict[int, np.ndarray] = {}
        try:
            if first > 0:
                self._container.seek(self._index_to_pts(first), stream=self._stream, backward=True, any_frame=False)
            else:
                self._container.seek(self._start_pts, stream=self._stream, backward=True, any_frame=False)
            position = None  # running index for streams whose frames lack timestamps
            for frame in self._container.decode(self._stream):
                self.frames_decoded += 1
                index = self._pts_to_index(frame.pts)
                if index is None:
                    if position is None:
                        # No timestamps: an index is only known when counting from the start.
                        if first > 0:
                            return self._decode_from_start(wanted)
                        position = 0
                    index = position
                    position += 1
                elif not out and index > first:
                    # The demuxer landed after the first wanted frame: start again from frame 0.
                    return self._decode_from_start(wanted)
                if index in wanted_set:
                    out[index] = self._rgb(frame)
                if index >= last:
                    break
        except (av.FFmpegError, OSError) as exc:
            raise VideoDecodeError(f"{self.path}: decoding failed ({exc.__class__.__name__}: {exc})") from None
        return out

    def first_damaged_frame(self) -> tuple[int, str] | None:
        """Decode every frame (without colour conversion): the first frame that is missing or does not
        decode, and why; None when every frame decodes. Damaged data inside a file often decodes
        without an error but loses frames, which the timestamps show."""
        expected = 0
        try:
            self._container.seek(self._start_pts, stream=self._stream, backward=True, any_frame=False)
            for frame in self._container.decode(self._stream):
                self.frames_decoded += 1
                index = self._pts_to_index(frame.pts)
                index = expected if index is None else index
                if index > expected:
                    return expected, f"frames {expected}..{index - 1} are missing (damaged data)"
                expected = max(expected, index + 1)
        except (av.FFmpegError, OSError) as exc:
            return expected, f"does not decode ({getattr(exc, 'strerror', None) or exc.__class__.__name__})"
        if self.num_frames - expected > END_TOLERANCE:
            return expected, f"decoding stops after {expected} of the {self.num_frames} frames"
        return None

    def _decode_from_start(self, wanted: list[int]) -> dict[int, np.ndarray]:
        """Slow path: decode from frame 0 and count frames instead of trusting timestamps."""
        wanted_set, last = set(wanted), wanted[-1]
        out: dict[int, np.ndarray] = {}
        self._container.seek(self._start_pts, stream=self._stream, backward=True, any_frame=False)
        for index, frame in enumerate(self._container.decode(self._stream)):
            self.frames_decoded += 1
            if index in wanted_set:
                out[index] = self._rgb(frame)
            if index >= last:
                break
        return out
