"""The dataset layouts by name: what each one is called, how it shows on disk, what its root holds.

The one owner of what config, the CLI and the data layer's messages know about a layout (it imports
nothing of vidkd). How a layout is recognised and read is the data layer's: `data.records.ON_DISK`
(its annotation files) and `data.datasets.LOADERS` (its loader), one entry each, checked against
this registry.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class LayoutSpec:
    """One dataset layout (`data.layout`)."""

    name: str
    title: str  # as messages name the dataset: "UCF101"
    marker: str  # the files that identify it on disk, as messages name them
    holds: str  # what its root holds: the folder to pass as data.root
    inner_folders: tuple[str, ...] = ()  # folders inside its root a user may pass by mistake
    one_split: bool = False  # one official split (train and validation) rather than three

    @property
    def hint(self) -> str:
        return f"{self.title} ({self.marker})"


LAYOUT_SPECS: dict[str, LayoutSpec] = {spec.name: spec for spec in (
    LayoutSpec("ucf101", "UCF101", "splits/classInd.txt", "videos/ and splits/", ("videos", "splits")),
    LayoutSpec("hmdb51", "HMDB51", "splits/*_test_split*.txt", "videos/ and splits/", ("videos", "splits")),
    LayoutSpec("folder", "a folder of classes", "one sub-folder of videos per class", "one sub-folder of videos per class"),
    LayoutSpec("kinetics", "Kinetics", "annotations/train.csv", "annotations/ and videos/", ("videos", "annotations"),
               one_split=True),
    LayoutSpec("ssv2", "Something-Something v2", "labels.json, train.json", "labels.json, train.json and validation.json",
               ("videos", "20bn-something-something-v2"), one_split=True),
)}
LAYOUTS = tuple(LAYOUT_SPECS)  # ("ucf101", "hmdb51", "folder", "kinetics", "ssv2")
