"""The synthetic action dataset: UCF101 layout, actor-disjoint splits, determinism, real videos."""

from __future__ import annotations

import json
import re
from pathlib import Path

import av
import numpy as np
import pytest

from vidkd.synthetic import (CLASS_NAMES, class_names, format_summary, held_out_groups, render_clip,
                             write_synthetic_dataset)
from vidkd.errors import DatasetError, VidkdError
from conftest import write_ucf_layout

TINY = dict(classes=3, groups=3, clips_per_group=1, frames=40, size=(64, 48), progress=False)
CLASSES = list(CLASS_NAMES[:3])


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("synthetic") / "data"
    return root, write_synthetic_dataset(root, seed=0, **TINY)


def _lines(path: Path) -> list[str]:
    return path.read_text().splitlines()


def _group(relative_path: str) -> int:
    return int(re.search(r"_g(\d\d)_c\d\d\.avi$", relative_path).group(1))


def test_layout_and_split_files_match_ucf101(dataset):
    root, summary = dataset
    videos = sorted(str(p.relative_to(root / "videos")) for p in (root / "videos").rglob("*") if p.is_file())
    expected = sorted(f"{c}/v_{c}_g{g:02d}_c01.avi" for c in CLASSES for g in (1, 2, 3))
    assert videos == expected
    assert sorted(p.name for p in (root / "splits").iterdir()) == sorted(
        ["classInd.txt"] + [f"{kind}list0{s}.txt" for kind in ("train", "test") for s in (1, 2, 3)])
    assert _lines(root / "splits" / "classInd.txt") == [f"{i} {c}" for i, c in enumerate(CLASSES, start=1)]

    for split in (1, 2, 3):
        train = _lines(root / "splits" / f"trainlist0{split}.txt")
        test = _lines(root / "splits" / f"testlist0{split}.txt")
        for line in train:
            path, label = line.split(" ")
            assert re.fullmatch(r"(\w+)/v_\1_g\d\d_c\d\d\.avi", path)
            assert CLASSES[int(label) - 1] == path.split("/")[0]  # labels are 1-based, as classInd
        for line in test:
            assert re.fullmatch(r"(\w+)/v_\1_g\d\d_c\d\d\.avi", line)  # no label, as UCF101
        assert sorted([line.split(" ")[0] for line in train] + test) == expected
        assert summary["splits"][split]["train"] == len(train) and summary["splits"][split]["test"] == len(test)

    stored = json.loads((root / "synthetic.json").read_text())["parameters"]
    assert stored["classes"] == CLASSES and stored["frames"] == 40 and stored["size"] == [64, 48]


def test_train_and_test_never_share_an_actor(dataset):
    root, _ = dataset
    tested = set()
    for split in (1, 2, 3):
        train_groups = {_group(line.split(" ")[0]) for line in _lines(root / "splits" / f"trainlist0{split}.txt")}
        test_groups = {_group(line) for line in _lines(root / "splits" / f"testlist0{split}.txt")}
        assert train_groups and test_groups and not train_groups & test_groups
        tested |= test_groups
    assert tested == {1, 2, 3}  # the three splits rotate the held-out actor


def test_held_out_groups_follow_ucf101_rotation():
    assert [held_out_groups(8, s) for s in (1, 2, 3)] == [[1, 2], [3, 4], [5, 6]]
    assert [held_out_groups(25, s) for s in (1, 2, 3)] == [[1, 2, 3, 4, 5, 6], [7, 8, 9, 10, 11, 12],
                                                            [13, 14, 15, 16, 17, 18]]


def test_videos_decode_to_requested_frames_and_size(dataset):
    root, _ = dataset
    for path in (root / "videos").rglob("*.avi"):
        with av.open(str(path)) as container:
            frames = [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]
        assert len(frames) == 40
        assert frames[0].shape == (48, 64, 3)


def test_same_seed_gives_identical_bytes_and_other_seed_differs(dataset, tmp_path):
    root, _ = dataset
    files = sorted(p.relative_to(root) for p in root.rglob("*") if p.is_file())
    for workers in (1, 3):  # in this process, and one worker process per actor
        again = tmp_path / f"again{workers}"
        write_synthetic_dataset(again, seed=0, workers=workers, **TINY)
        assert files == sorted(p.relative_to(again) for p in again.rglob("*") if p.is_file())
        for relative in files:
            assert (root / relative).read_bytes() == (again / relative).read_bytes(), (workers, relative)

    other = tmp_path / "other"
    write_synthetic_dataset(other, seed=1, **TINY)
    video = Path("videos") / CLASSES[0] / f"v_{CLASSES[0]}_g01_c01.avi"
    assert (root / video).read_bytes() != (other / video).read_bytes()


def test_a_clip_does_not_depend_on_how_many_clips_are_written():
    few = np.stack(list(render_clip(1, group=2, clip=1, frames=12, size=(64, 48), seed=3)))
    again = np.stack(list(render_clip(1, group=2, clip=1, frames=12, size=(64, 48), seed=3)))
    other_clip = np.stack(list(render_clip(1, group=2, clip=2, frames=12, size=(64, 48), seed=3)))
    assert np.array_equal(few, again)
    assert not np.array_equal(few, other_clip)


def test_existing_directory_is_reused_refused_or_replaced(dataset, tmp_path):
    root, _ = dataset
    video = root / "videos" / CLASSES[0] / f"v_{CLASSES[0]}_g01_c01.avi"
    before = video.stat().st_mtime_ns
    summary = write_synthetic_dataset(root, seed=0, **TINY)
    assert summary["reused"] and video.stat().st_mtime_ns == before
    assert "reused" in format_summary(summary)

    with pytest.raises(DatasetError, match="--overwrite"):
        write_synthetic_dataset(root, seed=5, **TINY)  # other parameters, same directory

    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "notes.txt").write_text("mine")
    for overwrite in (False, True):  # not vidkd's: refused, --overwrite or not
        with pytest.raises(DatasetError, match="was not written by `vidkd synth`"):
            write_synthetic_dataset(busy, overwrite=overwrite, **TINY)
    assert sorted(p.name for p in busy.iterdir()) == ["notes.txt"]


def test_overwrite_removes_only_what_vidkd_wrote(tmp_path):
    """`vidkd synth --overwrite` pointed at a real dataset deletes nothing; on a synthetic one it keeps the
    user's own files."""
    real = tmp_path / "ucf101"
    write_ucf_layout(real, {"Wave": 0}, groups=1, clips=1, num_frames=8)
    before = sorted(p.relative_to(real) for p in real.rglob("*"))
    with pytest.raises(DatasetError, match="was not written by `vidkd synth`"):
        write_synthetic_dataset(real, overwrite=True, **TINY)
    assert sorted(p.relative_to(real) for p in real.rglob("*")) == before

    root = tmp_path / "synthetic"
    small = dict(TINY, classes=2, groups=2, frames=16)
    write_synthetic_dataset(root, **small)
    mine = [root / "videos" / CLASSES[0] / "my_clip.avi", root / "splits" / "my_split.txt", root / "README"]
    for path in mine:
        path.write_text("mine")
    summary = write_synthetic_dataset(root, overwrite=True, **dict(small, seed=3))
    assert not summary["reused"] and all(path.read_text() == "mine" for path in mine)
    assert len(list((root / "videos").rglob("v_*.avi"))) == 4  # 2 actions x 2 actors x 1 clip


@pytest.mark.parametrize("bad", [dict(classes=len(CLASS_NAMES) + 1), dict(classes=1), dict(groups=1),
                                 dict(clips_per_group=0), dict(frames=4), dict(size=(65, 48)), dict(size=(16, 16))])
def test_impossible_settings_raise_a_clear_error(bad, tmp_path):
    with pytest.raises(VidkdError):
        write_synthetic_dataset(tmp_path / "x", **dict(TINY, **bad))
    assert not (tmp_path / "x").exists()


def test_summary_says_what_was_written_and_what_to_run_next(dataset):
    root, summary = dataset
    text = format_summary(summary)
    assert str(root) in text and f"vidkd data check {root}" in text
    assert "64x48" in text and "40 frames" in text and all(name in text for name in CLASSES)


def test_enough_class_names_are_defined():
    names = class_names(12)
    assert len(set(names)) == 12 and all(re.fullmatch(r"[A-Z][A-Za-z]+", n) for n in names)


def _lower_body_motion_share(class_name: str) -> float:
    """The share of frame-to-frame change in the lower part of the frame, over three actors."""
    shares = []
    for group in (1, 2, 3):
        video = np.stack(list(render_clip(CLASS_NAMES.index(class_name), group, 1, 40, (64, 48), seed=0)))
        change = np.abs(np.diff(video.astype(np.float32).mean(-1), axis=0))
        per_row = np.where(change > 20, change, 0).sum(axis=(0, 2))
        shares.append(per_row[int(0.65 * 48):].sum() / per_row.sum())
    return float(np.mean(shares))


def test_classes_differ_in_where_the_figure_moves():
    # Kicks move the legs, waves move one arm: the same actors and the same kind of clips, yet
    # the frame differences sit lower in the frame for kicks.
    assert _lower_body_motion_share("Kick") > _lower_body_motion_share("Wave") + 0.05
