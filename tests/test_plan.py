"""The plan record (vidkd/plan.py): its JSON round trip, lenient and strict reading."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from vidkd import runs
from vidkd.plan import Plan, PlanEntry, PlanError


def _plan() -> Plan:
    return Plan(
        name="grid", dataset="synthetic", dataset_root="data/synthetic", layout="ucf101", split=2, epochs=8,
        fraction=0.5, finetune_fraction=0.1, protocol="pcl", seeds=(0, 1), evaluations=("knn", "finetune"),
        student_evaluations=("knn",),
        runs=(PlanEntry("baseline_r3d_s0", "baseline", "r3d", 0, epochs=8, run_dir="runs/baseline_r3d_s0", width=0.25,
                        method="pcl"),
              PlanEntry("student_r21d_r3d_s0", "student", "r21d", 0, teacher_arch="r3d", teacher_run="baseline_r3d_s0",
                        epochs=8, teacher_epochs=16, arm="feature", run_dir="runs/student_r21d_r3d_s0")))


def test_a_plan_survives_its_json_and_keeps_the_key_order_of_plan_json():
    plan = _plan()
    text = json.dumps(plan.to_json())
    assert Plan.from_json(json.loads(text)) == plan
    keys = list(plan.to_json())
    assert keys[0] == "name" and keys[-1] == "runs" and keys.index("split") < keys.index("epochs")
    assert list(plan.to_json()["runs"][0]) == ["name", "kind", "arch", "seed", "teacher_arch", "teacher_run", "epochs",
                                               "teacher_epochs", "arm", "run_dir", "width", "method"]


def test_labelled_fractions_and_evaluations_per_kind():
    plan = _plan()
    assert plan.labelled_fraction() == 0.5 and plan.labelled_fraction("finetune") == 0.1
    assert plan.evaluations_of("student") == ("knn",) and plan.evaluations_of("baseline") == ("knn", "finetune")
    plain = Plan.from_json({"runs": [], "fraction": 0.25, "evaluations": ["knn"]})
    assert plain.labelled_fraction("finetune") == 0.25  # no finetune_fraction: the fraction
    assert plain.evaluations_of("student") == ("knn",)  # no student_evaluations: every evaluation


@pytest.mark.parametrize("values, expected", [
    ({"split": "two"}, {"split": 1}),
    ({"split": None}, {"split": 1}),
    ({"fraction": "half"}, {"fraction": 1.0}),
    ({"finetune_fraction": 0}, {"finetune_fraction": None}),
    ({"protocol": "unknown"}, {"protocol": "vidkd"}),
    ({"epochs": "8"}, {"epochs": None}),
    ({"evaluations": "knn"}, {"evaluations": ()}),
    ({"seeds": 3}, {"seeds": ()}),
    ({"seeds": "01"}, {"seeds": ()}),
])
def test_a_malformed_value_takes_its_default(values, expected):
    plan = Plan.from_json({"runs": [{"name": "a", "kind": "baseline", "arch": "r3d"}, "not an entry"], **values})
    assert {key: getattr(plan, key) for key in expected} == expected
    assert [entry.name for entry in plan.runs] == ["a"]  # entries that are not objects are left out


@pytest.mark.parametrize("value", [None, [], {"runs": "all"}, {"name": "no runs"}])
def test_json_without_a_list_of_runs_is_not_a_plan(value):
    with pytest.raises(PlanError):
        Plan.from_json(value)


def test_an_entry_finds_its_run_directory(tmp_path: Path):
    assert PlanEntry("x", "baseline", "r3d", run_dir="elsewhere/x").path(tmp_path) == tmp_path / "elsewhere" / "x"
    assert PlanEntry("x", "baseline", "r3d").path(tmp_path) == runs.experiment_run_dir(tmp_path, "x")
    # keys a later vidkd may add are ignored, not fatal
    assert PlanEntry.from_json({"name": "x", "kind": "baseline", "arch": "r3d", "future": 1}).name == "x"
