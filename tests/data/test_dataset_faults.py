"""Split files as people write them, paths that try to leave the dataset, and a damaged probe cache.

Real files on disk, written per case: split and class-index files in every encoding and line
ending common editors produce, split lines that point outside ROOT/videos, a class listed twice,
a dataset given with the wrong layout or the wrong root, and probe caches that are garbage.
"""

from __future__ import annotations

import codecs
import json
import logging
import os
import shutil
from pathlib import Path

import pytest

from conftest import write_index_video, write_ucf_layout
from vidkd.data import datasets
from vidkd.data.datasets import (CACHE_VERSION, default_cache_dir, detect_layout, load_split, probe_videos,
                                 with_frame_counts)
from vidkd.data.textfiles import read_lines
from vidkd.data.video import VideoInfo
from vidkd.utils.runtime import worker_context
from vidkd.errors import DatasetError

CLASSES = {"Archery": 1, "Café": 2, "Wave": 3}  # a non-ASCII name tells the encodings apart


@pytest.fixture(scope="module")
def ucf_template(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("ucf") / "ucf"
    write_ucf_layout(root, CLASSES, groups=2, clips=1, num_frames=4)
    return root


@pytest.fixture
def ucf(ucf_template, tmp_path) -> Path:
    root = tmp_path / "ucf"
    shutil.copytree(ucf_template, root)
    return root


def one_line_error(excinfo) -> str:
    message = str(excinfo.value)
    assert "\n" not in message
    return message


def split_lines(root: Path, name: str) -> list[str]:
    return [line for line in (root / "splits" / name).read_text(encoding="utf-8").splitlines() if line]


def records(root: Path, subset: str, **kwargs) -> list[tuple[str, int]]:
    return [(r.path.relative_to(root).as_posix(), r.label) for r in load_split(root, subset, **kwargs).records]


# --- paths from split files stay inside the dataset -------------------------------------------------

ESCAPES = [
    ("parent dirs to /etc/passwd", "Wave/../../../../etc/passwd", "leads outside"),
    ("another dataset next to this one", "Wave/../../../other_dataset/videos/Wave/x.avi", "leads outside"),
    ("absolute path", "/etc/passwd", "absolute path"),
    ("windows separators", "Wave\\..\\..\\..\\etc\\passwd", "leads outside"),
    ("windows drive", "C:/Windows/win.ini", "absolute path"),
]


@pytest.mark.parametrize("subset", ["train", "test"])
@pytest.mark.parametrize("name,line,phrase", ESCAPES, ids=[e[0] for e in ESCAPES])
def test_split_line_leaving_the_dataset_is_refused(ucf, subset, name, line, phrase):
    # the other dataset exists, so only the check stands between the line and training on it
    write_index_video(ucf.parent / "other_dataset" / "videos" / "Wave" / "x.avi", 4, 32, 48)
    list_file = ucf / "splits" / f"{subset}list01.txt"
    lines = split_lines(ucf, list_file.name)
    lines.insert(1, line + (" 3" if subset == "train" else ""))
    list_file.write_text("\n".join(lines) + "\n")
    with pytest.raises(DatasetError) as excinfo:
        load_split(ucf, subset)
    message = one_line_error(excinfo)
    assert f"{list_file}:2:" in message and phrase in message


def test_hmdb51_line_leaving_its_class_folder_is_refused(tmp_path):
    for name in ("brush_hair", "cartwheel"):
        write_index_video(tmp_path / "videos" / name / f"{name}_0.avi", 4, 32, 48)
        (tmp_path / "splits").mkdir(exist_ok=True)
        (tmp_path / "splits" / f"{name}_test_split1.txt").write_text(f"{name}_0.avi 1 \n")
    assert len(load_split(tmp_path, "train")) == 2
    bad = tmp_path / "splits" / "cartwheel_test_split1.txt"
    for line in ("../brush_hair/brush_hair_0.avi 1", "../../../../etc/passwd 1"):
        bad.write_text(f"cartwheel_0.avi 1\n{line}\n")
        with pytest.raises(DatasetError) as excinfo:
            load_split(tmp_path, "train")
        assert f"{bad}:2:" in one_line_error(excinfo) and "leads outside" in str(excinfo.value)


def test_paths_that_stay_inside_and_symlinks_inside_the_root_are_fine(ucf, tmp_path):
    elsewhere = write_index_video(tmp_path / "elsewhere" / "real.avi", 4, 32, 48)
    (ucf / "videos" / "Wave" / "v_Wave_g02_c02.avi").symlink_to(elsewhere)  # the user's own symlink
    train = ucf / "splits" / "trainlist01.txt"
    train.write_text("Wave/./v_Wave_g02_c01.avi 3\nArchery/../Wave/v_Wave_g02_c02.avi 3\nWave//v_Wave_g02_c01.avi 3\n")
    split = load_split(ucf, "train")
    assert [(r.path.relative_to(ucf).as_posix(), r.label) for r in split.records] == [
        ("videos/Wave/v_Wave_g02_c01.avi", 2), ("videos/Wave/v_Wave_g02_c02.avi", 2), ("videos/Wave/v_Wave_g02_c01.avi", 2)]
    assert split.records[1].path.resolve() == elsewhere.resolve()


# --- files as editors save them -----------------------------------------------------------------------

def _join(lines, newline="\n"):
    return newline.join(lines) + newline


def _mixed(lines):
    ends = ["\r\n", "\n", "\r"]
    return "".join(line + ends[i % 3] for i, line in enumerate(lines))


ENCODINGS = [  # (case, lines -> bytes)
    ("utf-8 LF", lambda ls: _join(ls).encode()),
    ("utf-8 BOM CRLF (Windows editors)", lambda ls: codecs.BOM_UTF8 + _join(ls, "\r\n").encode()),
    ("CR only (classic Mac)", lambda ls: _join(ls, "\r").encode()),
    ("mixed line endings", lambda ls: _mixed(ls).encode()),
    ("trailing whitespace, blank lines", lambda ls: ("\n \n" + "".join(f"{line} \t \n\n" for line in ls) + "\t\n").encode()),
    ("tabs as separators", lambda ls: _join([line.replace(" ", "\t") for line in ls]).encode()),
    ("utf-16 LE BOM CRLF (Notepad 'Unicode')", lambda ls: codecs.BOM_UTF16_LE + _join(ls, "\r\n").encode("utf-16-le")),
    ("utf-16 BE BOM", lambda ls: codecs.BOM_UTF16_BE + _join(ls).encode("utf-16-be")),
    ("utf-32 BOM", lambda ls: _join(ls).encode("utf-32")),
    ("utf-16 LE without BOM", lambda ls: _join(ls, "\r\n").encode("utf-16-le")),
    ("latin-1 (ANSI)", lambda ls: _join(ls, "\r\n").encode("latin-1")),
]


@pytest.mark.parametrize("case,encode", ENCODINGS, ids=[e[0] for e in ENCODINGS])
def test_split_files_as_editors_save_them(ucf, case, encode):
    expected = {subset: records(ucf, subset) for subset in ("train", "test")}
    assert any("Café" in path for path, _ in expected["train"])
    for name in ("classInd.txt", "trainlist01.txt", "testlist01.txt"):
        path = ucf / "splits" / name
        path.write_bytes(encode(split_lines(ucf, name)))
    for subset in ("train", "test"):
        assert records(ucf, subset) == expected[subset], case
    assert load_split(ucf, "train").class_names == list(CLASSES)


UNREADABLE = [  # (case, bytes, line, phrase)
    ("utf-16 BOM, broken surrogate on line 3",
     codecs.BOM_UTF16_LE + "1 Archery\r\n2 Café\r\n3 ".encode("utf-16-le") + b"\x00\xd8" + "W\r\n".encode("utf-16-le"),
     3, "not valid UTF-16"),
    ("utf-8 BOM, invalid byte on line 2", codecs.BOM_UTF8 + b"1 Archery\n2 Caf\xe9\n3 Wave\n", 2, "not valid UTF-8"),
    ("binary: NUL bytes on line 2", b"1 Archery\n2 \x00\x01\x02\x03\xff\n3 Wave\n", 2, "NUL byte"),
    ("a zip archive", b"PK\x03\x04\x14\x00\x00\x00\x08\x00classInd.txt", 1, "not a text file"),
]


@pytest.mark.parametrize("case,data,line,phrase", UNREADABLE, ids=[u[0] for u in UNREADABLE])
def test_unreadable_split_file_names_file_and_line(ucf, case, data, line, phrase):
    class_file = ucf / "splits" / "classInd.txt"
    class_file.write_bytes(data)
    with pytest.raises(DatasetError) as excinfo:
        load_split(ucf, "train")
    message = one_line_error(excinfo)
    assert f"{class_file}:{line}:" in message and phrase in message


def test_split_file_that_is_a_directory(ucf):
    (ucf / "splits" / "testlist01.txt").unlink()
    (ucf / "splits" / "testlist01.txt").mkdir()
    with pytest.raises(DatasetError, match="testlist01.txt is a directory"):
        load_split(ucf, "test")


def test_latin1_fallback_is_logged(tmp_path, caplog):
    path = tmp_path / "list.txt"
    path.write_bytes(b"Caf\xe9/v_Caf\xe9_g01_c01.avi 1\r\n")
    with caplog.at_level(logging.INFO, logger="vidkd.data"):
        assert read_lines(path, "list") == [(1, "Café/v_Café_g01_c01.avi 1")]
    assert "read it as Latin-1" in caplog.text


CLASS_INDEX_ERRORS = [
    ("a class listed twice", "1 Archery\n2 Café\n3 Archery\n", r"classInd.txt:3: class 'Archery' is listed twice \(lines 1 and 3\)"),
    ("a number used twice", "1 Archery\n2 Café\n2 Wave\n", r"classInd.txt:3: number 2 is given to both 'Café' \(line 2\) and 'Wave'"),
    ("a gap in the numbers", "1 Archery\n2 Café\n4 Wave\n", r"class numbers must run 1..3"),
]


@pytest.mark.parametrize("case,text,pattern", CLASS_INDEX_ERRORS, ids=[c[0] for c in CLASS_INDEX_ERRORS])
def test_class_index_errors_name_the_class_and_line(ucf, case, text, pattern):
    (ucf / "splits" / "classInd.txt").write_text(text)
    with pytest.raises(DatasetError, match=pattern) as excinfo:
        load_split(ucf, "train")
    one_line_error(excinfo)


# --- the wrong layout or the wrong root -------------------------------------------------------------

@pytest.fixture
def hmdb(tmp_path) -> Path:
    root = tmp_path / "hmdb"
    for name in ("brush_hair", "cartwheel"):
        for k in range(2):
            write_index_video(root / "videos" / name / f"{name}_{k}.avi", 4, 32, 48)
        (root / "splits").mkdir(parents=True, exist_ok=True)
        for s in (1, 2, 3):
            (root / "splits" / f"{name}_test_split{s}.txt").write_text(f"{name}_0.avi 1 \n{name}_1.avi 2 \n")
    return root


def test_wrong_layout_names_the_layout_it_looks_like(ucf, hmdb):
    cases = [(ucf, "hmdb51", "looks like UCF101", "data.layout=ucf101"),
             (ucf, "folder", "looks like UCF101", "data.layout=ucf101"),
             (hmdb, "ucf101", "looks like HMDB51", "data.layout=hmdb51"),
             (hmdb, "folder", "looks like HMDB51", "data.layout=hmdb51")]
    for root, layout, looks, advice in cases:
        with pytest.raises(DatasetError) as excinfo:
            load_split(root, "train", layout=layout)
        message = one_line_error(excinfo)
        assert looks in message and advice in message, (layout, message)


@pytest.mark.parametrize("layout", ["auto", "ucf101", "hmdb51"])
@pytest.mark.parametrize("folder", ["videos", "splits"])
def test_root_given_as_the_videos_folder_says_pass_root(ucf, hmdb, layout, folder):
    for root, kind in ((ucf, "UCF101"), (hmdb, "HMDB51")):
        with pytest.raises(DatasetError) as excinfo:
            load_split(root / folder, "train", layout=layout)
        message = one_line_error(excinfo)
        assert f"is the {folder}/ folder of the {kind} dataset at {root}; pass {root} as the dataset root" in message
    with pytest.raises(DatasetError, match=f"pass {ucf} as"):
        detect_layout(ucf / folder)


def test_a_class_folder_tree_named_videos_is_still_a_folder_dataset(tmp_path):
    write_index_video(tmp_path / "videos" / "jump" / "a.mp4", 2, 32, 48)
    write_index_video(tmp_path / "videos" / "walk" / "b.mp4", 2, 32, 48)
    assert detect_layout(tmp_path / "videos") == "folder"  # no split files next to it: nothing to point at


# --- the probe cache ------------------------------------------------------------------------------

@pytest.fixture
def probed(ucf):
    """The train videos of `ucf`, probed once (the cache written)."""
    paths = [r.path for r in load_split(ucf, "train").records]
    infos = probe_videos(paths, cache_dir=default_cache_dir(ucf), progress=False)
    assert all(info == VideoInfo(4, 32, 48, 25.0) for info in infos.values())
    return ucf, paths, infos


def _cache(root: Path) -> dict:
    return json.loads((default_cache_dir(root) / "probes.json").read_text())


def _tamper(root: Path, frames: int) -> None:
    """Rewrite every cached frame count, so that a result read from the cache can be told apart."""
    cache = _cache(root)
    for entry in cache["entries"].values():
        entry[2] = frames
    (default_cache_dir(root) / "probes.json").write_text(json.dumps(cache))


BAD_CACHES = [  # (case, bytes, the log phrase)
    ("a JSON list", b"[1, 2, 3]", "not a vidkd probe cache"),
    ("garbage", b"{not json at all", "damaged"),
    ("not UTF-8", b"\xff\xfe\x00garbage\xe9", "damaged"),
    ("empty", b"", "damaged"),
    ("vidkd 1 format", json.dumps({"/x/videos/a.avi|10|5": {"num_frames": 4}}).encode(), "another vidkd version"),
    ("a future version", json.dumps({"format": "vidkd probe cache", "version": CACHE_VERSION + 1,
                                     "entries": {}}).encode(), "another vidkd version"),
]


@pytest.mark.parametrize("case,data,phrase", BAD_CACHES, ids=[b[0] for b in BAD_CACHES])
def test_unreadable_probe_cache_is_rebuilt_with_a_log_line(probed, caplog, case, data, phrase):
    root, paths, infos = probed
    (default_cache_dir(root) / "probes.json").write_bytes(data)
    with caplog.at_level(logging.INFO, logger="vidkd.data"):
        assert probe_videos(paths, cache_dir=default_cache_dir(root), progress=False) == infos
    assert phrase in caplog.text and "rebuilding" in caplog.text
    cache = _cache(root)
    assert cache["version"] == CACHE_VERSION and len(cache["entries"]) == len(paths)


def test_damaged_cache_entries_are_probed_again(probed):
    root, paths, infos = probed
    cache = _cache(root)
    entries = cache["entries"]
    for damaged in ([], [None, None], [1, 2, "a", "b", "c", "d", "e"], [1, 2, {"x": 1}, 2, 3, 4.0, 5], {"0": 1}):
        for key, good in entries.items():  # the same size and mtime as the file: only the fields are wrong
            entries[key] = [*good[:2], *damaged[2:]] if isinstance(damaged, list) and damaged else damaged
        (default_cache_dir(root) / "probes.json").write_text(json.dumps(cache))
        assert probe_videos(paths, cache_dir=default_cache_dir(root), progress=False) == infos, damaged
        cache = _cache(root)
        entries = cache["entries"]


def test_cache_is_used_and_a_changed_file_is_probed_again(probed):
    root, paths, infos = probed
    _tamper(root, 99)
    cached = probe_videos(paths, cache_dir=default_cache_dir(root), progress=False)
    assert {info.num_frames for info in cached.values()} == {99}  # read from the cache, not the files
    stat = paths[0].stat()
    os.utime(paths[0], ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))  # same size, new mtime
    again = probe_videos(paths, cache_dir=default_cache_dir(root), progress=False)
    assert again[paths[0]].num_frames == 4 and again[paths[1]].num_frames == 99


def test_cache_moves_with_the_dataset(probed, tmp_path, monkeypatch):
    root, paths, _ = probed
    _tamper(root, 77)
    moved = tmp_path / "moved"
    shutil.copytree(root, moved)  # copy2 keeps sizes and modification times
    split = load_split(moved, "train")
    infos = probe_videos([r.path for r in split.records], cache_dir=default_cache_dir(moved), progress=False)
    assert {info.num_frames for info in infos.values()} == {77}
    # relative and absolute spellings of the same root share the cache
    monkeypatch.chdir(tmp_path)
    relative = probe_videos([Path("moved") / r.path.relative_to(moved) for r in split.records],
                            cache_dir=Path("moved") / ".vidkd_cache", progress=False)
    assert {info.num_frames for info in relative.values()} == {77}


def test_unwritable_cache_is_not_fatal(probed, tmp_path, caplog):
    _, paths, infos = probed
    blocked = tmp_path / "blocked"
    blocked.write_text("a file where the cache folder should be")
    with caplog.at_level(logging.INFO, logger="vidkd.data"):
        assert probe_videos(paths, cache_dir=blocked / "cache", progress=False) == infos
    assert "probe cache not written" in caplog.text


@pytest.fixture
def many_videos(tmp_path, index_video) -> list[Path]:
    """PARALLEL_MIN + 20 hard links of one video, and one empty file among them."""
    folder = tmp_path / "many"
    folder.mkdir()
    paths = []
    for i in range(datasets.PARALLEL_MIN + 20):
        os.link(index_video, folder / f"v{i:03d}.avi")
        paths.append(folder / f"v{i:03d}.avi")
    paths[7].unlink()
    paths[7].write_bytes(b"")
    return paths


def test_parallel_first_build_matches_one_process(many_videos, tmp_path):
    serial = probe_videos(many_videos, progress=False, workers=1)
    parallel = probe_videos(many_videos, cache_dir=tmp_path / "cache", progress=False, workers=2)
    assert parallel == serial and list(parallel) == many_videos
    assert "empty" in parallel[many_videos[7]] and parallel[many_videos[0]].num_frames == 150
    entries = json.loads((tmp_path / "cache" / "probes.json").read_text())["entries"]
    assert sorted(entries) == sorted(f"many/{p.name}" for p in many_videos)
    assert [p.name for p in (tmp_path / "cache").iterdir()] == ["probes.json"]  # no temp files left


def _die(first, names):
    os._exit(3)


def test_a_dying_probe_process_falls_back_to_this_process(many_videos, monkeypatch, caplog):
    monkeypatch.setattr(datasets, "_probe_chunk", _die)  # forked workers look it up in their copy of the module
    if worker_context().get_start_method() != "fork":
        pytest.skip("needs fork: spawned workers import the unpatched module")
    with caplog.at_level(logging.WARNING, logger="vidkd.data"):
        infos = probe_videos(many_videos, progress=False, workers=2)
    assert "probing process died" in caplog.text
    assert infos[many_videos[0]].num_frames == 150 and "empty" in infos[many_videos[7]]


def test_with_frame_counts_keeps_probed_records(probed):
    root, paths, infos = probed
    split = load_split(root, "train")
    infos = dict(infos)
    infos[paths[0]] = "cannot open"
    kept = with_frame_counts(split.records, infos)
    assert [r.path for r in kept] == paths[1:] and {r.num_frames for r in kept} == {4}
    assert kept[0].label == split.records[1].label and kept[0].group == split.records[1].group
