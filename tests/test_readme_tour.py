"""The README's tour, command by command, as written, on a tiny dataset (size options appended)."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
import torch

from vidkd.cli import main

REPO = Path(__file__).resolve().parents[1]

# What makes each command small; the commands themselves are taken from README.md unchanged.
TINY = {
    "synth": ["--classes", "3", "--groups", "4", "--clips-per-group", "2", "--frames", "48", "--size", "64x48"],
    "data": ["--min-frames", "32"],
    "pretrain": ["--set", "train.epochs=1", "--set", "train.steps_per_epoch=2", "--set", "train.batch_size=4",
                 "--set", "model.width=0.125", "--set", "data.num_workers=0", "--set", "ssl.nce_negatives=16"],
    "evaluate": [],
    "experiment": ["--set", "train.epochs=1", "--set", "train.steps_per_epoch=2", "--set", "train.batch_size=4",
                   "--set", "data.clip_len=8", "--set", "data.interval=4", "--set", "data.resize=[32,43]",
                   "--set", "data.crop=32", "--set", "data.num_workers=0", "--set", "model.width=0.125",
                   "--set", "widths={}", "--set", "baselines=[r3d,c3d]", "--set", "students=[c3d]",
                   "--set", "evaluations=[knn]", "--set", "random_init=false", "--set", "supervised=false",
                   "--set", "seeds=[0]"],
    "report": [],
    "export": [],
}


def tour_commands() -> list[list[str]]:
    text = (REPO / "README.md").read_text()
    tour = re.search(r"<!-- tour:start -->(.*?)<!-- tour:end -->", text, re.S)
    assert tour, "README.md lost its tour markers"
    commands = []
    for line in tour.group(1).splitlines():
        line = line.strip()
        if line.startswith("vidkd "):
            commands.append(shlex.split(line)[1:])
    return commands


def test_the_tour_has_the_whole_story():
    verbs = [c[0] for c in tour_commands()]
    for verb in ("synth", "data", "pretrain", "evaluate", "experiment", "report", "export"):
        assert verb in verbs, verb
    assert any("--teacher" in c for c in tour_commands())


@pytest.mark.slow
def test_every_tour_command_runs(tmp_path, monkeypatch, capsys):
    torch.set_num_threads(1)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "configs").symlink_to(REPO / "configs")
    for args in tour_commands():
        code = main(args + ([] if "--dry-run" in args else TINY[args[0]]))  # a dry run trains nothing
        captured = capsys.readouterr()
        assert code == 0, f"`vidkd {' '.join(args)}` failed: {captured.err[-2000:]}"
    assert (tmp_path / "runs" / "grid" / "report" / "report.html").is_file()
    assert (tmp_path / "runs" / "c3d_student" / "export" / "backbone.onnx").is_file()
