"""Distillation's options: the `teacher:` section of a run config, with one weight per KD term."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

from vidkd.errors import ConfigError


def kd_weight(default: float = 0.0) -> Any:
    """A KD term's weight: `teacher.<name>` (the term is on when it is above 0)."""
    return field(default=default, metadata={"kd_weight": True})


@dataclass
class TeacherConfig:
    path: str | None = None  # run directory, vidkd checkpoint, PCL or torchvision state_dict
    arch: str | None = None  # needed for a foreign checkpoint; read from a vidkd run otherwise
    width: float | None = None
    temperature: float = 4.0
    alpha: float = kd_weight(1.0)  # weight of the logit KD term
    relational_weight: float = kd_weight()  # KD of in-batch similarity structure (off by default)
    relational_temperature: float = 0.1
    feature_weight: float = kd_weight()  # feature KD through a learned projection (off by default)
    attention_weight: float = kd_weight()  # attention transfer on backbone stage maps (off by default)
    # backbone stages whose maps attention transfer compares (negative: from the last). The last 3 by
    # default: the built-in backbones have 4 or 5 stages, so -3..-1 pair the same depth across them,
    # and the first stage's maps are the largest (T x H/2 x W/2) and the least semantic
    attention_stages: list[int] = field(default_factory=lambda: [-3, -2, -1])
    allow_partial: bool = False  # accept a checkpoint that loads only partly

    def check(self, cfg: Any) -> None:
        """Refuse values distillation could not use, naming the key (called by `config.validate`)."""
        if self.width is not None and not (math.isfinite(self.width) and self.width > 0):
            raise ConfigError(f"config key 'teacher.width' must be a positive number (1.0 is the published network); "
                              f"got {self.width}")
        for key in KD_WEIGHT_KEYS:
            if not getattr(self, key) >= 0:
                raise ConfigError(f"config key 'teacher.{key}' must not be negative; got {getattr(self, key)}")
        if not self.relational_temperature > 0:
            raise ConfigError("config key 'teacher.relational_temperature' must be positive")
        if not self.attention_stages:  # which stages a backbone has is checked when student and teacher are built
            raise ConfigError("config key 'teacher.attention_stages' must list one or more backbone stages (0 the "
                              "first, -1 the last; the ResNets have 4 stages, C3D 5)")
        if self.path and not any(getattr(self, key) > 0 for key in KD_WEIGHT_KEYS):
            raise ConfigError(f"a teacher is given but {', '.join(f'teacher.{k}' for k in KD_WEIGHT_KEYS)} are all 0: "
                              "nothing to distil; set one above 0 (teacher.alpha=1 for logit KD) or drop the teacher")
        if self.temperature <= 0:
            raise ConfigError(f"config key 'teacher.temperature' must be positive; got {self.temperature}")


# teacher.* weights of the KD terms, in field order (`vidkd.distill.losses.KD_TERMS` names each term's own)
KD_WEIGHT_KEYS = tuple(f.name for f in dataclasses.fields(TeacherConfig) if f.metadata.get("kd_weight"))
