"""The training set: sentence pairs encoded as ``Example``s and cut into each epoch's batches.

An epoch's batches are a pure function of (seed, epoch), so resuming needs only the epoch and the
position in it, never a data loader's state, and not the process count either: each step takes the
next ``world_size`` batches, so a run resumed with another count re-shards the epoch's remaining
batches among its processes.
"""

from __future__ import annotations

import hashlib
from array import array
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from s2s_core.text.batching import pad_sequences, token_batches
from s2s_core.text.masking import training_pairs
from s2s_core.text.tokenizer import BOS_ID, EOS_ID, Tokenizers
from s2s_core.training.config import TrainConfig


@dataclass
class Example:
    src: list[int]  # ids + EOS
    tgt: list[int]  # ids (BOS/EOS added when batching)


def make_examples(tokenizers: Tokenizers, src: Sequence[str], tgt: Sequence[str],
                  max_src_len: int, max_tgt_len: int) -> tuple[list[Example], int]:
    """Encode sentence pairs; pairs that are empty or exceed the model limits are skipped.

    Returns the examples and how many pairs were skipped (reported by the caller). With tokenizers
    trained with placeholders, the pairs are masked and some get synthetic placeholders first
    (``masking.training_pairs``), as the model will see protected text.
    """
    if tokenizers.config.placeholders:
        src, tgt, _ = training_pairs(src, tgt, tokenizers.config.inject_placeholders, tokenizers.config.seed)
    src_ids, tgt_ids = tokenizers.src.encode(src), tokenizers.tgt.encode(tgt)
    examples = [Example(s + [EOS_ID], t) for s, t in zip(src_ids, tgt_ids, strict=True)
                if s and t and len(s) < max_src_len and len(t) < max_tgt_len]
    return examples, len(src_ids) - len(examples)


class TrainingData:
    """The examples one training run learns from, batched by token budget, epoch after epoch."""

    def __init__(self, examples: Sequence[Example], config: TrainConfig, world_size: int = 1):
        if not examples:
            raise ValueError("no training examples (all pairs empty or over the length limits?)")
        self.examples = list(examples)
        self.config = config
        self.world_size = world_size
        self._lengths = [max(len(e.src), len(e.tgt) + 1) for e in self.examples]

    def __len__(self) -> int:
        return len(self.examples)

    def epoch_batches(self, epoch: int) -> list[list[int]]:
        """The batches (example indices) of ``epoch``, shuffled by (seed, epoch); the same for any
        process count.

        With several processes each step takes ``world_size`` consecutive batches (one per rank);
        the epoch ends when fewer than that remain (``epoch_done``): the remainder, which would leave
        a rank idle, is skipped (it is reshuffled into the next epoch).
        """
        batches = token_batches(self._lengths, self.config.max_tokens,
                                max_sentences=self.config.max_sentences,
                                shuffle_seed=self.config.seed * 100_003 + epoch)
        if len(batches) < self.world_size:
            raise ValueError(f"{len(batches)} batches per epoch cannot feed {self.world_size} processes: "
                             "lower max_tokens or use fewer processes")
        return batches

    def epoch_done(self, batches: list[list[int]], position: int) -> bool:
        """Whether the batches from ``position`` on can no longer give every process one."""
        return position + self.world_size > len(batches)

    def fingerprint(self) -> str:
        """Hash of the encoded examples: changes with the data and with the tokenizer's segmentation."""
        digest = hashlib.sha256()
        for e in self.examples:
            digest.update(array("i", e.src).tobytes() + b"|" + array("i", e.tgt).tobytes() + b"\n")
        return digest.hexdigest()[:16]

    def tensors(self, batch: list[int], device: torch.device) -> tuple[torch.Tensor, ...]:
        """Padded ``(src, src_len, tgt_in, tgt_out)``: the decoder reads BOS+tgt and predicts tgt+EOS."""
        examples = [self.examples[i] for i in batch]
        src, src_len = pad_sequences([e.src for e in examples], device)
        tgt_in, _ = pad_sequences([[BOS_ID, *e.tgt] for e in examples], device)
        tgt_out, _ = pad_sequences([[*e.tgt, EOS_ID] for e in examples], device)
        return src, src_len, tgt_in, tgt_out
