"""PCL's options: the `ssl:` section of a run config (method: pcl)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from vidkd.errors import ConfigError
from vidkd.options.checks import one_of


@dataclass
class SSLConfig:
    """Options of PCL (method: pcl)."""

    SECTION: ClassVar[str] = "ssl"
    METHOD: ClassVar[str] = "pcl"

    pretext: str = "vcp"  # vcp | none
    contrastive: str = "memory_bank"  # memory_bank | in_batch | none
    nce_weight: float = 0.5  # lambda in CE + lambda * (NCE1 + NCE2)
    nce_negatives: int = 1024
    nce_temperature: float = 0.07
    nce_momentum: float = 0.5
    proj_dim: int = 128
    quadrant_order: str = "random"  # random: any non-identity quadrant permutation | reference: PCL's fixed [3, 2, 1, 0]
    remote_rule: str = "vidkd"  # vidkd: the remote clip may lie on either side | reference: PCL's (room on both sides)
    bank_init: str = "unit"  # unit: unit-normalised Gaussian rows | reference: CMC/PCL's uniform, not normalised

    def check(self, cfg: Any) -> None:
        """Refuse values PCL could not train with, naming the key (called by `config.validate`)."""
        one_of("ssl.quadrant_order", self.quadrant_order, ("random", "reference"))
        one_of("ssl.remote_rule", self.remote_rule, ("vidkd", "reference"))
        one_of("ssl.bank_init", self.bank_init, ("unit", "reference"))
        one_of("ssl.pretext", self.pretext, ("vcp", "none"))
        one_of("ssl.contrastive", self.contrastive, ("memory_bank", "in_batch", "none"))
        if self.proj_dim < 1:
            raise ConfigError(f"config key 'ssl.proj_dim' is a layer size: it must be at least 1; got {self.proj_dim}")
        if cfg.method == self.METHOD:
            self._check_objective(cfg)
        if not self.nce_weight >= 0:
            raise ConfigError(f"config key 'ssl.nce_weight' must not be negative; got {self.nce_weight}")
        if self.nce_negatives < 1:
            raise ConfigError(f"config key 'ssl.nce_negatives' must be at least 1; got {self.nce_negatives}")
        if not self.nce_temperature > 0:
            raise ConfigError(f"config key 'ssl.nce_temperature' must be positive; got {self.nce_temperature}")
        if not 0 <= self.nce_momentum < 1:
            raise ConfigError(f"config key 'ssl.nce_momentum' must be in [0, 1); got {self.nce_momentum}")

    def follows_reference(self, cfg: Any) -> bool:
        """Every PCL option of `cfg` follows the reference code (docs/method.md): its recipe is 'pcl-reference'."""
        return (cfg.data.tuple_starts == "reference" and self.quadrant_order == "reference"
                and self.remote_rule == "reference" and cfg.data.modality == "residual" and cfg.data.blur > 0
                and cfg.data.jitter_order == "random" and cfg.train.best_by == "loss"
                and self.bank_init == "reference" and cfg.train.val_augmented)

    def _check_objective(self, cfg: Any) -> None:
        if self.pretext == "none" and self.contrastive == "none":
            raise ConfigError("ssl.pretext and ssl.contrastive are both 'none'; nothing to learn (turn one on)")
        if self.contrastive != "none" and cfg.data.tuple_len < 2:
            raise ConfigError("the contrastive term needs at least 2 clips per tuple; set data.tuple_len >= 2")
        if cfg.teacher.path and cfg.teacher.alpha > 0 and self.pretext == "none":
            raise ConfigError("logit KD (teacher.alpha > 0) needs the student's pretext logits, but ssl.pretext is "
                              "'none'; set teacher.alpha=0 and distil features (teacher.relational_weight=1)")
