"""What a dataset is to vidkd (records of videos in splits), and which layout a directory holds.

The bottom of the data layer: the layout loaders (`datasets`, `layouts`) build on it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

VIDEO_EXTENSIONS = (".mp4", ".avi", ".mkv", ".webm", ".mov")


@dataclass(frozen=True, slots=True)
class VideoRecord:
    """One video of a split. `group` ties together clips of one recording (never split apart)."""

    path: Path
    label: int
    group: str
    num_frames: int | None = None


@dataclass
class VideoSplit:
    """The videos of one subset (train or test) of one split, with the class names."""

    records: list[VideoRecord]
    class_names: list[str]
    root: Path
    layout: str
    subset: str = "train"
    split: int = 1
    missing: list[str] = field(default_factory=list)  # listed in a split file but not on disk

    def __len__(self) -> int:
        return len(self.records)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


# The folders inside a dataset root that a user may pass by mistake, and what the root holds.
INNER_FOLDERS = {"ucf101": ("videos", "splits"), "hmdb51": ("videos", "splits"),
                  "kinetics": ("videos", "annotations"), "ssv2": ("videos", "20bn-something-something-v2")}
_HOLDS = {"ucf101": "videos/ and splits/", "hmdb51": "videos/ and splits/",
          "kinetics": "annotations/ and videos/", "ssv2": "labels.json, train.json and validation.json"}
LAYOUT_NAMES = {"ucf101": "UCF101", "hmdb51": "HMDB51", "kinetics": "Kinetics", "ssv2": "Something-Something v2"}
KINETICS_ANNOTATIONS = {"train": ("train.csv",), "test": ("validate.csv", "val.csv")}


def parent_hint(root: Path) -> str | None:
    """The error for a root that is an inner folder (videos/, splits/, ...) of a dataset one level up."""
    if not any(root.name in names for names in INNER_FOLDERS.values()):
        return None
    kind = layout_on_disk(root.parent)
    if kind is None or root.name not in INNER_FOLDERS[kind]:
        return None
    return (f"{root} is the {root.name}/ folder of the {LAYOUT_NAMES[kind]} dataset at {root.parent}; pass {root.parent} "
            f"as the dataset root (the folder that holds {_HOLDS[kind]})")


def kinetics_annotation(root: Path, subset: str) -> Path | None:
    """ROOT/annotations/train.csv (subset 'train') or validate.csv / val.csv ('test'), when it exists."""
    for name in KINETICS_ANNOTATIONS[subset]:
        path = root / "annotations" / name
        if path.is_file():
            return path
    return None


def layout_on_disk(root: Path) -> str | None:
    """The layout its annotation files name (a few stats, no listing of the videos), else None.

    ucf101: splits/classInd.txt; hmdb51: splits/*_test_split*.txt; kinetics: annotations/train.csv
    (or validate.csv, val.csv); ssv2: labels.json beside train.json or validation.json.
    """
    splits = root / "splits"
    if (splits / "classInd.txt").is_file():
        return "ucf101"
    if splits.is_dir() and any(splits.glob("*_test_split*.txt")):
        return "hmdb51"
    if kinetics_annotation(root, "train") or kinetics_annotation(root, "test"):
        return "kinetics"
    if (root / "labels.json").is_file() and ((root / "train.json").is_file() or (root / "validation.json").is_file()):
        return "ssv2"
    return None


LAYOUT_HINTS = {"ucf101": "UCF101 (splits/classInd.txt)", "hmdb51": "HMDB51 (splits/*_test_split*.txt)",
                 "kinetics": "Kinetics (annotations/train.csv)",
                 "ssv2": "Something-Something v2 (labels.json, train.json)"}


def looks_like(root: Path, expected: str) -> str | None:
    """'ROOT looks like <layout> (...); set data.layout=<layout> (or auto)' when ROOT is another layout."""
    layout = layout_on_disk(root)
    if layout is None or layout == expected:
        return None
    return f"{root} looks like {LAYOUT_HINTS[layout]}, not {LAYOUT_NAMES.get(expected, expected)}; " \
           f"set data.layout={layout} (or auto)"
