"""Network definitions only: no I/O, no training. Parameter names follow the upstream checkpoints."""

from models.vqgan import VQGAN, VQGANConfig

__all__ = ["VQGAN", "VQGANConfig"]
