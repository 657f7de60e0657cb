"""The pretraining loop: PCL, optionally with a frozen KD teacher; DDP, AMP, safe resume.

One `Trainer` per run directory. Everything a run needs to continue bit-for-bit (weights,
optimizer, scheduler, memory banks, RNG) goes into `checkpoints/last` after every epoch.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import random
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn
from torch.utils.data import ConcatDataset, DataLoader, DistributedSampler
from tqdm import tqdm

from vidkd.config import Config, load_config, save_config
from vidkd.data.loaders import MaterializedDataset
from vidkd.engine import checkpoint as ckpt
from vidkd.engine import distributed as dist_utils
from vidkd.errors import ConfigError, TrainingError

log = logging.getLogger("vidkd.train")

METRICS_FILE = "metrics.jsonl"
EVAL_CACHE_BYTES = 2 * 1024**3  # keep fixed evaluation clips in memory up to this size


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def resolve_device(cfg: Config, local_rank: int) -> torch.device:
    want = cfg.train.device
    if want == "cuda" or (want == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            raise ConfigError("train.device=cuda but no CUDA device is visible; use train.device=cpu")
        return torch.device("cuda", local_rank)
    return torch.device("cpu")


def build_pcl_model(cfg: Config) -> nn.Module:
    from vidkd.models import build_backbone
    from vidkd.ssl.pcl import PCLModel

    backbone = build_backbone(cfg.model.arch, width=cfg.model.width)
    model = PCLModel.from_config(backbone, cfg)
    if cfg.model.init:
        from vidkd.models.loading import load_into, read_weights

        report = load_into(backbone, read_weights(cfg.model.init), cfg.model.arch, cfg.model.width,
                           allow_partial=cfg.model.init_allow_partial, only_backbone=True)
        log.info("backbone initialised from %s", report.summary)
    if cfg.model.freeze_backbone:
        for parameter in backbone.parameters():
            parameter.requires_grad_(False)
    return model


def build_transforms(cfg: Config):
    """(training, evaluation) clip transforms of a run."""
    from vidkd.data.transforms import transforms_from_config

    return transforms_from_config(cfg.data)


def model_meta(cfg: Config, epoch: int, metrics: dict[str, Any]) -> dict[str, Any]:
    return {
        "format": "vidkd-pcl-v1",
        "arch": cfg.model.arch,
        "width": cfg.model.width,
        "epoch": epoch,
        "tuple_len": cfg.data.tuple_len,
        "pretext_classes": cfg.ssl.pretext_classes,
        "proj_dim": cfg.ssl.proj_dim,
        "use_projection": cfg.ssl.contrastive != "none",
        "input": {"clip_len": cfg.data.clip_len, "crop": cfg.data.crop, "modality": cfg.data.modality,
                  "mean": cfg.data.mean, "std": cfg.data.std},
        "metrics": metrics,
        "config": cfg.to_dict(),
    }


def read_metrics(run_dir: Path, problems: list[str] | None = None) -> list[dict[str, Any]]:
    """The per-epoch records of a run; a line cut short by a crash is skipped (and noted in `problems`)."""
    path = Path(run_dir) / METRICS_FILE
    if not path.is_file():
        return []
    records = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            if problems is not None:
                problems.append(f"{path.name} line {number} is not JSON (skipped)")
            continue
        if isinstance(record, dict):
            records.append(record)
    return records


def config_differences(a: dict[str, Any], b: dict[str, Any], prefix: str = "") -> list[str]:
    keys = []
    for key in sorted(set(a) | set(b)):
        va, vb = a.get(key), b.get(key)
        if isinstance(va, dict) and isinstance(vb, dict):
            keys += config_differences(va, vb, f"{prefix}{key}.")
        elif va != vb:
            keys.append(f"{prefix}{key}")
    return keys


def prepare_run_dir(cfg: Config, out_dir: Path) -> None:
    """Refuse to mix two runs in one directory; the user resumes or picks a new one."""
    out_dir = Path(out_dir)
    config_path = out_dir / "config.yaml"
    if config_path.is_file():
        import yaml

        existing = yaml.safe_load(config_path.read_text()) or {}
        differs = config_differences(existing, cfg.to_dict())
        if differs:
            shown = ", ".join(differs[:5]) + (" …" if len(differs) > 5 else "")
            raise ConfigError(f"{out_dir} already holds a different run (differs in {shown}); choose a new --out")
        raise ConfigError(f"{out_dir} already holds this run; continue it with `vidkd pretrain --resume {out_dir}`")
    if out_dir.exists() and any(out_dir.iterdir()):
        raise ConfigError(f"{out_dir} exists and is not an empty run directory; choose a new --out")


class Trainer:
    def __init__(self, cfg: Config, out_dir: Path, resume: bool = False):
        from vidkd.data.datasets import load_split
        from vidkd.data.loaders import MultiClipDataset, PCLTupleDataset
        from vidkd.data.sampling import TupleSpec
        from vidkd.ssl.pcl import PCLLoss

        self.cfg = cfg
        self.out_dir = Path(out_dir)
        self.dist = dist_utils.init_distributed()
        self.is_main = self.dist.is_main
        self.device = resolve_device(cfg, self.dist.local_rank)
        seed_everything(cfg.train.seed)

        if self.is_main:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            if not resume:
                save_config(cfg, self.out_dir / "config.yaml")
                (self.out_dir / METRICS_FILE).unlink(missing_ok=True)
            self._attach_log_file()
        dist_utils.barrier()

        data = cfg.data
        train_split = load_split(data.root, "train", split=data.split, layout=data.layout, seed=cfg.train.seed)
        test_split = load_split(data.root, "test", split=data.split, layout=data.layout, seed=cfg.train.seed)
        spec = TupleSpec(clip_len=data.clip_len, interval=data.interval, tuple_len=data.tuple_len)
        train_tf, eval_tf = build_transforms(cfg)
        use_pretext = cfg.ssl.pretext != "none"
        self.train_set = PCLTupleDataset(train_split, spec, train_tf, pretext=use_pretext, seed=cfg.train.seed,
                                         shared_augmentation=data.shared_augmentation)
        # fixed tuples (same clips and transformations every epoch), several per video if asked
        val_sets = [PCLTupleDataset(test_split, spec, eval_tf, pretext=use_pretext, seed=cfg.train.seed + 7919 * r,
                                    fixed=True, progress=False)
                    for r in range(cfg.train.val_tuples_per_video)]
        self.val_set = val_sets[0] if len(val_sets) == 1 else ConcatDataset(val_sets)
        self.knn_train = MultiClipDataset(train_split, num_clips=1, clip_len=data.clip_len, transform=eval_tf,
                                          progress=False)
        self.knn_test = MultiClipDataset(test_split, num_clips=1, clip_len=data.clip_len, transform=eval_tf,
                                         progress=False)
        self._materialized = False
        global_batch = cfg.train.batch_size * self.dist.world_size
        if len(self.train_set) < global_batch:
            raise TrainingError(
                f"the training split has {len(self.train_set)} usable videos, fewer than one batch of {global_batch}; "
                "lower train.batch_size or add videos")

        self.model = build_pcl_model(cfg).to(self.device)
        if cfg.model.sync_bn and self.dist.world_size > 1:
            from vidkd.engine.syncbn import convert_sync_batchnorm

            self.model = convert_sync_batchnorm(self.model, self.device.type)
        self.criterion = PCLLoss(cfg.ssl, num_train_videos=len(self.train_set), seed=cfg.train.seed).to(self.device)

        self.teacher = None
        self.kd_loss = None
        if cfg.teacher.path:
            from vidkd.distill.losses import KDLoss
            from vidkd.distill.teacher import load_teacher

            self.teacher, teacher_info = load_teacher(cfg.teacher, student_cfg=cfg, device=self.device)
            self.kd_loss = KDLoss(cfg.teacher, student_dim=self.model.backbone.feature_dim,
                                  teacher_dim=self.teacher.backbone.feature_dim).to(self.device)
            if self.is_main:
                log.info("teacher: %s", teacher_info.get("summary", cfg.teacher.path))

        params = [p for p in self.model.parameters() if p.requires_grad]
        params += list(self.kd_loss.parameters()) if self.kd_loss else []
        if cfg.train.optimizer == "adamw":
            self.optimizer = torch.optim.AdamW(params, lr=cfg.train.lr, weight_decay=cfg.train.weight_decay)
        else:
            self.optimizer = torch.optim.SGD(params, lr=cfg.train.lr, momentum=cfg.train.momentum,
                                             weight_decay=cfg.train.weight_decay)
        self.steps_per_epoch = self._steps_per_epoch()
        self.scheduler = self._build_scheduler()
        self.amp_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(cfg.train.amp)
        if self.amp_dtype is not None and self.device.type != "cuda":
            log.warning("train.amp=%s needs CUDA; training in float32 on %s", cfg.train.amp, self.device.type)
            self.amp_dtype = None
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp_dtype == torch.float16)

        self.train_model: nn.Module = self.model
        if self.dist.world_size > 1:
            self.train_model = nn.parallel.DistributedDataParallel(
                self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None)
        if cfg.train.compile:
            self.train_model = torch.compile(self.train_model)

        self.start_epoch = 1
        self.best_score = -math.inf
        self.global_step = 0
        if resume:
            self._load_last()
        self.writer = self._tensorboard() if self.is_main else None

    # ----------------------------------------------------------------- setup helpers
    def _attach_log_file(self) -> None:
        handler = logging.FileHandler(self.out_dir / "log.txt")
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        logging.getLogger("vidkd").addHandler(handler)
        logging.getLogger("vidkd").setLevel(logging.INFO)
        self._log_handler = handler

    def _tensorboard(self):
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:  # tensorboard is a dependency, but a missing one should not stop training
            log.warning("tensorboard is not installed; skipping tb/ events")
            return None
        return SummaryWriter(str(self.out_dir / "tb"))

    def _steps_per_epoch(self) -> int:
        full = len(self.train_set) // (self.cfg.train.batch_size * self.dist.world_size)
        limit = self.cfg.train.steps_per_epoch
        return min(full, limit) if limit > 0 else full

    def _build_scheduler(self):
        t = self.cfg.train
        if t.scheduler == "plateau":
            return torch.optim.lr_scheduler.ReduceLROnPlateau(self.optimizer, mode="min", factor=t.plateau_factor,
                                                              patience=t.plateau_patience)
        total = max(1, t.epochs * self.steps_per_epoch)
        warmup = t.warmup_epochs * self.steps_per_epoch

        def factor(step: int) -> float:
            if step < warmup:
                return (step + 1) / warmup
            if t.scheduler == "none":
                return 1.0
            progress = (step - warmup) / max(1, total - warmup)
            return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

        return torch.optim.lr_scheduler.LambdaLR(self.optimizer, factor)

    def _loader(self, dataset, shuffle: bool, drop_last: bool, workers: int | None = None) -> DataLoader:
        sampler = DistributedSampler(dataset, num_replicas=self.dist.world_size, rank=self.dist.rank,
                                     shuffle=shuffle, seed=self.cfg.train.seed, drop_last=drop_last)
        return DataLoader(dataset, batch_size=self.cfg.train.batch_size, sampler=sampler,
                          num_workers=self.cfg.data.num_workers if workers is None else workers, drop_last=drop_last,
                          pin_memory=self.device.type == "cuda")

    def _autocast(self):
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type="cuda", dtype=self.amp_dtype)

    # ----------------------------------------------------------------- checkpoints
    def _trainer_state(self, epoch: int) -> dict[str, Any]:
        return {
            "epoch": epoch,
            "global_step": self.global_step,
            "best_score": self.best_score,
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "criterion": self.criterion.state_dict(),
            "kd_loss": self.kd_loss.state_dict() if self.kd_loss else None,
            "rng_torch": torch.get_rng_state(),
            "rng_python": list(random.getstate()[1]),
            "rng_numpy": torch.from_numpy(np.random.get_state()[1].astype(np.int64)),
        }

    def _save(self, name: str, epoch: int, metrics: dict[str, Any]) -> None:
        ckpt.save_checkpoint(self.out_dir / "checkpoints" / name, self.model.state_dict(),
                             model_meta(self.cfg, epoch, metrics), self._trainer_state(epoch))

    def _load_last(self) -> None:
        last = self.out_dir / "checkpoints" / "last"
        weights, meta, state = ckpt.load_checkpoint(last, with_trainer=True)
        self.model.load_state_dict(weights, strict=True)
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        self.criterion.load_state_dict(state["criterion"])
        if self.kd_loss is not None and state.get("kd_loss") is not None:
            self.kd_loss.load_state_dict(state["kd_loss"])
        torch.set_rng_state(state["rng_torch"])
        random.setstate((3, tuple(int(v) for v in state["rng_python"]), None))
        np.random.set_state(("MT19937", state["rng_numpy"].numpy().astype(np.uint32), 624, 0, 0.0))
        self.start_epoch = int(state["epoch"]) + 1
        self.global_step = int(state["global_step"])
        self.best_score = float(state["best_score"])
        # metrics.jsonl is append-only; drop lines of epochs the checkpoint does not contain
        if self.is_main:
            kept = [m for m in read_metrics(self.out_dir) if m["epoch"] < self.start_epoch]
            ckpt.atomic_write_text(self.out_dir / METRICS_FILE, "".join(json.dumps(m) + "\n" for m in kept))
            log.info("resuming %s from epoch %d", self.out_dir, self.start_epoch)

    def _materialize_eval_sets(self) -> None:
        """Decode the fixed validation tuples and kNN clips once, when they fit in memory."""
        from vidkd.data.loaders import MaterializedDataset, materialized_bytes

        if self._materialized:
            return
        self._materialized = True
        data = self.cfg.data
        clips = len(self.val_set) * data.tuple_len + len(self.knn_train) + len(self.knn_test)
        if materialized_bytes(clips, 1, data.clip_len, data.crop) > EVAL_CACHE_BYTES:
            return
        workers = data.num_workers
        self.val_set = MaterializedDataset(self.val_set, workers)
        if self.is_main:  # only rank 0 runs the kNN probe
            self.knn_train = MaterializedDataset(self.knn_train, workers)
            self.knn_test = MaterializedDataset(self.knn_test, workers)

    # ----------------------------------------------------------------- epochs
    def train_one_epoch(self, epoch: int) -> dict[str, float]:
        self.train_model.train()
        if self.cfg.model.freeze_backbone:
            self.model.backbone.eval()  # frozen BatchNorm statistics too
        self.train_set.set_epoch(epoch)
        loader = self._loader(self.train_set, shuffle=True, drop_last=True)
        loader.sampler.set_epoch(epoch)
        totals: dict[str, float] = {}
        clips_seen = 0
        start = time.perf_counter()
        steps = 0
        bar = tqdm(total=self.steps_per_epoch, desc=f"epoch {epoch}/{self.cfg.train.epochs}", leave=False,
                   disable=not self.is_main, dynamic_ncols=True)
        for step, batch in enumerate(loader):
            if step >= self.steps_per_epoch:
                break
            parts = self.train_step(batch, epoch, step)
            steps += 1
            for key, value in parts.items():
                totals[key] = totals.get(key, 0.0) + value
            clips_seen += batch["clips"].shape[0] * batch["clips"].shape[1] * self.dist.world_size
            if step % 10 == 0 or step + 1 == self.steps_per_epoch:  # .item() syncs a GPU: not every step
                rate = clips_seen / (time.perf_counter() - start)
                acc = parts.get("pretext_acc")
                bar.set_postfix(loss=f"{parts['loss'].item():.3f}", acc=f"{acc.item() if acc is not None else 0:.2f}",
                                clips_s=f"{rate:.1f}")
            bar.update(1)
        bar.close()
        seconds = time.perf_counter() - start
        names = sorted(totals)
        if names:
            stacked = dist_utils.all_reduce_mean(torch.stack([torch.as_tensor(totals[k], dtype=torch.float64)
                                                              for k in names]).to(self.device))
            totals = dict(zip(names, stacked.tolist()))
        means = {key: value / max(1, steps) for key, value in totals.items()}
        out = {"train_loss": means.get("loss"), "train_pretext_acc": means.get("pretext_acc"),
               "train_pretext_ce": means.get("pretext_ce"), "train_nce": means.get("nce"),
               "epoch_seconds": seconds, "clips_per_second": clips_seen / max(seconds, 1e-9)}
        if self.kd_loss is not None:
            out["train_kd_loss"] = means.get("kd")
        return out

    def train_step(self, batch: dict[str, torch.Tensor], epoch: int, step: int) -> dict[str, float]:
        clips = batch["clips"].to(self.device, non_blocking=True)
        labels = batch["pretext_label"].to(self.device, non_blocking=True)
        indices = batch["index"].to(self.device, non_blocking=True)
        with self._autocast():
            output = self.train_model(clips)
            loss, parts = self.criterion(output, labels, indices)
            if self.teacher is not None:
                with torch.no_grad():
                    teacher_output = self.teacher(clips)
                kd, kd_parts = self.kd_loss(output, teacher_output)
                loss = loss + kd
                parts = {**parts, **kd_parts, "kd": kd.detach()}
        if not torch.isfinite(loss):
            raise TrainingError(
                f"the loss became {loss.item()} at epoch {epoch}, step {step}; the last good checkpoint is kept in "
                f"{self.out_dir / 'checkpoints' / 'last'}; lower train.lr or set train.grad_clip (e.g. 5.0)")
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        if self.cfg.train.grad_clip > 0:
            self.scaler.unscale_(self.optimizer)
            nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.train.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        if self.cfg.train.scheduler != "plateau":
            self.scheduler.step()
        self.global_step += 1
        result = {key: torch.as_tensor(value).detach().float() for key, value in parts.items()}
        result["loss"] = loss.detach().float()
        return result

    @torch.no_grad()
    def validate(self) -> dict[str, float]:
        if self.cfg.ssl.pretext == "none" or len(self.val_set) == 0:
            return {}
        self._materialize_eval_sets()
        self.model.eval()
        loader = self._loader(self.val_set, shuffle=False, drop_last=False,
                              workers=0 if isinstance(self.val_set, MaterializedDataset) else None)
        sums = torch.zeros(3, dtype=torch.float64, device=self.device)  # correct, loss, count
        predicted = torch.zeros(self.cfg.ssl.pretext_classes, dtype=torch.float64, device=self.device)
        for batch in tqdm(loader, desc="validate", leave=False, disable=not self.is_main, dynamic_ncols=True):
            clips = batch["clips"].to(self.device, non_blocking=True)
            labels = batch["pretext_label"].to(self.device)
            with self._autocast():
                logits = self.model(clips).pretext_logits.float()
            sums[0] += (logits.argmax(1) == labels).sum()
            predicted += torch.bincount(logits.argmax(1), minlength=predicted.numel()).to(predicted)
            sums[1] += nn.functional.cross_entropy(logits, labels, reduction="sum")
            sums[2] += labels.numel()
        sums = dist_utils.all_reduce_sum(sums)
        predicted = dist_utils.all_reduce_sum(predicted)
        count = max(1.0, float(sums[2]))
        # share of the most predicted class: 1.0 means a constant predictor, whatever its accuracy
        return {"val_pretext_acc": float(sums[0]) / count, "val_loss": float(sums[1]) / count,
                "val_top_class_share": float(predicted.max()) / count}

    @torch.no_grad()
    def knn_probe(self) -> dict[str, float]:
        """kNN top-1 on labels: train-split centre clips as memory, test split as queries (rank 0)."""
        from vidkd.eval.features import extract_features
        from vidkd.eval.knn import knn_classify

        result: dict[str, float] = {}
        self._materialize_eval_sets()
        if self.is_main:
            self.model.eval()
            in_memory = isinstance(self.knn_train, MaterializedDataset)
            kwargs = dict(batch_size=self.cfg.train.batch_size * self.cfg.data.tuple_len, device=self.device,
                          num_workers=0 if in_memory else self.cfg.data.num_workers, progress=False)
            train_feats, train_labels = extract_features(self.model.backbone, self.knn_train, desc="knn memory", **kwargs)
            test_feats, test_labels = extract_features(self.model.backbone, self.knn_test, desc="knn queries", **kwargs)
            scores = knn_classify(train_feats, train_labels, test_feats, test_labels, k=self.cfg.train.knn_k,
                                  num_classes=len(self.knn_train.split.class_names))
            result = {"val_knn_top1": float(scores["top1"])}
        dist_utils.barrier()
        return result

    def _score(self, metrics: dict[str, Any]) -> float:
        if metrics.get("val_top_class_share") == 1.0:
            # a network that gives every tuple one label scores that label's share of the validation
            # set; as a "best" checkpoint (and so as a teacher) it would only pass on the collapse,
            # so any epoch that predicts more than one class ranks above it
            return float(metrics["val_pretext_acc"]) - 1.0
        for key in ("val_pretext_acc", "val_knn_top1"):
            if metrics.get(key) is not None:
                return float(metrics[key])
        return -float(metrics.get("train_loss") or 0.0)

    def _record(self, metrics: dict[str, Any]) -> None:
        if not self.is_main:
            return
        with open(self.out_dir / METRICS_FILE, "a") as fh:
            fh.write(json.dumps(metrics) + "\n")
        if self.writer is not None:
            for key, value in metrics.items():
                if key != "epoch" and isinstance(value, (int, float)):
                    self.writer.add_scalar(key, value, metrics["epoch"])
            self.writer.flush()

    def fit(self) -> list[dict[str, Any]]:
        cfg = self.cfg
        knn_on = cfg.train.knn_every > 0
        if self.start_epoch == 1 and knn_on:
            # epoch 0: the untrained network, so curves start from the random-init baseline
            init = {"epoch": 0, **self.validate(), **self.knn_probe()}
            self._record(init)
        wall_start = time.perf_counter()
        for epoch in range(self.start_epoch, cfg.train.epochs + 1):
            metrics: dict[str, Any] = {"epoch": epoch}
            metrics.update(self.train_one_epoch(epoch))
            metrics.update(self.validate())
            if knn_on and (epoch % cfg.train.knn_every == 0 or epoch == cfg.train.epochs):
                metrics.update(self.knn_probe())
            metrics["lr"] = self.optimizer.param_groups[0]["lr"]
            if cfg.train.scheduler == "plateau":
                self.scheduler.step(metrics.get("val_loss", metrics["train_loss"]))
            metrics["wall_seconds"] = time.perf_counter() - wall_start
            self._record(metrics)
            improved = self._score(metrics) > self.best_score
            if improved:
                self.best_score = self._score(metrics)
            if self.is_main:
                self._save("last", epoch, metrics)
                if improved:
                    self._save("best", epoch, metrics)
                log.info(format_epoch(metrics))
            dist_utils.barrier()
        if self.writer is not None:
            self.writer.close()
        return read_metrics(self.out_dir) if self.is_main else []

    def close(self) -> None:
        handler = getattr(self, "_log_handler", None)
        if handler is not None:
            logging.getLogger("vidkd").removeHandler(handler)
            handler.close()


def format_epoch(metrics: dict[str, Any]) -> str:
    parts = [f"epoch {metrics['epoch']}"]
    for key, label in (("train_loss", "loss"), ("train_pretext_acc", "pretext"), ("train_kd_loss", "kd"),
                       ("val_pretext_acc", "val pretext"), ("val_knn_top1", "kNN"), ("lr", "lr"),
                       ("epoch_seconds", "s"), ("clips_per_second", "clips/s")):
        value = metrics.get(key)
        if value is not None:
            parts.append(f"{label} {value:.4g}")
    return " | ".join(parts)


def pretrain(cfg: Config, out_dir: Path) -> list[dict[str, Any]]:
    """Train a new run into `out_dir` (which must not hold another run)."""
    if dist_utils.is_main_process_env():
        prepare_run_dir(cfg, Path(out_dir))
    trainer = Trainer(cfg, Path(out_dir))
    try:
        return trainer.fit()
    finally:
        trainer.close()


def resume(run_dir: Path, overrides: list[str] | None = None) -> list[dict[str, Any]]:
    """Continue `run_dir` from `checkpoints/last` (overrides may extend, e.g., train.epochs)."""
    run_dir = Path(run_dir)
    if not (run_dir / "config.yaml").is_file():
        raise ConfigError(f"{run_dir} is not a vidkd run directory (no config.yaml); start one with --out")
    cfg = load_config(run_dir / "config.yaml", overrides)
    if not (run_dir / "checkpoints" / "last").is_dir():
        log.info("%s has no checkpoint yet; starting it from the beginning", run_dir)
        trainer = Trainer(cfg, run_dir)
    else:
        if overrides and dist_utils.is_main_process_env():
            save_config(cfg, run_dir / "config.yaml")
        trainer = Trainer(cfg, run_dir, resume=True)
    try:
        return trainer.fit()
    finally:
        trainer.close()


__all__ = ["Trainer", "pretrain", "resume", "read_metrics", "build_pcl_model", "build_transforms",
           "model_meta", "config_differences"]
