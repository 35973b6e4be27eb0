"""A synthetic translation task (reverse a random symbol sequence) small enough to learn on CPU."""

from __future__ import annotations

import random

from s2s_core.text.tokenizer import TokenizerConfig, Tokenizers, train_tokenizers

SYMBOLS = [chr(c) for c in range(ord("a"), ord("a") + 12)]


def reverse_pairs(n: int, seed: int, min_len: int = 3, max_len: int = 8) -> tuple[list[str], list[str]]:
    rng = random.Random(seed)
    src, tgt = [], []
    for _ in range(n):
        seq = [rng.choice(SYMBOLS) for _ in range(rng.randint(min_len, max_len))]
        src.append(" ".join(seq))
        tgt.append(" ".join(reversed(seq)))
    return src, tgt


def reverse_tokenizers() -> Tokenizers:
    """Joint word-level vocabulary: every symbol is one piece."""
    src, tgt = reverse_pairs(2000, seed=0)
    return train_tokenizers(src, tgt, TokenizerConfig(model_type="bpe", vocab_size=40))
