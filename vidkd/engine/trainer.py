"""The training loop for any `Method`: DDP, AMP, clipping, schedules, checkpoints, metrics, resume.

The engine knows no specific method, model or dataset: it is handed a `Method` (see
vidkd/methods/base.py) and logs every key the method returns. With a run directory, everything
a run needs to continue bit-for-bit (weights, optimizer, scheduler, the method's extra state
such as memory banks, RNG) goes into `checkpoints/last` after every epoch; without one (e.g.
fine-tuning inside an evaluation) nothing is written.
"""

from __future__ import annotations

import itertools
import logging
import math
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
import torch.nn as nn
from torch.utils.data import DataLoader, Dataset, DistributedSampler
from tqdm import tqdm

from vidkd import runs
from vidkd.config import TrainConfig
from vidkd.errors import CheckpointError, TrainingError
from vidkd.methods.base import Method
from vidkd.utils import checkpoint as ckpt
from vidkd.utils import dist as dist_utils
from vidkd.utils.runtime import (AMP_DTYPES, autocast_context, resolve_device, resolve_memory_format, seed_everything,
                                 set_tf32)
from vidkd.utils.syncbn import convert_sync_batchnorm

log = logging.getLogger("vidkd.train")

CHECKPOINT_FORMAT = "vidkd-checkpoint-v2"
Probe = Callable[[nn.Module], dict[str, float]]  # run on rank 0 with the method's model


@dataclass(frozen=True)
class RunOptions:
    """How a training run executes, apart from its schedule (`TrainConfig`).

    Args:
        num_workers: DataLoader workers.
        resume: continue from `run_dir/checkpoints/last`.
        sync_bn: synchronise BatchNorm statistics across ranks.
        progress: show progress bars.
        keep_best: keep a copy of the best model's weights in memory (`best_state`), for runs
            without a run directory that must end on their best epoch (fine-tuning).
        distributed: join the torchrun process group (False: a single-process run even inside a
            distributed job, e.g. fine-tuning during an evaluation that only rank 0 runs).
    """

    num_workers: int = 0
    resume: bool = False
    sync_bn: bool = False
    progress: bool = True
    keep_best: bool = False
    distributed: bool = True


class Trainer:
    """Train `method` for `train.epochs` epochs.

    Args:
        method: what to train (its model, data, loss and validation).
        train: the `train` section of the config (optimizer, schedule, AMP, epochs, ...).
        run_dir: where checkpoints, metrics and logs go; None writes nothing.
        options: how the run executes (`RunOptions`).
        probes: callables run on rank 0 after epoch 0 and every `train.knn_every` epochs, each
            returning metrics to log (the kNN probe, for example).
        meta: extra metadata stored in every checkpoint (the resolved config, for example).
    """

    def __init__(self, method: Method, train: TrainConfig, run_dir: Path | None, options: RunOptions = RunOptions(),
                 *, probes: Sequence[Probe] = (), meta: dict[str, Any] | None = None) -> None:
        self.method = method
        self.train = train
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.options = options
        self.probes = list(probes)
        self.extra_meta = dict(meta or {})
        self.best_state: dict[str, torch.Tensor] | None = None
        self.best_epoch: int | None = None
        self._start_process()
        self.train_set = method.train_dataset()
        global_batch = train.batch_size * self.dist.world_size
        if len(self.train_set) < global_batch:
            raise TrainingError(
                f"the training split has {len(self.train_set)} usable videos, fewer than one batch of {global_batch}; "
                "lower train.batch_size or add videos")
        self._place_model()
        self.optimizer = self._build_optimizer()
        self.steps_per_epoch = self._steps_per_epoch()
        self.scheduler = self._build_scheduler()
        self.start_epoch = 1
        self.best_score = -math.inf
        self.global_step = 0
        if options.resume:
            try:
                self._load_last()
            except BaseException:
                self.close()  # the log handler of a run that did not start
                raise
        self.writer = self._tensorboard() if self.writes else None

    # ----------------------------------------------------------------- setup helpers
    def _start_process(self) -> None:
        """Rank, device, seeds and the run directory's log file."""
        self.dist = dist_utils.init_distributed() if self.options.distributed else dist_utils.single_process()
        self.is_main = self.dist.is_main
        self.writes = self.is_main and self.run_dir is not None
        self.device = resolve_device(self.train.device, self.dist.local_rank)
        if self.device.type == "cuda":
            set_tf32(self.train.tf32)
        seed_everything(self.train.seed)
        self._log_handler: logging.Handler | None = None
        if self.writes:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            self._attach_log_file()

    def _place_model(self) -> None:
        """The model on its device and memory format, its precision, and its DDP / compiled wrapper."""
        method, train = self.method, self.train
        method.to(self.device, resolve_memory_format(train.memory_format, self.device))
        if self.options.sync_bn and self.dist.world_size > 1:
            convert_sync_batchnorm(method.model, self.device.type)  # in place: the model holds no BN at its root
        self.amp = train.amp
        if train.amp in AMP_DTYPES and self.device.type != "cuda":
            log.warning("train.amp=%s needs CUDA; training in float32 on %s", train.amp, self.device.type)
            self.amp = "none"
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp == "fp16")
        self.train_model: nn.Module = method.model
        if self.dist.world_size > 1:
            self.train_model = nn.parallel.DistributedDataParallel(
                method.model, device_ids=[self.device.index] if self.device.type == "cuda" else None)
        if train.compile:
            self.train_model = torch.compile(self.train_model)

    def _attach_log_file(self) -> None:
        handler = logging.FileHandler(runs.log_path(self.run_dir))
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        logging.getLogger("vidkd").addHandler(handler)
        logging.getLogger("vidkd").setLevel(logging.INFO)
        self._log_handler = handler

    def _tensorboard(self):
        try:
            from torch.utils.tensorboard import SummaryWriter  # optional at run time: a missing one must not stop training
        except ImportError:
            log.warning("tensorboard is not installed; skipping tb/ events")
            return None
        return SummaryWriter(str(runs.tb_dir(self.run_dir)))

    def _build_optimizer(self) -> torch.optim.Optimizer:
        t = self.train
        groups = [{"params": g["params"], "lr": t.lr * g.get("lr_scale", 1.0)} for g in self.method.param_groups()
                  if g["params"]]
        # one fused kernel per step instead of a loop over the parameters: the same update (up to
        # rounding), which on small CPU models cuts the optimizer's share of a step about 3x
        fused = self.device.type in ("cpu", "cuda")
        if t.optimizer == "adamw":
            return torch.optim.AdamW(groups, lr=t.lr, weight_decay=t.weight_decay, fused=fused)
        return torch.optim.SGD(groups, lr=t.lr, momentum=t.momentum, weight_decay=t.weight_decay, fused=fused)

    def _steps_per_epoch(self) -> int:
        per_step = self.train.batch_size * self.dist.world_size
        full = len(self.train_set) // per_step if self.train.drop_last else math.ceil(len(self.train_set) / per_step)
        limit = self.train.steps_per_epoch
        return min(full, limit) if limit > 0 else full

    def _build_scheduler(self):
        t = self.train
        if t.scheduler == "plateau":
            return torch.optim.lr_scheduler.ReduceLROnPlateau(self.optimizer, mode="min", factor=t.plateau_factor,
                                                              patience=t.plateau_patience, min_lr=t.min_lr)
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

    def _loader(self, dataset: Dataset, shuffle: bool, drop_last: bool, workers: int | None = None) -> DataLoader:
        sampler = DistributedSampler(dataset, num_replicas=self.dist.world_size, rank=self.dist.rank,
                                     shuffle=shuffle, seed=self.train.seed, drop_last=drop_last)
        return DataLoader(dataset, batch_size=self.train.batch_size, sampler=sampler,
                          num_workers=self.options.num_workers if workers is None else workers, drop_last=drop_last,
                          pin_memory=self.device.type == "cuda", collate_fn=getattr(dataset, "collate", None))

    # collectives only when this trainer is part of a multi-process run
    def _all_reduce_mean(self, tensor: torch.Tensor) -> torch.Tensor:
        return dist_utils.all_reduce_mean(tensor) if self.dist.world_size > 1 else tensor

    def _all_reduce_sum(self, tensor: torch.Tensor) -> torch.Tensor:
        return dist_utils.all_reduce_sum(tensor) if self.dist.world_size > 1 else tensor

    def _barrier(self) -> None:
        if self.dist.world_size > 1:
            dist_utils.barrier()

    # ----------------------------------------------------------------- checkpoints
    def _extra_state(self) -> dict[str, Any] | None:
        extra = self.method.extra_modules()
        return extra.state_dict() if extra is not None else None

    def _trainer_state(self, epoch: int) -> dict[str, Any]:
        return {
            "epoch": epoch,
            "global_step": self.global_step,
            "best_score": self.best_score,
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "method": self._extra_state(),
            "rng_torch": torch.get_rng_state(),
            "rng_python": list(random.getstate()[1]),
            "rng_numpy": torch.from_numpy(np.random.get_state()[1].astype(np.int64)),
            "rng_cuda": torch.cuda.get_rng_state(self.device) if self.device.type == "cuda" else None,
        }

    def _meta(self, epoch: int, metrics: dict[str, Any]) -> dict[str, Any]:
        return {"format": CHECKPOINT_FORMAT, **self.method.meta(), "epoch": epoch, "best_epoch": self.best_epoch,
                "metrics": metrics, **self.extra_meta}

    def _save(self, which: str, epoch: int, metrics: dict[str, Any]) -> None:
        ckpt.save_checkpoint(runs.checkpoint_dir(self.run_dir, which), self.method.model.state_dict(),
                             self._meta(epoch, metrics), self._trainer_state(epoch))

    def _load_last(self) -> None:
        weights, meta, state = ckpt.load_checkpoint(runs.checkpoint_dir(self.run_dir, runs.LAST), with_trainer=True)
        try:
            self.method.model.load_state_dict(weights, strict=True)
            self.optimizer.load_state_dict(state["optimizer"])
            self.scheduler.load_state_dict(state["scheduler"])
            self.scaler.load_state_dict(state["scaler"])
            extra = self.method.extra_modules()
            if extra is not None and state.get("method") is not None:
                extra.load_state_dict(state["method"])
        except (RuntimeError, ValueError, KeyError) as exc:  # e.g. memory banks sized for another training set
            first = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else type(exc).__name__
            raise CheckpointError(f"the checkpoint of {self.run_dir} does not fit this run ({first}); was the data "
                                  "(data.root, the split) or the model changed? Resume with the run's own settings "
                                  "or start a new run with --out") from None
        torch.set_rng_state(state["rng_torch"])
        random.setstate((3, tuple(int(v) for v in state["rng_python"]), None))
        np.random.set_state(("MT19937", state["rng_numpy"].numpy().astype(np.uint32), 624, 0, 0.0))
        if self.device.type == "cuda" and state.get("rng_cuda") is not None:
            torch.cuda.set_rng_state(state["rng_cuda"], self.device)
        self.start_epoch = int(state["epoch"]) + 1
        self.global_step = int(state["global_step"])
        self.best_score = float(state["best_score"])
        self.best_epoch = meta.get("best_epoch")
        if self.writes:  # metrics.jsonl is append-only; drop lines of epochs the checkpoint does not contain
            runs.keep_metrics_before(self.run_dir, self.start_epoch)
            log.info("resuming %s from epoch %d", self.run_dir, self.start_epoch)

    def set_learning_rate(self, lr: float) -> None:
        """Apply a new base learning rate to every group (keeping each group's scale), e.g. on resume."""
        scales = [g.get("lr_scale", 1.0) for g in self.method.param_groups() if g["params"]]
        lambdas = getattr(self.scheduler, "lr_lambdas", None)  # LambdaLR: keep the schedule's current factor
        for i, (group, scale) in enumerate(zip(self.optimizer.param_groups, scales)):
            factor = lambdas[i](self.scheduler.last_epoch) if lambdas else 1.0
            group["lr"] = lr * scale * factor
            if "initial_lr" in group:
                group["initial_lr"] = lr * scale
        if hasattr(self.scheduler, "base_lrs"):
            self.scheduler.base_lrs = [lr * s for s in scales]

    # ----------------------------------------------------------------- epochs
    def train_one_epoch(self, epoch: int) -> dict[str, float]:
        self.method.train_mode()
        if hasattr(self.train_set, "set_epoch"):
            self.train_set.set_epoch(epoch)
        loader = self._loader(self.train_set, shuffle=True, drop_last=self.train.drop_last)
        loader.sampler.set_epoch(epoch)
        totals: dict[str, torch.Tensor] = {}
        clips_seen = 0
        start = time.perf_counter()
        steps = 0
        bar = tqdm(total=self.steps_per_epoch, desc=f"epoch {epoch}/{self.train.epochs}", leave=False,
                   disable=not (self.is_main and self.options.progress), dynamic_ncols=True)
        # islice, not a break: a batch past the last step would be loaded for nothing
        for step, batch in enumerate(itertools.islice(loader, self.steps_per_epoch)):
            parts = self.train_step(batch, epoch, step)
            steps += 1
            for key, value in parts.items():
                totals[key] = totals.get(key, 0.0) + value
            clips_seen += self.method.clips_in(batch) * self.dist.world_size
            if step % 10 == 0 or step + 1 == self.steps_per_epoch:  # .item() syncs a GPU: not every step
                rate = clips_seen / (time.perf_counter() - start)
                bar.set_postfix(loss=f"{parts['loss'].item():.3f}", clips_s=f"{rate:.1f}")
            bar.update(1)
        bar.close()
        seconds = time.perf_counter() - start
        names = sorted(totals)
        means: dict[str, float] = {}
        if names:
            stacked = self._all_reduce_mean(torch.stack([torch.as_tensor(totals[k], dtype=torch.float64)
                                                         for k in names]).to(self.device))
            means = {key: value / max(1, steps) for key, value in zip(names, stacked.tolist())}
        out = {f"train_{key}": value for key, value in means.items()}
        out.update(epoch_seconds=seconds, clips_per_second=clips_seen / max(seconds, 1e-9))
        return out

    def train_step(self, batch: dict[str, Any], epoch: int, step: int) -> dict[str, torch.Tensor]:
        with autocast_context(self.device, self.amp):
            loss, parts = self.method.training_step(self.train_model, batch)
        finite = torch.isfinite(loss.detach()).float()
        if self._all_reduce_sum(finite).item() < self.dist.world_size:  # every rank stops together
            value = loss.item() if not finite.item() else "non-finite on another rank"
            raise self._diverged(f"the loss became {value} at epoch {epoch}, step {step}")
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        if self.train.grad_clip > 0:
            self.scaler.unscale_(self.optimizer)
            nn.utils.clip_grad_norm_([p for g in self.optimizer.param_groups for p in g["params"]], self.train.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        if self.train.scheduler != "plateau":
            self.scheduler.step()
        self.global_step += 1
        result = {key: torch.as_tensor(value).detach().float() for key, value in parts.items()}
        result["loss"] = loss.detach().float()
        return result

    def _diverged(self, what: str) -> TrainingError:
        if self.run_dir is None:
            return TrainingError(f"{what}; lower the learning rate")
        kept = runs.saved_epoch(self.run_dir)
        where = (f"the last finite checkpoint (epoch {kept}) is kept; continue from it with a lower learning rate: "
                 f"vidkd pretrain --resume {self.run_dir} --set train.lr={self.train.lr / 10:g} "
                 "(or set train.grad_clip=5)") if kept else \
            f"no epoch finished; start again with a lower train.lr (now {self.train.lr:g}) or train.grad_clip=5"
        return TrainingError(f"{what}; {where}")

    @torch.no_grad()
    def validate(self) -> dict[str, float]:
        dataset = self.method.validation_dataset()
        if dataset is None or len(dataset) == 0:
            return {}
        self.method.model.eval()
        in_memory = getattr(dataset, "in_memory", False)  # decoded already: workers would only copy it
        loader = self._loader(dataset, shuffle=False, drop_last=False, workers=0 if in_memory else None)
        sums: dict[str, torch.Tensor] = {}
        for batch in tqdm(loader, desc="validate", leave=False, disable=not (self.is_main and self.options.progress),
                          dynamic_ncols=True):
            with autocast_context(self.device, self.amp):
                step = self.method.validation_step(batch)
            for key, value in step.items():
                sums[key] = sums[key] + value.double() if key in sums else value.double()
        sums = {key: self._all_reduce_sum(value) for key, value in sums.items()}
        return self.method.validation_metrics(sums) if sums else {}

    @torch.no_grad()
    def run_probes(self) -> dict[str, float]:
        result: dict[str, float] = {}
        if self.is_main:
            self.method.model.eval()
            for probe in self.probes:
                result.update(probe(self.method.model))
        self._barrier()
        return result

    def _record(self, metrics: dict[str, Any]) -> None:
        if not self.writes:
            return
        runs.append_metrics(self.run_dir, metrics)
        if self.writer is not None:
            for key, value in metrics.items():
                if key != "epoch" and isinstance(value, (int, float)):
                    self.writer.add_scalar(key, value, metrics["epoch"])
            self.writer.flush()

    @staticmethod
    def _timed(key: str, work: Callable[[], dict[str, float]]) -> dict[str, float]:
        """`work()`'s metrics plus the seconds it took under `key` (where a run's time goes)."""
        start = time.perf_counter()
        result = work()
        return {**result, key: time.perf_counter() - start} if result else {}

    def _weights_finite(self) -> bool:
        return all(torch.isfinite(t).all() for t in self.method.model.state_dict().values() if t.is_floating_point())

    def fit(self) -> list[dict[str, Any]]:
        t = self.train
        probing = t.knn_every > 0 and bool(self.probes)
        history: list[dict[str, Any]] = []
        if self.start_epoch == 1 and probing:
            # epoch 0: the untrained network, so curves start from the random-init baseline
            init = {"epoch": 0, **self._timed("val_seconds", self.validate),
                    **self._timed("probe_seconds", self.run_probes)}
            self._record(init)
            history.append(init)
        wall_start = time.perf_counter()
        for epoch in range(self.start_epoch, t.epochs + 1):
            metrics: dict[str, Any] = {"epoch": epoch}
            metrics.update(self.train_one_epoch(epoch))
            if epoch % t.val_every == 0 or epoch == t.epochs:
                metrics.update(self._timed("val_seconds", self.validate))
            if not self._weights_finite() or not math.isfinite(metrics.get("val_loss", 0.0)):
                raise self._diverged(f"the weights diverged (non-finite values) in epoch {epoch}")
            if probing and (epoch % t.knn_every == 0 or epoch == t.epochs):
                metrics.update(self._timed("probe_seconds", self.run_probes))
            metrics["lr"] = self.optimizer.param_groups[-1]["lr"]
            if t.scheduler == "plateau":
                self.scheduler.step(metrics.get("val_loss", metrics["train_loss"]))
            metrics["wall_seconds"] = time.perf_counter() - wall_start
            self._record(metrics)
            history.append(metrics)
            score = self.method.score(metrics)
            # best_by "last": the final epoch is the one used, whatever a noisy validation says
            improved = t.best_by == "last" or score > self.best_score
            if improved:
                self.best_score = score
                self.best_epoch = epoch  # recorded in `last`, so that an interrupted save of `best` can be redone
                if self.options.keep_best:
                    self.best_state = {k: v.detach().clone() for k, v in self.method.model.state_dict().items()}
            if self.writes:
                self._save(runs.LAST, epoch, metrics)
                if improved:
                    self._save(runs.BEST, epoch, metrics)
                log.info(format_epoch(metrics, self.method.main_metric))
            self._barrier()
        if self.writer is not None:
            self.writer.close()
        return runs.read_metrics(self.run_dir) if self.writes else history

    def close(self) -> None:
        if self._log_handler is not None:
            logging.getLogger("vidkd").removeHandler(self._log_handler)
            self._log_handler.close()
            self._log_handler = None


def format_epoch(metrics: dict[str, Any], main_metric: str = "val_pretext_acc") -> str:
    """One log line per epoch; `main_metric`: the method's, shown where the pretext accuracy is."""
    parts = [f"epoch {metrics['epoch']}"]
    main = (main_metric, "val pretext" if main_metric == "val_pretext_acc" else main_metric.replace("val_", "val ", 1))
    for key, label in (("train_loss", "loss"), ("train_pretext_acc", "pretext"), ("train_kd_loss", "kd"),
                       main, ("val_knn_top1", "kNN"), ("lr", "lr"),
                       ("epoch_seconds", "s"), ("clips_per_second", "clips/s")):
        value = metrics.get(key)
        if value is not None:
            parts.append(f"{label} {value:.4g}")
    return " | ".join(parts)


__all__ = ["CHECKPOINT_FORMAT", "Probe", "Trainer", "format_epoch"]
