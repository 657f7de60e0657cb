"""What a dataset is to vidkd (records of videos in splits), and which layout a directory holds.

The bottom of the data layer: the layout loaders (`datasets`, `layouts`) build on it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from vidkd.layout_specs import LAYOUT_SPECS

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


KINETICS_ANNOTATIONS = {"train": ("train.csv",), "test": ("validate.csv", "val.csv")}


def parent_hint(root: Path) -> str | None:
    """The error for a root that is an inner folder (videos/, splits/, ...) of a dataset one level up."""
    if not any(root.name in spec.inner_folders for spec in LAYOUT_SPECS.values()):
        return None
    kind = layout_on_disk(root.parent)
    if kind is None or root.name not in LAYOUT_SPECS[kind].inner_folders:
        return None
    spec = LAYOUT_SPECS[kind]
    return (f"{root} is the {root.name}/ folder of the {spec.title} dataset at {root.parent}; pass {root.parent} "
            f"as the dataset root (the folder that holds {spec.holds})")


def kinetics_annotation(root: Path, subset: str) -> Path | None:
    """ROOT/annotations/train.csv (subset 'train') or validate.csv / val.csv ('test'), when it exists."""
    for name in KINETICS_ANNOTATIONS[subset]:
        path = root / "annotations" / name
        if path.is_file():
            return path
    return None


# how each layout with annotation files shows on disk (a few stats, no listing of the videos), in the
# order they are tried; the folder layout has none (data.datasets recognises it by its videos)
ON_DISK: dict[str, Callable[[Path], bool]] = {
    "ucf101": lambda root: (root / "splits" / "classInd.txt").is_file(),
    "hmdb51": lambda root: (root / "splits").is_dir() and any((root / "splits").glob("*_test_split*.txt")),
    "kinetics": lambda root: bool(kinetics_annotation(root, "train") or kinetics_annotation(root, "test")),
    "ssv2": lambda root: (root / "labels.json").is_file() and (
        (root / "train.json").is_file() or (root / "validation.json").is_file()),
}
assert set(ON_DISK) <= set(LAYOUT_SPECS)


def layout_on_disk(root: Path) -> str | None:
    """The layout its annotation files name (`ON_DISK`, `LayoutSpec.marker`), else None."""
    return next((name for name, found in ON_DISK.items() if found(root)), None)


def looks_like(root: Path, expected: str) -> str | None:
    """'ROOT looks like <layout> (...); set data.layout=<layout> (or auto)' when ROOT is another layout."""
    layout = layout_on_disk(root)
    if layout is None or layout == expected:
        return None
    expected_title = LAYOUT_SPECS[expected].title if expected in LAYOUT_SPECS else expected
    return f"{root} looks like {LAYOUT_SPECS[layout].hint}, not {expected_title}; set data.layout={layout} (or auto)"
