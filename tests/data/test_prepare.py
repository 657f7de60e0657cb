"""`vidkd data prepare`: real small videos re-encoded at a smaller size, resumed, and checked frame by frame."""

from __future__ import annotations

import errno
import shutil
from fractions import Fraction
from pathlib import Path

import av
import pytest

from conftest import decode_index, index_frame, write_index_video, write_ucf_layout
from vidkd.data.datasets import load_split
from vidkd.data.prepare import (MANIFEST, EncodeSettings, _verify, encode_video, format_summary, prepare_dataset,
                                target_size)
from vidkd.data.video import VideoReader, probe_video
from vidkd.errors import DatasetError, VideoDecodeError

CLASSES = {"Run": 1, "Jump": 2}
FRAMES, HEIGHT, WIDTH = 70, 64, 96  # prepared at short side 32: 48x32
SHORT, GOP = 32, 16


def _videos(root: Path) -> list[Path]:
    return sorted(p.relative_to(root) for p in (root / "videos").rglob("*.avi"))


def _leftovers(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.name.endswith(".part")]


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> Path:
    """A UCF101 tree: 2 classes x 2 groups x 2 clips of 70 index frames at 96x64."""
    root = tmp_path_factory.mktemp("prepare") / "ucf"
    write_ucf_layout(root, CLASSES, groups=2, clips=2, num_frames=FRAMES, height=HEIGHT, width=WIDTH)
    (root / "splits" / "README.txt").write_text("any other file of splits/ is copied too\n")
    return root


@pytest.fixture(scope="module")
def prepared(source):
    dst = source.parent / "ucf_32"
    summary = prepare_dataset(source, dst, EncodeSettings(short_side=SHORT, gop=GOP), workers=1, progress=False)
    return dst, summary


@pytest.fixture
def src_copy(source, tmp_path) -> Path:
    return Path(shutil.copytree(source, tmp_path / "ucf"))


def test_layout_split_files_and_sizes(source, prepared):
    dst, summary = prepared
    assert (summary.prepared, summary.skipped_existing, summary.failed) == (8, 0, [])
    assert summary.copied_files == 8  # classInd, 3 train + 3 test lists, README
    for name in sorted(p.name for p in (source / "splits").iterdir()):
        assert (dst / "splits" / name).read_bytes() == (source / "splits" / name).read_bytes()
    assert _videos(dst) == _videos(source)
    assert summary.bytes_before == sum((source / v).stat().st_size for v in _videos(source))
    assert summary.bytes_after == sum((dst / v).stat().st_size for v in _videos(dst)) < summary.bytes_before
    assert (dst / MANIFEST).is_file() and not _leftovers(dst)
    for rel in _videos(dst):
        before, after = probe_video(source / rel), probe_video(dst / rel)
        assert (after.width, after.height) == (48, 32)
        assert after.num_frames == before.num_frames == FRAMES and after.fps == before.fps == 25
    text = format_summary(summary)
    assert "8 prepared, 0 already done, 0 failed" in text and "mpeg4 (.avi)" in text


def _records(split) -> list[tuple]:
    return sorted((r.path.relative_to(split.root), r.label, r.group) for r in split.records)


def test_load_split_gives_the_same_records(source, prepared):
    dst, _ = prepared
    for subset in ("train", "test"):
        a, b = load_split(source, subset), load_split(dst, subset)
        assert a.class_names == b.class_names and b.layout == "ucf101"
        assert _records(a) == _records(b) and len(b.records) == 4


def test_every_frame_keeps_its_index_and_keyframes_are_gop_apart(prepared):
    dst, _ = prepared
    path = dst / "videos/Jump/v_Jump_g02_c01.avi"
    with VideoReader(path, threads=False) as reader:
        assert [decode_index(f) for f in reader.read(range(FRAMES))] == list(range(FRAMES))
        for start in (5, 33, 54):  # a random-access clip, as training reads it
            reader.frames_decoded = 0
            clip = reader.read(list(range(start, start + 16)))
            assert [decode_index(f) for f in clip] == list(range(start, start + 16))
            assert reader.frames_decoded == start + 16 - (start // GOP) * GOP  # from the keyframe before
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        keyframes = [i for i, packet in enumerate(container.demux(stream)) if packet.size and packet.is_keyframe]
    assert keyframes == list(range(0, FRAMES, GOP))


def test_rerun_skips_finished_videos_and_redoes_a_deleted_one(src_copy, tmp_path):
    dst = tmp_path / "out"
    first = prepare_dataset(src_copy, dst, EncodeSettings(short_side=SHORT, gop=GOP), workers=2, progress=False)
    assert (first.prepared, first.skipped_existing) == (8, 0)
    stamps = {v: (dst / v).stat().st_mtime_ns for v in _videos(dst)}

    calls = []
    again = prepare_dataset(src_copy, dst, EncodeSettings(short_side=SHORT, gop=GOP), workers=1, progress=False,
                            on_progress=lambda done, total: calls.append((done, total)))
    assert (again.prepared, again.skipped_existing, again.copied_files) == (0, 8, 0)
    assert calls[-1] == (8, 8) and len(calls) == 8
    assert again.bytes_after == first.bytes_after

    # an interrupted run: one video never finished, a temporary file left next to it
    gone = Path("videos/Run/v_Run_g01_c02.avi")
    (dst / gone).unlink()
    (dst / gone.parent / f".{gone.name}.12345.part").write_bytes(b"half a video")
    third = prepare_dataset(src_copy, dst, EncodeSettings(short_side=SHORT, gop=GOP), workers=1, progress=False)
    assert (third.prepared, third.skipped_existing) == (1, 7)
    assert probe_video(dst / gone).num_frames == FRAMES and not _leftovers(dst)
    assert all((dst / v).stat().st_mtime_ns == t for v, t in stamps.items() if v != gone)

    with pytest.raises(DatasetError, match="other settings"):
        prepare_dataset(src_copy, dst, EncodeSettings(short_side=48), progress=False)


def test_corrupted_sources_are_skipped_and_listed(src_copy, tmp_path):
    good = (src_copy / "videos/Run/v_Run_g01_c01.avi").read_bytes()
    (src_copy / "videos/Run/v_Run_g03_c01.avi").write_bytes(b"RIFF" + bytes(range(256)) * 40)  # not a video
    (src_copy / "videos/Jump/v_Jump_g03_c01.avi").write_bytes(good[: len(good) * 6 // 10])  # cut short
    (src_copy / "videos/Jump/v_Jump_g03_c02.avi").write_bytes(b"")
    dst = tmp_path / "out"
    summary = prepare_dataset(src_copy, dst, EncodeSettings(short_side=SHORT), workers=1, progress=False)
    assert summary.prepared == 8
    failed = dict(summary.failed)
    assert sorted(failed) == ["videos/Jump/v_Jump_g03_c01.avi", "videos/Jump/v_Jump_g03_c02.avi",
                              "videos/Run/v_Run_g03_c01.avi"]
    assert "cut short" in failed["videos/Jump/v_Jump_g03_c01.avi"]
    assert "empty" in failed["videos/Jump/v_Jump_g03_c02.avi"]
    assert all("\n" not in reason and str(src_copy) not in reason for reason in failed.values())
    assert not any((dst / rel).exists() for rel in failed) and not _leftovers(dst)
    assert "failed videos (3, not in DST):" in format_summary(summary)


def test_refuses_dst_inside_or_equal_to_src_and_a_non_dataset(source, tmp_path):
    for dst in (source / "prepared", source, source / "videos"):
        with pytest.raises(DatasetError, match="choose") as err:
            prepare_dataset(source, dst, progress=False)
        assert "\n" not in str(err.value)
    assert not (source / "prepared").exists() and not (source / MANIFEST).exists()
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "a.txt").write_text("no videos")
    with pytest.raises(DatasetError, match="no dataset found"):
        prepare_dataset(tmp_path / "notes", tmp_path / "out", progress=False)
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "mine.txt").write_text("someone else's files")
    with pytest.raises(DatasetError, match="not empty"):
        prepare_dataset(source, tmp_path / "busy", progress=False)


def test_folder_layout_mp4_keeps_aspect_and_frame_rate(tmp_path):
    src = tmp_path / "clips"
    videos = [(src / "walk" / "a_g01.mp4", 40), (src / "walk" / "b_g02.mp4", 36), (src / "sit" / "c_g01.mp4", 33)]
    for path, n in videos:
        path.parent.mkdir(parents=True, exist_ok=True)
        with av.open(str(path), "w") as container:  # 29.97 fps, 100x60 (5:3)
            stream = container.add_stream("mpeg4", rate=Fraction(30000, 1001))
            stream.width, stream.height, stream.pix_fmt = 100, 60, "yuv420p"
            for i in range(n):
                for packet in stream.encode(av.VideoFrame.from_ndarray(index_frame(i, 60, 100), format="rgb24")):
                    container.mux(packet)
            for packet in stream.encode():
                container.mux(packet)
    dst = tmp_path / "clips_small"
    summary = prepare_dataset(src, dst, EncodeSettings(short_side=24), workers=1, progress=False)
    assert summary.layout == "folder" and summary.prepared == 3 and not summary.failed
    assert target_size(100, 60, 24) == (40, 24) and target_size(320, 240, 128) == (170, 128)
    for path, n in videos:
        info = probe_video(dst / path.relative_to(src))
        assert (info.width, info.height, info.num_frames) == (40, 24, n)
        assert info.fps == pytest.approx(30000 / 1001)
    with VideoReader(dst / "walk" / "a_g01.mp4", threads=False) as reader:
        assert [decode_index(f) for f in reader.read(range(20, 36))] == list(range(20, 36))
    for subset in ("train", "test"):
        a, b = load_split(src, subset), load_split(dst, subset)
        assert [(r.path.relative_to(src), r.label) for r in a.records] == \
            [(r.path.relative_to(dst), r.label) for r in b.records]


def test_the_output_check_catches_shifted_timestamps(tmp_path):
    """H.264 in AVI decodes with timestamps one frame late in FFmpeg: the check must refuse it."""
    path = tmp_path / "h264.avi"
    with av.open(str(path), "w", format="avi") as container:
        stream = container.add_stream("libx264" if "libx264" in av.codecs_available else "h264", rate=25)
        stream.width, stream.height, stream.pix_fmt = 48, 32, "yuv420p"
        stream.codec_context.max_b_frames = 0
        for i in range(20):
            for packet in stream.encode(av.VideoFrame.from_ndarray(index_frame(i, 32, 48), format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    with pytest.raises(VideoDecodeError, match="timestamp"):
        _verify(path, 20, (48, 32), Fraction(25))
    with pytest.raises(DatasetError, match="shifted"):
        encode_video(write_index_video(tmp_path / "a.avi", 4), tmp_path / "b.avi", EncodeSettings(codec="libx264"))


def test_a_full_disk_is_an_os_error_with_enospc(tmp_path):
    """/dev/full: what prepare_dataset reports as 'no space left on device' (and stops on)."""
    if not Path("/dev/full").exists():
        pytest.skip("no /dev/full")
    src = write_index_video(tmp_path / "a.avi", 30)
    with pytest.raises(OSError) as err:
        encode_video(src, "/dev/full", EncodeSettings(short_side=SHORT), suffix=".avi")
    assert err.value.errno == errno.ENOSPC
