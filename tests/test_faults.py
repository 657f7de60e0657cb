"""The fault corpus: user mistakes and crashes get one line that says what to do, and never lose work.

Each case runs the real CLI on a real (tiny) run; the expectation is the exit code, one line on
stderr without a traceback, a phrase of that line, and, for the data-loss cases, the state of the
run directory afterwards. Cases whose fix has not landed yet are not listed here (see
docs/reliability.md).
"""

from __future__ import annotations

import json
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from conftest import write_index_video, write_ucf_layout
from tiny_runs import make_tiny_dataset, tiny_args, tiny_config
from vidkd import runs
from vidkd.apps.pretrain import pretrain
from vidkd.cli import main
from vidkd.config import load_config
from vidkd.data.check import check_dataset
from vidkd.models import build_backbone
from vidkd.synthetic import SyntheticSpec, write_synthetic_dataset
from vidkd.utils.checkpoint import find_checkpoint, load_checkpoint

pytestmark = pytest.mark.usefixtures("single_thread")


@pytest.fixture(scope="module")
def finished_run(data_root, tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("runs") / "run"
    pretrain(tiny_config(data_root, "train.epochs=1"), run)
    return run


def run_cli(args: list[str], capsys) -> tuple[int, str]:
    code = main([str(a) for a in args])
    err = capsys.readouterr().err
    # progress bars share stderr (carriage returns): the message is what follows "vidkd:" on its line
    lines = [line[line.index("vidkd:"):] for line in err.replace("\r", "\n").splitlines() if "vidkd:" in line]
    assert "Traceback" not in err
    assert len([line for line in lines if line.startswith("vidkd: error")]) <= 1  # one line, never a cascade
    return code, lines[-1] if lines else ""


def copy_run(run: Path, tmp_path: Path) -> Path:
    target = tmp_path / "copy"
    shutil.copytree(run, target)
    return target


def write(path: Path, data: bytes | str) -> Path:
    path.write_bytes(data if isinstance(data, bytes) else data.encode())
    return path


# (case, extra settings, phrase of the one-line error)
BAD_SETTINGS = [
    ("negative learning rate", ["train.lr=-0.1"], "train.lr' must be a positive number"),
    ("NaN learning rate", ["train.lr=.nan"], "train.lr' must be a positive number"),
    ("negative workers", ["data.num_workers=-1"], "data.num_workers' must not be negative"),
    ("typo in a key", ["train.epoch=3"], "did you mean 'train.epochs'"),
    ("unknown method", ["method=simclr"], "must be one of pcl, vcop"),
    ("VCOP with 7 clips", ["method=vcop", "data.tuple_len=7"], "use 2..5"),
    ("nothing to learn", ["ssl.pretext=none", "ssl.contrastive=none"], "nothing to learn"),
    ("no negatives", ["ssl.nce_negatives=0"], "ssl.nce_negatives' must be at least 1"),
    ("negative KD weight", ["teacher.relational_weight=-1"], "teacher.relational_weight' must not be negative"),
    ("logit KD without logits", ["ssl.pretext=none", "ssl.contrastive=in_batch", "teacher.path=x"],
     "set teacher.alpha=0"),
]


@pytest.mark.parametrize("case,settings,phrase", BAD_SETTINGS, ids=[c[0] for c in BAD_SETTINGS])
def test_bad_settings_are_one_line_errors_and_write_nothing(case, settings, phrase, data_root, tmp_path, capsys):
    args = ["pretrain", *tiny_args(data_root, *settings), "--out", tmp_path / "run"]
    code, line = run_cli(args, capsys)
    assert code == 2 and phrase in line, line
    assert not (tmp_path / "run").exists()


BAD_FILES = [
    ("config is a YAML scalar", "42\n", "must hold a mapping"),
    ("config is binary", b"\x89PNG\r\n\x1a\n\x00\x00\xff\xfe", "is not valid YAML"),
    ("config is a list", "- data\n- model\n", "must hold a mapping"),
]


@pytest.mark.parametrize("case,content,phrase", BAD_FILES, ids=[c[0] for c in BAD_FILES])
def test_bad_config_files(case, content, phrase, tmp_path, capsys):
    config = write(tmp_path / "bad.yaml", content)
    code, line = run_cli(["pretrain", "--config", config, "--out", tmp_path / "run"], capsys)
    assert code == 2 and phrase in line, line


def test_every_float_spelling_is_a_number(tmp_path):
    config = write(tmp_path / "c.yaml", "train:\n  lr: 1e-3\n  weight_decay: 5E-4\n")
    cfg = load_config(config, ["train.momentum=9e-1"])
    assert (cfg.train.lr, cfg.train.weight_decay, cfg.train.momentum) == (0.001, 0.0005, 0.9)


def test_out_pointing_at_a_file(data_root, tmp_path, capsys):
    target = write(tmp_path / "notes.txt", "keep me")
    code, line = run_cli(["pretrain", *tiny_args(data_root), "--out", target], capsys)
    assert code == 2 and "is a file" in line
    assert target.read_text() == "keep me"


def test_a_failed_start_does_not_block_its_retry(data_root, tmp_path, capsys):
    run = tmp_path / "run"
    code, line = run_cli(["pretrain", *tiny_args(data_root, "data.root=/nonexistent/data"), "--out", run], capsys)
    assert code == 2 and line
    assert not runs.is_run_dir(run)  # nothing was accepted, nothing blocks the retry
    code, _ = run_cli(["pretrain", *tiny_args(data_root, "train.epochs=1"), "--out", run], capsys)
    assert code == 0 and runs.saved_epoch(run) == 1


def test_resume_refuses_an_architecture_change_and_the_run_stays_alive(finished_run, tmp_path, capsys):
    run = copy_run(finished_run, tmp_path)
    before = runs.config_path(run).read_text()
    for setting in ("model.width=0.5", "model.arch=c3d", "data.crop=24"):
        code, line = run_cli(["pretrain", "--resume", run, "--set", setting], capsys)
        assert code == 2 and "cannot change on a resumed run" in line, line
        assert runs.config_path(run).read_text() == before  # nothing was rewritten
    code, _ = run_cli(["pretrain", "--resume", run, "--set", "train.epochs=2"], capsys)
    assert code == 0 and [m["epoch"] for m in runs.read_metrics(run)][-1] == 2


def test_resume_applies_a_new_learning_rate(finished_run, tmp_path, capsys):
    run = copy_run(finished_run, tmp_path)
    code, _ = run_cli(["pretrain", "--resume", run, "--set", "train.epochs=2", "train.lr=0.001",
                       "train.scheduler=none"], capsys)
    assert code == 2  # the schedule is part of the optimizer state: refused
    code, _ = run_cli(["pretrain", "--resume", run, "--set", "train.epochs=2", "train.lr=0.001"], capsys)
    assert code == 0
    _, _, state = load_checkpoint(runs.checkpoint_dir(run, runs.LAST), with_trainer=True)
    assert state["optimizer"]["param_groups"][0]["initial_lr"] == pytest.approx(0.001)
    assert yaml.safe_load(runs.config_path(run).read_text())["train"]["lr"] == pytest.approx(0.001)
    assert state["scheduler"]["base_lrs"] == [pytest.approx(0.001)]  # the cosine schedule decays from the new rate
    assert runs.read_metrics(run)[-1]["lr"] <= 0.001


@pytest.mark.parametrize("cut", ["after the first rename", "before the old one is removed"])
def test_a_save_cut_between_its_renames_resumes_from_the_newest_complete_checkpoint(cut, finished_run, tmp_path,
                                                                                   capsys):
    run = copy_run(finished_run, tmp_path)
    last = runs.checkpoint_dir(run, runs.LAST)
    old = last.with_name(f".{last.name}.old")
    if cut == "after the first rename":
        last.rename(old)  # the new checkpoint never took its place
    else:
        shutil.copytree(last, old)  # both complete: the current one is the newest
    assert find_checkpoint(last) is not None
    code, _ = run_cli(["pretrain", "--resume", run, "--set", "train.epochs=2"], capsys)
    assert code == 0
    assert [m["epoch"] for m in runs.read_metrics(run)] == [0, 1, 2]  # epoch 1 was kept, not retrained
    assert not old.exists() and runs.saved_epoch(run) == 2


def test_a_damaged_meta_json_is_named(finished_run, data_root, tmp_path, capsys):
    run = copy_run(finished_run, tmp_path)
    write(runs.checkpoint_dir(run, runs.BEST) / "meta.json", "{not json")
    code, line = run_cli(["evaluate", run, "--protocol", "knn"], capsys)
    assert code == 2 and "meta.json is not valid JSON" in line
    code, line = run_cli(["pretrain", *tiny_args(data_root), "--teacher", run, "--out", tmp_path / "s"], capsys)
    assert code == 2 and "meta.json is not valid JSON" in line


def test_evaluate_shows_results_before_a_failed_write(finished_run, tmp_path, capsys):
    run = copy_run(finished_run, tmp_path)
    shutil.rmtree(runs.eval_dir(run), ignore_errors=True)
    write(runs.eval_dir(run), "a file where the eval directory should be")  # unwritable, even for root
    code = main(["evaluate", str(run), "--protocol", "knn"])
    captured = capsys.readouterr()
    assert code == 2 and "Traceback" not in captured.err
    assert "knn" in captured.out and "top1" in captured.out  # the numbers were printed first
    assert "not written" in captured.err


def test_a_non_finite_loss_keeps_only_finite_checkpoints(data_root, tmp_path, monkeypatch, capsys):
    from vidkd.methods import pcl

    original = pcl.PCLLoss.forward
    calls = {"n": 0}

    def explode_in_epoch_2(self, *args, **kwargs):
        loss, parts = original(self, *args, **kwargs)
        calls["n"] += 1
        return (loss * float("inf") if calls["n"] > 2 else loss), parts

    monkeypatch.setattr(pcl.PCLLoss, "forward", explode_in_epoch_2)
    run = tmp_path / "run"
    code, line = run_cli(["pretrain", *tiny_args(data_root), "--out", run], capsys)
    assert code == 2 and "--resume" in line and "train.lr=" in line
    for which in (runs.LAST, runs.BEST):
        weights, meta, _ = load_checkpoint(runs.checkpoint_dir(run, which), with_trainer=True)
        assert meta["epoch"] == 1 and all(torch.isfinite(t).all() for t in weights.values())
    monkeypatch.setattr(pcl.PCLLoss, "forward", original)
    # the advice works: resume with the lower learning rate it names
    advice = line.split("--set ")[1].split()[0]
    code, _ = run_cli(["pretrain", "--resume", run, "--set", advice], capsys)
    assert code == 0 and runs.saved_epoch(run) == 2


def test_the_interrupt_message_names_the_run(data_root, tmp_path, monkeypatch, capsys):
    from vidkd.engine.trainer import Trainer

    def interrupt(self, epoch):
        raise KeyboardInterrupt

    monkeypatch.setattr(Trainer, "train_one_epoch", interrupt)
    run = tmp_path / "run"
    code = main(["pretrain", *map(str, tiny_args(data_root)), "--out", str(run)])
    err = capsys.readouterr().err
    assert code == 130 and f"vidkd pretrain --resume {run}" in err and "RUN_DIR" not in err


def test_an_experiment_checks_every_architecture_before_training(data_root, tmp_path, capsys):
    config = write(tmp_path / "grid.yaml", yaml.safe_dump({
        "base": {"data": {"root": str(data_root)}}, "baselines": ["r3d", "r4d"], "teachers": [], "students": [],
        "evaluations": []}))
    code, line = run_cli(["experiment", "--config", config, "--out", tmp_path / "grid"], capsys)
    assert code == 2 and "r4d" in line
    assert not (tmp_path / "grid" / "runs").exists()  # the r3d baseline was not trained first


def test_a_truncated_trainer_state_is_called_truncated(finished_run, tmp_path, capsys):
    run = copy_run(finished_run, tmp_path)
    state = runs.checkpoint_dir(run, runs.LAST) / "trainer.pt"
    state.write_bytes(state.read_bytes()[: state.stat().st_size // 2])
    code, line = run_cli(["pretrain", "--resume", run, "--set", "train.epochs=2"], capsys)
    assert code == 2 and "truncated or damaged" in line and "re-save" not in line
    assert runs.saved_epoch(run) == 1  # the run directory is as it was


def test_a_foreign_checkpoint_names_the_flag_that_exists(tmp_path, capsys):
    weights = tmp_path / "backbone.pth"
    torch.save(build_backbone("r3d", width=0.125).state_dict(), weights)
    code, line = run_cli(["evaluate", weights, "--protocol", "knn"], capsys)
    assert code == 2 and "--set model.arch=ARCH" in line


@pytest.fixture
def small_disk(tmp_path):
    """A 5 MB tmpfs: room for one epoch's two checkpoints of the tiny run, not for a third."""
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=5m", "tmpfs", str(mount)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({done.stderr.decode().strip()[:80]}); needs root")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], capture_output=True)


def test_disk_full_while_saving_is_one_line_and_keeps_the_finished_epoch(data_root, small_disk, tmp_path, capsys):
    run = small_disk / "run"
    code, line = run_cli(["pretrain", *tiny_args(data_root, "train.epochs=3"), "--out", run], capsys)
    assert code == 2 and "No space left on device" in line and "free disk space" in line
    weights, meta, state = load_checkpoint(runs.checkpoint_dir(run, runs.LAST), with_trainer=True)
    assert meta["epoch"] == state["epoch"] == 1 and weights
    leftovers = [p.name for p in runs.checkpoint_dir(run, runs.LAST).parent.iterdir() if ".tmp." in p.name]
    assert leftovers == []  # a failed save cleans up after itself
    # with space again (a copy elsewhere), the run continues from the epoch it kept
    moved = tmp_path / "moved"
    shutil.copytree(run, moved)
    code, _ = run_cli(["pretrain", "--resume", moved], capsys)
    assert code == 0 and runs.saved_epoch(moved) == 3


def test_a_read_only_output_directory(data_root, finished_run, small_disk, capsys):
    run = small_disk / "run"
    shutil.copytree(finished_run, run)
    subprocess.run(["mount", "-o", "remount,ro", str(small_disk)], check=True)
    code, line = run_cli(["pretrain", "--resume", run, "--set", "train.epochs=2"], capsys)
    assert code == 2 and "Read-only file system" in line
    code, line = run_cli(["report", run], capsys)
    assert code == 2 and "Read-only file system" in line
    code, line = run_cli(["pretrain", *tiny_args(data_root), "--out", small_disk / "new"], capsys)
    assert code == 2 and "Read-only file system" in line
    assert runs.saved_epoch(run) == 1


def test_a_truncated_video_is_called_damaged_not_short(tmp_path):
    write_ucf_layout(tmp_path, {"Run": 1}, groups=3, clips=1, num_frames=70)
    video = sorted((tmp_path / "videos").rglob("*.avi"))[0]
    full = write_index_video(tmp_path / "full.avi", 120)  # header at the front, index at the end: a cut keeps it
    video.write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    reasons = dict(check_dataset(tmp_path, min_frames=64).problems)
    assert "damaged: cut short" in reasons[video] and "of the 120 frames" in reasons[video]


def test_hmdb51_split_files_under_the_ucf101_layout_suggest_the_layout(tmp_path, capsys):
    (tmp_path / "splits").mkdir(parents=True)
    write(tmp_path / "splits" / "run_test_split1.txt", "a.avi 1\n")
    code = main(["pretrain", "--set", f"data.root={tmp_path}", "data.layout=ucf101", "--out", str(tmp_path / "r")])
    err = capsys.readouterr().err
    assert code == 2 and "set data.layout=hmdb51" in err


def test_data_check_asks_what_the_config_needs(tmp_path, capsys):
    write_ucf_layout(tmp_path, {"Run": 1, "Jump": 2}, groups=3, clips=1, num_frames=30)
    assert main(["data", "check", str(tmp_path), "--config", "pcl_r3d_synthetic"]) == 0  # 3 x 8 frames: usable
    assert "OK" in capsys.readouterr().out
    assert main(["data", "check", str(tmp_path)]) == 1  # the default 3 x 16 frames: too short
    assert "too short (30 frames < 48)" in capsys.readouterr().out


@pytest.mark.parametrize("delay", [0.0, 0.15, 0.4])
def test_kill_9_during_training_then_resume_finishes_the_run(data_root, tmp_path, delay):
    """A real SIGKILL at some moment after the first checkpoint; --resume always finishes the run."""
    run = tmp_path / "run"
    args = [sys.executable, "-m", "vidkd", "pretrain", *map(str, tiny_args(data_root, "train.epochs=4",
                                                                            "train.knn_every=0")), "--out", str(run)]
    process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while runs.saved_epoch(run) < 1 and process.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    time.sleep(delay)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert find_checkpoint(runs.checkpoint_dir(run, runs.LAST)) is not None
    assert main(["pretrain", "--resume", str(run)]) == 0
    assert [m["epoch"] for m in runs.read_metrics(run)] == [1, 2, 3, 4]
    weights, meta, _ = load_checkpoint(runs.checkpoint_dir(run, runs.LAST), with_trainer=True)
    assert meta["epoch"] == 4 and all(torch.isfinite(t).all() for t in weights.values())


def test_resume_may_repeat_the_runs_own_teacher(data_root, finished_run, tmp_path, capsys):
    student = tmp_path / "student"
    code, _ = run_cli(["pretrain", *tiny_args(data_root, "train.epochs=1", "model.arch=c3d"), "--teacher",
                       finished_run, "--out", student], capsys)
    assert code == 0
    code, _ = run_cli(["pretrain", "--resume", student, "--teacher", finished_run, "--set", "train.epochs=2"], capsys)
    assert code == 0 and runs.saved_epoch(student) == 2
    code, line = run_cli(["pretrain", "--resume", student, "--teacher", tmp_path / "another", "--set",
                          "train.epochs=3"], capsys)
    assert code == 2 and "teacher.path cannot change on a resumed run" in line


# --------------------------------------------------------------------------- one writer per directory

HOLD_LOCK = ("import sys, time\nfrom vidkd import runs\nheld = runs.one_writer(sys.argv[1], sys.argv[2])\n"
             "held.__enter__()\n"
             "print('held', flush=True)\ntime.sleep(120)\n")


def hold_lock(directory: Path, what: str = "run directory") -> subprocess.Popen:
    """Another process writing `directory` (a requeued job's predecessor, still running)."""
    process = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(directory), what], stdout=subprocess.PIPE,
                               text=True)
    assert process.stdout.readline().strip() == "held"
    return process


def test_a_second_writer_is_refused_naming_the_first_and_a_dead_ones_lock_does_not_block(finished_run, data_root,
                                                                                         tmp_path, capsys):
    run = copy_run(finished_run, tmp_path)
    holder = hold_lock(run)
    try:
        before = runs.metrics_path(run).read_text()
        code, line = run_cli(["pretrain", "--resume", run, "--set", "train.epochs=2"], capsys)
        assert code == 2 and f"in use by pid {holder.pid} on " in line, line
        assert runs.metrics_path(run).read_text() == before
        fresh = tmp_path / "fresh"  # two `--out SAME` started together: the second is refused before it writes
        other = hold_lock(fresh)
        code, line = run_cli(["pretrain", *tiny_args(data_root, "train.epochs=1"), "--out", fresh], capsys)
        assert code == 2 and f"pid {other.pid}" in line and not runs.is_run_dir(fresh)
        other.kill()
        other.wait()
    finally:
        holder.send_signal(signal.SIGKILL)  # killed while holding it: the system releases the lock
        holder.wait()
    code, _ = run_cli(["pretrain", "--resume", run, "--set", "train.epochs=2"], capsys)
    assert code == 0 and [m["epoch"] for m in runs.read_metrics(run)][-1] == 2
    assert not (run / runs.LOCK_FILE).exists()  # released on exit
    code, _ = run_cli(["pretrain", *tiny_args(data_root, "train.epochs=1"), "--out", fresh], capsys)
    assert code == 0 and runs.saved_epoch(fresh) == 1  # the stale lock file of the killed process is no obstacle


def test_an_experiment_directory_has_one_writer(data_root, tmp_path, capsys):
    out = tmp_path / "grid"
    holder = hold_lock(out, "experiment directory")
    try:
        code, line = run_cli(["experiment", "--config", "demo_synthetic", "--out", out, "--set",
                              f"base.data.root={data_root}"], capsys)
        assert code == 2 and f"experiment directory {out} is in use by pid {holder.pid}" in line, line
        assert not runs.plan_path(out).exists()
    finally:
        holder.kill()
        holder.wait()


# --------------------------------------------------------------------------- resuming what is finished


def test_resume_of_a_finished_run_trains_nothing_and_rewrites_nothing(finished_run, tmp_path, capsys, caplog):
    run = copy_run(finished_run, tmp_path)
    assert run_cli(["pretrain", "--resume", run, "--set", "train.epochs=2"], capsys)[0] == 0
    before = {path: path.read_bytes() for path in (runs.config_path(run), runs.metrics_path(run))}
    for args, phrase in ((["--set", "train.lr=0.5"], "is finished (2 of 2 epochs), so train.lr=0.5 would train nothing"),
                         (["--set", "train.epochs=1"], "has already trained 2 epochs; train.epochs=1 would contradict")):
        code, line = run_cli(["pretrain", "--resume", run, *args], capsys)
        assert code == 2 and phrase in line, line
    with caplog.at_level("WARNING", logger="vidkd"):
        code, _ = run_cli(["pretrain", "--resume", run], capsys)
    assert code == 0 and "is finished (2 of 2 epochs): nothing to train" in caplog.text
    assert {path: path.read_bytes() for path in before} == before


@pytest.mark.parametrize("extra", [["--out", "NEW"], ["--config", "pcl_r3d_synthetic"]])
def test_resume_refuses_arguments_it_would_ignore(finished_run, tmp_path, capsys, extra):
    run = copy_run(finished_run, tmp_path)
    extra = [str(tmp_path / "new") if a == "NEW" else a for a in extra]
    code, line = run_cli(["pretrain", "--resume", run, *extra, "--set", "train.epochs=2"], capsys)
    assert code == 2 and f"{extra[0]} {extra[1]} would be ignored" in line, line
    assert runs.saved_epoch(run) == 1 and not (tmp_path / "new").exists()


def test_resume_refuses_a_hand_edited_schedule_and_another_dataset(finished_run, tmp_path, capsys):
    run = copy_run(finished_run, tmp_path)
    config = yaml.safe_load(runs.config_path(run).read_text())
    edited = {**config, "train": {**config["train"], "scheduler": "none"}}
    runs.config_path(run).write_text(yaml.safe_dump(edited))
    code, line = run_cli(["pretrain", "--resume", run, "--set", "train.epochs=2"], capsys)
    assert code == 2 and "was edited after training began: train.scheduler ('cosine' in the checkpoint" in line, line
    runs.config_path(run).write_text(yaml.safe_dump(config))
    other = tmp_path / "other"  # another dataset: other classes, as many videos
    write_synthetic_dataset(other, SyntheticSpec(classes=4, groups=3, clips_per_group=2, frames=48, size=(64, 48)),
                            progress=False)
    code, line = run_cli(["pretrain", "--resume", run, "--set", "train.epochs=2", f"data.root={other}"], capsys)
    assert code == 2 and "was trained on 18 videos of 3 classes" in line and "other classes" in line, line
    assert runs.saved_epoch(run) == 1


def test_a_kill_during_the_final_best_save_is_recovered_like_last(data_root, tmp_path, capsys):
    """`train.best_by: last`: the state a kill leaves between saving `last` and `best` of the final epoch."""
    run = tmp_path / "run"
    assert main(["pretrain", *tiny_args(data_root, "train.epochs=1", "train.best_by=last", "train.knn_every=0"),
                 "--out", str(run)]) == 0
    earlier_best = tmp_path / "best_of_epoch_1"
    shutil.copytree(runs.checkpoint_dir(run, runs.BEST), earlier_best)
    assert main(["pretrain", "--resume", str(run), "--set", "train.epochs=2"]) == 0
    shutil.rmtree(runs.checkpoint_dir(run, runs.BEST))
    shutil.copytree(earlier_best, runs.checkpoint_dir(run, runs.BEST))  # the final `best` never took its place
    # read-only users (evaluate, export, teachers) already take the final epoch
    assert runs.trained_checkpoint(run) == runs.checkpoint_dir(run, runs.LAST)
    code, _ = run_cli(["pretrain", "--resume", run], capsys)
    assert code == 0
    assert json.loads((runs.checkpoint_dir(run, runs.BEST) / "meta.json").read_text())["epoch"] == 2
    assert runs.trained_checkpoint(run) == runs.checkpoint_dir(run, runs.BEST)


def test_a_grid_rerun_with_another_setting_is_refused_with_the_differences(data_root, tmp_path, capsys):
    out = tmp_path / "grid"
    small = ["baselines=[r3d]", "teachers=[]", "students=[]", "seeds=[0]", "evaluations=[]", "random_init=false",
             "supervised=false", "widths={}",
             f"base.data.root={data_root}", *[s for s in tiny_settings_for_grid()], "train.epochs=1"]
    assert main(["experiment", "--config", "demo_synthetic", "--out", str(out), "--set", *small]) == 0
    plan = runs.plan_path(out).read_text()
    code, line = run_cli(["experiment", "--config", "demo_synthetic", "--out", out, "--set", *small,
                          "train.lr=0.02"], capsys)
    assert code == 2 and "holds runs trained with other settings" in line and "train.lr: 0.05 -> 0.02" in line, line
    assert runs.plan_path(out).read_text() == plan  # the record still describes what was trained
    code, _ = run_cli(["experiment", "--config", "demo_synthetic", "--out", out, "--set", *small,
                       "data.num_workers=1"], capsys)
    assert code == 0  # how fast data is read is no difference in what was trained


def tiny_settings_for_grid() -> list[str]:
    from tiny_runs import TINY_SETTINGS
    return [s for s in TINY_SETTINGS if not s.startswith(("data.layout", "model.arch", "train.epochs"))]


def test_export_on_a_full_disk_leaves_no_partial_file(finished_run, small_disk, capsys):
    out = small_disk / "backbone.onnx"
    (small_disk / "filler").write_bytes(b"\0" * (5 * 2**20 - 64 * 2**10))  # 64 KiB left: less than the model
    code, line = run_cli(["export", finished_run, "--out", out], capsys)
    assert code == 2 and "No space left on device" in line, line
    assert sorted(p.name for p in small_disk.iterdir()) == ["filler"]
    (small_disk / "filler").unlink()
    code, _ = run_cli(["export", finished_run, "--out", small_disk], capsys)  # a directory: the file goes into it
    assert code == 0 and out.is_file() and (small_disk / "export.json").is_file()


def test_evaluating_on_another_dataset_keeps_the_runs_own_result(finished_run, tmp_path, capsys):
    run = copy_run(finished_run, tmp_path)
    assert run_cli(["evaluate", run, "--protocol", "knn"], capsys)[0] == 0
    own = runs.result_path(runs.eval_dir(run), "knn")
    before = own.read_bytes()
    other = make_tiny_dataset(tmp_path / "elsewhere" / "other_data")
    assert run_cli(["evaluate", run, "--protocol", "knn", "--data", other], capsys)[0] == 0
    assert own.read_bytes() == before  # not overwritten, so the report still shows the run's own
    foreign = runs.result_path(runs.eval_dir(run) / "on_other_data", "knn")
    assert json.loads(foreign.read_text())["dataset"]["root"] == str(other)


def test_a_checkpoint_copied_out_of_its_run_is_evaluated_with_its_own_input_settings(finished_run, data_root,
                                                                                    tmp_path, capsys):
    bare = tmp_path / "bare"
    shutil.copytree(runs.checkpoint_dir(finished_run, runs.LAST), bare)
    code, _ = run_cli(["evaluate", bare, "--protocol", "knn", "--data", data_root, "--out", tmp_path / "res"], capsys)
    assert code == 0
    record = json.loads(runs.result_path(tmp_path / "res", "knn").read_text())
    assert record["input"]["clip_len"] == 8 and record["input"]["crop"] == 32  # the tiny run's, not 16 and 112


def test_data_check_full_decodes_every_frame_and_names_the_first_that_fails(tmp_path, capsys):
    write_ucf_layout(tmp_path, {"Run": 1, "Jump": 2}, groups=3, clips=1, num_frames=90, height=96, width=128)
    video = sorted((tmp_path / "videos").rglob("*.avi"))[0]
    data = bytearray(video.read_bytes())
    middle = len(data) // 2
    data[middle - len(data) // 20:middle + len(data) // 20] = bytes(2 * (len(data) // 20))  # headers, ends intact
    video.write_bytes(bytes(data))
    assert main(["data", "check", str(tmp_path), "--min-frames", "16"]) == 0
    quick = capsys.readouterr().out
    assert "6 of 6 videos usable" in quick and "--full decodes every frame" in quick  # the quick check misses it
    assert main(["data", "check", str(tmp_path), "--min-frames", "16", "--full"]) == 0  # 5 of 6 still usable
    full = capsys.readouterr().out
    line = next(line for line in full.splitlines() if video.name in line)
    first = int(re.search(r"damaged: from frame (\d+)", line)[1])
    assert 0 < first < 90 and "5 of 6 videos usable" in full and "full: every frame decoded" in full
    code, message = run_cli(["data", "check", tmp_path, "--min-frames", "-5"], capsys)
    assert code == 2 and "--min-frames must be at least 1" in message


def test_evaluating_with_another_architecture_names_the_one_the_checkpoint_holds(finished_run, capsys):
    code, line = run_cli(["evaluate", finished_run, "--protocol", "knn", "--set", "model.arch=c3d"], capsys)
    assert code == 2 and "holds a r3d network, not c3d" in line and "allow_partial" not in line, line


def test_evaluation_warns_about_clips_it_cannot_give_or_the_network_never_saw(finished_run, tmp_path, capsys, caplog):
    with caplog.at_level("WARNING", logger="vidkd"):
        code, _ = run_cli(["evaluate", finished_run, "--protocol", "knn", "--out", tmp_path, "--set",
                           "eval.num_clips=60", "data.clip_len=4"], capsys)
    assert code == 0
    assert "was trained on clips with data.clip_len=8 but is evaluated with 4" in caplog.text
    assert "eval.num_clips=60 is more than the 45 distinct clip positions" in caplog.text


def _nan_weights(run: Path) -> None:
    from safetensors.torch import load_file, save_file
    for which in (runs.LAST, runs.BEST):
        path = runs.checkpoint_dir(run, which) / "model.safetensors"
        state = load_file(str(path))
        next(v for v in state.values() if v.is_floating_point())[:] = float("nan")
        save_file(state, str(path))


# (case, how to damage a copy of the finished run, the command on it, phrase of the one-line error)
MISTAKES_ON_A_RUN = [
    ("teacher is a video", None, lambda run, data: ["pretrain", *tiny_args(data), "--out", run.parent / "s", "--teacher",
                                                    next((data / "videos").rglob("*.avi"))], "is a video, not a checkpoint"),
    ("teacher is config.yaml", None, lambda run, data: ["pretrain", *tiny_args(data), "--out", run.parent / "s",
                                                        "--teacher", runs.config_path(run)], "is a config file, not a checkpoint"),
    ("teacher diverged", _nan_weights, lambda run, data: ["pretrain", *tiny_args(data), "--out", run.parent / "s",
                                                          "--teacher", run], "has NaN or infinite weights"),
    ("truncated best, intact last",
     lambda run: write(runs.checkpoint_dir(run, runs.BEST) / "model.safetensors", b"\x00" * 100),
     lambda run, data: ["evaluate", run, "--protocol", "knn"], "The run's last checkpoint is intact: pass"),
    ("report before an epoch", lambda run: write(runs.metrics_path(run), '{"epoch": 0}\n'),
     lambda run, data: ["report", run], "has not finished an epoch yet, so there is nothing to report"),
    ("non-UTF-8 and NaN epochs in metrics.jsonl",
     lambda run: write(runs.metrics_path(run), b'\xff\xfe\x00garbage\n{"epoch": NaN}\n'),
     lambda run, data: ["report", run], "has not finished an epoch yet"),
    ("export --out under a file", lambda run: write(run.parent / "afile", "x"),
     lambda run, data: ["export", run, "--out", run.parent / "afile" / "x.onnx"], "names a file where a directory"),
]


@pytest.mark.parametrize("case,damage,command,phrase", MISTAKES_ON_A_RUN, ids=[c[0] for c in MISTAKES_ON_A_RUN])
def test_mistakes_on_a_run_are_one_line_that_says_what_to_do(case, damage, command, phrase, finished_run, data_root,
                                                             tmp_path, capsys):
    run = copy_run(finished_run, tmp_path)
    if damage is not None:
        damage(run)
    code, line = run_cli(command(run, data_root), capsys)
    assert code == 2 and phrase in line, line
    assert not (tmp_path / "s").exists()  # a refused student leaves no directory behind


def test_a_moved_dataset_on_resume_names_the_key_to_set(finished_run, data_root, tmp_path, capsys):
    run = copy_run(finished_run, tmp_path)
    config = yaml.safe_load(runs.config_path(run).read_text())
    config["data"]["root"] = str(tmp_path / "gone")
    runs.config_path(run).write_text(yaml.safe_dump(config))
    code, line = run_cli(["pretrain", "--resume", run, "--set", "train.epochs=2"], capsys)
    assert code == 2 and "if it moved, resume with --set data.root=" in line, line
    code, _ = run_cli(["pretrain", "--resume", run, "--set", "train.epochs=2", f"data.root={data_root}"], capsys)
    assert code == 0 and runs.saved_epoch(run) == 2


def test_a_moved_experiment_directory_continues_with_its_teachers_at_their_new_place(data_root, tmp_path, capsys):
    small = ["baselines=[r3d]", "teachers=[r3d]", "students=[r3d]", "seeds=[0]", "evaluations=[]",
             "random_init=false", "supervised=false", "widths={}", f"base.data.root={data_root}",
             *tiny_settings_for_grid(), "train.epochs=1"]
    assert main(["experiment", "--config", "demo_synthetic", "--out", str(tmp_path / "grid"), "--set", *small]) == 0
    moved = tmp_path / "elsewhere" / "grid"
    moved.parent.mkdir()
    (tmp_path / "grid").rename(moved)
    code, line = run_cli(["experiment", "--config", "demo_synthetic", "--out", moved, "--set", *small[:-1],
                          "train.epochs=2"], capsys)
    assert code == 0, line
    student = runs.experiment_run_dir(moved, "kd_r3d_to_r3d_s0")
    assert runs.saved_epoch(student) == 2
    assert yaml.safe_load(runs.config_path(student).read_text())["teacher"]["path"] == str(
        runs.experiment_run_dir(moved, "baseline_r3d_s0"))


def test_a_dry_run_over_a_missing_data_root_warns(tmp_path, capsys, caplog):
    with caplog.at_level("WARNING", logger="vidkd"):
        code, _ = run_cli(["experiment", "--config", "demo_synthetic", "--dry-run", "--set",
                           f"base.data.root={tmp_path / 'nowhere'}"], capsys)
    assert code == 0 and f"data.root {tmp_path / 'nowhere'} does not exist (yet)" in caplog.text
