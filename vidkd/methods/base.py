"""The method interface: what the engine needs from any self-supervised (or supervised) method.

The engine owns the loop, AMP, DDP, clipping, schedules, checkpoints and logging; a `Method`
owns its model, its datasets, its loss and what its validation measures. Every key a method's
`training_step` returns is logged as `train_<key>`; every key of `validation_metrics` as is.

Models of every pretext method return a `ModelOutput`, so knowledge distillation can pair any
two methods that share what the chosen KD terms need (logits, pooled features, embeddings).
"""

from __future__ import annotations

import abc
from typing import Any, ClassVar, NamedTuple

import torch
from torch import nn
from torch.utils.data import Dataset


class ModelOutput(NamedTuple):
    """What a pretext model returns (a NamedTuple, so DDP finds the tensors inside)."""

    pretext_logits: torch.Tensor | None  # (B, K) logits of the method's pretext task; None without one
    features: torch.Tensor  # (B, clips, d) pooled backbone features of every clip of the sample
    embeddings: torch.Tensor | None  # (B, 2, proj_dim) L2-normalised contrastive embeddings, if any
    # stage maps (B, clips, C_i, T_i, H_i, W_i) of the backbone stages the caller asked for (`maps=` of
    # the model's forward, as an attention-transfer KD term does); None unless asked for
    maps: list[torch.Tensor] | None = None


class Method(abc.ABC):
    """One training objective over one model.

    Subclasses set `name` and implement `train_dataset`, `inputs` and `meta`, and either `loss` (which
    the default `training_step` calls on the model's output) or `training_step` itself; the rest has
    defaults that fit most pretext methods. The engine calls only `training_step`; a method that
    can be a distillation student implements `loss` (Distillation adds its KD terms to it).
    """

    name: ClassVar[str]
    model_type: ClassVar[type[nn.Module]]  # the model class: rebuilt from checkpoints by its `from_state`
    main_metric: ClassVar[str] = "val_pretext_acc"  # what its validation measures first (logged per epoch)
    model: nn.Module  # what checkpoints hold (model.safetensors)
    device: torch.device = torch.device("cpu")

    # ----------------------------------------------------------------- data
    @abc.abstractmethod
    def train_dataset(self) -> Dataset:
        """Items are dicts; `index` (the sample's position) is passed through to `loss`."""

    def validation_dataset(self) -> Dataset | None:
        """Fixed items scored after every epoch (None: no validation)."""
        return None

    # ----------------------------------------------------------------- state
    def extra_modules(self) -> nn.Module | None:
        """Modules besides the model whose state resumes with the run (memory banks, KD projections);
        their parameters are trained with the model's."""
        return None

    def param_groups(self) -> list[dict[str, Any]]:
        """Optimizer parameter groups; `lr_scale` multiplies the configured learning rate."""
        params = [p for p in self.model.parameters() if p.requires_grad]
        extra = self.extra_modules()
        if extra is not None:
            params += [p for p in extra.parameters() if p.requires_grad]
        return [{"params": params, "lr_scale": 1.0}]

    def to(self, device: torch.device, memory_format: torch.memory_format = torch.preserve_format) -> Method:
        """Moves the model and extra modules; `memory_format` applies to the model's 5-D weights."""
        self.device = device
        self.model.to(device, memory_format=memory_format)
        extra = self.extra_modules()
        if extra is not None:
            extra.to(device)
        return self

    def train_mode(self) -> None:
        """Called at the start of every epoch (frozen parts may stay in eval mode)."""
        self.model.train()

    # ----------------------------------------------------------------- steps
    @abc.abstractmethod
    def inputs(self, batch: dict[str, Any]) -> torch.Tensor:
        """The tensor the model consumes, on `self.device`."""

    def forward(self, model: nn.Module, batch: dict[str, Any]) -> Any:
        """Run `model` (the engine passes its DDP/compiled wrapper) on a batch."""
        return model(self.inputs(batch))

    def loss(self, output: Any, batch: dict[str, Any]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Total loss and detached scalars to log, from the model's `output` on `batch`."""
        raise NotImplementedError(f"{type(self).__name__} defines no loss(output, batch); implement it, or "
                                  "override training_step")

    def training_step(self, model: nn.Module, batch: dict[str, Any]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """What the engine calls once per batch: (total loss, detached scalars to log)."""
        return self.loss(self.forward(model, batch), batch)

    def clips_in(self, batch: dict[str, Any]) -> int:
        """Clips of a batch, for the clips/s throughput figure (items without `clips`: one per item)."""
        clips = batch.get("clips")
        if clips is None:
            return len(batch["index"])
        return int(clips.shape[0] * clips.shape[1]) if clips.dim() == 6 else int(clips.shape[0])

    def validation_step(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        """Sums over the batch (float64 tensors); the engine adds them up over batches and ranks."""
        return {}

    def validation_metrics(self, sums: dict[str, float]) -> dict[str, float]:
        return {}

    def score(self, metrics: dict[str, Any]) -> float:
        """Higher is better: decides the `best` checkpoint."""
        value = metrics.get("val_loss")
        return -float(value) if value is not None else -float(metrics.get("train_loss") or 0.0)

    # ----------------------------------------------------------------- checkpoints
    @abc.abstractmethod
    def meta(self) -> dict[str, Any]:
        """What a checkpoint must say so its model can be rebuilt (method, arch, heads, input)."""
