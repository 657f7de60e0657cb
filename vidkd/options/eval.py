"""The evaluations' options: the `eval:` section of a run or experiment config.

Its keys are the protocols' settings (`vidkd.protocol_specs` names which key each protocol's result
depends on); nothing here affects pretraining.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

from vidkd.errors import ConfigError
from vidkd.options.checks import dropout, one_of
from vidkd.protocol_specs import EVAL_PROTOCOLS, PROTOCOL_SPECS


@dataclass
class EvalConfig:
    """Evaluation protocols (`vidkd evaluate`, the experiment grid); nothing here affects pretraining."""

    protocol: str = "vidkd"  # vidkd (the settings below) | pcl (the reference code's retrieval and fine-tuning)
    num_clips: int = 10  # evenly spaced clips per video, as PCL/VCOP
    knn_k: int = 20
    knn_temperature: float = 0.07
    linear_steps: int = 300  # L-BFGS steps of the linear probe
    # L2 strengths of the linear probe; several are chosen among on held-out training groups (actors)
    linear_weight_decay: list[float] = field(default_factory=lambda: [1e-3, 1e-2, 0.1, 1.0, 10.0])
    fraction: float = 1.0  # labelled fraction of the training split, drawn per class (linear, finetune)
    finetune_fraction: float | None = None  # fine-tuning's own labelled fraction (None: `fraction`)
    finetune_epochs: int = 50
    finetune_lr: float = 0.01
    finetune_batch_size: int = 16
    finetune_backbone_lr_scale: float = 0.1  # the pretrained backbone learns slower than the new head
    finetune_dropout: float = 0.5
    # few labels make one fine-tuning depend on which videos are drawn: average this many runs,
    # each with its own labelled subset, head initialisation and clip order
    finetune_repeats: int = 1

    def labelled_fraction(self, protocol: str) -> float:
        """The labelled fraction `protocol` uses: its own key's value if it has one and it is set."""
        spec = PROTOCOL_SPECS.get(protocol)
        own = getattr(self, spec.fraction_key) if spec is not None else None
        return self.fraction if own is None else own

    def check(self, cfg: Any = None) -> None:
        """Refuse values the evaluations could not use, naming the key (called by `config.validate`)."""
        one_of("eval.protocol", self.protocol, EVAL_PROTOCOLS)
        if not math.isfinite(self.finetune_lr) or self.finetune_lr <= 0:
            raise ConfigError(f"config key 'eval.finetune_lr' must be a positive number; got {self.finetune_lr}")
        dropout("eval.finetune_dropout", self.finetune_dropout)
        decays = self.linear_weight_decay
        if any(not math.isfinite(w) for w in decays):
            raise ConfigError(f"config key 'eval.linear_weight_decay' needs a finite number, got {decays}")
        if not decays or any(w < 0 for w in decays):
            raise ConfigError(f"config key 'eval.linear_weight_decay' needs one or more non-negative numbers; got {decays}")
        for key in ("fraction", "finetune_fraction"):
            value = getattr(self, key)
            if value is not None and not 0 < value <= 1:
                raise ConfigError(f"config key 'eval.{key}' must be in (0, 1]; got {value}")
        for key in ("num_clips", "knn_k", "linear_steps", "finetune_epochs", "finetune_batch_size", "finetune_repeats"):
            if getattr(self, key) < 1:
                raise ConfigError(f"config key 'eval.{key}' must be at least 1; got {getattr(self, key)}")


# what a protocol's result depends on are keys of this section
assert {key for spec in PROTOCOL_SPECS.values() for key in (*spec.settings, spec.fraction_key)} <= {
    f.name for f in dataclasses.fields(EvalConfig)}
