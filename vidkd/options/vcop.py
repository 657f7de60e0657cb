"""VCOP's options: the `vcop:` section of a run config (method: vcop)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from vidkd.errors import ConfigError
from vidkd.options.checks import dropout


@dataclass
class VCOPConfig:
    """Options of VCOP (method: vcop): clip order prediction over data.tuple_len clips."""

    SECTION: ClassVar[str] = "vcop"
    METHOD: ClassVar[str] = "vcop"

    hidden: int = 512  # size of the pairwise layer (the reference's fc7)
    dropout: float = 0.5

    def check(self, cfg: Any) -> None:
        """Refuse values VCOP could not train with, naming the key (called by `config.validate`)."""
        dropout("vcop.dropout", self.dropout)
        if self.hidden < 1:
            raise ConfigError(f"config key 'vcop.hidden' is a layer size: it must be at least 1; got {self.hidden}")
        if cfg.method == self.METHOD and cfg.data.tuple_len not in (2, 3, 4, 5):
            raise ConfigError(f"VCOP orders data.tuple_len clips into tuple_len! classes; use 2..5, "
                              f"got {cfg.data.tuple_len}")
