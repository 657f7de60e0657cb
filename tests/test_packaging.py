"""Presets ship inside the package: a regular (non-editable) install loads them by name."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from vidkd.cli import main
from vidkd.config import list_presets, load_config
from vidkd.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]


def test_presets_load_by_name_and_by_path():
    assert {"pcl_r3d_ucf101", "pcl_r3d_synthetic", "vcop_r3d_synthetic", "demo_synthetic"} <= set(list_presets())
    by_name = load_config("vcop_r3d_ucf101")
    by_path = load_config(REPO / "configs" / "vcop_r3d_ucf101.yaml")
    assert by_name == by_path and by_name.method == "vcop"
    with pytest.raises(ConfigError, match="preset name.*pcl_r3d_ucf101"):
        load_config("no_such_preset")


@pytest.mark.slow
def test_a_built_wheel_installed_without_dependencies_loads_a_preset_by_name(tmp_path):
    wheels, site, source = tmp_path / "wheels", tmp_path / "site", tmp_path / "source"
    # build from a copy: setuptools writes build/ and *.egg-info beside the sources it builds
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, source / name)
    shutil.copytree(REPO / "vidkd", source / "vidkd", ignore=shutil.ignore_patterns("__pycache__"))
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--no-input", "-q"]
    subprocess.run([*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", str(wheels), str(source)], check=True,
                   cwd=tmp_path, capture_output=True)
    wheel = next(wheels.glob("vidkd-*.whl"))
    subprocess.run([*pip, "install", "--no-deps", "--target", str(site), str(wheel)], check=True, capture_output=True)
    code = ("import vidkd, vidkd.config as c; cfg = c.load_config('pcl_r3d_ucf101'); "
            "print(vidkd.__file__); print(cfg.name, cfg.model.arch)")
    env = {**os.environ, "PYTHONPATH": str(site)}
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                            check=True)
    installed_at, loaded = result.stdout.strip().splitlines()
    assert Path(installed_at).is_relative_to(site)  # the wheel's copy, not this checkout
    assert loaded == "pcl_r3d_ucf101 r3d"


def test_set_takes_several_pairs_after_one_flag(tmp_path, capsys):
    # `--set a=1 b=2` and `--set a=1 --set b=2` mean the same; a typo in either is named
    assert main(["experiment", "--config", "demo_synthetic", "--dry-run", "--out", str(tmp_path / "x"),
                 "--set", "train.epochs=1", "seeds=[0,1]", "--set", "baselines=[r3d]"]) == 0
    printed = capsys.readouterr().out
    assert "baseline_r3d_s1" in printed and "baseline_c3d_s0" not in printed
    assert main(["experiment", "--config", "demo_synthetic", "--dry-run", "--set", "train.epochz=1"]) == 2
    assert "did you mean 'train.epochs'" in capsys.readouterr().err
