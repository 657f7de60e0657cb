"""The synthetic action dataset: UCF101 layout, actor-disjoint splits, determinism, real videos."""

from __future__ import annotations

import json
import re
from pathlib import Path

import av
import numpy as np
import pytest

from vidkd.synthetic import (ACTION_SETS, CLASS_NAMES, DIRECTED_ACTIONS, SyntheticSpec, action_set, class_names, clip_joints,
                             format_summary, held_out_groups, make_actor, render_clip, reversal_pairs, skeleton,
                             write_synthetic_dataset)
from vidkd.errors import DatasetError, VidkdError
from conftest import write_ucf_layout

TINY = dict(classes=3, groups=3, clips_per_group=1, frames=40, size=(64, 48))  # a SyntheticSpec's values
CLASSES = list(CLASS_NAMES[:3])


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("synthetic") / "data"
    return root, write_synthetic_dataset(root, SyntheticSpec(seed=0, **TINY), progress=False)


def _lines(path: Path) -> list[str]:
    return path.read_text().splitlines()


def _group(relative_path: str) -> int:
    return int(re.search(r"_g(\d\d)_c\d\d\.avi$", relative_path).group(1))


def test_layout_and_split_files_match_ucf101(dataset):
    root, summary = dataset
    videos = sorted(str(p.relative_to(root / "videos")) for p in (root / "videos").rglob("*") if p.is_file())
    expected = sorted(f"{c}/v_{c}_g{g:02d}_c01.avi" for c in CLASSES for g in (1, 2, 3))
    assert videos == expected
    assert sorted(p.name for p in (root / "splits").iterdir()) == sorted(
        ["classInd.txt"] + [f"{kind}list0{s}.txt" for kind in ("train", "test") for s in (1, 2, 3)])
    assert _lines(root / "splits" / "classInd.txt") == [f"{i} {c}" for i, c in enumerate(CLASSES, start=1)]

    for split in (1, 2, 3):
        train = _lines(root / "splits" / f"trainlist0{split}.txt")
        test = _lines(root / "splits" / f"testlist0{split}.txt")
        for line in train:
            path, label = line.split(" ")
            assert re.fullmatch(r"(\w+)/v_\1_g\d\d_c\d\d\.avi", path)
            assert CLASSES[int(label) - 1] == path.split("/")[0]  # labels are 1-based, as classInd
        for line in test:
            assert re.fullmatch(r"(\w+)/v_\1_g\d\d_c\d\d\.avi", line)  # no label, as UCF101
        assert sorted([line.split(" ")[0] for line in train] + test) == expected
        assert summary["splits"][split]["train"] == len(train) and summary["splits"][split]["test"] == len(test)

    stored = json.loads((root / "synthetic.json").read_text())["parameters"]
    assert stored["classes"] == CLASSES and stored["frames"] == 40 and stored["size"] == [64, 48]
    assert "actions" not in stored  # the default set's manifest is what it was before there were two sets


def test_train_and_test_never_share_an_actor(dataset):
    root, _ = dataset
    tested = set()
    for split in (1, 2, 3):
        train_groups = {_group(line.split(" ")[0]) for line in _lines(root / "splits" / f"trainlist0{split}.txt")}
        test_groups = {_group(line) for line in _lines(root / "splits" / f"testlist0{split}.txt")}
        assert train_groups and test_groups and not train_groups & test_groups
        tested |= test_groups
    assert tested == {1, 2, 3}  # the three splits rotate the held-out actor


def test_held_out_groups_follow_ucf101_rotation():
    assert [held_out_groups(8, s) for s in (1, 2, 3)] == [[1, 2], [3, 4], [5, 6]]
    assert [held_out_groups(25, s) for s in (1, 2, 3)] == [[1, 2, 3, 4, 5, 6], [7, 8, 9, 10, 11, 12],
                                                            [13, 14, 15, 16, 17, 18]]


def test_videos_decode_to_requested_frames_and_size(dataset):
    root, _ = dataset
    for path in (root / "videos").rglob("*.avi"):
        with av.open(str(path)) as container:
            frames = [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]
        assert len(frames) == 40
        assert frames[0].shape == (48, 64, 3)


def test_same_seed_gives_identical_bytes_and_other_seed_differs(dataset, tmp_path):
    root, _ = dataset
    files = sorted(p.relative_to(root) for p in root.rglob("*") if p.is_file())
    for workers in (1, 3):  # in this process, and one worker process per actor
        again = tmp_path / f"again{workers}"
        write_synthetic_dataset(again, SyntheticSpec(seed=0, **TINY), workers=workers, progress=False)
        assert files == sorted(p.relative_to(again) for p in again.rglob("*") if p.is_file())
        for relative in files:
            assert (root / relative).read_bytes() == (again / relative).read_bytes(), (workers, relative)

    other = tmp_path / "other"
    write_synthetic_dataset(other, SyntheticSpec(seed=1, **TINY), progress=False)
    video = Path("videos") / CLASSES[0] / f"v_{CLASSES[0]}_g01_c01.avi"
    assert (root / video).read_bytes() != (other / video).read_bytes()


def test_a_clip_does_not_depend_on_how_many_clips_are_written():
    few = np.stack(list(render_clip(1, group=2, clip=1, frames=12, size=(64, 48), seed=3)))
    again = np.stack(list(render_clip(1, group=2, clip=1, frames=12, size=(64, 48), seed=3)))
    other_clip = np.stack(list(render_clip(1, group=2, clip=2, frames=12, size=(64, 48), seed=3)))
    assert np.array_equal(few, again)
    assert not np.array_equal(few, other_clip)


def test_existing_directory_is_reused_refused_or_replaced(dataset, tmp_path):
    root, _ = dataset
    video = root / "videos" / CLASSES[0] / f"v_{CLASSES[0]}_g01_c01.avi"
    before = video.stat().st_mtime_ns
    summary = write_synthetic_dataset(root, SyntheticSpec(seed=0, **TINY), progress=False)
    assert summary["reused"] and video.stat().st_mtime_ns == before
    assert "reused" in format_summary(summary)

    with pytest.raises(DatasetError, match="--overwrite"):
        write_synthetic_dataset(root, SyntheticSpec(seed=5, **TINY), progress=False)  # other parameters, same directory

    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "notes.txt").write_text("mine")
    for overwrite in (False, True):  # not vidkd's: refused, --overwrite or not
        with pytest.raises(DatasetError, match="was not written by `vidkd synth`"):
            write_synthetic_dataset(busy, SyntheticSpec(**TINY), overwrite=overwrite, progress=False)
    assert sorted(p.name for p in busy.iterdir()) == ["notes.txt"]


def test_overwrite_removes_only_what_vidkd_wrote(tmp_path):
    """`vidkd synth --overwrite` pointed at a real dataset deletes nothing; on a synthetic one it keeps the
    user's own files."""
    real = tmp_path / "ucf101"
    write_ucf_layout(real, {"Wave": 0}, groups=1, clips=1, num_frames=8)
    before = sorted(p.relative_to(real) for p in real.rglob("*"))
    with pytest.raises(DatasetError, match="was not written by `vidkd synth`"):
        write_synthetic_dataset(real, SyntheticSpec(**TINY), overwrite=True, progress=False)
    assert sorted(p.relative_to(real) for p in real.rglob("*")) == before

    root = tmp_path / "synthetic"
    small = dict(TINY, classes=2, groups=2, frames=16)
    write_synthetic_dataset(root, SyntheticSpec(**small), progress=False)
    mine = [root / "videos" / CLASSES[0] / "my_clip.avi", root / "splits" / "my_split.txt", root / "README"]
    for path in mine:
        path.write_text("mine")
    summary = write_synthetic_dataset(root, SyntheticSpec(**dict(small, seed=3)), overwrite=True, progress=False)
    assert not summary["reused"] and all(path.read_text() == "mine" for path in mine)
    assert len(list((root / "videos").rglob("v_*.avi"))) == 4  # 2 actions x 2 actors x 1 clip


@pytest.mark.parametrize("bad", [dict(classes=len(CLASS_NAMES) + 1), dict(classes=1), dict(groups=1),
                                 dict(clips_per_group=0), dict(frames=4), dict(size=(65, 48)), dict(size=(16, 16))])
def test_impossible_settings_raise_a_clear_error(bad, tmp_path):
    with pytest.raises(VidkdError):
        write_synthetic_dataset(tmp_path / "x", SyntheticSpec(**dict(TINY, **bad)), progress=False)
    assert not (tmp_path / "x").exists()


def test_summary_says_what_was_written_and_what_to_run_next(dataset):
    root, summary = dataset
    text = format_summary(summary)
    assert str(root) in text and f"vidkd data check {root}" in text
    assert "64x48" in text and "40 frames" in text and all(name in text for name in CLASSES)


def test_enough_class_names_are_defined():
    names = class_names(12)
    assert len(set(names)) == 12 and all(re.fullmatch(r"[A-Z][A-Za-z]+", n) for n in names)


def _lower_body_motion_share(class_name: str) -> float:
    """The share of frame-to-frame change in the lower part of the frame, over three actors."""
    shares = []
    for group in (1, 2, 3):
        video = np.stack(list(render_clip(CLASS_NAMES.index(class_name), group, 1, 40, (64, 48), seed=0)))
        change = np.abs(np.diff(video.astype(np.float32).mean(-1), axis=0))
        per_row = np.where(change > 20, change, 0).sum(axis=(0, 2))
        shares.append(per_row[int(0.65 * 48):].sum() / per_row.sum())
    return float(np.mean(shares))


def test_classes_differ_in_where_the_figure_moves():
    # Kicks move the legs, waves move one arm: the same actors and the same kind of clips, yet
    # the frame differences sit lower in the frame for kicks.
    assert _lower_body_motion_share("Kick") > _lower_body_motion_share("Wave") + 0.05


# ----------------------------------------------------------------------------- action sets


# Joint statistics of every cyclic class (actor 2, clip 1, seed 0, 24 frames), computed before the
# directed set existed: adding a set must not change one frame of the default dataset.
CYCLIC_JOINTS = {
    "Wave": (198.17648950287088, 2472.8852989089037, 142.54552159941616),
    "Clap": (188.42036682880598, 2353.7858642650576, 130.3809227861958),
    "Squat": (167.88286769211697, 2109.68295128012, 105.03710715443452),
    "Jump": (202.26912554138997, 2511.8943934969566, 153.8286705020327),
    "Punch": (193.67217314642997, 2410.5302744609503, 137.41767378054186),
    "Kick": (189.59783197086716, 2365.477208891411, 137.95792804449167),
    "RunInPlace": (204.34210645496677, 2563.0012813753383, 143.1187933159072),
    "Bend": (154.1164763362297, 1907.881175629544, 88.41775342023547),
    "JumpingJack": (215.17186410607871, 2675.322859698559, 174.74207896935593),
    "ArmCircle": (194.78873387080813, 2447.450026049155, 144.0836738430528),
    "SideBend": (197.22748519620592, 2493.840583646572, 147.01733473079628),
    "Lunge": (179.32559291605347, 2245.032804832622, 124.0682552168501),
}


def test_cyclic_trajectories_are_unchanged():
    assert list(CYCLIC_JOINTS) == list(CLASS_NAMES) and ACTION_SETS["cyclic"] is action_set("cyclic")
    for index, name in enumerate(CLASS_NAMES):
        joints = clip_joints(index, group=2, clip=1, frames=24, size=(64, 48), seed=0)
        stacked = np.concatenate([value.reshape(24, -1) for _, value in sorted(joints.items())], axis=1)
        weights = np.arange(24)[:, None] + 1.0  # sensitive to the order of the frames too
        stats = (stacked.sum(), (stacked * weights).sum(), (stacked ** 2).sum())
        np.testing.assert_allclose(stats, CYCLIC_JOINTS[name], rtol=1e-9, err_msg=name)


def test_every_set_has_unique_readable_names():
    assert 12 <= len(DIRECTED_ACTIONS) <= 20
    for actions in ACTION_SETS:
        names = class_names(len(action_set(actions)), actions)
        assert len(set(names)) == len(names) and all(re.fullmatch(r"[A-Z][A-Za-z]+", n) for n in names)
    with pytest.raises(DatasetError, match="between 2 and 12 .*directed.*SitDown"):
        class_names(len(DIRECTED_ACTIONS) + 1, "directed")
    with pytest.raises(DatasetError, match="cyclic, directed"):
        class_names(4, "backwards")
    assert reversal_pairs("cyclic") == []


def _trajectory(action, progress: np.ndarray, draws: int) -> dict[str, np.ndarray]:
    """The pose fields and joint positions of `action` over `progress`, with generator `draws`."""
    pose = action.pose(progress, np.random.default_rng(draws))
    return {**vars(pose), **skeleton(pose, make_actor(0, 1, (64, 48)))}


def test_reversal_pairs_are_exact_time_reversals():
    by_name = {action.name: action for action in DIRECTED_ACTIONS}
    pairs = reversal_pairs("directed")
    assert ("SitDown", "StandUp") in pairs and len(pairs) >= 3
    assert len({name for pair in pairs for name in pair}) == 2 * len(pairs)  # a class is in one pair at most
    progress = np.arange(33) / 32  # 1 - progress is exact: the reversed class sees the same inputs
    for name, reversed_name in pairs:
        for draws in (0, 1, 2):  # the random choices (which arm first, which way) are shared
            forward = _trajectory(by_name[name], progress, draws)
            backward = _trajectory(by_name[reversed_name], progress, draws)
            for key, value in forward.items():
                assert np.array_equal(backward[key], value[::-1]), (name, key)
            # a pair of a time-symmetric movement would be two names for one class
            assert not np.allclose(forward["wrist"], forward["wrist"][::-1]), name


def _travelling() -> list[int]:
    paired = {name for pair in reversal_pairs("directed") for name in pair}
    return [i for i, action in enumerate(DIRECTED_ACTIONS) if action.name not in paired]


def test_travelling_classes_drift_across_the_frame():
    assert len(_travelling()) >= 2
    for index in _travelling():
        directions = set()
        for group, clip in ((1, 1), (2, 1), (3, 2), (4, 1), (5, 2), (6, 1)):
            x = clip_joints(index, group, clip, 48, (64, 48), seed=0, actions="directed")["pelvis"][:, 0]
            net = x[-1] - x[0]
            steps = np.diff(x) * np.sign(net)
            name = DIRECTED_ACTIONS[index].name
            assert abs(net) > 0.3, name  # body units: about a fifth of the frame or more
            assert -steps[steps < 0].sum() < 0.35 * steps[steps > 0].sum(), name  # mostly one way
            directions.add(np.sign(net))
        assert directions == {-1.0, 1.0}, name  # either way: a horizontal flip keeps the label


def test_a_directed_video_shows_the_movement_once():
    """Still at the start and at the end, different poses there, and any 32-frame window (a VCOP tuple
    of the CPU presets) of a 96-frame video sees part of the movement."""
    for index, action in enumerate(DIRECTED_ACTIONS):
        for group, clip in ((1, 1), (2, 2), (3, 1)):
            joints = clip_joints(index, group, clip, 96, (64, 48), seed=0, actions="directed")
            stacked = np.concatenate([value.reshape(96, -1) for value in joints.values()], axis=1)
            assert np.array_equal(stacked[0], stacked[1]) and np.array_equal(stacked[-1], stacked[-2]), action.name
            assert not np.allclose(stacked[0], stacked[-1], atol=0.02), action.name
            moving = np.abs(np.diff(stacked, axis=0)).max(axis=1) > 1e-9
            assert all(moving[start:start + 31].any() for start in range(96 - 31)), action.name


def _synth(argv: list[str], monkeypatch) -> int:
    from vidkd.cli import main

    monkeypatch.setattr("vidkd.synthetic.writer.usable_cpus", lambda: 1)  # no worker processes: fast
    return main(["synth", *argv])


def test_cli_writes_a_directed_dataset_that_decodes_and_is_not_reused_as_cyclic(tmp_path, monkeypatch, capsys):
    root = tmp_path / "directed"
    small = ["--classes", "4", "--groups", "2", "--clips-per-group", "1", "--frames", "80", "--size", "64x48"]
    assert _synth([str(root), "--actions", "directed", *small], monkeypatch) == 0
    out = capsys.readouterr().out
    assert "directed actions" in out and "SitDown, StandUp, PickUp, PutDown" in out
    stored = json.loads((root / "synthetic.json").read_text())["parameters"]
    assert stored["actions"] == "directed" and stored["classes"] == ["SitDown", "StandUp", "PickUp", "PutDown"]
    assert _lines(root / "splits" / "classInd.txt") == ["1 SitDown", "2 StandUp", "3 PickUp", "4 PutDown"]
    videos = sorted((root / "videos").rglob("*.avi"))
    assert len(videos) == 8
    for path in videos[:2]:
        with av.open(str(path)) as container:
            frames = [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]
        assert len(frames) == 80 and frames[0].shape == (48, 64, 3)

    assert _synth([str(root), "--actions", "directed", *small], monkeypatch) == 0  # same set: reused
    assert "reused" in capsys.readouterr().out
    assert _synth([str(root), *small], monkeypatch) == 2  # the default set: refused, nothing rewritten
    err = capsys.readouterr().err
    assert "the directed actions, not the cyclic ones" in err and "--overwrite" in err
    assert json.loads((root / "synthetic.json").read_text())["parameters"]["actions"] == "directed"


def test_cli_refuses_a_bad_action_set_or_class_count_in_one_line(tmp_path, monkeypatch, capsys):
    with pytest.raises(SystemExit) as exit_info:
        _synth([str(tmp_path / "x"), "--actions", "backwards"], monkeypatch)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if "error" in line]
    assert len(errors) == 1 and "'backwards'" in errors[0] and "cyclic" in errors[0] and "directed" in errors[0]
    assert "Traceback" not in err

    assert _synth([str(tmp_path / "y"), "--actions", "directed", "--classes", "13"], monkeypatch) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1 and "between 2 and 12" in err
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()
