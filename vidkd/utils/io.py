"""Atomic file writes, safetensors weights and torch files loaded without running code.

Every write goes to a temporary file in the same directory and is renamed into place, so a
crash never leaves a half-written file. Torch files are read with `weights_only=True`.
"""

from __future__ import annotations

import io
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from vidkd.errors import CheckpointError

def atomic_write_bytes(path: Path, data: bytes) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n")


def _json_default(obj: Any) -> Any:
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, torch.Tensor):
        return obj.tolist()
    if hasattr(obj, "item"):
        return obj.item()
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def atomic_torch_save(obj: Any, path: Path) -> None:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    atomic_write_bytes(path, buffer.getvalue())


def save_weights(state_dict: dict[str, torch.Tensor], path: Path, metadata: dict[str, str] | None = None) -> None:
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in state_dict.items()}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    os.close(fd)
    try:
        try:
            save_file(tensors, tmp, metadata=metadata)
        except (OSError, KeyboardInterrupt):
            raise
        except Exception as exc:  # safetensors reports a failed write (disk full, I/O error) as its own type
            raise OSError(f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from None
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_weights(path: Path) -> dict[str, torch.Tensor]:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"weights file not found: {path}")
    try:
        return load_file(str(path))
    except Exception as exc:  # safetensors raises several types for a damaged file
        raise CheckpointError(f"cannot read weights {path}: {exc}; the file is damaged or not safetensors") from None


def safe_torch_load(path: Path) -> Any:
    """Load a torch file without executing code; a pickle that needs code is refused."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"file not found: {path}")
    with open(path, "rb") as fh:
        head = fh.read(2)
    if head != b"PK" and head[:1] != b"\x80":  # a torch file is a zip archive or (older) a pickle
        kind = {".yaml": "a config file", ".yml": "a config file", ".json": "a JSON file", ".txt": "a text file",
                ".avi": "a video", ".mp4": "a video", ".mkv": "a video", ".webm": "a video"}.get(path.suffix.lower())
        raise CheckpointError(f"{path} is {kind or 'not a checkpoint'}{', not a checkpoint' if kind else ''}: pass a run "
                              "directory (its best checkpoint is used), a checkpoint directory or a weights file")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if isinstance(exc, (EOFError, RuntimeError)) and ("central directory" in first or "EOF" in first
                                                          or isinstance(exc, EOFError)):
            raise CheckpointError(f"{path} is truncated or damaged ({first[:120]}); it cannot be read — "
                                  "use another checkpoint (a run keeps checkpoints/best and last)") from None
        raise CheckpointError(
            f"refusing to load {path}: it is not a plain-tensor checkpoint ({first[:200]}); "
            "vidkd never runs code from a checkpoint — re-save it as a state_dict"
        ) from None
