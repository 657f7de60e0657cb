"""`vidkd report`: a small experiment directory written here (plan, configs, metrics, evals) is reported."""

from __future__ import annotations

import base64
import json
import re
import shutil
from pathlib import Path

import pytest
import yaml

from vidkd.cli import main as cli_main
from vidkd.utils.checkpoint import save_checkpoint
from vidkd import report, runs
from vidkd.errors import VidkdError
from vidkd.models import build_backbone
from vidkd.plan import PlanEntry
from vidkd.result_record import ResultRecord
from vidkd import protocol_specs
from vidkd.protocol_specs import ProtocolSpec
from vidkd.report import efficiency, published, results
from vidkd.report.summary import build_summary

EPOCHS = 10
TINY = {"clip_len": 8, "crop": 32}  # small enough that the efficiency measurement takes milliseconds

# val pretext accuracy per epoch (epoch 0 = untrained). R3D baselines peak at 0.6 at epoch 8;
# the first R3D student reaches 0.57 (= 95% of 0.6) at epoch 3 and 0.6 at epoch 4.
CURVES = {
    "baseline_c3d_s0": [0.2, 0.25, 0.3, 0.35, 0.4, 0.42, 0.45, 0.47, 0.48, 0.50, 0.49],
    "baseline_c3d_s1": [0.2, 0.26, 0.31, 0.36, 0.41, 0.45, 0.48, 0.50, 0.52, 0.54, 0.53],
    "baseline_r3d_s0": [0.2, 0.3, 0.35, 0.4, 0.45, 0.5, 0.55, 0.58, 0.60, 0.59, 0.59],
    "baseline_r3d_s1": [0.2, 0.3, 0.36, 0.41, 0.46, 0.51, 0.56, 0.59, 0.60, 0.60, 0.58],
    "student_r3d_c3d_s0": [0.2, 0.4, 0.5, 0.57, 0.6, 0.61, 0.62, 0.62, 0.63, 0.63, 0.63],
    "student_r3d_c3d_s1": [0.2, 0.35, 0.45, 0.5, 0.55, 0.57, 0.6, 0.61, 0.62, 0.62, 0.62],
    "student_c3d_c3d_s0": [0.2, 0.3, 0.4, 0.45],  # still training
}

pytestmark = pytest.mark.usefixtures("single_thread")  # tiny tensors: threads cost more than they save


def plan_entry(name: str) -> dict:
    kind, arch, *rest = name.split("_")
    teacher = rest[0] if kind == "student" else None
    seed = int(name.rsplit("_s", 1)[1])
    return {"name": name, "kind": kind, "arch": arch, "teacher_arch": teacher,
            "teacher_run": f"baseline_{teacher}_s{seed}" if teacher else None, "seed": seed, "run_dir": f"runs/{name}"}


def write_run(run_dir: Path, entry: dict, curve: list[float], width: float, dataset_root: str, data: dict,
              split: int = 1, fraction: float = 1.0) -> None:
    """A finished run also gets retrieval and finetune results, named for `split` and `fraction`."""
    run_dir.mkdir(parents=True)
    config = {"name": entry["name"], "data": {"root": dataset_root, "split": split, **data},
              "model": {"arch": entry["arch"], "width": width},
              "train": {"epochs": EPOCHS, "seed": entry["seed"]},
              "teacher": {"path": f"runs/{entry['teacher_run']}" if entry["teacher_run"] else None,
                          "arch": entry["teacher_arch"]}}
    (run_dir / "config.yaml").write_text(yaml.safe_dump(config))
    lines = []
    for epoch, acc in enumerate(curve):
        line = {"epoch": epoch, "val_pretext_acc": acc, "val_knn_top1": acc / 2, "val_loss": 2.0 - acc}
        if epoch > 0:
            line.update(train_loss=3.0 - 2 * acc, train_pretext_acc=acc + 0.05, lr=0.01, epoch_seconds=30.0,
                        clips_per_second=12.0, wall_seconds=31.0 * epoch)
            if entry["kind"] == "student":
                line["train_kd_loss"] = 1.0 - acc
        if epoch % 3 == 1:
            line["val_knn_top1"] = None  # kNN is not probed every epoch
        lines.append(json.dumps(line))
    (run_dir / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    if len(curve) == EPOCHS + 1:
        best = max(curve)
        results = runs.eval_dir(run_dir)
        results.mkdir()
        runs.result_path(results, "retrieval", split, fraction).write_text(json.dumps(
            {"protocol": "retrieval", "metrics": {"R@1": best * 0.5, "R@5": best * 0.7, "R@10": best * 0.8,
                                                  "R@20": best * 0.9, "R@50": best}}))
        runs.result_path(results, "finetune", split, fraction).write_text(json.dumps(
            {"protocol": "finetune", "metrics": {"video_top1": best + 0.1, "clip_top1": best}}))


def make_experiment(root: Path, dataset: str = "synthetic", width: float = 0.125, data: dict = TINY,
                    names: list[str] | None = None, split: int = 1, fraction: float | None = None) -> Path:
    """`fraction=None`: a plan without the key (as written before it existed), read as 1.0."""
    names = names or list(CURVES)
    entries = [plan_entry(n) for n in names]
    for entry in entries:
        write_run(root / entry["run_dir"], entry, CURVES[entry["name"]], width, f"data/{dataset}", data,
                  split, 1.0 if fraction is None else fraction)
    # a planned run that has not started: no directory at all
    entries.append({"name": "student_r21d_c3d_s0", "kind": "student", "arch": "r21d", "teacher_arch": "c3d",
                    "teacher_run": "baseline_c3d_s0", "seed": 0, "run_dir": "runs/student_r21d_c3d_s0"})
    # the untrained reference the grid evaluates beside the plan (eval.random_init)
    random_results = runs.eval_dir(runs.random_init_dir(root, "r3d"))
    random_results.mkdir(parents=True)
    runs.result_path(random_results, "retrieval", split, 1.0 if fraction is None else fraction).write_text(json.dumps(
        {"protocol": "retrieval", "arch": "r3d", "width": width, "metrics": {"R@1": 0.1, "R@5": 0.3}}))
    plan = {"runs": entries, "evaluations": ["retrieval", "finetune"], "dataset": dataset, "epochs": EPOCHS,
            "split": split}
    if fraction is not None:
        plan["fraction"] = fraction
    (root / "plan.json").write_text(json.dumps(plan))
    (root / "experiment.yaml").write_text("name: test\n")
    return root


def load(tmp_path: Path, name: str) -> report.Run:
    return report.load_run(PlanEntry.from_json(plan_entry(name)), tmp_path, EPOCHS)


def test_epoch_to_reach_baseline_best(tmp_path):
    make_experiment(tmp_path)
    groups = report.group_runs(report.load_experiment(tmp_path).runs)
    baseline = report.baseline_group(groups, "r3d", 0.125)
    target = report.target_accuracy(baseline)
    assert target == pytest.approx(0.6)
    student = load(tmp_path, "student_r3d_c3d_s0")
    summary = report.summarise_run(student, target)
    assert summary.epoch_to_target == 4
    assert summary.epoch_to_near_target == 3  # 0.57 is exactly 95% of 0.6: float rounding must not hide it
    assert summary.best_pretext == pytest.approx(0.63)
    assert summary.final_pretext == pytest.approx(0.63)
    assert summary.best_knn == pytest.approx(0.315)
    assert summary.wall_seconds == pytest.approx(310.0)
    # the baseline reaches its own best at epoch 8; a curve that never gets there gives None
    assert report.summarise_run(load(tmp_path, "baseline_r3d_s0"), target).epoch_to_target == 8
    assert report.summarise_run(load(tmp_path, "baseline_c3d_s0"), target).epoch_to_target is None


def test_mean_std_and_wall_time():
    assert report.format_percent([0.50, 0.54]) == "52.0 ± 2.8"  # sample std over two seeds
    assert report.format_percent([0.5]) == "50.0"
    assert report.format_percent([0.5, None]) == "50.0 (1/2 seeds)"
    assert report.format_percent([None, None]) == "—"
    assert report.format_epochs([4, 6]) == "5.0 ± 1.4"
    # wall_seconds restarts on resume: both stretches count
    metrics = [{"epoch": 1, "wall_seconds": 10.0}, {"epoch": 2, "wall_seconds": 20.0}, {"epoch": 3, "wall_seconds": 9.0}]
    assert report.total_wall_seconds(metrics) == pytest.approx(29.0)


def test_report_of_an_experiment(tmp_path, monkeypatch):
    make_experiment(tmp_path)
    # one run has a real checkpoint, so the efficiency table shows the file size
    backbone = build_backbone("r3d", width=0.125)
    state = {f"backbone.{k}": v for k, v in backbone.state_dict().items()}
    save_checkpoint(tmp_path / "runs" / "baseline_r3d_s0" / "checkpoints" / "last", state, {"arch": "r3d"})

    md_path = report.write_report(tmp_path)
    assert md_path == tmp_path / "report" / "report.md"
    md = md_path.read_text()
    html = (tmp_path / "report" / "report.html").read_text()

    for name in CURVES:
        assert f"`{name}`" in md, name
    assert "`student_r21d_c3d_s0`" in md and "not started" in md  # the missing run is listed, not fatal
    assert "incomplete (3/10 epochs)" in md

    def row(label: str, kind: str) -> list[str]:
        line = next(l for l in md.splitlines() if l.startswith(f"| {label} | {kind} |"))
        return [c.strip() for c in line.strip("|").split("|")]

    c3d = row("C3D ×0.125", "baseline")
    assert c3d[4] == "52.0 ± 2.8"  # best val pretext, two seeds (0.50, 0.54)
    student = row("R3D ×0.125 ← C3D", "student")
    assert student[8] == "5.0 ± 1.4"  # epochs to the R3D baseline's best: 4 and 6
    assert student[9] == "4.0 ± 1.4"  # epochs to 95% of it: 3 and 5
    assert "| R3D ×0.125 ← C3D | 2 | 31.2 ± 0.4 |" in md  # retrieval R@1 = best/2 -> 31.5 and 31.0
    assert "| R3D ×0.125 (random init) | 1 | 10.0 | 30.0 | — |" in md
    assert "not comparable" in md  # synthetic data: no published numbers beside ours

    figures = sorted(p.name for p in (tmp_path / "report" / "figures").iterdir())
    assert {"baselines.png", "baselines.svg", "teacher_c3d_w0.125.png", "teacher_c3d_w0.125.svg", "train_loss.png"} <= set(figures)
    images = re.findall(r"data:image/png;base64,([A-Za-z0-9+/=]+)", html)
    assert len(images) == 3
    assert all(base64.b64decode(img)[:8] == b"\x89PNG\r\n\x1a\n" for img in images)
    assert "<table>" in html and "52.0 ± 2.8" in html

    cache = json.loads((tmp_path / "report" / "efficiency.json").read_text())
    assert set(cache) == {"c3d|w0.125|3x8x32x32", "r3d|w0.125|3x8x32x32"}
    assert cache["r3d|w0.125|3x8x32x32"]["params"] == sum(p.numel() for p in backbone.parameters())
    size_mb = (tmp_path / "runs/baseline_r3d_s0/checkpoints/last/model.safetensors").stat().st_size / 2**20
    assert f"| R3D | 0.125 | 3×8×32×32 | {cache['r3d|w0.125|3x8x32x32']['params'] / 1e6:.2f} |" in md
    assert f"| {size_mb:.1f} |" in md

    # a second report reads the cache instead of timing the networks again
    def no_measuring(*args, **kwargs):
        raise AssertionError("efficiency measured twice")

    monkeypatch.setattr(efficiency, "measure_efficiency", no_measuring)
    report.write_report(tmp_path)


def test_published_numbers_only_in_the_published_setting(tmp_path):
    # Changed with the per-setting matching: the published retrieval R@1 55.1 is torchvision's R3D-18
    # (`r3d_18`); it was wrongly set beside the one-block R3D (`r3d`), which has no published retrieval.
    md = report.write_report(published_setting_experiment(tmp_path)).read_text()
    assert "PCL R@1 (published)" in md
    assert "| R3D-18 | 1 | 30.0 | 42.0 | 48.0 | 54.0 | 60.0 | 55.1 |" in md
    assert "| R3D | 1 | 30.0 | 42.0 | 48.0 | 54.0 | 60.0 | — |" in md
    assert "R3D: no published counterpart (the reference published retrieval for R3D-18, not R3D)" in md
    assert "| R3D (random init) | 1 | 10.0 | 30.0 | — | — | — | — |" in md  # no published number beside it
    assert "PCL video top-1 on UCF101 (published)" in md
    assert "| R3D | 1 | 70.0 | 60.0 | 81.1 |" in md and "| R3D-18 | 1 | 70.0 | 60.0 | 83.4 |" in md
    assert "| R3D ← C3D | 1 | 73.0 | 63.0 | 81.1 |" in md
    assert "not comparable" not in md


def test_not_an_experiment_and_single_run(tmp_path, capsys):
    with pytest.raises(VidkdError, match="not an experiment directory"):
        report.write_report(tmp_path)
    assert cli_main(["report", str(tmp_path)]) == 2
    assert "vidkd: error:" in capsys.readouterr().err

    entry = plan_entry("baseline_r3d_s0")
    run_dir = tmp_path / "one_run"
    write_run(run_dir, entry, CURVES["baseline_r3d_s0"], 0.125, "data/synthetic", TINY)
    assert cli_main(["report", str(run_dir)]) == 0
    assert "report written to" in capsys.readouterr().out
    md = (run_dir / "report" / "report.md").read_text()
    assert "vidkd run report: one_run" in md and "| R3D ×0.125 | baseline |" in md


def test_broken_pieces_do_not_crash(tmp_path):
    make_experiment(tmp_path, names=["baseline_r3d_s0", "student_r3d_c3d_s0"])
    run_dir = tmp_path / "runs" / "student_r3d_c3d_s0"
    with open(run_dir / "metrics.jsonl", "a") as fh:
        fh.write('{"epoch": 11, "val_pre')  # cut short by a crash
    (run_dir / "eval" / "finetune.json").write_text("{not json")
    md = report.write_report(tmp_path).read_text()
    assert "metrics.jsonl line 12 is not JSON" in md
    assert "cannot read finetune.json" in md
    # the teacher (C3D baseline) is not in this plan: the student is still reported
    assert "| R3D ×0.125 ← C3D | student |" in md
    (tmp_path / "plan.json").write_text("[1, 2]")
    with pytest.raises(VidkdError, match="not a valid experiment plan"):
        report.write_report(tmp_path)



def finished_rows(md: str) -> dict[str, str]:
    return {label: next(l for l in md.splitlines() if l.startswith(f"| {label} | 2 |"))
            for label in ("R3D ×0.125", "R3D ×0.125 ← C3D")}


def test_results_of_the_planned_split_are_read(tmp_path):
    make_experiment(tmp_path, split=2)
    # a stray split-1 result must not be taken for the split-2 one
    stray = runs.result_path(runs.eval_dir(tmp_path / "runs" / "baseline_r3d_s0"), "finetune", 1, 1.0)
    stray.write_text(json.dumps({"protocol": "finetune", "metrics": {"video_top1": 0.01, "clip_top1": 0.01}}))
    assert runs.result_name("finetune", 2, 1.0) != stray.name
    md = report.write_report(tmp_path).read_text()
    assert "evaluated on split 2" in md
    assert "no retrieval" not in md and "no finetune" not in md and "no retrieval, finetune result yet" not in md
    assert "| R3D ×0.125 ← C3D | 2 | 31.2 ± 0.4 |" in md  # retrieval R@1 = best/2 -> 31.5 and 31.0
    assert "| R3D ×0.125 | 2 | 70.0 ± 0.0 | 60.0 ± 0.0 |" in md  # fine-tuning: video = best + 0.1, clip = best
    assert "| R3D ×0.125 (random init) | 1 | 10.0 | 30.0 | — |" in md


def test_results_of_the_planned_labelled_fraction_are_read(tmp_path):
    data = {"clip_len": 16, "crop": 112}
    make_experiment(tmp_path, dataset="ucf101", width=1.0, data=data, names=["baseline_r3d_s0", "student_r3d_c3d_s0"],
                    fraction=0.25)
    cached = {f"{a}|w1|3x16x112x112": {"arch": a, "width": 1.0, "input_shape": [3, 16, 112, 112], "params": p,
                                       "gflops": g, "cpu_latency_ms": 900.0, "cpu_threads": 1}
              for a, p, g in (("r3d", 14_361_792, 40.0), ("r21d", 14_365_303, 41.0))}
    runs.report_dir(tmp_path).mkdir()
    (runs.report_dir(tmp_path) / "efficiency.json").write_text(json.dumps(cached))
    md = report.write_report(tmp_path).read_text()
    assert "evaluated on 25% of the labels" in md
    assert "no retrieval, finetune result yet" not in md
    assert "| R3D | 1 | 30.0 | 42.0 | 48.0 | 54.0 | 60.0 |" in md  # retrieval of the baseline (best 0.6)
    assert "| R3D | 1 | 70.0 | 60.0 |" in md  # fine-tuning on a quarter of the labels
    assert "| R3D ← C3D | 1 | 73.0 | 63.0 |" in md
    assert "| R3D (random init) | 1 | 10.0 | 30.0 | — | — | — |" in md
    # published numbers use every label: not comparable, so not shown beside these
    assert "(published)" not in md and "not comparable" in md


def test_single_run_results_of_its_split_or_its_only_result(tmp_path):
    entry = plan_entry("baseline_r3d_s0")
    run_dir = tmp_path / "one_run"
    write_run(run_dir, entry, CURVES["baseline_r3d_s0"], 0.125, "data/synthetic", TINY, split=3)
    # one more fine-tuning result, of another fraction: the one of the run's split (3, every label) is shown
    runs.result_path(runs.eval_dir(run_dir), "finetune", 3, 0.5).write_text(json.dumps(
        {"protocol": "finetune", "metrics": {"video_top1": 0.01, "clip_top1": 0.01}}))
    # a protocol with only one result, in another setting: that one is shown
    runs.result_path(runs.eval_dir(run_dir), "knn", 1, 0.5).write_text(json.dumps(
        {"protocol": "knn", "metrics": {"top1": 0.42}}))
    md = report.write_report(run_dir).read_text()
    assert "| R3D ×0.125 | 1 | 30.0 | 42.0 | 48.0 | 54.0 | 60.0 |" in md
    assert "| R3D ×0.125 | 1 | 70.0 | 60.0 |" in md
    assert "| R3D ×0.125 | 1 | 42.0 | — |" in md


# ---------------------------------------------------------------- published numbers, per full setting

PUBLISHED_DATA = {"clip_len": 16, "crop": 112, "layout": "ucf101", "modality": "residual"}
FULL_SIZE_COSTS = {f"{a}|w1|3x16x112x112": {"arch": a, "width": 1.0, "input_shape": [3, 16, 112, 112], "params": p,
                                            "gflops": g, "cpu_latency_ms": 900.0, "cpu_threads": 1}
                   for a, p, g in (("r3d", 14_361_792, 40.0), ("r21d", 14_365_303, 41.0), ("r3d_18", 33_166_272, 41.0))}


def published_setting_experiment(root: Path, student_modality: str = "residual", student_recipe: str = "pcl") -> Path:
    """An R3D and an R3D-18 baseline and an R3D student on UCF101, in PCL's published setting (PCL (VCP),
    residual 16x112x112 clips, 200 pretraining epochs, results of eval.protocol pcl on split 1)."""
    make_experiment(root, dataset="ucf101", width=1.0, data=PUBLISHED_DATA,
                    names=["baseline_r3d_s0", "student_r3d_c3d_s0"])
    entry = {"name": "baseline_r3d_18_s0", "kind": "baseline", "arch": "r3d_18", "teacher_arch": None,
             "teacher_run": None, "seed": 0, "run_dir": "runs/baseline_r3d_18_s0"}
    write_run(root / entry["run_dir"], entry, CURVES["baseline_r3d_s1"], 1.0, "data/ucf101", PUBLISHED_DATA)
    plan = json.loads((root / "plan.json").read_text())
    plan["runs"].append(entry)
    (root / "plan.json").write_text(json.dumps(plan))
    for name in ("baseline_r3d_s0", "student_r3d_c3d_s0", "baseline_r3d_18_s0"):
        student = name.startswith("student")
        run_dir = root / "runs" / name
        config = yaml.safe_load((run_dir / "config.yaml").read_text())
        config["train"]["epochs"] = 200
        config["data"]["modality"] = student_modality if student else "residual"
        (run_dir / "config.yaml").write_text(yaml.safe_dump(config))
        for protocol in ("retrieval", "finetune"):
            path = runs.result_path(runs.eval_dir(run_dir), protocol, 1, 1.0)
            record = json.loads(path.read_text())
            record.update(settings={"recipe": student_recipe if student else "pcl"},
                          dataset={"root": "data/ucf101", "layout": "ucf101", "split": 1},
                          input={"clip_len": 16, "crop": 112, "modality": config["data"]["modality"]})
            path.write_text(json.dumps(record))
    (root / "report").mkdir()
    (root / "report" / "efficiency.json").write_text(json.dumps(FULL_SIZE_COSTS))
    return root


def test_a_mismatching_setting_lists_what_differs(tmp_path):
    md = report.write_report(published_setting_experiment(tmp_path, student_modality="rgb",
                                                          student_recipe="vidkd")).read_text()
    assert "| R3D | 1 | 70.0 | 60.0 | 81.1 |" in md  # the baseline still matches
    assert "| R3D ← C3D | 1 | 73.0 | 63.0 | — |" in md
    assert ("R3D ← C3D: differs from PCL (VCP) R3D on UCF101 (81.1) in modality rgb (published residual), "
            "evaluation protocol vidkd (published pcl)") in md


def test_published_settings_and_the_matching_rule():
    r3d_18 = next(p for p in published.PUBLISHED if p.evaluation == "retrieval")
    assert r3d_18.arch == "r3d_18" and r3d_18.values["R@1"] == 55.1  # not the one-block r3d
    assert not [p for p in published.PUBLISHED if p.evaluation == "retrieval" and p.arch == "r3d"]
    for entry in published.PUBLISHED:  # every number carries its whole setting
        assert set(entry.full_setting) == set(published.SETTING_FIELDS)
    config = {"method": "pcl", "ssl": {"pretext": "vcp", "contrastive": "memory_bank"},
              "data": {"root": "/data/ucf101", "layout": "ucf101", "split": 1, "clip_len": 16, "crop": 112,
                       "modality": "residual"}, "model": {"arch": "r3d_18", "width": 1.0}, "train": {"epochs": 200}}
    record = ResultRecord.from_json({
        "settings": {"recipe": "pcl"}, "dataset": {"layout": "ucf101", "root": "/data/ucf101", "split": 1},
        "input": {"clip_len": 16, "crop": 112, "modality": "residual"}, "width": 1.0, "metrics": {}})
    setting = published.run_setting(config, record)
    match = published.compare("retrieval", "r3d_18", setting)
    assert match.matches and match.value("R@1") == 55.1
    # HMDB51 fine-tuning picks the HMDB51 number
    hmdb = published.compare("finetune", "r3d", {**setting, "dataset": "hmdb51"})
    assert hmdb.matches and hmdb.value("video_top1") == 45.0
    # every field that differs is listed; no number is given
    other = published.compare("retrieval", "r3d_18", {**setting, "pretrain_epochs": 100, "width": 0.5, "split": 2})
    assert not other.matches and other.value("R@1") is None
    assert other.differences == ["width 0.5 (published 1)", "pretraining epochs 100 (published 200)",
                                 "evaluation split 2 (published 1)"]
    vcop = published.run_setting({**config, "method": "vcop"}, record)
    assert published.compare("retrieval", "r3d_18", vcop).differences == ["pretraining VCOP (published PCL (VCP))"]
    # a combination the reference never published: protocol pcl with a backbone it has no number for
    for arch in ("mc3_18", "r3d", "c3d"):
        unpublished = published.compare("retrieval", arch, setting)
        assert unpublished.published is None and not unpublished.matches
        assert unpublished.describe("retrieval", arch, "R@1").startswith("no published counterpart")
    assert published.compare("finetune", "mc3_18", setting).published is None
    # a record written before recipes existed is vidkd's
    assert published.run_setting(config, ResultRecord.from_json({"metrics": {}}))["recipe"] == "vidkd"
    assert published.run_setting(config, None)["recipe"] == "vidkd"


def test_summary_json_pairs_seeds_and_decides_claims_only_with_intervals(tmp_path):
    make_experiment(tmp_path)
    report.write_report(tmp_path)
    summary = json.loads((runs.report_dir(tmp_path) / "summary.json").read_text())
    assert set(summary) == {"ssl_vs_random", "kd_vs_twin", "claims"}
    (ssl,) = [r for r in summary["ssl_vs_random"] if r["arch"] == "r3d" and r["protocol"] == "retrieval"]
    # R@1 = best/2 = 0.30 for both seeds, random init 0.10: a paired difference of exactly 0.2
    assert ssl["pretrained"] == pytest.approx(0.30) and ssl["random_init"] == pytest.approx(0.10)
    assert ssl["difference_ci95"] == pytest.approx([0.2, 0.2]) and ssl["seeds"] == [0, 1]
    assert ssl["supervised"] is None  # no fine-tuning of the random network in this experiment
    rows = {(r["teacher"], r["student"], r["metric"]): r for r in summary["kd_vs_twin"]}
    best = rows[("c3d", "r3d", "best_val_pretext_acc")]
    assert best["student_value"] == pytest.approx(0.625) and best["twin"] == pytest.approx(0.60)
    # differences 0.03 and 0.02: mean 0.025 +- t(1) 12.706 * 0.00707 / sqrt(2)
    assert best["difference_ci95"] == pytest.approx([0.025 - 0.0635, 0.025 + 0.0635], abs=1e-3)
    epochs = rows[("c3d", "r3d", "epochs_to_twin_best")]
    assert (epochs["student_value"], epochs["twin"]) == (5.0, 8.0)  # reached 0.6 at epochs 4 and 6; twins at 8
    claims = {c["claim"]: c for c in summary["claims"]}
    assert claims["students converge faster than their twins"]["holds"] is None  # two seeds: the interval straddles 0
    assert "[-15.7, +9.7] epochs" in claims["students converge faster than their twins"]["evidence"]
    md = (runs.report_dir(tmp_path) / "report.md").read_text()
    # 6 finished runs x 10 epochs + a 3-epoch run, 30 s of training steps each
    assert "## Where the time went" in md and "| training steps | 31.5 min | 100% |" in md
    assert "100% of the time is training steps (pretraining 100%, fine-tuning evaluations 0%)" in md
    assert "## The claims, here" in md and "| students converge faster than their twins | undecided |" in md


def test_ci95_uses_students_t():
    from vidkd.report.summary import ci95

    assert ci95([0.1]) is None
    lo, hi = ci95([1.0, 2.0, 3.0])  # mean 2, sd 1, n 3: 4.303 / sqrt(3)
    assert (lo, hi) == pytest.approx((2 - 2.4843, 2 + 2.4843), abs=1e-3)


def test_random_init_pairs_by_seed_and_the_supervised_ceiling_is_read_at_every_label(tmp_path):
    """Per-seed random networks (`random_<arch>_s<seed>`) pair with the baseline of that seed; with
    fine-tuning on 10% of the labels, the random network's all-label fine-tuning is the ceiling."""
    make_experiment(tmp_path)
    shutil.rmtree(runs.random_init_dir(tmp_path, "r3d"))  # the one seedless random network of older grids
    plan = json.loads((tmp_path / "plan.json").read_text())
    plan["finetune_fraction"] = 0.1
    (tmp_path / "plan.json").write_text(json.dumps(plan))
    # baselines r3d: R@1 = 0.30 for both seeds; fine-tuning on 10% of the labels, per seed
    for seed, tenth in ((0, 0.25), (1, 0.35)):
        results = runs.eval_dir(tmp_path / f"runs/baseline_r3d_s{seed}")
        runs.result_path(results, "finetune", 1, 0.1).write_text(json.dumps(
            {"protocol": "finetune", "metrics": {"video_top1": tenth}}))
    for seed, (r1, tenth, everything) in {0: (0.05, 0.10, 0.50), 1: (0.15, 0.20, 0.70)}.items():
        results = runs.eval_dir(runs.random_init_dir(tmp_path, "r3d", seed))
        results.mkdir(parents=True)
        for protocol, fraction, metrics in (("retrieval", 1.0, {"R@1": r1}), ("finetune", 0.1, {"video_top1": tenth}),
                                            ("finetune", 1.0, {"video_top1": everything})):
            runs.result_path(results, protocol, 1, fraction).write_text(json.dumps(
                {"protocol": protocol, "width": 0.125, "metrics": metrics, "seconds": 2.0}))
    exp = report.load_experiment(tmp_path)
    (random_r3d,) = [g for g in exp.random_init if g.arch == "r3d" and len(g.runs) == 2]
    assert [r.seed for r in random_r3d.runs] == [0, 1]
    summary = build_summary(report.group_runs(exp.runs), exp.random_init)
    rows = {(r["arch"], r["protocol"]): r for r in summary["ssl_vs_random"]}
    retrieval = rows[("r3d", "retrieval")]
    # paired by seed: 0.30 - 0.05 and 0.30 - 0.15, not both against one random network
    assert retrieval["random_init"] == pytest.approx(0.10)
    assert retrieval["difference_ci95"][0] < 0.15 < 0.25 < retrieval["difference_ci95"][1]
    finetune = rows[("r3d", "finetune")]
    assert finetune["pretrained"] == pytest.approx(0.30) and finetune["random_init"] == pytest.approx(0.15)
    assert finetune["difference_ci95"] == pytest.approx([0.15, 0.15])
    assert finetune["supervised"] == pytest.approx(0.60)  # the all-label fine-tuning, mean of the seeds
    report.write_report(tmp_path)
    md = (runs.report_dir(tmp_path) / "report.md").read_text()
    assert "## What pretraining buys: random init, pretrained, supervised" in md
    assert "| R3D ×0.125 | finetune | 15.0 | 30.0 | 60.0 | [+15.0, +15.0] | — | 2 |" in md
    assert "fine-tuning on 10% of the labels" in md


def test_curves_show_the_train_pretext_accuracy_when_no_run_probed_knn(tmp_path):
    from vidkd.report.figures import second_metric

    make_experiment(tmp_path)
    groups = report.group_runs(report.load_experiment(tmp_path).runs)
    assert second_metric(groups) == "val_knn_top1"
    for group in groups:
        for run in group.runs:
            run.metrics = [{k: v for k, v in m.items() if k != "val_knn_top1"} for m in run.metrics]
    assert second_metric(groups) == "train_pretext_acc"


def test_a_ceiling_from_fewer_seeds_than_the_pair_says_so():
    from vidkd.report.summary import SslRow, _of_seeds

    def row(seeds, ceiling):
        return SslRow("r3d", 1.0, "linear", 0.6, 0.3, 0.9, ceiling, 0.5, [0.1, 0.5], seeds)

    assert _of_seeds(row([0, 1, 2], [0])) == "; means over seeds, supervised: seed 0"
    assert _of_seeds(row([0, 1, 2], [2, 1, 0])) == "; means over seeds"


def test_fine_tuning_section_says_when_values_average_repeats(tmp_path):
    make_experiment(tmp_path)
    assert "fine-tunings of the network" not in report.write_report(tmp_path).read_text()
    result = runs.result_path(runs.eval_dir(tmp_path / "runs" / "baseline_r3d_s0"), "finetune", 1, 1.0)
    record = json.loads(result.read_text())
    record["metrics"]["repeats"] = [{"seed": 0, "video_top1": 0.5}, {"seed": 10000, "video_top1": 0.7}]
    result.write_text(json.dumps(record))
    md = report.write_report(tmp_path).read_text()
    assert "Each value is the mean of 2 fine-tunings of the network, each on its own draw" in md


@pytest.mark.parametrize("form", ["relative", "dot", "absolute"])
def test_report_keeps_the_random_init_rows_whatever_form_of_path_it_is_given(tmp_path, monkeypatch, form):
    """`make demo` runs `vidkd report runs/demo`: a relative directory once dropped every random-init result."""
    make_experiment(tmp_path / "runs" / "exp")
    directory = {"relative": "runs/exp", "dot": ".", "absolute": str(tmp_path / "runs" / "exp")}[form]
    monkeypatch.chdir(tmp_path / "runs" / "exp" if form == "dot" else tmp_path)
    assert cli_main(["report", directory]) == 0
    summary = json.loads((runs.report_dir(tmp_path / "runs" / "exp") / "summary.json").read_text())
    (ssl,) = [r for r in summary["ssl_vs_random"] if r["arch"] == "r3d" and r["protocol"] == "retrieval"]
    assert ssl["random_init"] == pytest.approx(0.10)
    md = (runs.report_dir(tmp_path / "runs" / "exp") / "report.md").read_text()
    assert "| R3D ×0.125 (random init) | 1 | 10.0 | 30.0 | — |" in md


def test_time_table_of_a_rerun_describes_the_whole_experiment(tmp_path):
    """A re-run that skipped finished work records a short grid time: the table never shows a share
    above 100% nor a negative setup time; what the grid spent beyond its parts is setup."""
    make_experiment(tmp_path)
    steps = 6 * 10 * 30.0 + 3 * 30.0  # the experiment's training steps (see the summary test)
    for grid, other in ((2.0, 0.0), (steps + 120.0, 120.0)):
        (tmp_path / runs.TIMING_FILE).write_text(json.dumps({"writing data": 60.0, "grid": grid, "report": 3.0}))
        parts, total = report.stats.experiment_time(report.load_experiment(tmp_path))
        assert parts["training steps"] == pytest.approx(steps)
        assert parts["other (setup, data probing, loaders)"] == pytest.approx(other)
        assert total == pytest.approx(steps + 63.0 + other)
        report.write_report(tmp_path)
        md = (runs.report_dir(tmp_path) / "report.md").read_text()
        shares = [int(s) for s in re.findall(r"\| (\d+)% \|", md.split("## Where the time went")[1])]
        assert shares and max(shares) <= 100


def test_a_run_with_binary_files_is_listed_as_damaged_and_the_rest_reported(tmp_path):
    make_experiment(tmp_path)
    damaged = tmp_path / "runs" / "baseline_c3d_s0"
    (damaged / "config.yaml").write_bytes(b"\xff\xfe\x00\x81 binary")
    runs.result_path(runs.eval_dir(damaged), "retrieval").write_bytes(b"\x89PNG\r\n\x1a\n\xff")
    (damaged / "metrics.jsonl").write_bytes(b'\xff\xff\n{"epoch": NaN}\n' + (damaged / "metrics.jsonl").read_bytes())
    report.write_report(tmp_path)
    md = (runs.report_dir(tmp_path) / "report.md").read_text()
    assert "run `baseline_c3d_s0`: config.yaml is not valid YAML" in md
    assert "run `baseline_c3d_s0`: cannot read retrieval.json" in md
    assert "| R3D ×0.125 (random init) | 1 | 10.0 | 30.0 | — |" in md  # the rest is reported


def test_a_protocol_the_report_has_no_section_for_gets_a_table_of_its_metrics(tmp_path, monkeypatch):
    """A newly registered protocol's results reach the report without a report edit."""
    spec = ProtocolSpec("centroid", headline="top1", metrics=("top1", "top5"), uses_labels=False, settings=())
    monkeypatch.setitem(protocol_specs.PROTOCOL_SPECS, "centroid", spec)
    monkeypatch.setattr(results, "PROTOCOL_NAMES", (*protocol_specs.PROTOCOL_NAMES, "centroid"))
    make_experiment(tmp_path)
    runs.result_path(runs.eval_dir(tmp_path / "runs" / "baseline_r3d_s0"), "centroid", 1, 1.0).write_text(json.dumps(
        {"protocol": "centroid", "metrics": {"top1": 0.375, "top5": 0.75}}))
    md = report.write_report(tmp_path).read_text()
    assert "## centroid (%)" in md and "| model | seeds | top1 | top5 |" in md
    assert "| R3D ×0.125 | 2 | 37.5 (1/2 seeds) | 75.0 (1/2 seeds) |" in md
