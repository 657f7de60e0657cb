"""The teacher-strength study: teacher budgets, KD arms and draws in the grid, and its report."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml

from tiny_runs import TINY_SETTINGS
from vidkd import runs
from vidkd.apps.grid import plan_experiment, plan_runs, run_config, run_experiment
from vidkd.cli import main
from vidkd.config import load_experiment
from vidkd.errors import ConfigError
from vidkd.report import write_report
from vidkd.report.results import Run
from vidkd.report.study import CellResult, Pair, plateau_epoch, read_pairs, verdict

TINY_DATA = {"classes": 3, "groups": 4, "clips_per_group": 2, "frames": 48, "size": [64, 48]}


def _base() -> dict:
    base: dict = {}
    for item in [*TINY_SETTINGS, "train.epochs=1", "train.knn_every=0", "train.best_by=last"]:
        key, value = item.split("=", 1)
        section, name = key.split(".")
        base.setdefault(section, {})[name] = yaml.safe_load(value)
    return base


def _study(path: Path, **extra) -> Path:
    config = {"name": "tiny_study", "base": _base(), "baselines": ["r3d"], "teachers": ["r3d"], "students": ["r3d"],
              "seeds": [0, 1], "teacher": {"temperature": 2.0}, "teacher_epochs": [1, 2],
              "arms": {"relational": {"teacher": {"alpha": 0.0, "relational_weight": 1.0}, "teacher_epochs": [2]},
                       "paper": {"teacher_epochs": [2], "epochs": 2}},
              "draws": [0, 1], "synthetic": TINY_DATA, "evaluations": ["knn"], "random_init": False, **extra}
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def test_budgets_and_arms_plan_teachers_students_and_their_settings(tmp_path):
    exp = load_experiment(_study(tmp_path / "s.yaml", seeds=[0]))
    planned = {r.name: r for r in plan_runs(exp)}
    # the budget equal to the runs' epochs is the baseline itself: no separate teacher run
    assert list(planned) == ["baseline_r3d_s0", "teacher_r3d_e2_s0", "kd_r3de1_to_r3d_s0", "kd_r3de2_to_r3d_s0",
                             "kd_r3de2_to_r3d_relational_s0", "kd_r3de2_to_r3d_paper_s0"]
    assert planned["kd_r3de1_to_r3d_s0"].teacher_run == "baseline_r3d_s0"
    assert planned["kd_r3de2_to_r3d_s0"].teacher_run == "teacher_r3d_e2_s0"
    out = tmp_path / "out"
    configs = {name: run_config(exp, run, out) for name, run in planned.items()}
    assert configs["teacher_r3d_e2_s0"].train.epochs == 2 and configs["kd_r3de2_to_r3d_s0"].train.epochs == 1
    assert configs["kd_r3de2_to_r3d_paper_s0"].train.epochs == 2  # the paper's design: as long as the teacher
    relational = configs["kd_r3de2_to_r3d_relational_s0"].teacher
    assert (relational.alpha, relational.relational_weight, relational.temperature) == (0.0, 1.0, 2.0)
    assert relational.path == str(runs.experiment_run_dir(out, "teacher_r3d_e2_s0"))
    assert configs["kd_r3de2_to_r3d_s0"].teacher.alpha == 1.0


def test_the_demo_grid_plans_the_same_runs_as_before(tmp_path):
    exp = load_experiment(_study(tmp_path / "s.yaml", teacher_epochs=[], arms={}, draws=[], synthetic={}))
    assert [r.name for r in plan_runs(exp)] == ["baseline_r3d_s0", "baseline_r3d_s1", "kd_r3d_to_r3d_s0",
                                                "kd_r3d_to_r3d_s1"]


@pytest.mark.parametrize("extra,message", [
    ({"arms": {"Bad-Name": {}}}, "lower-case letters and digits"),
    ({"arms": {"x": {"students": ["c3d"]}}}, "must be some of students"),
    ({"arms": {"x": {"teacher_epochs": [3]}}}, "must be some of teacher_epochs"),
    ({"arms": {"x": {"teacher": {"relational_wieght": 1}}}}, "did you mean"),
    ({"arms": {"x": {"epochs": 0}}}, "whole number of epochs"),
    ({"arms": {"x": {"colour": "red"}}}, "must be a mapping of teacher, teacher_epochs, students, epochs"),
    ({"teacher_epochs": [2, 2]}, "distinct whole numbers"),
    ({"draws": [-1]}, "distinct whole numbers >= 0"),
    ({"synthetic": {"colour": 1}}, "no setting of the synthetic dataset"),
    ({"draws": [], "synthetic": {"classes": 3}}, "describes the datasets of `draws`"),
])
def test_study_mistakes_are_one_line_errors(tmp_path, capsys, extra, message):
    config = _study(tmp_path / "s.yaml", **extra)
    assert main(["experiment", "--config", str(config), "--dry-run", "--out", str(tmp_path / "o")]) != 0
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def _run(name: str, kind: str, values: list[float], seed: int = 0, epochs: int | None = None, **extra) -> Run:
    metrics = [{"epoch": e, "val_pretext_acc": v} for e, v in enumerate(values, start=1)]
    return Run(name, kind, "r3d", extra.pop("teacher_arch", None), None, seed, Path(name), epochs or len(values),
               metrics=metrics, **extra)


def test_the_plateau_is_where_the_smoothed_curve_stops_rising():
    rising_then_flat = [0.2, 0.3, 0.4, 0.5, 0.55, 0.56, 0.56, 0.57, 0.56, 0.57]
    assert plateau_epoch(_run("a", "teacher", rising_then_flat)) == 6  # smoothed: .537 at 5, .557 at 6, at most .567 after
    assert plateau_epoch(_run("b", "teacher", [0.1 * i for i in range(1, 11)])) is None  # still rising
    assert plateau_epoch(_run("c", "teacher", [0.2, 0.3])) is None  # too short to tell


def test_gains_epochs_saved_and_verdicts_pair_by_draw_and_seed():
    pairs = []
    for draw in (0, 1):
        for seed in (0, 1, 2):
            twin = _run("twin", "baseline", [0.2, 0.3, 0.4, 0.5], seed)
            student = _run("student", "student", [0.3, 0.5, 0.55, 0.6 + 0.01 * seed], seed, teacher_arch="r3d",
                           teacher_epochs=32)
            pairs.append(Pair(draw, seed, student, twin, teacher_accuracy=0.55))
    cell = CellResult("r3d", 32, None, pairs)
    assert cell.gains("best_pretext") == pytest.approx([0.1, 0.11, 0.12] * 2)
    assert cell.gains("best_pretext", draw=1) == pytest.approx([0.1, 0.11, 0.12])
    saved, reached = cell.epochs_saved()
    assert saved == [2.0] * 6 and reached == 6  # the twin's best (0.5) at epoch 4, the student's at 2
    assert verdict(cell.gains("best_pretext")) == "holds"
    assert verdict(cell.over_teacher()) == "holds"
    assert verdict([-0.1, 0.1, 0.0]).startswith("undecided")
    assert verdict([-0.1, -0.12, -0.11]).startswith("fails")


def test_a_tiny_study_runs_per_draw_reports_and_skips_finished_work(tmp_path, capsys):
    torch.set_num_threads(1)
    config, out = _study(tmp_path / "s.yaml", seeds=[0], arms={"paper": {"teacher_epochs": [2], "epochs": 2}}), \
        tmp_path / "study"
    printed = plan_experiment(config, out)
    assert "once per draw" in printed and "kd_r3de2_to_r3d_paper_s0" in printed
    run_experiment(config, out)
    seeds = [json.loads((runs.draw_data_dir(out, d) / "synthetic.json").read_text())["parameters"]["seed"]
             for d in (0, 1)]
    assert seeds == [0, 1]
    timing = json.loads(runs.timing_path(out).read_text())
    assert set(timing) == {"draw 0", "draw 1"}

    pairs, _ = read_pairs(out)
    assert len(pairs) == 2 * 3  # draws x (two budgets, the paper arm)
    assert {p.twin.name for p in pairs if p.student.arm == "paper"} == {"teacher_r3d_e2_s0"}  # the teacher's own curve
    assert {p.twin.name for p in pairs if p.student.arm is None} == {"baseline_r3d_s0"}

    stamps = {p: p.stat().st_mtime_ns for p in out.glob("draw_*/runs/*/checkpoints/last/model.safetensors")}
    run_experiment(config, out)  # finished: nothing trained again, no time added beyond the checks
    assert stamps == {p: p.stat().st_mtime_ns for p in out.glob("draw_*/runs/*/checkpoints/last/model.safetensors")}

    assert main(["report", str(out)]) == 0
    report = (out / "report" / "report.md").read_text()
    assert "The paper's claims, by regime" in report and "R3D 2 ep ← R3D 2 ep (paper)" in report
    assert (out / "report" / "figures" / "kd_study_gain.png").is_file()
    assert (out / "draw_1" / "report" / "report.md").is_file()
    study = json.loads((out / "report" / "study.json").read_text())
    assert {(c["teacher_epochs"], c["arm"]) for c in study["cells"]} == {(1, None), (2, None), (2, "paper")}
    assert all(c["knn"]["n"] == 2 and c["knn"]["ci95"] is not None for c in study["cells"])
