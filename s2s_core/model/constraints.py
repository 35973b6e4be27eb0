"""Placeholder constraints for greedy and beam search: a hypothesis emits exactly its source's placeholders.

A protected span (``s2s_core.text.spans``) reaches the model as one placeholder token (``｟0｠``,
``｟1｠`` …). The search may emit only the placeholders its source holds, each at most as often as
there, and may not end (EOS) before it emitted every one; when the tokens left before the length
limit are as many as the placeholders still owed, only those may come. So every finished or cut
hypothesis holds its source's placeholders exactly, whatever the model's scores.

Each decoder row is masked from its own counts only: the search stays batch-invariant.
"""

from __future__ import annotations

import torch

from s2s_core.text.tokenizer import EOS_ID

# Shapes: R decoder rows (sentences, or sentences × beams), P placeholder tokens, V target vocabulary.


class PlaceholderBudget:
    """Per decoder row, how often each placeholder token must still be emitted."""

    def __init__(self, placeholder_ids: torch.Tensor, owed: torch.Tensor):
        self.ids = placeholder_ids  # [P] target vocabulary ids of the placeholder tokens
        self.owed = owed  # [R, P] long: emissions still owed per row and placeholder

    @classmethod
    def from_sources(cls, src: torch.Tensor, src_placeholder_ids: torch.Tensor,
                     tgt_placeholder_ids: torch.Tensor) -> PlaceholderBudget:
        """Counts of each placeholder in padded source ids ``src [B, S]`` (source vocabulary ids
        ``src_placeholder_ids [P]``, the same placeholders' target ids ``tgt_placeholder_ids [P]``)."""
        owed = (src.unsqueeze(-1) == src_placeholder_ids.to(src.device)).sum(dim=1)  # [B, P]
        return cls(tgt_placeholder_ids.to(src.device), owed)

    @property
    def any_owed(self) -> bool:
        return bool(self.owed.any())

    def mask(self, logits: torch.Tensor, steps_left: torch.Tensor) -> torch.Tensor:
        """``logits [R, V]`` with the moves the budget forbids at -inf: a placeholder owed no more
        (or not in the source), EOS while any is owed, and any other token when the ``steps_left [R]``
        (this step included) are needed for the placeholders still owed."""
        logits = logits.float().clone()
        owed_total = self.owed.sum(dim=1)  # [R]
        spent = self.owed == 0  # [R, P]
        placeholder_logits = logits[:, self.ids]  # [R, P]
        forced = owed_total >= steps_left  # [R]: from now on, placeholders only
        logits[:, EOS_ID] = torch.where(owed_total > 0, float("-inf"), logits[:, EOS_ID])
        logits[forced] = float("-inf")
        logits[:, self.ids] = placeholder_logits.masked_fill(spent, float("-inf"))
        return logits

    def advance(self, tokens: torch.Tensor) -> None:
        """Count the tokens just emitted (one per row, ``tokens [R]``)."""
        self.owed -= (tokens.unsqueeze(1) == self.ids).long()

    def select(self, rows: torch.Tensor) -> None:
        """Keep (and reorder to) decoder ``rows``: finished sentences leave, beams follow backpointers."""
        self.owed = self.owed.index_select(0, rows)
