"""CVRL's options: the `cvrl:` section of a run config (method: cvrl)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from vidkd.errors import ConfigError


@dataclass
class CVRLConfig:
    """Options of CVRL (method: cvrl)."""

    SECTION: ClassVar[str] = "cvrl"
    METHOD: ClassVar[str] = "cvrl"

    temperature: float = 0.1
    hidden: int = 0  # width of the MLP's hidden layers; 0: the backbone's feature size (CVRL: 2048 = R3D-50's)
    hidden_layers: int = 3  # Linear-BN-ReLU blocks before the output Linear
    proj_dim: int = 128
    power: float = 1.0  # of the decreasing distribution of the clips' distance: 1 is CVRL's linear one

    def check(self, cfg: Any) -> None:
        """Refuse values training could not use, naming the key (called by `config.validate`)."""
        for key, value, low in (("temperature", self.temperature, 0.0), ("power", self.power, 0.0)):
            if not value > low:  # NaN too
                raise ConfigError(f"config key 'cvrl.{key}' must be a positive number; got {value}")
        for key, value, low in (("hidden", self.hidden, 0), ("hidden_layers", self.hidden_layers, 0),
                                ("proj_dim", self.proj_dim, 1)):
            if value < low:
                raise ConfigError(f"config key 'cvrl.{key}' must be at least {low}; got {value}")
