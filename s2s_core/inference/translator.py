"""Translate lists of raw text with a trained model: one result per input row, in input order.

With ``protect`` (span rules), each row's placeholders and markup are replaced by placeholder tokens
before translation, the search emits exactly the source's placeholders (``model.constraints``), and
the spans are put back: they come out byte-exact. Handles empty input, rows of several lines and
over-long lines (cut into pieces by ``segment``, translated apart and joined back: a placeholder is one
token, so a cut never splits a span), repeated pieces (searched once), length-sorted batches and
batches that run out of memory (split in halves and retried; a sentence that still does is ``failed``).
Any other error propagates.
"""

from __future__ import annotations

import heapq
import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace

import torch

from s2s_core.device import autocast
from s2s_core.inference.flags import (
    DEFAULT_THRESHOLDS,
    FlagThresholds,
    piece_flags,
    union,
    with_placeholder_check,
)
from s2s_core.inference.precision import DEFAULT_PRECISION, autocast_dtype, prepare_model
from s2s_core.inference.segment import DEFAULT_LANGUAGE, Segmented, SentenceSplitter, split_lines
from s2s_core.model.constraints import PlaceholderBudget
from s2s_core.model.search import Hypothesis, beam_search, greedy_search
from s2s_core.model.seq2seq import Seq2Seq
from s2s_core.text.batching import pad_sequences, token_batches
from s2s_core.text.spans import DEFAULT_RULES, SpanRules, protect, restore
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
    segments: int = 1  # pieces translated apart (lines; sentences of over-long lines); 0 when empty
    flags: tuple[str, ...] = ()  # quality flags (``flags.FLAGS`` order); none for empty and failed rows
    # With n-best: each alternative's (search ranking score, token count), aligned with ``nbest``;
    # what a row of several pieces needs to rank the combinations of its pieces' alternatives.
    ranking: list[tuple[float, int]] | None = None


def mean_log_prob(hyp: Hypothesis) -> float:
    """Log-prob per generated token (EOS included when emitted), comparable across lengths."""
    return hyp.score / max(1, len(hyp.tokens) + int(hyp.finished))


class Translator:
    """Runs a trained model over raw text. Hypotheses do not depend on batch composition (in bf16,
    only up to bfloat16 rounding: see ``precision``).

    ``precision`` (``precision.PRECISIONS``) is how the model computes: fp32 as trained, bf16 under
    bfloat16 autocast, int8 on a quantized copy of the model (``model`` itself is not changed).
    ``amp`` is the older CUDA-only autocast setting; it applies with fp32 only.

    ``protect``: the span rules of protected spans (None: spans are text). It needs a vocabulary with
    the placeholder symbols (``TokenizerConfig.placeholders``); with one, the search emits only the
    placeholders a source holds, each as often, protected or not.
    """

    def __init__(self, model: Seq2Seq, tokenizers: Tokenizers, device: torch.device | None = None,
                 amp: str = "none", language: str = DEFAULT_LANGUAGE,
                 thresholds: FlagThresholds = DEFAULT_THRESHOLDS, precision: str = DEFAULT_PRECISION,
                 protect: SpanRules | None = None):
        self.device = device or next(model.parameters()).device
        self.amp_dtype = autocast_dtype(precision, self.device, amp)
        self.precision = precision
        self.model = prepare_model(model.to(self.device).eval(), precision)
        self.tokenizers = tokenizers
        self.splitter = SentenceSplitter(language)  # the source language's sentence rules
        self.thresholds = thresholds  # where the quality flags fire
        src_ids, tgt_ids = tokenizers.src.placeholder_ids(), tokenizers.tgt.placeholder_ids()
        if protect is not None and (src_ids is None or tgt_ids is None):
            raise ValueError("span protection needs a model whose tokenizer was trained with the placeholder "
                             "symbols (tokenizer.placeholders: true); translate without protection")
        self.protect = protect
        self.placeholder_ids = (torch.tensor(src_ids), torch.tensor(tgt_ids)) if src_ids and tgt_ids else None

    @property
    def check_rules(self) -> SpanRules:
        """The span rules of the per-row placeholder check: the protected ones, else the defaults."""
        return self.protect or DEFAULT_RULES

    def encode_sources(self, texts: Sequence[str | None]) -> tuple[list[list[int]], list[str]]:
        """Source ids capped at the model limit (EOS excluded) and each row's status."""
        return self._capped(self.tokenizers.src.encode([t or "" for t in texts]))

    def _capped(self, ids: list[list[int]]) -> tuple[list[list[int]], list[str]]:
        limit = self.model.config.max_src_len - 1
        statuses = ["empty" if not s else "truncated" if len(s) > limit else "ok" for s in ids]
        return [s[:limit] for s in ids], statuses

    def segment(self, texts: Sequence[str | None]) -> tuple[list[Segmented], list[list[int]]]:
        """Each row's pieces (its lines, and the sentences of a line over the model's limit) and the
        source ids of all pieces in order, not yet capped."""
        rows = [split_lines(t or "") for t in texts]
        ids = self.tokenizers.src.encode([p for row in rows for p in row.pieces])
        limit, position, out = self.model.config.max_src_len - 1, 0, []
        for i, row in enumerate(rows):
            pieces = ids[position:position + len(row.spans)]
            position += len(row.spans)
            over = [j for j, piece in enumerate(pieces) if len(piece) > limit]
            if over:
                rows[i] = self.splitter.split(row, over)
                pieces = self.tokenizers.src.encode(rows[i].pieces)
            out += pieces
        return rows, out

    def translate(self, texts: Sequence[str | None], config: DecodeConfig = DecodeConfig()
                  ) -> list[Translation]:
        """One ``Translation`` per input, in input order; never drops or reorders a row.

        A row of several lines, or a line over the model's limit, is translated piece by piece
        (lines, then sentences: ``segment``) and joined back with the row's own whitespace; only a
        sentence that is itself over the limit is truncated.
        """
        # A row's leading and trailing whitespace is not the model's to translate: it is cut off and
        # put back verbatim ("Changed to ", a message ending in a line break: msgfmt -c checks both).
        edges = [split_edges(t or "") for t in texts]
        cores = [core for _, core, _ in edges]
        shielded = [protect(c, self.protect) for c in cores] if self.protect is not None else None
        rows, ids = self.segment([s.text for s in shielded] if shielded is not None else cores)
        pieces = self._translate_ids(ids, config)
        out, position = [], 0
        for i, (text, row) in enumerate(zip(texts, rows, strict=True)):
            result = merge(row, pieces[position:position + len(row.spans)], config)
            position += len(row.spans)
            checked = result.status in ("ok", "truncated")  # an empty or failed row has no text to check
            rules = self.check_rules
            if checked and shielded is not None:
                # Before the spans are put back: the output's placeholders must be the source's, and
                # no other span may appear (invented from ordinary pieces).
                result = replace(result, flags=with_placeholder_check(result.flags, row.text, result.text,
                                                                      rules))
            if shielded is not None and shielded[i].spans:
                result = restored(result, shielded[i].spans)
            if checked:
                result = with_edges(result, edges[i][0], edges[i][2])
                # After: each span's bytes are back, but a neighbour can change how it reads (a URL
                # run on into the next word is a broken link): the row is checked as it will be read.
                result = replace(result, flags=with_placeholder_check(result.flags, text or "", result.text,
                                                                      rules))
            out.append(result)
        return out

    def _translate_ids(self, ids: list[list[int]], config: DecodeConfig) -> list[Translation]:
        """One ``Translation`` per piece (its source ids), in order."""
        src_ids, statuses = self._capped(ids)
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
        no_alternatives = [] if config.n_best > 1 else None  # with n-best, every row has a list
        for ids, status in zip(src_ids, statuses, strict=True):
            if status == "empty":
                out.append(Translation("", 0.0, "empty", [], [], nbest=no_alternatives, segments=0))
                continue
            result = results[unique[tuple(ids)]]
            if isinstance(result, str):
                out.append(Translation("", 0.0, "failed", ids, [], nbest=no_alternatives, error=result))
                continue
            best = result[0]
            texts_nbest = self.tokenizers.tgt.decode([h.tokens for h in result])
            nbest = ([(t, mean_log_prob(h)) for t, h in zip(texts_nbest, result, strict=True)]
                     if config.n_best > 1 else None)
            ranking = [(h.norm_score, len(h.tokens)) for h in result] if config.n_best > 1 else None
            out.append(Translation(texts_nbest[0], mean_log_prob(best), status, ids, best.tokens,
                                   best.attention, nbest, flags=self._flags(ids, best, texts_nbest[0]),
                                   ranking=ranking))
        return out

    def _flags(self, src_ids: list[int], best: Hypothesis, text: str) -> tuple[str, ...]:
        """The quality flags of one piece's best hypothesis."""
        (src_text,) = self.tokenizers.src.decode([src_ids])
        return piece_flags(src_ids, best.tokens, best.finished, src_text, text, self.thresholds,
                           mean_log_prob(best))

    def _search(self, sources: list[list[int]], config: DecodeConfig) -> list[list[Hypothesis]]:
        src, lengths = pad_sequences(sources, self.device)
        kwargs = dict(max_len_ratio=config.max_len_ratio, max_len_extra=config.max_len_extra,
                      return_attention=config.return_attention)
        if self.placeholder_ids is not None:
            kwargs["placeholders"] = PlaceholderBudget.from_sources(src, *self.placeholder_ids)
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


def best_combinations(row: Segmented, pieces: Sequence[Translation], n: int) -> list[tuple[str, float]]:
    """The ``n`` best alternatives of a row of several pieces, best first.

    An alternative picks one of each piece's alternatives. Pieces are searched independently, so the
    row's ranking score of a pick is the sum of its pieces' (beam search's length-normalized scores)
    and the ``n`` best picks are found exactly, best first, by expanding the best pick so far one
    piece at a time (a heap over index vectors; each piece's list is sorted by that score). The first
    pick is every piece's best: the row's translation. Each is scored like the row: its pieces' mean
    token log-probs weighted by their lengths.
    """
    options = [list(zip(p.nbest, p.ranking, strict=True)) if p.nbest and p.ranking
               else [((p.text, p.score), (0.0, len(p.tokens)))] for p in pieces]

    def rank(pick: tuple[int, ...]) -> float:
        return sum(options[i][k][1][0] for i, k in enumerate(pick))

    first = (0,) * len(options)
    heap, seen, picks = [(-rank(first), first)], {first}, []
    while heap and len(picks) < n:
        _, pick = heapq.heappop(heap)
        picks.append(pick)
        for i, k in enumerate(pick):
            following = (*pick[:i], k + 1, *pick[i + 1:])
            if k + 1 < len(options[i]) and following not in seen:
                seen.add(following)
                heapq.heappush(heap, (-rank(following), following))
    out = []
    for pick in picks:
        chosen = [options[i][k] for i, k in enumerate(pick)]
        weights = [tokens + 1 for _, (_, tokens) in chosen]
        score = sum(s * w for ((_, s), _), w in zip(chosen, weights, strict=True)) / sum(weights)
        out.append((row.join([text for (text, _), _ in chosen]), score))
    return out


def split_edges(text: str) -> tuple[str, str, str]:
    """``text`` as (leading whitespace, the rest stripped, trailing whitespace)."""
    core = text.strip()
    if not core:
        return "", "", ""
    start = len(text) - len(text.lstrip())
    return text[:start], core, text[start + len(core):]


def with_edges(result: Translation, lead: str, trail: str) -> Translation:
    """``result`` (and its alternatives) between the source row's own leading and trailing whitespace."""
    if not lead and not trail:
        return result
    nbest = [(lead + text + trail, score) for text, score in result.nbest] if result.nbest else result.nbest
    return replace(result, text=lead + result.text + trail, nbest=nbest)


def restored(result: Translation, spans: Sequence[str]) -> Translation:
    """``result`` with its placeholders (and its alternatives') turned back into the source's spans."""
    nbest = [(restore(text, spans), score) for text, score in result.nbest] if result.nbest else result.nbest
    return replace(result, text=restore(result.text, spans), nbest=nbest)


def merge(row: Segmented, pieces: Sequence[Translation], config: DecodeConfig) -> Translation:
    """A row's result from its pieces' results: the texts joined into the row's layout, the score
    averaged over target tokens, the worst status (failed, then truncated, then ok)."""
    if len(pieces) == 1:
        return pieces[0]
    no_alternatives = [] if config.n_best > 1 else None
    if not pieces:
        return Translation("", 0.0, "empty", [], [], nbest=no_alternatives, segments=0)
    weights = [len(p.tokens) + 1 for p in pieces]
    src_tokens = [tok for p in pieces for tok in p.src_tokens]
    failed = [p for p in pieces if p.status == "failed"]
    if failed:  # as for a single sentence: no partial text, the error says why
        return Translation("", 0.0, "failed", src_tokens, [], nbest=no_alternatives, error=failed[0].error,
                           segments=len(pieces))
    status = "truncated" if any(p.status == "truncated" for p in pieces) else "ok"

    text = row.join([p.text for p in pieces])
    score = sum(p.score * w for p, w in zip(pieces, weights, strict=True)) / sum(weights)
    nbest = best_combinations(row, pieces, config.n_best) if config.n_best > 1 else None
    return Translation(text, score, status, src_tokens, [tok for p in pieces for tok in p.tokens],
                       nbest=nbest, segments=len(pieces), flags=union(p.flags for p in pieces))
