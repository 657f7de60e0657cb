"""Where an evaluation step runs, kept apart from the recipe of what it computes."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class EvalRuntime:
    """The device, loader workers, progress bars and preloading of an evaluation step.

    None of these is part of a recipe or a result's name: the same recipe on the same device
    gives the same numbers with any number of workers, with or without preloading.
    """

    device: torch.device | str = "cpu"
    num_workers: int = 0
    progress: bool = True
    preload: bool = False  # decode the videos once into memory (`data.preload`)
