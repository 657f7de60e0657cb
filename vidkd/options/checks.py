"""Value checks the option sections share (one-line errors that name the key)."""

from __future__ import annotations

from typing import Any

from vidkd.errors import ConfigError


def one_of(key: str, value: Any, allowed: tuple[Any, ...]) -> None:
    if value not in allowed:
        raise ConfigError(f"config key '{key}' must be one of {', '.join(map(str, allowed))}; got {value!r}")


def dropout(key: str, value: float) -> None:
    if not 0 <= value < 1:
        raise ConfigError(f"config key '{key}' is a dropout probability: it must be in [0, 1); got {value}")
