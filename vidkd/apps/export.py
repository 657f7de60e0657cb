"""`vidkd export RUN_DIR --format onnx`: the trained backbone as an ONNX file, checked against PyTorch.

The exported graph maps a normalised clip batch (B, 3, T, H, W) to the pooled feature (B, d); the
batch axis is dynamic. The check runs one real test clip of the run's dataset (decoded and
transformed exactly as evaluation does) through PyTorch and onnxruntime and reports the largest
absolute difference. The file's metadata and `export.json` say how to prepare the input.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import importlib
import json
import logging
import os
import tempfile
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vidkd import runs
from vidkd.config import config_from_dict, load_config
from vidkd.data.datasets import load_split
from vidkd.data.loaders import MultiClipDataset
from vidkd.data.transforms import transforms_from_config
from vidkd.errors import VidkdError
from vidkd.models.loading import load_backbone as load_trained_backbone
from vidkd.utils.io import atomic_write_json


log = logging.getLogger("vidkd.export")

OPSET = 17  # supported by the TorchScript exporter and every onnxruntime >= 1.14
CHECK_TOLERANCE = 1e-3  # max |onnx - torch| on a real clip above which the export is reported as failed


def require_onnx() -> tuple[Any, Any]:
    """Import onnx and onnxruntime, or say how to install them."""
    try:
        return importlib.import_module("onnx"), importlib.import_module("onnxruntime")
    except ImportError as exc:
        raise VidkdError(f"ONNX export needs onnx and onnxruntime ({exc.name} is missing): "
                         "pip install 'vidkd[export]'") from None


def load_backbone(source: Path) -> tuple[torch.nn.Module, dict[str, Any]]:
    """The trained backbone of a run (`checkpoints/best`, else `last`) or checkpoint directory, in eval
    mode, with its meta.json (plus `checkpoint`: the directory read); loaded strictly."""
    backbone, info = load_trained_backbone(source)
    meta = {**info["meta"], "arch": info["arch"], "width": info["width"],
            "checkpoint": str(Path(info["report"]["source"]))}
    return backbone.eval(), meta


def _run_config(run_dir: Path, meta: dict[str, Any]):
    if isinstance(meta.get("config"), dict):
        return config_from_dict(meta["config"])
    return load_config(runs.config_path(run_dir))


def real_test_clip(run_dir: Path, meta: dict[str, Any]) -> tuple[torch.Tensor | None, str]:
    """The centre clip of the first usable test video, eval-transformed: ((1, C, T, H, W), its source).

    Returns (None, why) when the dataset cannot be read; the caller then uses a random clip.
    """
    try:
        cfg = _run_config(run_dir, meta)
        split = load_split(cfg.data.root, "test", split=cfg.data.split, layout=cfg.data.layout)
        # only a few candidates: probing the whole test split would cost minutes on UCF101
        split = dataclasses.replace(split, records=split.records[:4])
        dataset = MultiClipDataset(split, num_clips=1, clip_len=cfg.data.clip_len, transform=transforms_from_config(cfg.data)[1],
                                   cache=False, progress=False)
        item = dataset[0]
        return item["clips"][0].unsqueeze(0).float(), str(dataset.records[item["index"]].path)
    except (VidkdError, OSError) as exc:
        return None, f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"[:300]


def _export_graph(backbone: torch.nn.Module, example: torch.Tensor, path: Path) -> None:
    """TorchScript-based exporter (dynamo=False): needs no onnxscript and handles these plain CNNs."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        # the deprecation notice of the TorchScript exporter and tracer notes about the shape check
        warnings.simplefilter("ignore")
        torch.onnx.export(
            backbone, (example,), str(path), input_names=["clip"], output_names=["feature"],
            dynamic_axes={"clip": {0: "batch"}, "feature": {0: "batch"}}, opset_version=OPSET,
            do_constant_folding=True, dynamo=False,
        )


def _add_metadata(onnx: Any, path: Path, info: dict[str, Any]) -> None:
    model = onnx.load(str(path))
    for key, value in info.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value if isinstance(value, str) else json.dumps(value)
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


def export_onnx(run_dir: Path, out: Path | None = None) -> dict[str, Any]:
    """Export RUN_DIR's backbone to ONNX, check it with onnxruntime, write export.json; returns that record."""
    onnx, ort = require_onnx()
    run_dir = Path(run_dir)
    backbone, meta = load_backbone(run_dir)
    inputs = meta.get("input", {})
    clip_len, crop = int(inputs.get("clip_len", 16)), int(inputs.get("crop", 112))
    out = Path(out) if out else runs.export_path(run_dir)
    if out.is_dir():  # a directory given for --out: the file goes into it
        out = out / runs.export_path(run_dir).name

    clip, clip_source = real_test_clip(run_dir, meta)
    if clip is None:
        log.warning("no real clip for the check (%s); using a random one", clip_source)
        clip_source = f"random clip (dataset unavailable: {clip_source})"
        clip = torch.randn(1, 3, clip_len, crop, crop, generator=torch.Generator().manual_seed(0))

    out.parent.mkdir(parents=True, exist_ok=True)
    handle, name = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".partial", dir=out.parent)
    os.close(handle)
    partial = Path(name)
    try:  # written and checked under a temporary name: a failure (a full disk) never leaves a file at `out`
        record = _export_and_check(onnx, ort, backbone, meta, clip, clip_source, partial)
        os.replace(partial, out)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    record.update(onnx=str(out))
    atomic_write_json(out.parent / "export.json", record)
    return record


def _export_and_check(onnx: Any, ort: Any, backbone: torch.nn.Module, meta: dict[str, Any], clip: torch.Tensor,
                      clip_source: str, out: Path) -> dict[str, Any]:
    inputs = meta.get("input", {})
    clip_len, crop = int(clip.shape[2]), int(clip.shape[3])
    _export_graph(backbone, clip, out)
    _add_metadata(onnx, out, {"producer": "vidkd", "arch": meta["arch"], "width": meta.get("width", 1.0),
                              "input": {"layout": "B,C,T,H,W", "clip_len": clip_len, "crop": crop,
                                        "modality": inputs.get("modality", "rgb"), "mean": inputs.get("mean"),
                                        "std": inputs.get("std")},
                              "epoch": meta.get("epoch")})

    with torch.no_grad():
        expected = backbone(clip).numpy()
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    got = session.run(None, {"clip": clip.numpy()})[0]
    max_abs_diff = float(np.abs(got - expected).max())
    record = {
        "format": "onnx",
        "onnx": str(out),
        "bytes": out.stat().st_size,
        "opset": OPSET,
        "arch": meta["arch"],
        "width": meta.get("width", 1.0),
        "checkpoint": meta["checkpoint"],
        "epoch": meta.get("epoch"),
        "input": {"name": "clip", "shape": ["batch", 3, *clip.shape[2:]], "mean": inputs.get("mean"),
                  "std": inputs.get("std"), "modality": inputs.get("modality", "rgb")},
        "output": {"name": "feature", "shape": ["batch", int(expected.shape[1])]},
        "check": {"clip": clip_source, "max_abs_diff": max_abs_diff, "tolerance": CHECK_TOLERANCE,
                  "ok": max_abs_diff <= CHECK_TOLERANCE, "batch_axis": session.get_inputs()[0].shape[0]},
        "versions": {"torch": torch.__version__, "onnx": onnx.__version__, "onnxruntime": ort.__version__},
        "timestamp": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    }
    return record
