"""Kinetics and Something-Something v2 layouts (vidkd.data.layouts through load_split), on small real trees."""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path

import pytest

from conftest import write_index_video, write_ucf_layout
from vidkd.data.check import check_dataset, format_report
from vidkd.data.datasets import detect_layout, load_split, probe_videos, with_frame_counts
from vidkd.data.video import VideoInfo
from vidkd.errors import DatasetError

FRAMES = 6

# label, youtube_id, start, end; the labels as the official CSVs write them (quotes around a comma)
KINETICS_TRAIN = [
    ('"dancing, ballet"', "Ab-c_d1", 14, 24),
    ("massaging person's head", "xY_9-zz", 0, 10),
    ("abseiling", "--GkrdYZ9Tc", 112, 122),
    ('"dancing, ballet"', "q1w2e3r4t5y", 5, 15),
    ("abseiling", "MISSING0001", 30, 40),  # not on disk
]
KINETICS_VAL = [("massaging person's head", "vvvvvvvvvv1", 3, 13), ("abseiling", "vvvvvvvvvv2", 0, 10)]
CLASSES = ["abseiling", "dancing, ballet", "massaging person's head"]  # sorted


@pytest.fixture(scope="module")
def source_videos(tmp_path_factory) -> dict[str, Path]:
    """One real short video per container; the trees below hold hard links to them (fast)."""
    folder = tmp_path_factory.mktemp("sources")
    return {".mp4": write_index_video(folder / "v.mp4", FRAMES, 32, 48),
            ".webm": write_index_video(folder / "v.webm", FRAMES, 32, 48, codec="libvpx-vp9")}


def place(source: Path, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(source, path)
    except OSError:
        shutil.copyfile(source, path)


def csv_text(rows, header="label,youtube_id,time_start,time_end,split,is_cc", split="train") -> str:
    lines = [header] + [f"{label},{yid},{start},{end},{split},0" for label, yid, start, end in rows]
    return "\r\n".join(lines) + "\r\n"


def write_kinetics(root: Path, videos: dict[str, Path], form: str = "nested", ext: str = ".mp4") -> Path:
    """form: 'nested' (videos/<split>/<label>/), 'flat' (videos/<split>/) or 'root' (all in videos/)."""
    (root / "annotations").mkdir(parents=True)
    (root / "annotations" / "train.csv").write_bytes(b"\xef\xbb\xbf" + csv_text(KINETICS_TRAIN).encode())
    (root / "annotations" / "validate.csv").write_text(csv_text(KINETICS_VAL, split="validate"))
    for split, rows in (("train", KINETICS_TRAIN), ("validate", KINETICS_VAL)):
        for label, yid, start, end in rows:
            if yid.startswith("MISSING"):
                continue
            name = f"{yid}_{start:06d}_{end:06d}{ext}"
            folder = {"nested": root / "videos" / split / label.strip('"'), "flat": root / "videos" / split,
                      "root": root / "videos"}[form]
            place(videos[ext], folder / name)
    return root


@pytest.mark.parametrize("form", ["nested", "flat", "root"])
def test_kinetics_tree_in_each_form(tmp_path, source_videos, form, caplog):
    root = write_kinetics(tmp_path / "k400", source_videos, form)
    assert detect_layout(root) == "kinetics"
    with caplog.at_level(logging.INFO, logger="vidkd.data"):
        train = load_split(root, "train")
    assert train.layout == "kinetics" and train.class_names == CLASSES
    by_id = {r.group: r for r in train.records}
    assert sorted(by_id) == sorted(yid for _, yid, _, _ in KINETICS_TRAIN if not yid.startswith("MISSING"))
    for label, yid, start, end in KINETICS_TRAIN[:4]:
        record = by_id[yid]
        assert record.path.name == f"{yid}_{start:06d}_{end:06d}.mp4" and record.path.is_file()
        assert train.class_names[record.label] == label.strip('"')
    assert train.missing == ["abseiling/MISSING0001_000030_000040"]
    assert "kinetics train: 1 of 5 listed videos are missing on disk" in caplog.text
    assert "is_cc" not in caplog.text  # a known column: nothing to say
    test = load_split(root, "test")  # Kinetics' validation set, with train's class indices
    assert test.class_names == CLASSES and not test.missing
    assert {r.group: test.class_names[r.label] for r in test.records} == {
        "vvvvvvvvvv1": "massaging person's head", "vvvvvvvvvv2": "abseiling"}


def test_kinetics_other_extension_val_csv_and_youtube_id_names(tmp_path, source_videos):
    root = write_kinetics(tmp_path / "k", source_videos, "flat", ext=".webm")
    (root / "annotations" / "validate.csv").rename(root / "annotations" / "val.csv")
    (root / "videos" / "validate").rename(root / "videos" / "val")
    assert {r.path.suffix for r in load_split(root, "train").records} == {".webm"}
    assert len(load_split(root, "test")) == 2
    # files named by the youtube_id alone are found too
    video = root / "videos" / "val" / "vvvvvvvvvv1_000003_000013.webm"
    video.rename(video.with_name("vvvvvvvvvv1.webm"))
    assert {r.path.name for r in load_split(root, "test").records} == {"vvvvvvvvvv1.webm",
                                                                     "vvvvvvvvvv2_000000_000010.webm"}


def test_kinetics_unknown_column_is_ignored_with_one_log_line(tmp_path, source_videos, caplog):
    root = write_kinetics(tmp_path / "k", source_videos, "flat")
    rows = [(label, f"{yid},note {k}", start, end) for k, (label, yid, start, end) in enumerate(KINETICS_TRAIN)]
    (root / "annotations" / "train.csv").write_text(
        csv_text(rows, header="label,youtube_id,comment,time_start,time_end,split,is_cc").replace(",train,", ",train,"))
    with caplog.at_level(logging.INFO, logger="vidkd.data"):
        split = load_split(root, "train")
    assert len(split) == 4  # the columns are found by name, so the extra one shifts nothing
    lines = [r.getMessage() for r in caplog.records if "ignoring column" in r.getMessage()]
    assert len(lines) == 1 and "'comment'" in lines[0] and "train.csv" in lines[0]


def test_kinetics_missing_column_is_one_line_naming_file_and_columns(tmp_path, source_videos):
    root = write_kinetics(tmp_path / "k", source_videos, "flat")
    (root / "annotations" / "train.csv").write_text("label,youtube_id,time_start,split\nabseiling,x,1,train\n")
    with pytest.raises(DatasetError) as excinfo:
        load_split(root, "train")
    message = str(excinfo.value)
    assert "\n" not in message and "train.csv" in message and "time_end" in message
    assert "found columns: label, youtube_id, time_start, split" in message


def test_kinetics_bad_rows_name_the_line(tmp_path, source_videos):
    root = write_kinetics(tmp_path / "k", source_videos, "flat")
    train = root / "annotations" / "train.csv"
    good = csv_text(KINETICS_TRAIN)
    cases = [("abseiling,zzz,ten,20,train,0\r\n", "time_start 'ten'"),
             ("abseiling,zzz,1\r\n", "expected 6 fields"),
             ("abseiling,../../../etc/passwd,1,2,train,0\r\n", "leads outside"),
             ("new class,zzz,1,2,train,0\r\n", None)]
    for extra, expected in cases[:3]:
        train.write_text(good + "\r\n" + extra)  # a blank line, then the bad row: line 8
        with pytest.raises(DatasetError, match=f"train.csv:8: .*{expected}" if "passwd" not in extra else expected):
            load_split(root, "train")
    val = root / "annotations" / "validate.csv"
    train.write_text(good)
    val.write_text(csv_text(KINETICS_VAL) + "never seen,zzz,1,2,validate,0\r\n")
    with pytest.raises(DatasetError, match="validate.csv:4: label 'never seen' is not in train.csv"):
        load_split(root, "test")


def test_kinetics_split_must_be_one_and_validation_is_the_test_subset(tmp_path, source_videos):
    root = write_kinetics(tmp_path / "k", source_videos, "nested")
    with pytest.raises(DatasetError, match="one official split.*split must be 1, got 2"):
        load_split(root, "train", split=2)
    (root / "annotations" / "validate.csv").unlink()
    assert detect_layout(root) == "kinetics"
    with pytest.raises(DatasetError, match="validate.csv.*test set's labels are not public"):
        load_split(root, "test")


def test_kinetics_nothing_on_disk_is_an_error(tmp_path, source_videos):
    root = write_kinetics(tmp_path / "k", source_videos, "nested")
    shutil.rmtree(root / "videos" / "train")
    shutil.rmtree(root / "videos" / "validate")
    (root / "videos" / "train").mkdir()
    with pytest.raises(DatasetError, match="none of the 5 train videos listed in .*train.csv is under"):
        load_split(root, "train")


def test_kinetics_no_stat_per_row(tmp_path, monkeypatch):
    """Building the split lists each folder once; it does not stat each of its (here 3,000) videos."""
    root = tmp_path / "k"
    (root / "videos" / "train").mkdir(parents=True)
    (root / "annotations").mkdir()
    labels = [f'"{chr(122 - k)}, {k}"' if k % 3 else f"{chr(122 - k)} {k}" for k in range(26)]  # z.. a: not sorted
    rows = [(labels[k % 26], f"id{k:08d}", k % 300, k % 300 + 10) for k in range(3000)]
    (root / "annotations" / "train.csv").write_text(csv_text(rows))
    for _, yid, start, end in rows[:-7]:
        (root / "videos" / "train" / f"{yid}_{start:06d}_{end:06d}.mp4").touch()  # placeholders: not probed here
    calls = []
    real_stat = os.stat
    monkeypatch.setattr(os, "stat", lambda *a, **k: calls.append(a[0]) or real_stat(*a, **k))
    split = load_split(root, "train", layout="kinetics")
    assert len(split) == 2993 and len(split.missing) == 7
    assert split.class_names == sorted(label.strip('"') for label in labels)  # alphabetical, not as listed
    assert len(calls) < 20, calls[:30]


# --- Something-Something v2 ------------------------------------------------------------------------

SSV2_LABELS = {"Putting something into something": "0", "Pushing something from left to right": "1",
               "Pushing something from right to left": "2"}


def write_ssv2(root: Path, videos: dict[str, Path], folder: str = "videos") -> Path:
    root.mkdir(parents=True)
    (root / "labels.json").write_text(json.dumps(SSV2_LABELS, indent=1))
    train = [{"id": "78687", "label": "putting pen into cup", "template": "Putting [something] into [something]",
              "placeholders": ["pen", "cup"]},
             {"id": "42326", "label": "pushing a box from right to left",
              "template": "Pushing [something] from right to left", "placeholders": ["a box"]},
             {"id": "3", "label": "pushing a box from left to right",
              "template": "Pushing [something] from left to right", "placeholders": ["a box"]},
             {"id": "99999", "label": "gone", "template": "Pushing [something] from left to right",
              "placeholders": ["x"]}]  # not on disk
    val = [{"id": "1001", "label": "putting a coin into a jar", "template": "Putting [something] into [something]",
            "placeholders": ["a coin", "a jar"]}]
    (root / "train.json").write_bytes(b"\xef\xbb\xbf" + json.dumps(train, indent=2).encode())
    (root / "validation.json").write_text(json.dumps(val))
    for entry in train[:3] + val:
        place(videos[".webm"], root / folder / f"{entry['id']}.webm")
    return root


@pytest.mark.parametrize("folder", ["videos", "20bn-something-something-v2"])
def test_ssv2_tree(tmp_path, source_videos, folder, caplog):
    root = write_ssv2(tmp_path / "ssv2", source_videos, folder)
    assert detect_layout(root) == "ssv2"
    train = load_split(root, "train")
    assert train.layout == "ssv2" and train.class_names == list(SSV2_LABELS)  # by id
    assert {r.group: train.class_names[r.label] for r in train.records} == {
        "78687": "Putting something into something", "42326": "Pushing something from right to left",
        "3": "Pushing something from left to right"}
    assert all(r.path == root / folder / f"{r.group}.webm" for r in train.records)
    assert train.missing == ["99999"] and "ssv2 train: 1 of 4 listed videos are missing on disk" in caplog.text
    test = load_split(root, "test")
    assert [(r.group, r.label) for r in test.records] == [("1001", 0)]
    with pytest.raises(DatasetError, match="split must be 1, got 3"):
        load_split(root, "test", split=3)


def test_ssv2_broken_files_name_file_and_line(tmp_path, source_videos):
    root = write_ssv2(tmp_path / "ssv2", source_videos)
    (root / "validation.json").write_text('[\n  {"id": "1001",\n   "template": "Putting [something]"\n  ,\n]\n')
    with pytest.raises(DatasetError, match=r"validation.json:5: not valid JSON"):
        load_split(root, "test")
    (root / "validation.json").write_text(json.dumps([{"id": "1001", "template": "Juggling [something]"}]))
    with pytest.raises(DatasetError, match=r"entry 1, id '1001'.*'Juggling something' without brackets.*labels.json"):
        load_split(root, "test")
    (root / "validation.json").write_text(json.dumps([{"id": "../../x", "template": "Putting [something] into "
                                                                                    "[something]"}]))
    with pytest.raises(DatasetError, match="leads outside"):
        load_split(root, "test")


def test_wrong_layout_says_what_the_data_looks_like(tmp_path, source_videos):
    kinetics = write_kinetics(tmp_path / "k", source_videos, "flat")
    ssv2 = write_ssv2(tmp_path / "s", source_videos)
    ucf = tmp_path / "ucf"
    write_ucf_layout(ucf, {"Jump": 1, "Run": 2}, groups=2, clips=1, num_frames=2)
    cases = [(kinetics, "ucf101", "looks like Kinetics", "data.layout=kinetics"),
             (kinetics, "hmdb51", "looks like Kinetics", "data.layout=kinetics"),
             (kinetics, "ssv2", "looks like Kinetics", "data.layout=kinetics"),
             (kinetics, "folder", "looks like Kinetics", "data.layout=kinetics"),
             (ssv2, "kinetics", "looks like Something-Something v2", "data.layout=ssv2"),
             (ssv2, "folder", "looks like Something-Something v2", "data.layout=ssv2"),
             (ucf, "kinetics", "looks like UCF101", "data.layout=ucf101"),
             (ucf, "ssv2", "looks like UCF101", "data.layout=ucf101")]
    for root, layout, looks, advice in cases:
        with pytest.raises(DatasetError) as excinfo:
            load_split(root, "train", layout=layout)
        message = str(excinfo.value)
        assert looks in message and advice in message and "\n" not in message, (layout, message)
    for root, inner, kind in ((kinetics, "videos", "Kinetics"), (kinetics, "annotations", "Kinetics"),
                              (ssv2, "videos", "Something-Something v2")):
        with pytest.raises(DatasetError, match=f"is the {inner}/ folder of the {kind} dataset at .*; pass {root} as"):
            detect_layout(root / inner)


def test_check_and_probe_on_both(tmp_path, source_videos):
    kinetics = write_kinetics(tmp_path / "k", source_videos, "nested")
    ssv2 = write_ssv2(tmp_path / "s", source_videos)
    for root, layout, counts in ((kinetics, "kinetics", {"train": 4, "test": 2}),
                                 (ssv2, "ssv2", {"train": 3, "test": 1})):
        report = check_dataset(root, min_frames=FRAMES, progress=False, workers=1)
        text = format_report(report)
        assert not report.errors and not report.fatal, text
        assert report.layout == layout and report.counts == counts and report.usable == sum(counts.values())
        assert len(report.missing["train"]) == 1 and "1 listed but missing on disk" in text
        # what pretraining and evaluation do with a split: probe, then keep the videos with frame counts
        split = load_split(root, "train")
        infos = probe_videos([r.path for r in split.records], progress=False, workers=1)
        assert all(isinstance(info, VideoInfo) and info.num_frames == FRAMES for info in infos.values())
        assert [r.num_frames for r in with_frame_counts(split.records, infos)] == [FRAMES] * len(split)
