"""Network definitions only: no I/O, no training. Parameter names follow the upstream checkpoints."""

from models.gpt import GPT, GPTConfig, KVCache
from models.vqgan import VQGAN, VQGANConfig

__all__ = ["GPT", "GPTConfig", "KVCache", "VQGAN", "VQGANConfig"]
