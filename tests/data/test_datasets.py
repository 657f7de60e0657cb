"""Split readers on small generated UCF101 / HMDB51 / folder trees, including broken split files."""

from __future__ import annotations

import logging

import pytest

from conftest import write_index_video, write_ucf_layout
from vidkd.config import load_config
from vidkd.data.datasets import LOADERS, detect_layout, group_of, load_split, probe_videos
from vidkd.data.records import ON_DISK
from vidkd.data.video import VideoInfo
from vidkd.errors import DatasetError
from vidkd.layout_specs import LAYOUT_SPECS, LAYOUTS

CLASSES = {"ApplyEyeMakeup": 1, "Basketball": 2, "CliffDiving": 3}


@pytest.fixture
def ucf(tmp_path):
    write_ucf_layout(tmp_path, CLASSES, groups=3, clips=2, num_frames=4)
    return tmp_path


def write_hmdb(root, classes=("brush_hair", "cartwheel"), videos=4):
    for name in classes:
        lines = []
        for k in range(videos):
            video = f"{name}_clip{k}.avi"
            write_index_video(root / "videos" / name / video, 4, 32, 48)
            lines.append(f"{video} {[1, 2, 0, 1][k % 4]} \n")  # the official files end lines with a space
        for s in (1, 2, 3):
            (root / "splits").mkdir(parents=True, exist_ok=True)
            (root / "splits" / f"{name}_test_split{s}.txt").write_text("".join(lines))


def test_ucf101_train_and_test(ucf):
    assert detect_layout(ucf) == "ucf101"
    train = load_split(ucf, "train", split=1)
    test = load_split(ucf, "test", split=1)
    assert train.class_names == ["ApplyEyeMakeup", "Basketball", "CliffDiving"]
    assert train.layout == "ucf101" and len(train) == 3 * 2 * 2 and len(test) == 3 * 1 * 2
    for record in train.records + test.records:
        assert record.path.is_file()
        assert train.class_names[record.label] in record.path.name  # 0-based label from classInd
    assert {r.group for r in train.records} == {"g02", "g03"} and {r.group for r in test.records} == {"g01"}


def test_ucf101_labels_follow_class_index_not_alphabet(tmp_path):
    write_ucf_layout(tmp_path, {"Zebra": 1, "Apple": 2}, groups=2, clips=1, num_frames=2)
    split = load_split(tmp_path, "test")
    assert split.class_names == ["Zebra", "Apple"]
    assert {r.path.parent.name: r.label for r in split.records} == {"Zebra": 0, "Apple": 1}


def test_ucf101_missing_split_file(ucf):
    (ucf / "splits" / "trainlist02.txt").unlink()
    load_split(ucf, "train", split=1)
    with pytest.raises(DatasetError, match="trainlist02.txt"):
        load_split(ucf, "train", split=2)


def test_ucf101_label_disagrees_with_folder(ucf):
    path = ucf / "splits" / "trainlist01.txt"
    lines = path.read_text().splitlines()
    lines[2] = lines[2].rsplit(" ", 1)[0] + " 3"
    path.write_text("\n".join(lines))
    with pytest.raises(DatasetError, match=r"trainlist01.txt:3: label 3 disagrees"):
        load_split(ucf, "train")


def test_ucf101_class_not_in_class_index(ucf):
    path = ucf / "splits" / "testlist01.txt"
    path.write_text(path.read_text() + "Skiing/v_Skiing_g01_c01.avi\n")
    with pytest.raises(DatasetError, match="'Skiing' is not in classInd.txt"):
        load_split(ucf, "test")


def test_ucf101_malformed_lines(ucf):
    (ucf / "splits" / "classInd.txt").write_text("1 ApplyEyeMakeup\nBasketball\n")
    with pytest.raises(DatasetError, match=r"classInd.txt:2"):
        load_split(ucf, "train")


def test_ucf101_missing_videos_warn_then_fail(ucf, caplog):
    videos = sorted((ucf / "videos").rglob("*_g02_*.avi"))
    videos[0].unlink()
    with caplog.at_level(logging.WARNING, logger="vidkd.data"):
        split = load_split(ucf, "train")
    assert len(split) == 11 and len(split.missing) == 1
    assert "1 of 12 listed train videos are missing" in caplog.text
    for video in sorted((ucf / "videos").rglob("*_g03_*.avi")) + videos[1:3]:
        video.unlink()  # 9 of the 12 train videos are gone now
    with pytest.raises(DatasetError, match="not under"):
        load_split(ucf, "train")


def test_hmdb51(tmp_path):
    write_hmdb(tmp_path)
    assert detect_layout(tmp_path) == "hmdb51"
    train = load_split(tmp_path, "train", split=2)
    test = load_split(tmp_path, "test", split=2)
    assert train.class_names == ["brush_hair", "cartwheel"]
    assert sorted(r.path.name for r in train.records if r.label == 0) == ["brush_hair_clip0.avi", "brush_hair_clip3.avi"]
    assert [r.path.name for r in test.records] == ["brush_hair_clip1.avi", "cartwheel_clip1.avi"]
    assert all(r.group == r.path.stem for r in train.records)


def test_hmdb51_bad_line_and_missing_split(tmp_path):
    write_hmdb(tmp_path)
    (tmp_path / "splits" / "cartwheel_test_split1.txt").write_text("cartwheel_clip0.avi 7\n")
    with pytest.raises(DatasetError, match="cartwheel_test_split1.txt:1"):
        load_split(tmp_path, "train", split=1)
    for f in (tmp_path / "splits").glob("*_split3.txt"):
        f.unlink()
    with pytest.raises(DatasetError, match="_test_split3.txt"):
        load_split(tmp_path, "train", split=3, layout="hmdb51")


def test_folder_layout_group_aware_holdout(tmp_path):
    for name in ("jump", "walk"):
        for g in range(1, 11):
            for c in range(1, 3):
                write_index_video(tmp_path / name / f"v_{name}_g{g:02d}_c{c:02d}.mp4", 2, 32, 48)
    (tmp_path / "walk" / "notes.txt").write_text("not a video")
    assert detect_layout(tmp_path) == "folder"
    held_out = []
    for split in (1, 2, 3):
        train = load_split(tmp_path, "train", split=split, seed=0)
        test = load_split(tmp_path, "test", split=split, seed=0)
        assert train.class_names == ["jump", "walk"]
        assert len(train) + len(test) == 40 and len(test) == 2 * 3 * 2  # 30% of 10 groups per class
        train_groups = {(r.label, r.group) for r in train.records}
        test_groups = {(r.label, r.group) for r in test.records}
        assert not train_groups & test_groups
        held_out.append(test_groups)
        assert [r.path for r in load_split(tmp_path, "test", split=split, seed=0).records] == [r.path for r in test.records]
    assert held_out[0] != held_out[1] or held_out[1] != held_out[2]


def test_group_of():
    assert group_of("v_Run_g08_c01.avi") == "g08"
    assert group_of("person12_boxing.mp4") == "person12_boxing"


def test_not_a_dataset(tmp_path):
    with pytest.raises(DatasetError, match="no dataset found"):
        detect_layout(tmp_path)
    with pytest.raises(DatasetError, match="not a directory"):
        load_split(tmp_path / "nope")
    with pytest.raises(DatasetError, match="subset"):
        load_split(tmp_path, subset="val")


def test_probe_videos_reports_failures_and_uses_cache(tmp_path):
    good = write_index_video(tmp_path / "good.avi", 10, 32, 48)
    bad = tmp_path / "bad.avi"
    bad.write_bytes(b"")
    cache = tmp_path / "cache"
    first = probe_videos([good, bad], cache_dir=cache)
    assert first[good] == VideoInfo(10, 32, 48, 25.0) and "empty" in first[bad]
    assert (cache / "probes.json").is_file()
    second = probe_videos([good, bad], cache_dir=cache)
    assert second == first
    write_index_video(good, 12, 32, 48)  # a changed file is probed again
    assert probe_videos([good], cache_dir=cache)[good].num_frames == 12


def test_every_registered_layout_has_one_loader_and_the_config_and_cli_take_it():
    assert tuple(LOADERS) == LAYOUTS and set(ON_DISK) == set(LAYOUTS) - {"folder"}
    for layout in LAYOUTS:
        assert load_config(None, [f"data.layout={layout}"]).data.layout == layout
    one_split = [name for name, spec in LAYOUT_SPECS.items() if spec.one_split]
    assert one_split == ["kinetics", "ssv2"]
