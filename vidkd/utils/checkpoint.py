"""Checkpoint directories: weights, metadata and trainer state, written atomically.

A checkpoint is a directory: `model.safetensors` (weights; loading runs no code), `meta.json`
(what the network is, config, epoch, metrics) and `trainer.pt` (optimizer, scheduler, RNG;
plain tensors and containers only, read with `torch.load(weights_only=True)`). A checkpoint
directory is written under a temporary name and renamed into place, so a crash never leaves a
half-written one.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import torch

from vidkd.errors import CheckpointError
from vidkd.utils.io import atomic_torch_save, atomic_write_json, load_weights, safe_torch_load, save_weights

WEIGHTS_FILE = "model.safetensors"
META_FILE = "meta.json"
TRAINER_FILE = "trainer.pt"


def _old_name(directory: Path) -> Path:
    return directory.with_name(f".{directory.name}.old")


def is_complete(directory: Path) -> bool:
    """Weights and metadata are both there (a checkpoint is renamed into place whole)."""
    return (directory / WEIGHTS_FILE).is_file() and (directory / META_FILE).is_file()


def find_checkpoint(directory: Path) -> Path | None:
    """`directory` if it holds a complete checkpoint; else the previous one a save was replacing.

    `save_checkpoint` swaps in two renames (current -> `.NAME.old`, new -> current); a crash
    between them leaves only `.NAME.old`, which is then the newest complete checkpoint.
    """
    directory = Path(directory)
    for candidate in (directory, _old_name(directory)):
        if is_complete(candidate):
            return candidate
    return None


def save_checkpoint(
    directory: Path,
    model_state: dict[str, torch.Tensor],
    meta: dict[str, Any],
    trainer_state: dict[str, Any] | None = None,
) -> None:
    """Write a whole checkpoint directory atomically (temp dir, then rename).

    The previous checkpoint is removed only once the new one is in place, so whatever moment a
    crash hits, `find_checkpoint` finds a complete checkpoint (the new one or the previous).
    """
    with _staged(Path(directory)) as tmp:
        save_weights(model_state, tmp / WEIGHTS_FILE)
        atomic_write_json(tmp / META_FILE, meta)
        if trainer_state is not None:
            atomic_torch_save(trainer_state, tmp / TRAINER_FILE)


def copy_checkpoint(source: Path, directory: Path) -> None:
    """Copy the checkpoint directory `source` to `directory`, as atomically as `save_checkpoint` writes."""
    with _staged(Path(directory)) as tmp:
        for name in (WEIGHTS_FILE, META_FILE, TRAINER_FILE):
            if (Path(source) / name).is_file():
                shutil.copy2(Path(source) / name, tmp / name)


@contextmanager
def _staged(directory: Path) -> Iterator[Path]:
    """A temporary directory beside `directory` to write a checkpoint into: swapped in whole when the
    block succeeds, removed when it fails."""
    directory.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{directory.name}.tmp.", dir=directory.parent))
    try:
        yield tmp
        _swap_in(tmp, directory)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _swap_in(tmp: Path, directory: Path) -> None:
    """Replace `directory` by the complete checkpoint `tmp`; the old one is removed only once the new is in place."""
    old = _old_name(directory)
    if is_complete(directory):
        if old.exists():
            shutil.rmtree(old)
        os.replace(directory, old)
    elif directory.exists():  # a damaged checkpoint: nothing in it to keep
        shutil.rmtree(directory)
    os.replace(tmp, directory)
    shutil.rmtree(old, ignore_errors=True)


def read_meta(directory: Path) -> dict[str, Any]:
    """`meta.json` of a checkpoint directory ({} when absent); a damaged one is a CheckpointError."""
    path = Path(directory) / META_FILE
    if not path.is_file():
        return {}
    try:
        meta = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{path} is not valid JSON ({str(exc).splitlines()[0][:80]}); "
                              "the checkpoint is damaged: use another one or retrain") from None
    if not isinstance(meta, dict):
        raise CheckpointError(f"{path} does not hold a JSON object; the checkpoint is damaged")
    return meta


def load_checkpoint(directory: Path, with_trainer: bool = False) -> tuple[dict[str, torch.Tensor], dict[str, Any], dict[str, Any] | None]:
    """Weights, metadata and (optionally) trainer state of the newest complete checkpoint at `directory`."""
    directory = Path(directory)
    found = find_checkpoint(directory)
    if found is None:
        raise CheckpointError(f"no checkpoint at {directory} (expected {WEIGHTS_FILE} and {META_FILE} there)")
    weights = load_weights(found / WEIGHTS_FILE)
    meta = read_meta(found)
    trainer = safe_torch_load(found / TRAINER_FILE) if with_trainer else None
    return weights, meta, trainer
