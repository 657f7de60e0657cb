"""Config values that are clearly wrong: one line through the real CLI, before anything is written.

Issue 28 (tracebacks, values accepted although clearly wrong, messages that did not say what was
wrong). Each row runs `vidkd pretrain` or `vidkd experiment --dry-run` through `vidkd.cli.main` and
expects exit code 2, one `vidkd: error` line without a traceback, a phrase of that line, and an
untouched --out. Config validation happens before any data is read, so no dataset is needed.
"""

from __future__ import annotations

import logging
import typing

import pytest
import torch
import yaml

from test_faults import run_cli, write
from vidkd import config as config_module
from vidkd.config import Config, ConfigError, all_keys, field_types, load_config
from vidkd.distill.teacher import load_teacher
from vidkd.methods.pcl import PCLModel, pcl_meta
from vidkd.models import build_backbone

pytestmark = pytest.mark.usefixtures("single_thread")

PRESET = "pcl_r3d_synthetic"  # 30 epochs, 1 warm-up epoch

# (case, --set values on the preset, phrase of the one-line error)
BAD_VALUES = [
    # tracebacks before
    ("infinite width", ["model.width=.inf"], "'model.width' must be a positive number"),
    ("negative crop", ["data.crop=-8"], "'data.crop' must be a size of at least 1 pixel"),
    ("negative interval", ["data.interval=-20"], "'data.interval' must not be negative"),
    ("negative seed", ["train.seed=-1"], "'train.seed' must not be negative"),
    ("dropout above 1", ["method=vcop", "vcop.dropout=2"], "'vcop.dropout' is a dropout probability"),
    ("two mean values", ["data.mean=[0.5, 0.5]"], "'data.mean' needs 3 numbers, one per RGB channel"),
    # accepted before although clearly wrong
    ("jitter probability 5", ["data.color_jitter=5"], "'data.color_jitter' is a probability: it must be in [0, 1]"),
    ("negative grayscale probability", ["data.grayscale=-0.2"], "'data.grayscale' is a probability"),
    ("blur probability above 1", ["data.blur=1.5"], "'data.blur' is a probability"),
    ("negative NCE weight", ["ssl.nce_weight=-1"], "'ssl.nce_weight' must not be negative"),
    ("negative logit KD weight", ["teacher.alpha=-1"], "'teacher.alpha' must not be negative"),
    ("negative feature KD weight", ["teacher.feature_weight=-0.5"], "'teacher.feature_weight' must not be negative"),
    ("no projection", ["ssl.proj_dim=0"], "'ssl.proj_dim' is a layer size"),
    ("warm-up longer than the run", ["train.epochs=5", "train.warmup_epochs=6"],
     "train.warmup_epochs=6 is longer than the run (train.epochs=5)"),
    ("negative plateau factor", ["train.scheduler=plateau", "train.plateau_factor=-1"],
     "'train.plateau_factor' multiplies the learning rate on a plateau: it must be in (0, 1)"),
    ("plateau factor 1", ["train.plateau_factor=1"], "in (0, 1)"),
    ("every KD weight 0", ["teacher.path=some/run", "teacher.alpha=0"],
     "teacher.alpha, teacher.relational_weight, teacher.feature_weight, teacher.attention_weight are all 0: "
     "nothing to distil"),
    ("negative attention weight", ["teacher.attention_weight=-1"], "'teacher.attention_weight' must not be negative"),
    ("no attention stage", ["teacher.attention_stages=[]"], "'teacher.attention_stages' must list one or more"),
    # messages that did not say what was wrong
    ("std of zeros", ["data.std=[0, 0, 0]"], "'data.std' divides the pixels: every value must be positive"),
    ("one std of zero", ["data.std=[0.2, 0, 0.2]"], "every value must be positive"),
    ("a section given a scalar", ["train=5"], "'train' is a config section, not a value; set one of its keys"),
    ("NaN temperature", ["teacher.temperature=.nan"], "'teacher.temperature' needs a finite number, got nan"),
    ("infinite lr", ["train.lr=.inf"], "'train.lr' must be a positive number; got inf"),
    ("infinite grad clip", ["train.grad_clip=.inf"], "'train.grad_clip' needs a finite number"),
    ("a boolean name", ["name=NO"], "quote the value"),
    ("an empty value", ["train.lr="], "'train.lr' has no value"),
]


@pytest.mark.parametrize("case,settings,phrase", BAD_VALUES, ids=[c[0] for c in BAD_VALUES])
def test_bad_values_are_one_line_errors_and_write_nothing(case, settings, phrase, tmp_path, capsys):
    args = ["pretrain", "--config", PRESET, *[a for s in settings for a in ("--set", s)], "--out", tmp_path / "run"]
    code, line = run_cli(args, capsys)
    assert code == 2 and line.startswith("vidkd: error") and phrase in line, line
    assert not (tmp_path / "run").exists()


# (case, config file text, phrase)
BAD_RUN_FILES = [
    ("a key twice", "train:\n  lr: 0.1\n  epochs: 3\n  lr: 0.2\n", "key 'lr' appears twice (lines 2 and 4)"),
    ("a section twice", "train: {lr: 0.1}\nmodel: {arch: c3d}\ntrain: {epochs: 3}\n", "key 'train' appears twice"),
    ("a section as a list", "ssl: []\n", "config section 'ssl' must be a mapping of key: value, got []"),
    ("a section as false", "teacher: false\n", "config section 'teacher' must be a mapping"),
    ("a section as a number", "train: 5\n", "config section 'train' must be a mapping"),
    ("name: NO", "name: NO\n", "YAML reads an unquoted yes/no/on/off/true/false as a boolean; quote the value"),
    ("an experiment config", "base: {train: {epochs: 2}}\nbaselines: [r3d]\n",
     "is an experiment config (it has base:, baselines:), not a run config; run it with `vidkd experiment"),
]


@pytest.mark.parametrize("case,content,phrase", BAD_RUN_FILES, ids=[c[0] for c in BAD_RUN_FILES])
def test_bad_run_config_files(case, content, phrase, tmp_path, capsys):
    config = write(tmp_path / "bad.yaml", content)
    code, line = run_cli(["pretrain", "--config", config, "--out", tmp_path / "run"], capsys)
    assert code == 2 and phrase in line, line
    assert not (tmp_path / "run").exists()


def test_a_merge_key_may_be_overridden(tmp_path):
    config = write(tmp_path / "merge.yaml", "train:\n  <<: {lr: 0.1, epochs: 3}\n  lr: 0.2\n")
    assert load_config(config).train.lr == 0.2  # an explicit key over a merged one is not a duplicate


GRID = "name: grid\nbaselines: [r3d]\nteachers: [r3d]\nstudents: [r3d]\nevaluations: [knn]\nrandom_init: false\n"

BAD_EXPERIMENTS = [
    ("a run config", (PRESET, []), "pcl_r3d_synthetic is a run config (it has data:, model:, ssl:, train:), not an "
                                   "experiment config; train it with `vidkd pretrain --config pcl_r3d_synthetic"),
    ("a key twice", (GRID + "seeds: [0]\nseeds: [1]\n", []), "key 'seeds' appears twice (lines 7 and 8)"),
    ("a width typo", (GRID + "widths: {r3dd: 0.5}\n", []), "'widths.r3dd' names no known architecture; did you mean 'r3d'"),
    ("an epochs key in capitals", (GRID + "epochs_by_arch: {R3D: 2}\n", []),
     "'epochs_by_arch.R3D' names no known architecture; did you mean 'r3d'"),
    ("a width override typo", (GRID, ["widths.c3dd=0.5"]), "did you mean 'c3d'"),
    ("an infinite width", (GRID + "widths: {r3d: .inf}\n", []), "'widths.r3d' must be a channel multiplier > 0"),
    ("a negative seed", (GRID, ["seeds=[-1]"]), "'seeds' must hold seeds >= 0"),
    ("every KD weight 0", (GRID + "teacher: {alpha: 0}\n", []), "nothing to distil"),
    ("warm-up longer than an architecture's run", (GRID + "base: {train: {epochs: 5, warmup_epochs: 3}}\n"
                                                   "epochs_by_arch: {r3d: 2}\n", []),
     "train.warmup_epochs=3 is longer than the run (epochs_by_arch.r3d=2)"),
    ("a section given a scalar", (GRID, ["train=5"]), "'train' is a config section, not a value"),
    ("a NaN under base", (GRID, ["teacher.temperature=.nan"]), "config key 'teacher.temperature' needs a finite number"),
    ("a teacher path", (GRID + "teacher: {path: x}\n", []), "'teacher.path' is set by the grid"),
]


@pytest.mark.parametrize("case,spec,phrase", BAD_EXPERIMENTS, ids=[c[0] for c in BAD_EXPERIMENTS])
def test_bad_experiment_configs(case, spec, phrase, tmp_path, capsys):
    content, overrides = spec
    config = content if "\n" not in content else write(tmp_path / "grid.yaml", content)
    args = ["experiment", "--config", config, "--dry-run", "--out", tmp_path / "grid",
            *[a for s in overrides for a in ("--set", s)]]
    code, line = run_cli(args, capsys)
    assert code == 2 and phrase in line, line
    assert not (tmp_path / "grid").exists()


def test_the_experiment_presets_and_a_smoke_override_still_plan(tmp_path, capsys, caplog):
    config_module._warned.clear()
    with caplog.at_level(logging.WARNING, logger="vidkd.config"):
        code, _ = run_cli(["experiment", "--config", "demo_synthetic", "--dry-run", "--out", tmp_path / "grid",
                           "--set", "train.epochs=1"], capsys)
    assert code == 0  # one epoch of a config with one warm-up epoch is a smoke run: meant, so only warned about
    assert "train.warmup_epochs=1 is the whole run" in caplog.text


def test_every_float_key_refuses_nan_and_infinity_by_name():
    """NaN passes every `x < 0` check; each float key must still refuse it and name itself."""
    float_keys = []
    for key in all_keys(Config):
        section, _, name = key.partition(".")
        hint = field_types(Config)[section] if not name else field_types(field_types(Config)[section])[name]
        if hint is float or (float in typing.get_args(hint) and typing.get_origin(hint) is not list):
            float_keys.append(key)
    assert len(float_keys) > 20
    for key in float_keys:
        for value in (".nan", ".inf", "-.inf"):
            with pytest.raises(ConfigError, match=f"config key '{key}' "):  # its own range, or "a finite number"
                load_config(None, [f"{key}={value}"])
    for key, phrase in (("eval.linear_weight_decay", "needs a finite number"), ("data.mean", "needs a finite number"),
                        ("data.std", "divides the pixels: every value must be positive")):
        with pytest.raises(ConfigError, match=f"'{key}' {phrase}"):
            load_config(None, [f"{key}=[0.1, .nan, 0.2]"])


def test_every_probability_is_between_0_and_1():
    for key in ("data.color_jitter", "data.grayscale", "data.blur", "vcop.dropout", "eval.finetune_dropout"):
        for value in (-0.1, 1.5):
            with pytest.raises(ConfigError, match=f"'{key}' is a .*probability"):
                load_config(None, [f"{key}={value}"])
        load_config(None, [f"{key}=0"])


def test_every_preset_still_loads():
    for name in config_module.list_presets():
        values = config_module.read_yaml_mapping(name)
        if any(key in values for key in config_module.EXPERIMENT_ONLY_KEYS):
            config_module.load_experiment(name)
        else:
            load_config(name)


def test_relational_kd_from_a_backbone_only_checkpoint(tmp_path):
    """A torchvision state_dict has no heads: as a teacher of relational KD it is a bare backbone
    (it used to raise "PCL needs a pretext task or a contrastive term" from PCLModel)."""
    weights = tmp_path / "r3d_18.pth"
    torch.save(build_backbone("r3d_18", width=0.125).state_dict(), weights)
    cfg = load_config(PRESET, [f"teacher.path={weights}", "teacher.alpha=0", "teacher.relational_weight=1"])
    model, info = load_teacher(cfg.teacher, pcl_meta(cfg))
    assert info["format"] == "torchvision" and info["arch"] == "r3d_18"
    out = model(torch.randn(2, 3, 3, 4, 32, 32))
    assert out.features.shape[:2] == (2, 3) and out.pretext_logits is None and out.embeddings is None
    # training a PCL model without either term is still refused, with the keys to turn on
    cfg.ssl.pretext = cfg.ssl.contrastive = "none"
    with pytest.raises(ConfigError, match="nothing to learn"):
        PCLModel.from_config(build_backbone("r3d", width=0.125), cfg)


def test_a_duplicate_key_in_a_set_value_is_named(tmp_path, capsys):
    code, line = run_cli(["pretrain", "--config", PRESET, "--set", "data.resize={a: 1, a: 2}", "--out",
                          tmp_path / "run"], capsys)
    assert code == 2 and "key 'a' appears twice" in line


def test_yaml_reads_back_what_vidkd_writes(tmp_path):
    cfg = load_config(PRESET)
    path = tmp_path / "config.yaml"
    config_module.save_config(cfg, path)
    assert load_config(path).to_dict() == cfg.to_dict()
    assert yaml.safe_load(path.read_text())["name"] == PRESET
