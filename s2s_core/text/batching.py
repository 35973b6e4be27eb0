"""Token-budget batches bucketed by length, and padding of id sequences into tensors."""

from __future__ import annotations

import random
from collections.abc import Sequence

import torch

from s2s_core.text.tokenizer import PAD_ID


def token_batches(
    lengths: Sequence[int],
    max_tokens: int,
    *,
    max_sentences: int | None = None,
    shuffle_seed: int | None = None,
) -> list[list[int]]:
    """Group example indices into batches whose padded size (rows × longest) fits ``max_tokens``.

    Examples are sorted by length so each batch holds similar lengths (little padding). With
    ``shuffle_seed`` the order of equal lengths and the order of batches are shuffled
    deterministically (training); without it batches come shortest first (inference).
    A single example longer than the budget still gets a batch of its own.
    """
    if max_tokens < 1:
        raise ValueError(f"max_tokens must be ≥ 1, got {max_tokens}")
    rng = random.Random(shuffle_seed) if shuffle_seed is not None else None
    tiebreak = [rng.random() for _ in lengths] if rng else [0.0] * len(lengths)
    order = sorted(range(len(lengths)), key=lambda i: (lengths[i], tiebreak[i]))
    batches: list[list[int]] = []
    batch: list[int] = []
    longest = 0
    for i in order:
        candidate_longest = max(longest, lengths[i])
        too_many = max_sentences is not None and len(batch) >= max_sentences
        if batch and ((len(batch) + 1) * candidate_longest > max_tokens or too_many):
            batches.append(batch)
            batch, candidate_longest = [], lengths[i]
        batch.append(i)
        longest = candidate_longest
    if batch:
        batches.append(batch)
    if rng:
        rng.shuffle(batches)
    return batches


def pad_sequences(seqs: Sequence[Sequence[int]], device: torch.device | str = "cpu"
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded ``[B, L]`` id tensor and lengths ``[B]``."""
    lengths = torch.tensor([len(s) for s in seqs], dtype=torch.long)
    padded = torch.full((len(seqs), int(lengths.max()) if len(seqs) else 0), PAD_ID, dtype=torch.long)
    for row, seq in enumerate(seqs):
        padded[row, : len(seq)] = torch.tensor(seq, dtype=torch.long)
    return padded.to(device, non_blocking=True), lengths.to(device, non_blocking=True)
