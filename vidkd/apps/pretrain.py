"""`vidkd pretrain`: one self-supervised run (any method), optionally distilled from a teacher.

Everything that can fail on bad input (config, data, teacher) is checked before the run
directory is touched; `config.yaml` is written only once the run has accepted it.
"""

from __future__ import annotations

import logging
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any

import yaml

from vidkd import runs
from vidkd.config import (Config, config_differences, config_from_dict, config_values, deep_merge, parse_overrides,
                          save_config, section_names)
from vidkd.distill.method import Distillation, check_map_stages
from vidkd.distill.teacher import load_teacher
from vidkd.engine.trainer import RunOptions, Trainer
from vidkd.errors import ConfigError
from vidkd.eval.probes import KNNProbe
from vidkd.methods import RunSplits, build_method, run_splits
from vidkd.utils import dist as dist_utils
from vidkd.utils.checkpoint import find_checkpoint, read_meta
from vidkd.utils.runtime import resolve_device, seed_everything

log = logging.getLogger("vidkd.train")

# what a resumed run may change: its length, learning rate and bookkeeping; never what the weights,
# the optimizer state or the data geometry depend on
RESUMABLE_KEYS = ("name", "train.epochs", "train.lr", "train.grad_clip", "train.knn_every", "train.knn_k",
                  "train.val_tuples_per_video", "train.val_every", "train.device", "data.num_workers", "data.root")
RESUMABLE_SECTIONS = ("eval.",)


def dataset_record(splits: RunSplits) -> dict[str, Any]:
    """What identifies the training data to a checkpoint: a resumed run must find the same."""
    return {"classes": list(splits.train.class_names), "train_videos": len(splits.train)}


def _check_same_dataset(cfg: Config, run_dir: Path, splits: RunSplits) -> None:
    stored = _last_meta(run_dir).get("dataset")
    here = dataset_record(splits)
    if isinstance(stored, dict) and stored != here:
        classes = "other classes" if stored.get("classes") != here["classes"] else "the same classes"
        raise ConfigError(f"{run_dir} was trained on {stored.get('train_videos')} videos of "
                          f"{len(stored.get('classes') or [])} classes; data.root {cfg.data.root} has "
                          f"{here['train_videos']} training videos of {classes}: resume with the run's own "
                          "dataset (--set data.root=WHERE_IT_IS_NOW), or start a new run with --out")


def _last_meta(run_dir: Path) -> dict[str, Any]:
    found = find_checkpoint(runs.checkpoint_dir(run_dir, runs.LAST))
    return read_meta(found) if found is not None else {}


def build_trainer(cfg: Config, run_dir: Path, resume: bool = False) -> Trainer:
    """The method of `cfg` (with its teacher, if any) and its probes, handed to the engine."""
    if cfg.teacher.path:  # before the dataset is read: a stage the student (or a named teacher) lacks
        check_map_stages(cfg.teacher, {"student": (cfg.model.arch, cfg.model.width)}
                         | ({"teacher": (cfg.teacher.arch, cfg.teacher.width or 1.0)} if cfg.teacher.arch else {}))
    seed_everything(cfg.train.seed)  # model initialisation depends on it
    splits = run_splits(cfg)
    if resume:
        _check_same_dataset(cfg, run_dir, splits)
    method = build_method(cfg, splits)
    if cfg.teacher.path:
        device = resolve_device(cfg.train.device, dist_utils.init_distributed().local_rank)
        teacher, info = load_teacher(cfg.teacher, method.meta(), device=device)
        log.info("teacher: %s", info["summary"])
        method = Distillation(method, teacher, cfg.teacher)
    probes = [KNNProbe(cfg, splits)] if cfg.train.knn_every > 0 else []
    if dist_utils.is_main_process_env() and not resume:
        run_dir.mkdir(parents=True, exist_ok=True)
        runs.metrics_path(run_dir).unlink(missing_ok=True)
        save_config(cfg, runs.config_path(run_dir))
    dist_utils.barrier()
    options = RunOptions(num_workers=cfg.data.num_workers, resume=resume, sync_bn=cfg.model.sync_bn)
    return Trainer(method, cfg.train, run_dir, options, probes=probes,
                   meta={"config": cfg.to_dict(), "dataset": dataset_record(splits)})


def read_run_config(run_dir: Path) -> dict[str, Any]:
    try:
        values = yaml.safe_load(runs.config_path(run_dir).read_text())
    except (OSError, yaml.YAMLError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{runs.config_path(run_dir)} cannot be read ({str(exc).splitlines()[0][:80]}); "
                          "the run directory is damaged: start a new run with --out") from None
    if not isinstance(values, dict):
        raise ConfigError(f"{runs.config_path(run_dir)} is not a config mapping; start a new run with --out")
    return values


def _recorded_values(values: dict[str, Any]) -> dict[str, Any]:
    """A run's recorded config with every section (config.yaml leaves out other methods' defaults)."""
    try:
        return config_values(config_from_dict(values))
    except ConfigError:
        return values  # a config this version refuses: compare what is written


def prepare_run_dir(cfg: Config, out_dir: Path) -> None:
    """Refuse to mix two runs in one directory; a run that never finished an epoch may be restarted."""
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise ConfigError(f"--out {out_dir} is a file; give a directory for the run")
    if runs.is_run_dir(out_dir):
        if not runs.has_trained(out_dir):
            log.info("%s holds a run that never finished an epoch; starting it again", out_dir)
            return
        differs = config_differences(_recorded_values(read_run_config(out_dir)), config_values(cfg))
        if differs:
            shown = ", ".join(differs[:5]) + (" …" if len(differs) > 5 else "")
            raise ConfigError(f"{out_dir} already holds a different run (differs in {shown}); choose a new --out")
        raise ConfigError(f"{out_dir} already holds this run; continue it with `vidkd pretrain --resume {out_dir}`")
    if out_dir.exists() and not runs.is_empty_dir(out_dir):
        raise ConfigError(f"{out_dir} exists and is not an empty run directory; choose a new --out")


def pretrain(cfg: Config, out_dir: Path) -> list[dict[str, Any]]:
    """Train a new run into `out_dir` (which must not hold another run)."""
    out_dir = Path(out_dir)
    with writing(out_dir):
        if dist_utils.is_main_process_env():
            prepare_run_dir(cfg, out_dir)
        trainer = build_trainer(cfg, out_dir)
        try:
            return trainer.fit()
        finally:
            trainer.close()


def writing(directory: Path, what: str = "run directory") -> AbstractContextManager[None]:
    """The writer lock of `directory`, taken by the main process only (the other ranks write nothing)."""
    return runs.one_writer(directory, what) if dist_utils.is_main_process_env() else nullcontext()


def resumable(key: str) -> bool:
    """Whether a resumed run can honour a new value of this dotted config key."""
    return key in RESUMABLE_KEYS or key.startswith(RESUMABLE_SECTIONS)


def moved_teacher(old: Any, new: Any) -> bool:
    """`new` is where the teacher run `old` is now: the same run name, the old place gone (a moved
    experiment directory), so the teacher is the same one."""
    if not old or not new or Path(str(old)).name != Path(str(new)).name:
        return False
    return not Path(str(old)).exists() and Path(str(new)).exists()


def check_resume_overrides(overrides: list[str], values: dict[str, Any] | None = None) -> None:
    """Refuse, before anything is written, an override a resumed run cannot honour (one that
    repeats the run's own value, e.g. its teacher, is no change; nor is its moved teacher)."""
    current = config_values(config_from_dict(values)) if values is not None else {}
    tree = parse_overrides(overrides)
    for key in _dotted_keys(tree):
        wanted, have = _get(tree, key), _get(current, key)
        if have is not None and wanted == have:
            continue
        if key == "teacher.path" and moved_teacher(have, wanted):
            continue
        if not resumable(key):
            raise ConfigError(f"{key} cannot change on a resumed run (its checkpoint was trained with the old value); "
                              f"resume may change {', '.join(RESUMABLE_KEYS[1:])}; start a new run with --out for {key}")


def _get(tree: dict[str, Any], dotted: str) -> Any:
    for part in dotted.split("."):
        if not isinstance(tree, dict) or part not in tree:
            return None
        tree = tree[part]
    return tree


def _dotted_keys(tree: dict[str, Any], prefix: str = "") -> list[str]:
    keys = []
    for key, value in tree.items():
        if isinstance(value, dict) and prefix + key in section_names(Config):
            keys += _dotted_keys(value, f"{prefix}{key}.")
        else:
            keys.append(prefix + key)
    return keys


def resume(run_dir: Path, overrides: list[str] | None = None) -> list[dict[str, Any]]:
    """Continue `run_dir` from its last checkpoint.

    Overrides may change what a resumed run can honour (epochs, learning rate — really applied to
    the restored optimizer —, gradient clipping, probes, workers); anything else is refused
    before the run directory is touched. A finished run is left as it is (nothing is written)
    unless `train.epochs` asks for more epochs.
    """
    run_dir = Path(run_dir)
    if not runs.is_run_dir(run_dir):
        raise ConfigError(f"{run_dir} is not a vidkd run directory (no {runs.CONFIG_FILE}); start one with --out")
    overrides = list(overrides or [])
    with writing(run_dir):
        values = read_run_config(run_dir)
        root = deep_merge(values, parse_overrides(overrides)).get("data", {}).get("root")
        if root and not Path(str(root)).is_dir():
            raise ConfigError(f"the dataset of {run_dir} is no longer at {root}; if it moved, resume with "
                              "--set data.root=WHERE_IT_IS_NOW")
        if not runs.has_trained(run_dir):
            cfg = config_from_dict(deep_merge(values, parse_overrides(overrides)))
            log.info("%s has no checkpoint yet; starting it from the beginning", run_dir)
            trainer = build_trainer(cfg, run_dir)
        else:
            check_resume_overrides(overrides, values)
            _check_config_matches_checkpoint(run_dir, values)
            if dist_utils.is_main_process_env() and runs.recover_best(run_dir):
                log.warning("%s: the save of its best checkpoint was interrupted; restored it from the last one "
                            "(the same epoch)", run_dir)
            cfg = config_from_dict(deep_merge(values, parse_overrides(overrides)))
            done = runs.saved_epoch(run_dir)
            if cfg.train.epochs <= done:
                return _finished(run_dir, cfg, done, overrides)
            trainer = build_trainer(cfg, run_dir, resume=True)
            trained_for = values["train"]["epochs"]
            if cfg.train.epochs != trained_for and cfg.train.scheduler == "cosine":
                log.warning("%s: train.epochs changed from %s to %d; its first %d epochs followed the %s-epoch "
                            "cosine schedule, so it is not a fresh %d-epoch run (remove it to train one)", run_dir,
                            trained_for, cfg.train.epochs, trainer.start_epoch - 1, trained_for, cfg.train.epochs)
            if "train.lr" in _dotted_keys(parse_overrides(overrides)):
                trainer.set_learning_rate(cfg.train.lr)
                log.info("learning rate set to %g for the resumed run", cfg.train.lr)
            if overrides and dist_utils.is_main_process_env():
                save_config(cfg, runs.config_path(run_dir))
        try:
            return trainer.fit()
        finally:
            trainer.close()


def _finished(run_dir: Path, cfg: Config, done: int, overrides: list[str]) -> list[dict[str, Any]]:
    """A resume with nothing to train: say so; refuse settings that would only rewrite the record."""
    longer = f"to train longer, resume with --set train.epochs={done + 10} (for example)"
    if cfg.train.epochs < done:
        raise ConfigError(f"{run_dir} has already trained {done} epochs; train.epochs={cfg.train.epochs} would "
                          f"contradict its checkpoint: {longer}")
    if overrides:
        raise ConfigError(f"{run_dir} is finished ({done} of {done} epochs), so {', '.join(overrides)} would train "
                          f"nothing and is not applied; {longer}")
    log.warning("%s is finished (%d of %d epochs): nothing to train; %s", run_dir, done, done, longer)
    return runs.read_metrics(run_dir)


def _check_config_matches_checkpoint(run_dir: Path, values: dict[str, Any]) -> None:
    """A hand-edited config.yaml must not change what the checkpoint was trained with."""
    recorded = _last_meta(run_dir).get("config")
    try:
        differs = config_differences(config_values(config_from_dict(recorded)), config_values(config_from_dict(values)))
    except (ConfigError, TypeError, AttributeError):
        return  # no config in the checkpoint, or one of an older vidkd: config.yaml is all there is
    fixed = [key for key in differs if not resumable(key) and not (
        key == "teacher.path" and moved_teacher(_get(recorded, key), _get(values, key)))]
    if fixed:
        shown = ", ".join(f"{key} ({_get(recorded, key)!r} in the checkpoint, {_get(values, key)!r} in "
                          f"{runs.CONFIG_FILE})" for key in fixed[:3])
        raise ConfigError(f"{runs.config_path(run_dir)} was edited after training began: {shown}; the checkpoint "
                          "was trained with its own values: restore them, or start a new run with --out")
