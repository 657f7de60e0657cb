"""Decoding returns exactly the requested frames, seeks to the right keyframe, and fails cleanly."""

from __future__ import annotations

import av
import numpy as np
import pytest

from conftest import decode_index, index_frame, write_index_video
from vidkd.data.video import VideoReader, probe_video, write_video
from vidkd.errors import VideoDecodeError


def read_indices(path, indices):
    with VideoReader(path) as reader:
        return [decode_index(f) for f in reader.read(indices)], reader


def test_index_encoding_roundtrip():
    assert all(decode_index(index_frame(i)) == i for i in range(256))


def test_probe(index_video):
    info = probe_video(index_video)
    assert (info.num_frames, info.height, info.width, info.fps) == (150, 64, 96, 25.0)


@pytest.mark.parametrize("indices", [
    list(range(17, 33)),  # starts mid-GOP (keyframes every 12)
    list(range(0, 16)),
    list(range(134, 150)),  # up to the very last frame
    [12],  # exactly on a keyframe
    [11],  # just before one
    [100, 5, 5, 63, 17],  # unsorted, with a duplicate
    list(range(40, 56)) + list(range(64, 80)) + list(range(88, 104)),  # a PCL tuple with gaps
])
def test_read_returns_requested_frames(index_video, indices):
    assert read_indices(index_video, indices)[0] == indices


def test_read_decodes_only_from_the_keyframe_before(index_video):
    with VideoReader(index_video) as reader:
        frames = reader.read(range(17, 33))
        assert frames.shape == (16, 64, 96, 3) and frames.dtype == np.uint8
        assert reader.frames_decoded == 33 - 12  # keyframe 12 .. frame 32
        reader.read([149])
        assert reader.frames_decoded == 21 + (150 - 144)  # keyframe 144 .. 149
        assert [decode_index(f) for f in reader.read([3, 2])] == [3, 2]  # seeking backwards works too


@pytest.mark.parametrize("ext, codec", [("mp4", "mpeg4"), ("mkv", "mpeg4"), ("mp4", "libx264")])
def test_other_containers(tmp_path, ext, codec):
    """mkv has no frame count in its header; H.264 reorders frames (B-frames)."""
    if codec not in av.codecs_available:
        pytest.skip(f"FFmpeg build without {codec}")
    path = write_index_video(tmp_path / f"v.{ext}", 60, codec=codec)
    assert probe_video(path).num_frames == 60
    indices = list(range(29, 45)) + [59]
    assert read_indices(path, indices)[0] == indices


def test_out_of_range_index(index_video):
    with VideoReader(index_video) as reader, pytest.raises(IndexError):
        reader.read([150])


def test_zero_byte_garbage_and_missing(tmp_path):
    empty = tmp_path / "empty.avi"
    empty.write_bytes(b"")
    garbage = tmp_path / "garbage.avi"
    garbage.write_bytes(np.random.default_rng(0).integers(0, 256, 20000, dtype=np.uint8).tobytes())
    for path in (empty, garbage, tmp_path / "absent.avi"):
        with pytest.raises(VideoDecodeError, match=path.name):
            probe_video(path)
        with pytest.raises(VideoDecodeError):
            VideoReader(path)


def test_no_video_stream(tmp_path):
    path = tmp_path / "audio.wav"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("pcm_s16le", rate=8000)
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 800), np.int16), format="s16", layout="mono")
        frame.sample_rate = 8000
        for packet in stream.encode(frame):
            container.mux(packet)
    with pytest.raises(VideoDecodeError, match="no video stream"):
        probe_video(path)


@pytest.mark.parametrize("fraction", [0.3, 0.5, 0.77, 0.9])
def test_truncated_file_counts_only_real_frames(tmp_path, fraction):
    """A cut file either fails to open (VideoDecodeError) or reports only frames that decode."""
    path = write_index_video(tmp_path / "full.avi", 120)
    cut = tmp_path / "cut.avi"
    cut.write_bytes(path.read_bytes()[: int(path.stat().st_size * fraction)])
    try:
        num_frames = probe_video(cut).num_frames
    except VideoDecodeError:
        assert fraction < 0.5  # only a cut through the header may make it unreadable
        return
    if fraction == 0.5:
        assert num_frames < 120  # the header still says 120; the count must not
    last = list(range(num_frames - 5, num_frames))
    assert read_indices(cut, last)[0] == last


def test_multiple_reads_on_one_reader_and_close(index_video):
    reader = VideoReader(index_video)
    for start in (90, 10, 130, 0):
        assert [decode_index(f) for f in reader.read(range(start, start + 8))] == list(range(start, start + 8))
    reader.close()
    with pytest.raises(ValueError):
        reader.read([0])


def test_write_video_roundtrip_colours(tmp_path):
    frames = [np.full((32, 48, 3), (200, 40, 90), np.uint8)] * 5
    write_video(tmp_path / "c.avi", frames)
    with VideoReader(tmp_path / "c.avi") as reader:
        decoded = reader.read(range(5))
    assert np.abs(decoded.astype(int) - frames[0]).mean() < 6
