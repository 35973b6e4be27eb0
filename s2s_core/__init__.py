"""s2s_core: attention-based RNN encoder-decoder translation in plain PyTorch (no orchestration).

Layers, each importing only those before it: storage, device → text → model → inference →
evaluation, training; corpus (storage only, no torch) and registry (storage, inference packages).
"""

__version__ = "0.2.0"
