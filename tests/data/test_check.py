"""`vidkd data check`: counts, stats, unusable videos, and split-file errors as lines."""

from __future__ import annotations

from conftest import write_index_video, write_ucf_layout
from vidkd.cli import main
from vidkd.data.check import check_dataset, format_report


def test_check_healthy_ucf(tmp_path, capsys):
    write_ucf_layout(tmp_path, {"Run": 1, "Jump": 2}, groups=3, clips=1, num_frames=70)
    report = check_dataset(tmp_path, min_frames=64)
    assert not report.fatal
    assert report.layout == "ucf101" and report.counts == {"train": 4, "test": 2}
    assert report.per_class == {"Run": {"train": 2, "test": 1}, "Jump": {"train": 2, "test": 1}}
    assert report.frame_counts == [70] * 6 and report.sizes == {"48x32": 6}
    text = format_report(report)
    assert "classes   2" in text and "train 4, test 2" in text and "min 70 / median 70 / max 70" in text
    assert "result    OK: 6 of 6" in text
    assert main(["data", "check", str(tmp_path)]) == 0
    assert "48x32 (6)" in capsys.readouterr().out


def test_check_lists_every_unusable_video(tmp_path):
    write_ucf_layout(tmp_path, {"Run": 1}, groups=6, clips=1, num_frames=70)
    videos = sorted((tmp_path / "videos").rglob("*.avi"))
    videos[0].write_bytes(b"")
    videos[1].write_bytes(b"\x00garbage" * 300)
    write_index_video(videos[2], 20, 32, 48)
    cut = videos[3].read_bytes()
    videos[3].write_bytes(cut[: len(cut) // 2])
    report = check_dataset(tmp_path, min_frames=64)
    reasons = {path.name: reason for path, reason in report.problems}
    assert set(reasons) == {v.name for v in videos[:4]}
    assert "empty" in reasons[videos[0].name]
    assert "cannot open" in reasons[videos[1].name]
    assert reasons[videos[2].name] == "too short (20 frames < 64)"
    assert report.fatal  # 4 of 6 unusable
    text = format_report(report)
    assert "unusable videos (4):" in text and "NOT USABLE" in text
    assert f"videos/Run/{videos[2].name}: too short" in text


def test_split_file_errors_are_lines_not_tracebacks(tmp_path, capsys):
    write_ucf_layout(tmp_path, {"Run": 1, "Jump": 2}, groups=2, clips=1, num_frames=8)
    (tmp_path / "splits" / "testlist01.txt").unlink()
    report = check_dataset(tmp_path, min_frames=4)
    assert report.fatal and report.counts == {"train": 2}
    assert len(report.errors) == 1 and report.errors[0].startswith("test: missing test list")
    assert main(["data", "check", str(tmp_path), "--min-frames", "4"]) == 1
    out = capsys.readouterr().out
    assert "error     test: missing test list" in out and "Traceback" not in out


def test_check_no_dataset(tmp_path):
    report = check_dataset(tmp_path / "absent")
    assert report.fatal and "not a directory" in format_report(report)
