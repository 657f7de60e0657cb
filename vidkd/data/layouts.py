"""Kinetics (400/600/700) and Something-Something v2 in the layouts their releases use -> VideoSplit.

Kinetics: ROOT/annotations/train.csv and validate.csv (or val.csv), the official CSV files
          ("label,youtube_id,time_start,time_end,split", Kinetics-700-2020 adds "is_cc");
          videos named <youtube_id>_<start:06d>_<end:06d>.<mp4|mkv|webm|...> (or <youtube_id>.<ext>) in
          ROOT/videos/<split>/<label>/, ROOT/videos/<split>/, ROOT/videos/<label>/ or ROOT/videos/,
          <split> being train, validate (or val, validation). vidkd's train subset is train.csv,
          its test subset validate.csv (the labels of Kinetics' test set are not public).
          Classes: the labels of train.csv, sorted. Group: the youtube_id.
SSv2:     ROOT/labels.json ({template: "id"}), ROOT/train.json and ROOT/validation.json (lists of
          {"id", "label", "template", "placeholders"}), videos ROOT/videos/<id>.webm (or
          ROOT/20bn-something-something-v2/<id>.webm). The class of a video is its template with the
          brackets of "[something]" removed, looked up in labels.json. Group: the id.

The video folders are listed once each (no stat per annotation row): Kinetics-700's train split of
240k rows is built in about 0.85 s on a 2-core Xeon, most of it creating the records. Listed videos that are not on disk (Kinetics
always has some) are skipped with one warning and kept in VideoSplit.missing; a split none of
whose videos are found stops with DatasetError. See docs/data.md.
"""

from __future__ import annotations

import contextlib
import csv
import gc
import io
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

from vidkd.data.records import VIDEO_EXTENSIONS, VideoRecord, VideoSplit, kinetics_annotation, looks_like
from vidkd.data.textfiles import inside, read_text
from vidkd.errors import DatasetError

log = logging.getLogger("vidkd.data")

KINETICS_COLUMNS = ("label", "youtube_id", "time_start", "time_end")  # required; the official files add "split"
KINETICS_KNOWN_COLUMNS = KINETICS_COLUMNS + ("split", "is_cc")
KINETICS_SPLIT_DIRS = {"train": ("train",), "test": ("validate", "val", "validation")}
_ALL_SPLIT_DIRS = frozenset(("train", "validate", "val", "validation", "test"))
SSV2_VIDEO_DIRS = ("videos", "20bn-something-something-v2")
SSV2_LISTS = {"train": "train.json", "test": "validation.json"}
_SUFFIXES = tuple(VIDEO_EXTENSIONS) + tuple(ext.upper() for ext in VIDEO_EXTENSIONS)


# ---------------------------------------------------------------------------------------------
# One listing per folder: {file name: child maker of its folder}


class _VideoIndex:
    """The files of a few folders by name, each folder listed once (no stat per video).

    `find(stem)` tries the extension of the first video listed (a dataset is usually all .mp4 or
    all .webm), then .mp4 .webm .mkv .avi .mov (and upper case): one dict lookup per video.
    """

    def __init__(self) -> None:
        self.files: dict[str, Callable[[str], Path]] = {}
        self.first_ext = ".mp4"
        self._exts: tuple[str, ...] = _SUFFIXES

    def add(self, folder: Path, subdirs: bool = False, skip: frozenset[str] = frozenset()) -> bool:
        """Index `folder` (and, with `subdirs`, its sub-folders not in `skip`; a name found in
        several keeps the first: the folder itself, then its sub-folders in sorted order).
        False when `folder` is not a directory."""
        found = self._list(folder)
        if found is None:
            return False
        names, maker = found
        listings = [(names, maker)]
        if subdirs:
            # Names with a video extension are taken as files (a folder so named fails to probe
            # later); only the others get a stat, to find the sub-folders.
            dirs = sorted(n for n in names if not n.endswith(_SUFFIXES) and n[0] != "."
                          and os.path.isdir(os.path.join(folder, n)))
            listings += [found for name in dirs if name not in skip
                         for found in [self._list(folder / name)] if found is not None]
        for names, maker in reversed(listings):  # the earlier listing wins
            self.files.update(dict.fromkeys(names, maker))
        if not self.files:
            return True
        for names, _ in listings:
            first = next((n for n in names if n.endswith(_SUFFIXES) and n[0] != "."), None)
            if first is not None:
                self.first_ext = first[first.rfind("."):]
                self._exts = (self.first_ext,) + tuple(e for e in _SUFFIXES if e != self.first_ext)
                break
        return True

    @staticmethod
    def _list(folder: Path) -> tuple[list[str], Callable[[str], Path]] | None:
        try:
            return os.listdir(folder), _child_maker(folder)
        except (FileNotFoundError, NotADirectoryError):
            return None
        except OSError as exc:
            raise DatasetError(f"cannot list {folder}: {exc.strerror or exc}") from None

    def find(self, stem: str) -> Path | None:
        """The video `stem` + one of the video extensions, else None (a hidden name never matches)."""
        if not stem or stem[0] == ".":
            return None
        files = self.files
        for ext in self._exts:
            name = stem + ext
            maker = files.get(name)
            if maker is not None:
                return maker(name)
        return None


def _child_maker(folder: Path) -> Callable[[str], Path]:
    """name -> folder / name. pathlib parses every component again for each Path (about 2 us,
    half a second for Kinetics-700); the private child constructor its own directory walks use
    does not, and is used when it exists and gives the same Path as the public way."""
    make = getattr(folder, "_make_child_relpath", None)
    if make is not None:
        try:
            if make("x.mp4") == folder / "x.mp4" and str(make("x.mp4")) == str(folder / "x.mp4"):
                return make
        except Exception:  # another Python's private API: the public way below
            pass
    return folder.joinpath


def _plain_name(name: str, what: str, where: str | Callable[[], str], folder: str) -> None:
    """DatasetError unless `name` is a plain file name (no folder, not hidden): `inside` names a path
    that leaves `folder`, this the rest. `where` may be a function (it is only needed for the error)."""
    if not name or "/" in name or "\\" in name or name.startswith("."):
        where = where() if callable(where) else where
        inside(name or ".", where, folder)
        raise DatasetError(f"{where}: {what} {name!r} is not a file name")


# ---------------------------------------------------------------------------------------------
# Missing videos


def check_missing(layout: str, subset: str, listed: int, missing: list[str], listing: Path, videos: Path) -> None:
    """Listed-but-absent videos are skipped with one warning; none found at all means a wrong root.

    Unlike UCF101's split files, a Kinetics or SSv2 download is often partial (videos deleted from
    YouTube, a subset downloaded), so only a split none of whose videos exists is refused.
    """
    if not missing:
        return
    if len(missing) == listed:
        raise DatasetError(f"none of the {listed} {subset} videos listed in {listing} is under {videos} "
                           f"(first: {missing[0]}); is ROOT the folder holding the annotations and videos/? "
                           f"see docs/data.md for the video layouts read")
    log.warning("%s %s: %d of %d listed videos are missing on disk under %s (skipped; first: %s)%s",
                layout, subset, len(missing), listed, videos, missing[0],
                "; more than half: a partial download?" if len(missing) * 2 > listed else "")


# ---------------------------------------------------------------------------------------------
# Kinetics


def _seconds(value: str, path: Path, line: int, column: str) -> str:
    """'14' -> '000014' (as in the file names); '14.0' is accepted; anything else is an error."""
    value = value.strip()
    if value.isdigit():
        return f"{int(value):06d}"
    try:
        number = float(value)
    except ValueError:
        number = float("nan")
    if not (number >= 0 and number == int(number)):
        raise DatasetError(f"{path}:{line}: {column} {value!r} is not a whole number of seconds")
    return f"{int(number):06d}"


@dataclass
class KineticsCSV:
    """A Kinetics annotation CSV as the csv module reads it: `rows` are the raw rows after the header
    (a blank line is an empty row), `columns` the positions of label, youtube_id, time_start, time_end."""

    path: Path
    text: str
    header: list[str]
    rows: list[list[str]]
    columns: tuple[int, int, int, int]
    first: int  # the position of rows[0] among all rows the reader gives (header and blank lines before it)

    def line(self, k: int) -> int:
        """The line number of rows[k] (computed again: it is only needed for an error message)."""
        reader = csv.reader(io.StringIO(self.text, newline=""))
        for j, _ in enumerate(reader):
            if j == self.first + k:
                return reader.line_num
        return 0

    def parse(self, k: int) -> tuple[str, str, str] | None:
        """(label, youtube_id, file stem '<youtube_id>_000014_000024') of rows[k], None for a blank row;
        DatasetError naming the file and line for a short row, an empty field or a time that is no number."""
        row = self.rows[k]
        if len(row) <= max(self.columns):
            if not any(cell.strip() for cell in row):
                return None
            raise DatasetError(f"{self.path}:{self.line(k)}: expected {len(self.header)} fields "
                               f"({','.join(self.header)}), got {len(row)}: {','.join(row)!r}")
        label, youtube_id, start, end = (row[i].strip() for i in self.columns)
        if not label or not youtube_id:
            raise DatasetError(f"{self.path}:{self.line(k)}: empty {'label' if not label else 'youtube_id'}")
        try:
            start, end = _seconds(start, self.path, 0, "time_start"), _seconds(end, self.path, 0, "time_end")
        except DatasetError as exc:  # the line number, computed only now
            raise DatasetError(str(exc).replace(f"{self.path}:0:", f"{self.path}:{self.line(k)}:", 1)) from None
        return label, youtube_id, f"{youtube_id}_{start}_{end}"

    def labels(self) -> dict[str, str]:
        """{label as written: label stripped} over the rows (blank and short rows left out)."""
        i = self.columns[0]
        raw = {row[i] for row in self.rows if len(row) > i}
        return {label: label.strip() for label in raw}


def read_kinetics_csv(path: Path) -> KineticsCSV:
    """A Kinetics annotation CSV, read with the csv module (labels with commas in quotes,
    apostrophes), in any encoding `decode_text` reads. The columns are found by their header
    names, in any order; `split` and `is_cc` are not used, any other column is ignored with one log
    line. A missing column is a DatasetError naming the file and the columns found; the rows are
    checked as they are used (`KineticsCSV.parse`).
    """
    text = read_text(path, "Kinetics annotation file", "see docs/data.md (Kinetics)")
    rows = list(csv.reader(io.StringIO(text, newline="")))
    first = next((j for j, row in enumerate(rows) if any(cell.strip() for cell in row)), None)
    if first is None:
        raise DatasetError(f"{path}: empty file; expected a CSV with the header "
                           f"label,youtube_id,time_start,time_end,split")
    header = [cell.replace("\ufeff", "").strip().lower() for cell in rows[first]]
    absent = [c for c in KINETICS_COLUMNS if c not in header]
    if absent:
        raise DatasetError(f"{path}: no column {', '.join(absent)} in the header; found columns: "
                           f"{', '.join(header) or '(none)'}; expected label,youtube_id,time_start,time_end,split")
    unknown = [c for c in header if c not in KINETICS_KNOWN_COLUMNS]
    if unknown:
        log.info("%s: ignoring column%s %s (not used by vidkd)", path, "s" if len(unknown) > 1 else "",
                 ", ".join(repr(c) for c in unknown))
    columns = tuple(header.index(c) for c in KINETICS_COLUMNS)
    return KineticsCSV(path, text, header, rows[first + 1:], columns, first + 1)  # type: ignore[arg-type]


def _kinetics_videos(root: Path, subset: str) -> tuple[_VideoIndex, Path]:
    """The index of the subset's videos and the folder they were looked for in.

    ROOT/videos/<split>/ when it exists (its files and its label folders), else ROOT/videos/
    (its files and its label folders, leaving out other subsets' split folders).
    """
    videos = root / "videos"
    index = _VideoIndex()
    for name in KINETICS_SPLIT_DIRS[subset]:
        if index.add(videos / name, subdirs=True):
            return index, videos / name
    if not index.add(videos, subdirs=True, skip=_ALL_SPLIT_DIRS):
        raise DatasetError(f"{root}: no videos/ folder; Kinetics videos go in ROOT/videos/<split>/<label>/ or "
                           f"ROOT/videos/<split>/ (<split>: train, validate), see docs/data.md")
    return index, videos


@contextlib.contextmanager
def _no_gc() -> Iterator[None]:
    """Building 240k records creates ~1M objects that all stay alive: the cyclic garbage collector's
    passes over them (none is garbage) took half of the time; it is paused meanwhile."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def load_kinetics(root: Path, subset: str) -> VideoSplit:
    """train: annotations/train.csv; test: annotations/validate.csv (or val.csv). Classes from train.csv."""
    with _no_gc():
        return _load_kinetics(root, subset)


def _kinetics_tables(root: Path, subset: str) -> tuple[Path, KineticsCSV, list[str], dict[str, str]]:
    """(train.csv, the annotation table of `subset`, the class names from train.csv, the table's
    labels as written -> class name)."""
    train_csv = kinetics_annotation(root, "train")
    if train_csv is None:
        hint = looks_like(root, "kinetics")
        if hint:
            raise DatasetError(hint)
        raise DatasetError(f"missing Kinetics annotation file {root / 'annotations' / 'train.csv'} (its labels "
                           f"define the classes); see docs/data.md (Kinetics)")
    train = read_kinetics_csv(train_csv)
    train_labels = train.labels()
    class_names = sorted(set(train_labels.values()))
    if class_names and not class_names[0]:
        k = next(k for k, row in enumerate(train.rows) if len(row) > train.columns[0] and not row[train.columns[0]].strip())
        train.parse(k)  # raises: empty label
    if subset == "train":
        return train_csv, train, class_names, train_labels
    found = kinetics_annotation(root, "test")
    if found is None:
        raise DatasetError(f"missing Kinetics annotation file {root / 'annotations' / 'validate.csv'} (or "
                           f"val.csv): vidkd's test subset is Kinetics' validation set (the test set's labels "
                           f"are not public); see docs/data.md (Kinetics)")
    table = read_kinetics_csv(found)
    return train_csv, table, class_names, table.labels()


def _load_kinetics(root: Path, subset: str) -> VideoSplit:
    train_csv, table, class_names, labels = _kinetics_tables(root, subset)
    index, videos = _kinetics_videos(root, subset)
    class_index = {name: k for k, name in enumerate(class_names)}
    label_of = {raw: class_index[name] for raw, name in labels.items() if name in class_index}
    files, find, ext = index.files, index.find, index.first_ext
    i_label, i_id, i_start, i_end = table.columns
    records, missing = [], []
    append = records.append
    listed = 0

    def careful(k: int) -> None:
        """A row the quick path below did not find a video for: checked field by field."""
        nonlocal listed
        parsed = table.parse(k)
        if parsed is None:
            return
        listed += 1
        label_name, youtube_id, stem = parsed
        label = class_index.get(label_name)
        if label is None:
            raise DatasetError(f"{table.path}:{table.line(k)}: label {label_name!r} is not in {train_csv.name}; "
                               f"the classes are the labels of the train annotations")
        path = find(stem) or find(youtube_id)
        if path is None:
            # Only names from the folder listings become paths, so no row can point outside
            # ROOT/videos; a youtube_id that tries to is named here (it matches no listed file).
            _plain_name(youtube_id, "youtube_id", lambda: f"{table.path}:{table.line(k)}", "ROOT/videos")
            missing.append(f"{label_name}/{stem}")
        else:
            append(VideoRecord(path, label, youtube_id))

    # The quick path (about 2.5 us a row): a row as written, times zero-padded, one dict lookup.
    for k, row in enumerate(table.rows):
        try:
            label = label_of[row[i_label]]
            youtube_id = row[i_id]
            name = f"{youtube_id}_{row[i_start].zfill(6)}_{row[i_end].zfill(6)}{ext}"
        except (KeyError, IndexError):
            careful(k)
            continue
        maker = files.get(name)
        if maker is None:
            careful(k)
            continue
        listed += 1
        append(VideoRecord(maker(name), label, youtube_id))
    check_missing("kinetics", subset, listed, missing, table.path, videos)
    return VideoSplit(records, class_names, root, "kinetics", subset, 1, missing)


# ---------------------------------------------------------------------------------------------
# Something-Something v2


def read_json(path: Path, what: str) -> Any:
    """A JSON file in any encoding `decode_text` reads; DatasetError naming the file and line otherwise."""
    text = read_text(path, what, "see docs/data.md (Something-Something v2)")
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise DatasetError(f"{path}:{exc.lineno}: not valid JSON ({exc.msg} at column {exc.colno})") from None
    except RecursionError:
        raise DatasetError(f"{path}: not a {what} (nested too deeply)") from None


def ssv2_class(template: str) -> str:
    """'Putting [something] into [something]' -> 'Putting something into something' (a labels.json key)."""
    return template.replace("[", "").replace("]", "").strip()


def _ssv2_classes(root: Path) -> list[str]:
    path = root / "labels.json"
    labels = read_json(path, "Something-Something v2 labels.json")
    if not isinstance(labels, dict) or not labels:
        raise DatasetError(f"{path}: expected an object mapping each template to its class id "
                           f"({{\"Approaching something with your camera\": \"0\", ...}}), got a JSON "
                           f"{type(labels).__name__}")
    by_id: dict[int, str] = {}
    for template, value in labels.items():
        text = str(value).strip()
        if isinstance(value, bool) or not text.isdigit():
            raise DatasetError(f"{path}: class id {value!r} of {template!r} is not a number")
        name = ssv2_class(template)
        if int(text) in by_id:
            raise DatasetError(f"{path}: class id {text} is given to both {by_id[int(text)]!r} and {name!r}")
        by_id[int(text)] = name
    if sorted(by_id) != list(range(len(by_id))):
        raise DatasetError(f"{path}: class ids must run 0..{len(by_id) - 1} without gaps")
    return [by_id[k] for k in range(len(by_id))]


def load_ssv2(root: Path, subset: str) -> VideoSplit:
    """train: train.json; test: validation.json. Classes: labels.json, by id."""
    with _no_gc():
        return _load_ssv2(root, subset)


def _load_ssv2(root: Path, subset: str) -> VideoSplit:
    listing = root / SSV2_LISTS[subset]
    if not (root / "labels.json").is_file() or not listing.is_file():
        hint = looks_like(root, "ssv2")
        if hint:
            raise DatasetError(hint)
    class_names = _ssv2_classes(root)
    entries = read_json(listing, f"Something-Something v2 {subset} list")
    if not isinstance(entries, list):
        raise DatasetError(f"{listing}: expected a list of {{\"id\", \"label\", \"template\", \"placeholders\"}}, "
                           f"got a JSON {type(entries).__name__}")
    for name in SSV2_VIDEO_DIRS:
        videos = root / name
        index = _VideoIndex()
        if index.add(videos):
            break
    else:
        raise DatasetError(f"{root}: no videos/ (or 20bn-something-something-v2/) folder holding <id>.webm; "
                           f"see docs/data.md (Something-Something v2)")
    find = index.find
    label_of = {name: k for k, name in enumerate(class_names)}
    records, missing = [], []
    for k, entry in enumerate(entries, 1):
        if not isinstance(entry, dict) or "id" not in entry or "template" not in entry:
            raise DatasetError(f"{listing}: entry {k} is not an object with \"id\" and \"template\": "
                               f"{json.dumps(entry)[:120]}")
        video_id, template = str(entry["id"]).strip(), entry["template"]
        where = f"{listing} (entry {k}, id {video_id!r})"
        if not isinstance(template, str):
            raise DatasetError(f"{where}: template {template!r} is not text")
        label = label_of.get(ssv2_class(template))
        if label is None:
            raise DatasetError(f"{where}: template {template!r} ({ssv2_class(template)!r} without brackets) "
                               f"is not in labels.json")
        path = find(video_id)
        if path is None:
            _plain_name(video_id, "id", where, f"ROOT/{videos.name}")
            missing.append(video_id)
            continue
        records.append(VideoRecord(path, label, video_id))
    check_missing("ssv2", subset, len(entries), missing, listing, videos)
    return VideoSplit(records, class_names, root, "ssv2", subset, 1, missing)

