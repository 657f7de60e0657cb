"""vidkd: self-supervised video representation learning boosted by knowledge distillation."""

__version__ = "0.1.0"

from vidkd.errors import VidkdError  # noqa: E402

__all__ = ["VidkdError", "__version__"]
