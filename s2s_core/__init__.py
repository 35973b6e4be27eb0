"""s2s_core: attention-based RNN encoder-decoder translation in plain PyTorch (no orchestration)."""

__version__ = "0.1.0"
