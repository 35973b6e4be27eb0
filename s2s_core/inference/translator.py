"""Translate lists of raw sentences with a trained model: one result per input row, in input order.

Handles empty and over-long input, repeated sentences (searched once), length-sorted batches and
batches that run out of memory (split in halves and retried; a sentence that still does is ``failed``).
Any other error propagates.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from s2s_core.device import amp_dtype, autocast
from s2s_core.model.search import Hypothesis, beam_search, greedy_search
from s2s_core.model.seq2seq import Seq2Seq
from s2s_core.text.batching import pad_sequences, token_batches
from s2s_core.text.tokenizer import EOS_ID, Tokenizers

log = logging.getLogger(__name__)

STATUSES = ("ok", "empty", "truncated", "failed")


@dataclass(frozen=True)
class DecodeConfig:
    """How to search; ``beam_size`` 1 means greedy."""

    beam_size: int = 1
    n_best: int = 1
    alpha: float = 0.6  # GNMT length penalty (beam search only)
    max_len_ratio: float = 1.5
    max_len_extra: int = 10
    max_tokens: int = 6000  # source tokens per batch (× beam size on the decoder side)
    return_attention: bool = False

    def __post_init__(self) -> None:
        if self.beam_size < 1:
            raise ValueError(f"beam_size must be ≥ 1, got {self.beam_size}")
        if not 1 <= self.n_best <= self.beam_size:
            raise ValueError(f"n_best must be between 1 and beam_size, got {self.n_best}")


@dataclass
class Translation:
    """The result for one input row."""

    text: str
    score: float  # mean token log-prob (0.0 for empty input)
    status: str  # one of STATUSES
    src_tokens: list[int]  # source ids fed to the model (after truncation, EOS excluded)
    tokens: list[int]
    attention: torch.Tensor | None = None  # [len(tokens) + finished, len(src_tokens)+1]
    nbest: list[tuple[str, float]] | None = None  # (text, mean log-prob), best first
    error: str | None = None


def mean_log_prob(hyp: Hypothesis) -> float:
    """Log-prob per generated token (EOS included when emitted), comparable across lengths."""
    return hyp.score / max(1, len(hyp.tokens) + int(hyp.finished))


class Translator:
    """Runs a trained model over raw text. Hypotheses do not depend on batch composition."""

    def __init__(self, model: Seq2Seq, tokenizers: Tokenizers, device: torch.device | None = None,
                 amp: str = "none"):
        self.device = device or next(model.parameters()).device
        self.model = model.to(self.device).eval()
        self.tokenizers = tokenizers
        self.amp_dtype = amp_dtype(amp, self.device)

    def encode_sources(self, texts: Sequence[str | None]) -> tuple[list[list[int]], list[str]]:
        """Source ids capped at the model limit (EOS excluded) and each row's status."""
        limit = self.model.config.max_src_len - 1
        ids = self.tokenizers.src.encode([t or "" for t in texts])
        statuses = ["empty" if not s else "truncated" if len(s) > limit else "ok" for s in ids]
        return [s[:limit] for s in ids], statuses

    def translate(self, texts: Sequence[str | None], config: DecodeConfig = DecodeConfig()
                  ) -> list[Translation]:
        """One ``Translation`` per input, in input order; never drops or reorders a row."""
        src_ids, statuses = self.encode_sources(texts)
        # Identical sources are translated once (corpora repeat headers, boilerplate, ...).
        unique: dict[tuple[int, ...], int] = {}
        for ids, status in zip(src_ids, statuses, strict=True):
            if status != "empty":
                unique.setdefault(tuple(ids), len(unique))
        sources = [list(k) + [EOS_ID] for k in unique]
        budget = max(1, config.max_tokens // config.beam_size)
        results: list[list[Hypothesis] | str] = [""] * len(sources)
        for batch in token_batches([len(s) for s in sources], budget):
            self._run_batch([sources[i] for i in batch], batch, results, config)
        out = []
        for ids, status in zip(src_ids, statuses, strict=True):
            if status == "empty":
                out.append(Translation("", 0.0, "empty", [], []))
                continue
            result = results[unique[tuple(ids)]]
            if isinstance(result, str):
                out.append(Translation("", 0.0, "failed", ids, [], error=result))
                continue
            best = result[0]
            texts_nbest = self.tokenizers.tgt.decode([h.tokens for h in result])
            nbest = ([(t, mean_log_prob(h)) for t, h in zip(texts_nbest, result, strict=True)]
                     if config.n_best > 1 else None)
            out.append(Translation(texts_nbest[0], mean_log_prob(best), status, ids, best.tokens,
                                   best.attention, nbest))
        return out

    def _search(self, sources: list[list[int]], config: DecodeConfig) -> list[list[Hypothesis]]:
        src, lengths = pad_sequences(sources, self.device)
        kwargs = dict(max_len_ratio=config.max_len_ratio, max_len_extra=config.max_len_extra,
                      return_attention=config.return_attention)
        with autocast(self.device, self.amp_dtype):
            if config.beam_size == 1:
                return greedy_search(self.model, src, lengths, **kwargs)
            return beam_search(self.model, src, lengths, beam_size=config.beam_size,
                               n_best=config.n_best, alpha=config.alpha, **kwargs)

    def _run_batch(self, sources: list[list[int]], slots: list[int],
                   results: list, config: DecodeConfig) -> None:
        """Search a batch; out of memory, split it in halves and retry (a single sentence is ``failed``).

        Any other error propagates: a code bug or a device fault must fail the caller's whole unit of
        work (which is then retried), not turn rows into permanent ``failed`` results.
        """
        try:
            for slot, hyps in zip(slots, self._search(sources, config), strict=True):
                results[slot] = hyps
        except RuntimeError as err:
            if not is_out_of_memory(err):
                raise
            if self.device.type == "cuda":
                torch.cuda.empty_cache()
            if len(sources) == 1:
                log.warning("sentence of %d tokens ran out of memory alone: %s", len(sources[0]), err)
                results[slots[0]] = f"{type(err).__name__}: {err}"
                return
            log.info("batch of %d ran out of memory; retrying in halves", len(sources))
            half = len(sources) // 2
            self._run_batch(sources[:half], slots[:half], results, config)
            self._run_batch(sources[half:], slots[half:], results, config)


# How allocators other than CUDA's (which raises torch.OutOfMemoryError) word running out of memory.
_OOM_MESSAGES = ("out of memory", "not enough memory", "can't allocate memory", "failed to allocate")


def is_out_of_memory(err: BaseException) -> bool:
    """Whether ``err`` is an allocation failure (worth a smaller batch), not a bug or device fault."""
    if isinstance(err, torch.OutOfMemoryError):
        return True
    return isinstance(err, RuntimeError) and any(m in str(err).lower() for m in _OOM_MESSAGES)
