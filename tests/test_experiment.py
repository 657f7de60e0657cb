"""The grid runner on a tiny dataset: plan order, a real run, skip on re-run, resume, dry run, report."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
import yaml

from tiny_runs import TINY_SETTINGS
from vidkd import runs
from vidkd.errors import ConfigError
from vidkd.apps.grid import plan_experiment, plan_runs, run_experiment
from vidkd.config import load_experiment
from vidkd.report import write_report


def _base(data_root: Path) -> dict:
    base: dict = {}
    for item in [f"data.root={data_root}", *TINY_SETTINGS, "train.epochs=1"]:
        key, value = item.split("=", 1)
        section, name = key.split(".")
        base.setdefault(section, {})[name] = yaml.safe_load(value)
    return base


def _write_config(path: Path, data_root: Path, **extra) -> Path:
    config = {"name": "tiny", "base": _base(data_root), "baselines": ["r3d", "c3d"], "teachers": ["r3d"],
              "students": ["c3d", "r3d"], "seeds": [0], "teacher": {"temperature": 2.0},
              "evaluations": ["retrieval"], "random_init": False, **extra}
    path.write_text(yaml.safe_dump(config))
    return path


def test_plan_orders_baselines_then_same_then_cross_architecture(tmp_path, data_root):
    exp = load_experiment(_write_config(tmp_path / "e.yaml", data_root, teachers=["r3d", "c3d"], seeds=[0, 1]))
    names = [r.name for r in plan_runs(exp)]
    assert names[:4] == ["baseline_r3d_s0", "baseline_c3d_s0", "baseline_r3d_s1", "baseline_c3d_s1"]
    assert names[4:6] == ["kd_r3d_to_r3d_s0", "kd_c3d_to_c3d_s0"]
    assert set(names[6:8]) == {"kd_r3d_to_c3d_s0", "kd_c3d_to_r3d_s0"}
    assert len(names) == 4 + 8


def test_config_mistakes_are_refused(tmp_path, data_root):
    with pytest.raises(ConfigError, match="no baseline"):
        load_experiment(_write_config(tmp_path / "a.yaml", data_root, teachers=["r21d"]))
    with pytest.raises(ConfigError, match="unknown evaluation"):
        load_experiment(_write_config(tmp_path / "b.yaml", data_root, evaluations=["vibes"]))
    with pytest.raises(ConfigError, match="did you mean"):
        plan_experiment(_write_config(tmp_path / "c.yaml", data_root), tmp_path / "x", ["train.epoch=3"])


def test_the_grid_runs_skips_finished_work_and_reports(tmp_path, data_root, capsys, caplog):
    torch.set_num_threads(1)
    config = _write_config(tmp_path / "tiny.yaml", data_root)
    out = tmp_path / "grid"
    printed = plan_experiment(config, out)
    assert "kd_r3d_to_c3d_s0" in printed and "to run" in printed
    assert not (out / "runs").exists()  # a dry run trains nothing

    run_experiment(config, out)
    plan = json.loads((out / "plan.json").read_text())
    assert plan["dataset"] == "synthetic" and len(plan["runs"]) == 4
    for run in plan["runs"]:
        metrics = (out / run["run_dir"] / "metrics.jsonl").read_text().splitlines()
        assert json.loads(metrics[-1])["epoch"] == 1
        result = json.loads((out / run["run_dir"] / "eval" / "retrieval.json").read_text())
        assert 0.0 <= result["metrics"]["R@1"] <= 1.0
    student = out / "runs" / "kd_r3d_to_c3d_s0"
    assert "train_kd_loss" in json.loads((student / "metrics.jsonl").read_text().splitlines()[-1])

    stamps = {p: p.stat().st_mtime_ns for p in out.glob("runs/*/checkpoints/last/model.safetensors")}
    run_experiment(config, out)  # everything is done: nothing is trained again
    assert stamps == {p: p.stat().st_mtime_ns for p in out.glob("runs/*/checkpoints/last/model.safetensors")}

    run_experiment(config, out, ["train.epochs=2"])  # a longer budget resumes every run from epoch 1
    # ... and says that an extended cosine run is not a fresh one of the new length
    assert "train.epochs changed from 1 to 2; its first 1 epochs followed the 1-epoch cosine schedule" in caplog.text
    for run in plan["runs"]:
        epochs = [json.loads(line)["epoch"] for line in (out / run["run_dir"] / "metrics.jsonl").read_text().splitlines()]
        assert epochs == [0, 1, 2]

    report = write_report(out)
    text = report.read_text()
    assert "kd_r3d_to_c3d" in text or "c3d" in text
    assert (report.parent / "report.html").is_file()
    assert any((report.parent / "figures").glob("*.png"))


@pytest.mark.parametrize("setting,extra,shown", [
    ("fraction", {"eval": {"fraction": 0.25, "linear_steps": 20}}, "evaluated on 25% of the labels"),
    ("split", {"eval": {"linear_steps": 20}}, "evaluated on split 2"),
])
def test_a_grid_on_a_labelled_fraction_or_another_split_reports_its_results(tmp_path, data_root, setting, extra,
                                                                            shown):
    torch.set_num_threads(1)
    config = _write_config(tmp_path / "one.yaml", data_root, baselines=["r3d"], teachers=[], students=[],
                           evaluations=["knn", "linear"], **extra)
    out = tmp_path / "grid"
    run_experiment(config, out, ["data.split=2"] if setting == "split" else [])
    eval_dir = runs.eval_dir(runs.experiment_run_dir(out, "baseline_r3d_s0"))
    split, fraction = (2, 1.0) if setting == "split" else (1, 0.25)
    assert runs.result_path(eval_dir, "linear", split, fraction).is_file()
    assert runs.result_name("linear", split, fraction) != "linear.json"  # the case the report used to miss
    md = write_report(out).read_text()
    assert shown in md
    row = next(line for line in md.splitlines() if line.startswith("| R3D ×0.125 | 1 |") and "%" not in line
               and line.count("|") == 5)
    knn, linear = (cell.strip() for cell in row.split("|")[3:5])
    assert knn != "—" and linear != "—"
    assert float(linear) == pytest.approx(100 * json.loads(
        runs.result_path(eval_dir, "linear", split, fraction).read_text())["metrics"]["test_top1"], abs=0.051)


def test_another_methods_section_set_in_an_experiment_is_planned_and_compared_by_its_keys(tmp_path):
    """config.yaml leaves out another method's section at its defaults: comparisons read every section."""
    paper = plan_experiment("paper_ucf101", tmp_path / "paper", overrides=["base.vcop.hidden=256"])
    assert "vcop.hidden 256 (reference 512)" in paper
    text = plan_experiment("kd_study_synthetic", tmp_path / "study", overrides=["base.vcop.hidden=256"])
    assert "baseline_r3d" in text


def test_the_paper_grid_dry_run_names_recipe_and_protocol_per_run(tmp_path):
    text = plan_experiment("paper_ucf101", tmp_path / "paper")
    rows = [line.split() for line in text.splitlines() if line.startswith(("baseline_", "kd_")) and ":" not in line]
    assert len(rows) == 12
    # the KD paper's 100 epochs are the one difference from the reference presets, and the plan says so
    assert all(row[1] == "pcl-ref+1" and row[2] == "pcl" for row in rows)
    notes = [line for line in text.splitlines() if "differ from the reference preset" in line]
    assert len(notes) == 3 and all(note.endswith("in train.epochs 100 (reference 200)") for note in notes)
    other_seed = plan_experiment("paper_ucf101", tmp_path / "paper", ["seeds=[0]", "train.epochs=200"])
    assert "differ from the reference preset pcl_r3d_ucf101 in train.seed 0 (reference 632)" in other_seed
    text = plan_experiment("demo_synthetic", tmp_path / "demo")
    rows = [line.split() for line in text.splitlines() if line.startswith(("baseline_", "kd_"))]
    assert rows and all(row[1] == "pcl-vidkd" and row[2] == "vidkd" for row in rows)


def test_the_demo_runs_small_and_says_where_its_time_went(tmp_path, data_root, monkeypatch):
    """Run as `make demo` runs it: a relative --out, then a second time with everything finished."""
    from vidkd.apps.demo import run_demo

    torch.set_num_threads(1)
    monkeypatch.chdir(tmp_path)
    printed: list[str] = []
    small = ["train.epochs=1", "train.steps_per_epoch=2", "train.batch_size=4", "data.clip_len=8",
             "data.interval=4", "data.resize=[32,43]", "data.crop=32", "data.num_workers=0", "model.width=0.125",
             "widths={}", "baselines=[r3d]", "teachers=[r3d]", "students=[r3d]", "seeds=[0,1]",
             "evaluations=[knn,finetune]", "student_evaluations=[knn]", "eval.finetune_epochs=1",
             "train.val_tuples_per_video=1"]
    report = run_demo(Path("demo"), data_root=data_root, overrides=small, on_step=printed.append)
    text = "\n".join(printed)
    assert f"using the dataset at {data_root}" in text  # --data: the user's dataset, used as it is
    assert "where the experiment's time went" in text and "training steps" in text and "writing data" in text
    assert "training steps of fine-tuning evaluations" in text and "fine-tuning evaluations: setup and testing" in text
    share = re.search(r"(\d+)% of the time is training steps \(pretraining (\d+)%, fine-tuning evaluations (\d+)%\)", text)
    assert share and abs(int(share[1]) - int(share[2]) - int(share[3])) <= 1  # the two kinds of steps add up
    # one random network per seed; the first seed's is also fine-tuned on every label (the supervised reference)
    for seed in (0, 1):
        results = runs.eval_dir(runs.random_init_dir(tmp_path / "demo", "r3d", seed))
        assert runs.result_path(results, "finetune", 1, 0.1).is_file()
        assert runs.result_path(results, "finetune").is_file() == (seed == 0)
    supervised = json.loads(runs.result_path(runs.eval_dir(runs.random_init_dir(tmp_path / "demo", "r3d", 0)),
                                             "finetune").read_text())
    assert supervised["settings"]["fraction"] == 1.0 and supervised["settings"]["backbone_lr_scale"] == 1.0
    assert 0 < supervised["metrics"]["train_seconds"] < supervised["seconds"]
    # the students get only their own evaluations (student_evaluations), the baselines every one
    student, baseline = (runs.eval_dir(tmp_path / "demo" / "runs" / f"{name}_s0") for name in ("kd_r3d_to_r3d", "baseline_r3d"))
    assert runs.result_path(student, "knn").is_file() and not runs.result_path(student, "finetune", 1, 0.1).exists()
    assert runs.result_path(baseline, "finetune", 1, 0.1).is_file()
    summary = json.loads((report.parent / "summary.json").read_text())
    rows = {r["protocol"]: r for r in summary["ssl_vs_random"] if r["arch"] == "r3d"}
    assert set(rows) == {"knn", "finetune"} and rows["knn"]["seeds"] == [0, 1]
    assert rows["knn"]["difference_ci95"] is not None and rows["finetune"]["supervised"] is not None
    assert rows["finetune"]["supervised_seeds"] == [0]
    assert any(c["claim"].startswith("pretraining beats random init on kNN") for c in summary["claims"])
    md = report.read_text()
    assert "## Where the time went" in md and "## What pretraining buys" in md
    assert "(seed 0 only)" in md and "(students: knn)" in md and "no finetune result" not in md

    # a second run finds everything done: the same results, and a time table of the whole experiment
    first_steps = float(re.search(r"training steps +([\d.]+) min", text)[1])
    printed.clear()
    assert run_demo(Path("demo"), data_root=data_root, overrides=small, on_step=printed.append) == report
    again = "\n".join(printed)
    assert json.loads((report.parent / "summary.json").read_text()) == summary
    assert float(re.search(r"training steps +([\d.]+) min", again)[1]) == first_steps
    shares = [int(s) for s in re.findall(r"min +(\d+)%", again)]
    assert len(shares) >= 5 and max(shares) <= 100 and 98 <= sum(shares) <= 102


def test_a_finished_grid_evaluated_again_with_new_eval_settings_uses_them(tmp_path, data_root):
    """A finished run's config.yaml keeps the eval section it was trained with; the grid's wins."""
    torch.set_num_threads(1)
    config = _write_config(tmp_path / "one.yaml", data_root, baselines=["r3d"], teachers=[], students=[],
                           evaluations=["linear"], eval={"linear_steps": 10})
    out = tmp_path / "grid"
    run_experiment(config, out)
    eval_dir = runs.eval_dir(runs.experiment_run_dir(out, "baseline_r3d_s0"))
    assert runs.result_path(eval_dir, "linear").is_file()
    run_experiment(config, out, ["eval.fraction=0.5"])
    record = json.loads(runs.result_path(eval_dir, "linear", 1, 0.5).read_text())
    assert record["settings"]["fraction"] == 0.5 and record["settings"]["steps"] == 10


def test_a_result_computed_with_other_eval_settings_is_computed_again(tmp_path, data_root, caplog):
    """Only a result whose own settings changed: the others, and unchanged re-runs, are kept."""
    torch.set_num_threads(1)
    config = _write_config(tmp_path / "one.yaml", data_root, baselines=["r3d"], teachers=[], students=[],
                           evaluations=["knn", "linear"], eval={"linear_steps": 10})
    out = tmp_path / "grid"
    run_experiment(config, out)
    eval_dir = runs.eval_dir(runs.experiment_run_dir(out, "baseline_r3d_s0"))
    linear, knn = runs.result_path(eval_dir, "linear"), runs.result_path(eval_dir, "knn")
    assert json.loads(linear.read_text())["eval"]["linear_steps"] == 10
    written = {path: path.stat().st_mtime_ns for path in (linear, knn)}

    run_experiment(config, out)  # nothing changed: nothing is evaluated again
    assert {path: path.stat().st_mtime_ns for path in written} == written

    with caplog.at_level("INFO", logger="vidkd.experiment"):
        run_experiment(config, out, ["eval.linear_steps=20"])
    record = json.loads(linear.read_text())
    assert record["settings"]["steps"] == 20 and record["eval"]["linear_steps"] == 20
    assert knn.stat().st_mtime_ns == written[knn]  # kNN does not depend on the linear probe's steps
    assert "eval.linear_steps" in caplog.text and "evaluating again" in caplog.text

    knn.write_text("{not json")  # a damaged result is computed again, not skipped
    run_experiment(config, out, ["eval.linear_steps=20"])
    assert "top1" in json.loads(knn.read_text())["metrics"]


def test_a_demo_directory_of_an_older_synthetic_format_is_refused_in_one_line(tmp_path, capsys):
    """Its finished runs were trained on other videos: reusing them would mix two benchmarks."""
    from vidkd.cli import main

    data = tmp_path / "demo" / "data"
    data.mkdir(parents=True)
    (data / "synthetic.json").write_text(json.dumps({"parameters": {"format_version": 1}}))
    (data / "videos").mkdir()
    finished = tmp_path / "demo" / "runs" / "baseline_r3d_s0"
    finished.mkdir(parents=True)
    (finished / "metrics.jsonl").write_text("{}\n")
    assert main(["demo", "--out", str(tmp_path / "demo")]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert "remove" in err and "--out" in err
    assert (finished / "metrics.jsonl").read_text() == "{}\n" and (data / "synthetic.json").is_file()  # nothing lost


@pytest.mark.parametrize("override, message", [
    ("supervised_epochs=0", "'supervised_epochs' must be at least 1"),
    ("supervised_seeds=[5]", "supervised_seeds must be some of the experiment's seeds"),
    ("student_evaluations=[knnn]", "unknown evaluation 'knnn'"),
    ("random_init=false", "set random_init: true"),
    ("eval.finetune_fraction=1.0", "set eval.finetune_fraction below 1"),
    ("eval.finetune_fraction=1.5", "'eval.finetune_fraction' must be in (0, 1]"),
    ("eval.linear_weight_decay=[]", "'eval.linear_weight_decay' needs one or more non-negative numbers"),
    ("eval.linear_weight_decay=[0.1,-1]", "'eval.linear_weight_decay' needs one or more non-negative numbers"),
])
def test_the_benchmark_keys_are_checked_before_anything_runs(tmp_path, capsys, override, message):
    from vidkd.cli import main

    out = tmp_path / "x"
    assert main(["experiment", "--config", "demo_synthetic", "--out", str(out), "--set", override]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not out.exists()  # nothing written


def test_an_architecture_can_have_its_own_epoch_budget(tmp_path, capsys):
    from vidkd.apps.grid import plan_runs, run_config
    from vidkd.cli import main
    from vidkd.config import load_experiment

    preset = load_experiment("demo_synthetic")
    default = run_config(preset, plan_runs(preset)[0], tmp_path).train.epochs
    exp = load_experiment("demo_synthetic", ["epochs_by_arch.r21d=20"])
    epochs = {run.name: run_config(exp, run, tmp_path).train.epochs for run in plan_runs(exp)}
    assert default != 20
    assert epochs["baseline_r21d_s0"] == epochs["kd_r3d_to_r21d_s2"] == 20  # the student and its twin alike
    assert epochs["baseline_r3d_s0"] == epochs["kd_r3d_to_r3d_s1"] == default
    assert main(["experiment", "--config", "demo_synthetic", "--dry-run", "--set", "epochs_by_arch.c3d=0"]) == 2
    assert "'epochs_by_arch.c3d' must be a whole number of epochs >= 1" in capsys.readouterr().err


def test_an_architecture_can_have_its_own_learning_rate(tmp_path, capsys):
    from vidkd.apps.grid import plan_runs, run_config
    from vidkd.cli import main
    from vidkd.config import load_experiment

    exp = load_experiment("demo_synthetic", ["lr_by_arch.r21d=0.0007", "train.lr=0.003"])
    lrs = {run.name: run_config(exp, run, tmp_path).train.lr for run in plan_runs(exp)}
    assert lrs["baseline_r21d_s0"] == lrs["kd_r3d_to_r21d_s2"] == 0.0007  # the student and its twin alike
    assert lrs["baseline_r3d_s0"] == lrs["kd_r3d_to_r3d_s1"] == 0.003
    # the C3D demo (`--set baselines=[r3d,c3d] students=[r3d,c3d]`) keeps C3D's own width and rate
    c3d = load_experiment("demo_synthetic", ["baselines=[r3d,c3d]", "students=[r3d,c3d]"])
    configs = {run.name: run_config(c3d, run, tmp_path) for run in plan_runs(c3d)}
    assert configs["baseline_c3d_s0"].train.lr == configs["kd_r3d_to_c3d_s1"].train.lr == 0.001
    assert configs["baseline_c3d_s0"].model.width == 0.125 and configs["baseline_r3d_s0"].model.width == 0.25
    assert main(["experiment", "--config", "demo_synthetic", "--dry-run", "--set", "lr_by_arch.c3d=0"]) == 2
    assert "'lr_by_arch.c3d' must be a learning rate > 0" in capsys.readouterr().err
