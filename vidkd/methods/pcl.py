"""Pretext-Contrastive Learning (PCL): the model wrapper and its loss.

A sample is a tuple of clips from one video; with VCP the middle clip carries one of five
transformations and the pretext head classifies it from the concatenated clip features. The
first and last clips are untransformed, so they form the positive pair of the contrastive term.

    loss = CE(pretext) + lambda * (NCE_1 + NCE_2)
"""

from __future__ import annotations

from typing import Any, ClassVar, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.data import Dataset

from vidkd.config import Config
from vidkd.data.samplers import TupleSampler
from vidkd.data.loaders import batch_clips
from vidkd.errors import ConfigError
from vidkd.methods.base import Method, ModelOutput
from vidkd.methods.common import (RunSplits, backbone_from_config, in_memory, input_meta, pretext_score,
                                  pretext_validation_metrics, pretext_validation_sums, tuple_datasets,
                                  tuple_sampler)
from vidkd.methods.contrastive import InBatchInfoNCE, MemoryBankNCE
from vidkd.methods.vcp import VCP_CLASSES, VcpSampler
from vidkd.models.heads import PretextHead, ProjectionHead
from vidkd.options import SSLConfig

BATCHNORM_MODES = ("joint", "per_position")  # `model.batchnorm`


class PCLModel(nn.Module):
    """Backbone + pretext head + projection head.

    Args:
        backbone: any module with `.feature_dim` mapping (N, C, T, H, W) to (N, feature_dim).
        tuple_len: clips per sample.
        pretext_classes: K of the pretext head; 0 builds no pretext head (contrastive only).
        proj_dim: output size of the projection (feature_dim -> feature_dim -> proj_dim).
        use_projection: False builds no projection head (pretext only; `embeddings` is None).
        batchnorm: "joint" runs the backbone once over all B * tuple_len clips (BatchNorm statistics
            over the whole batch); "per_position" runs it once per tuple position on that position's B
            clips, as the reference PCLNet/VCPN: in train mode each position is normalised with its own
            batch statistics and the running statistics update tuple_len times per step. In eval mode
            the two give the same output (to float rounding). Not in the checkpoint meta: it changes no
            tensor, and a loaded model (a teacher, an evaluation) runs in eval mode.

    With neither head it is a bare backbone in PCL's frame: what a backbone-only checkpoint
    (torchvision, `backbone` format) loads as, e.g. a teacher for relational or feature KD.
    Training such a model has nothing to learn; `from_config` (and config validation) refuse it.
    """

    # the names of its heads' tensors in a checkpoint, owned here: `vidkd.methods.method_of` knows a
    # checkpoint by them, `vidkd.distill.teacher` reads the pretext classes, and `vidkd.models.loading`
    # (below methods, so a literal there) maps the reference PCL weights onto them
    HEAD_PREFIXES: ClassVar[tuple[str, ...]] = ("pretext_head.", "projection.")
    PRETEXT_LOGITS_WEIGHT: ClassVar[str] = "pretext_head.fc.weight"  # (pretext classes, tuple_len * d)
    PROJECTION_OUT_WEIGHT: ClassVar[str] = "projection.mlp.2.weight"  # (proj_dim, d)

    def __init__(
        self,
        backbone: nn.Module,
        tuple_len: int = 3,
        pretext_classes: int = 5,
        proj_dim: int = 128,
        use_projection: bool = True,
        batchnorm: str = "joint",
    ) -> None:
        super().__init__()
        if use_projection and tuple_len < 2:
            raise ValueError("the contrastive term needs at least 2 clips per tuple")
        feature_dim = int(backbone.feature_dim)
        self.tuple_len = tuple_len
        self.batchnorm = check_batchnorm(batchnorm)
        self.feature_dim = feature_dim
        self.backbone = backbone
        self.pretext_head = PretextHead(feature_dim, tuple_len, pretext_classes) if pretext_classes > 0 else None
        self.projection = ProjectionHead(feature_dim, feature_dim, proj_dim) if use_projection else None

    @classmethod
    def from_config(cls, backbone: nn.Module, cfg: Config) -> PCLModel:
        """Build from a full `Config` (tuple length from `data`, heads from `ssl`)."""
        if cfg.ssl.pretext == "none" and cfg.ssl.contrastive == "none":
            raise ConfigError("ssl.pretext and ssl.contrastive are both 'none'; nothing to learn (turn one on)")
        return cls(
            backbone,
            tuple_len=cfg.data.tuple_len,
            pretext_classes=VCP_CLASSES if cfg.ssl.pretext != "none" else 0,
            proj_dim=cfg.ssl.proj_dim,
            use_projection=cfg.ssl.contrastive != "none",
            batchnorm=cfg.model.batchnorm,
        )

    @classmethod
    def from_state(cls, backbone: nn.Module, state: dict[str, torch.Tensor], meta: dict[str, Any]) -> PCLModel:
        """The PCL model whose heads fit these (vidkd-layout) tensors."""
        head = state.get(cls.PRETEXT_LOGITS_WEIGHT)
        proj = state.get(cls.PROJECTION_OUT_WEIGHT)
        tuple_len = head.shape[1] // backbone.feature_dim if head is not None else meta.get("tuple_len", 3)
        return cls(backbone, tuple_len=int(meta.get("tuple_len") or tuple_len),
                   pretext_classes=int(head.shape[0]) if head is not None else 0,
                   proj_dim=int(proj.shape[0]) if proj is not None else int(meta.get("proj_dim", 128)),
                   use_projection=proj is not None)

    def forward(self, clips: torch.Tensor, maps: Sequence[int] | None = None) -> ModelOutput:
        """clips: (B, tuple_len, C, T, H, W) -> ModelOutput; `maps`: backbone stages whose output maps
        to return too (`ModelOutput.maps`; see `VideoBackbone.forward_intermediates`)."""
        if clips.dim() != 6 or clips.shape[1] != self.tuple_len:
            raise ValueError(f"expected clips of shape (B, {self.tuple_len}, C, T, H, W), got {tuple(clips.shape)}")
        batch = clips.shape[0]
        features, stage_maps = tuple_features_and_maps(self.backbone, clips, self.batchnorm, maps)
        logits = self.pretext_head(features) if self.pretext_head is not None else None
        embeddings = None
        if self.projection is not None:
            pair = features[:, [0, self.tuple_len - 1]]  # the two untransformed clips
            embeddings = self.projection(pair.flatten(0, 1)).view(batch, 2, -1)
        return ModelOutput(pretext_logits=logits, features=features, embeddings=embeddings, maps=stage_maps)


def check_batchnorm(batchnorm: str) -> str:
    if batchnorm not in BATCHNORM_MODES:
        raise ValueError(f"batchnorm must be one of {', '.join(BATCHNORM_MODES)}; got {batchnorm!r}")
    return batchnorm


def tuple_features(backbone: nn.Module, clips: torch.Tensor, batchnorm: str = "joint") -> torch.Tensor:
    """Pooled features (B, tuple_len, d) of clips (B, tuple_len, C, T, H, W).

    "joint": one backbone pass over all B * tuple_len clips (BatchNorm sees the whole batch);
    "per_position": one pass per tuple position over its B clips, as the reference PCL/VCOP code.
    """
    batch, tuple_len = clips.shape[:2]
    if batchnorm == "per_position":
        return torch.stack([backbone(clips[:, i]) for i in range(tuple_len)], dim=1)
    return backbone(clips.flatten(0, 1)).view(batch, tuple_len, -1)


def tuple_features_and_maps(backbone: nn.Module, clips: torch.Tensor, batchnorm: str = "joint",
                            maps: Sequence[int] | None = None) -> tuple[torch.Tensor, list[torch.Tensor] | None]:
    """`tuple_features` and, when `maps` names stages, their output maps (B, tuple_len, C_i, T_i, H_i, W_i)
    from `backbone.forward_intermediates`; with `maps=None` exactly `tuple_features` and None."""
    if maps is None:
        return tuple_features(backbone, clips, batchnorm), None
    batch, tuple_len = clips.shape[:2]
    if batchnorm == "per_position":
        runs = [backbone.forward_intermediates(clips[:, i], maps) for i in range(tuple_len)]
        features = torch.stack([pooled for pooled, _ in runs], dim=1)
        return features, [torch.stack(stage, dim=1) for stage in zip(*(stage_maps for _, stage_maps in runs))]
    pooled, stage_maps = backbone.forward_intermediates(clips.flatten(0, 1), maps)
    return pooled.view(batch, tuple_len, -1), [m.view(batch, tuple_len, *m.shape[1:]) for m in stage_maps]


class PCLLoss(nn.Module):
    """CE(pretext) + nce_weight * (NCE_1 + NCE_2), as configured by `SSLConfig`.

    With `contrastive: memory_bank` this module holds the two memory banks as buffers: move it
    to the training device and keep its `state_dict()` in checkpoints to resume exactly.

    Args:
        ssl_cfg: the `ssl` section of the config.
        num_train_videos: size of the memory banks (indices passed to `forward` index them).
        seed: seeds bank initialisation and negative sampling; must be equal on every rank.
    """

    def __init__(self, ssl_cfg: SSLConfig, num_train_videos: int, seed: int = 0) -> None:
        super().__init__()
        self.use_pretext = ssl_cfg.pretext != "none"
        self.contrastive = ssl_cfg.contrastive
        if not self.use_pretext and self.contrastive == "none":
            raise ValueError("no pretext task and no contrastive term: nothing to learn")
        self.nce_weight = ssl_cfg.nce_weight
        self.nce: MemoryBankNCE | InBatchInfoNCE | None = None
        if self.contrastive == "memory_bank":
            self.nce = MemoryBankNCE(
                num_train_videos,
                dim=ssl_cfg.proj_dim,
                num_negatives=ssl_cfg.nce_negatives,
                temperature=ssl_cfg.nce_temperature,
                momentum=ssl_cfg.nce_momentum,
                seed=seed,
                init=ssl_cfg.bank_init,
            )
        elif self.contrastive == "in_batch":
            self.nce = InBatchInfoNCE(ssl_cfg.nce_temperature)

    def forward(
        self,
        output: ModelOutput,
        pretext_labels: torch.Tensor | None = None,
        indices: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Total loss and its detached parts.

        Parts: `pretext_ce`, `nce` (NCE_1 + NCE_2), `nce_1`, `nce_2` (0 when that term is off)
        and `pretext_acc` (fraction correct; only with a pretext task). With a memory bank,
        `indices=None` (e.g. validation clips, which are not in the bank) skips the NCE term.
        """
        zero = output.features.new_zeros((), dtype=torch.float32)
        pretext_ce, nce_1, nce_2 = zero, zero, zero
        parts: dict[str, torch.Tensor] = {}

        if self.use_pretext:
            if output.pretext_logits is None or pretext_labels is None:
                raise ValueError("ssl.pretext is on: the model needs a pretext head and the batch pretext labels")
            logits = output.pretext_logits.float()
            pretext_labels = pretext_labels.to(logits.device)
            pretext_ce = F.cross_entropy(logits, pretext_labels)
            parts["pretext_acc"] = (logits.argmax(dim=1) == pretext_labels).float().mean().detach()

        if self.nce is not None:
            if output.embeddings is None:
                raise ValueError(f"the contrastive term ({self.contrastive}) needs a model with a projection head")
            # the logits at T = 0.07 are scaled by 14: in bf16 they would lose the digits the loss needs,
            # so the contrastive term runs in fp32 whatever the AMP setting
            v1, v2 = output.embeddings[:, 0].float(), output.embeddings[:, 1].float()
            with torch.autocast(device_type=v1.device.type, enabled=False):
                if isinstance(self.nce, InBatchInfoNCE):
                    nce_1, nce_2 = self.nce(v1, v2)
                elif indices is not None:
                    nce_1, nce_2 = self.nce(v1, v2, indices)

        loss = pretext_ce + self.nce_weight * (nce_1 + nce_2)
        parts.update(pretext_ce=pretext_ce.detach(), nce=(nce_1 + nce_2).detach(),
                     nce_1=nce_1.detach(), nce_2=nce_2.detach())
        return loss, parts


def pcl_sampler(cfg: Config) -> TupleSampler:
    """VCP tuples (`ssl.pretext: vcp`), or plain ones (`none`)."""
    if cfg.ssl.pretext == "none":
        return tuple_sampler(cfg)
    return tuple_sampler(cfg, VcpSampler, quadrant_order=cfg.ssl.quadrant_order, remote_rule=cfg.ssl.remote_rule)


class PCL(Method):
    """Pretext-Contrastive Learning as a `Method`: VCP tuples, CE + lambda * (NCE_1 + NCE_2)."""

    name = "pcl"
    model_type = PCLModel

    def __init__(self, cfg: Config, splits: RunSplits) -> None:
        self.cfg = cfg
        self.pretext = cfg.ssl.pretext
        self.train_set, self.val_set = tuple_datasets(cfg, splits, pcl_sampler(cfg))
        self.model = pcl_model(cfg)
        self.criterion = PCLLoss(cfg.ssl, num_train_videos=len(self.train_set), seed=cfg.train.seed)

    def train_dataset(self) -> Dataset:
        return self.train_set

    def validation_dataset(self) -> Dataset | None:
        if self.pretext == "none" or len(self.val_set) == 0:
            return None
        self.val_set = in_memory(self.val_set, self.cfg.data.tuple_len, self.cfg)
        return self.val_set

    def extra_modules(self) -> nn.Module:
        return self.criterion

    def train_mode(self) -> None:
        self.model.train()
        if self.cfg.model.freeze_backbone:
            self.model.backbone.eval()  # frozen BatchNorm statistics too

    def inputs(self, batch: dict[str, Any]) -> torch.Tensor:
        return batch_clips(batch, self.device)

    def loss(self, output: ModelOutput, batch: dict[str, Any]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        labels = batch["pretext_label"].to(self.device, non_blocking=True)
        indices = batch["index"].to(self.device, non_blocking=True)
        return self.criterion(output, labels, indices)

    @torch.no_grad()
    def validation_step(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        logits = self.model(self.inputs(batch)).pretext_logits
        return pretext_validation_sums(logits, batch["pretext_label"].to(self.device), VCP_CLASSES)

    def validation_metrics(self, sums: dict[str, Any]) -> dict[str, float]:
        return pretext_validation_metrics(sums)

    def score(self, metrics: dict[str, Any]) -> float:
        return pretext_score(metrics, self.cfg.train.best_by)

    def meta(self) -> dict[str, Any]:
        return pcl_meta(self.cfg)


def pcl_model(cfg: Config) -> PCLModel:
    """The PCL model of a config (backbone initialised and frozen as `model.*` asks)."""
    return PCLModel.from_config(backbone_from_config(cfg), cfg)


def pcl_meta(cfg: Config) -> dict[str, Any]:
    """What a PCL checkpoint says about its model, so it can be rebuilt and checked as a teacher."""
    return {"method": PCL.name, "arch": cfg.model.arch, "width": cfg.model.width,
            "tuple_len": cfg.data.tuple_len, "pretext": cfg.ssl.pretext,
            "pretext_classes": VCP_CLASSES if cfg.ssl.pretext != "none" else 0,
            "proj_dim": cfg.ssl.proj_dim, "use_projection": cfg.ssl.contrastive != "none",
            "input": input_meta(cfg)}
