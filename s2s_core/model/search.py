"""Greedy and beam search: turn a ``Seq2Seq`` and a batch of source ids into n-best hypotheses.

Each sentence is searched independently: its hypotheses do not depend on the other sentences of
the batch or on padding (the encoder packs sequences and attention masks padding).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from s2s_core.model.constraints import PlaceholderBudget
from s2s_core.model.seq2seq import Seq2Seq
from s2s_core.text.tokenizer import BOS_ID, EOS_ID

# Shapes below: B sentences, A of them still searching (beam search), k beam size, V target
# vocabulary, S padded source length, t the decoding step (tokens generated before it).


@dataclass
class Hypothesis:
    """One output of a search for one sentence."""

    tokens: list[int]  # target ids, without BOS/EOS
    score: float  # sum of token log-probs (EOS included when emitted)
    norm_score: float  # score divided by the length penalty (what beam search ranks by)
    attention: torch.Tensor | None = None  # [len(tokens) + finished, source length] when requested
    finished: bool = True  # False when cut at the maximum length without EOS
    # [source length] float32 on the host: attention summed over the target steps (= attention.sum(0));
    # always kept (an add per step): attention measurements (bench/flags.py) need no full matrix.
    coverage: torch.Tensor | None = None


def length_penalty(length: int, alpha: float) -> float:
    """GNMT length penalty ((5 + |Y|) / 6) ** alpha (Wu et al., 2016); |Y| counts EOS."""
    return ((5.0 + length) / 6.0) ** alpha


def max_output_lengths(src_lengths: torch.Tensor, ratio: float, extra: int, cap: int) -> list[int]:
    """Per-sentence limit on generated tokens (EOS included): ratio × source length + extra."""
    return [min(cap, math.ceil(ratio * n) + extra) for n in src_lengths.tolist()]


@torch.no_grad()
def greedy_search(
    model: Seq2Seq,
    src: torch.Tensor,
    src_lengths: torch.Tensor,
    *,
    max_len_ratio: float = 1.5,
    max_len_extra: int = 10,
    return_attention: bool = False,
    placeholders: PlaceholderBudget | None = None,
) -> list[list[Hypothesis]]:
    """Arg-max decoding of each sentence; returns a one-element n-best list per sentence.

    With ``placeholders`` (one budget row per sentence), each output holds exactly its source's
    placeholder tokens (``PlaceholderBudget``)."""
    batch, device = src.size(0), src.device
    limits = max_output_lengths(src_lengths, max_len_ratio, max_len_extra, model.config.max_tgt_len)
    limit_t = torch.tensor(limits, device=device)  # [B]
    enc = model.encode(src, src_lengths)  # states [B, S, De]
    state = model.init_state(enc)
    prev = torch.full((batch,), BOS_ID, dtype=torch.long, device=device)  # [A] last token
    active = torch.arange(batch, device=device)  # [A] sentence of each decoder row
    tokens = torch.full((batch, max(limits)), EOS_ID, dtype=torch.long, device=device)  # [B, steps]
    scores = torch.zeros(batch, device=device)  # [B]
    emitted = torch.zeros(batch, dtype=torch.long, device=device)  # [B] steps each sentence took
    attn = (torch.zeros(batch, max(limits), src.size(1), device=device)  # [B, steps, S]
            if return_attention else None)
    coverage = torch.zeros(batch, src.size(1), device=device)  # [B, S] float32 attention sums
    for t in range(max(limits)):
        logits, weights, state = model.step_logits(prev, enc, state)  # [A, V], [A, S]
        if placeholders is not None:
            logits = placeholders.mask(logits, limit_t[active] - t)
        # Only the arg-max and its log-prob are needed: max − logsumexp, no [A, V] log-softmax.
        logits = logits.float()
        best, prev = logits.max(dim=-1)  # [A], [A]
        scores[active] += best - logits.logsumexp(dim=-1)
        tokens[active, t] = prev
        if placeholders is not None:
            placeholders.advance(prev)
        if attn is not None:
            attn[active, t] = weights.float()
        coverage[active] += weights.float()
        emitted[active] = t + 1
        done = (prev == EOS_ID) | (limit_t[active] <= t + 1)  # [A]
        if bool(done.all()):
            break
        if bool(done.any()):
            # Finished sentences leave the batch: the others' rows do not depend on them.
            keep = (~done).nonzero().squeeze(1)  # [A']
            active, prev = active[keep], prev[keep]
            enc, state = enc.index_select(keep), state.index_select(keep)
            if placeholders is not None:
                placeholders.select(keep)
    tokens_list, emitted_list = tokens.tolist(), emitted.tolist()
    attn_t = attn.cpu() if attn is not None else None
    coverage = coverage.cpu()
    results = []
    for row in range(batch):
        seq = tokens_list[row][: emitted_list[row]]
        finished = bool(seq) and seq[-1] == EOS_ID
        out = seq[:-1] if finished else seq
        score = float(scores[row])
        att = attn_t[row, : len(seq), : int(src_lengths[row])] if attn_t is not None else None
        results.append([Hypothesis(out, score, score, att, finished=finished,
                                   coverage=coverage[row, : int(src_lengths[row])])])
    return results


def _top_candidates(scores: torch.Tensor, logits: torch.Tensor, k: int
                    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The 2k best one-token extensions of each sentence's beams, best first.

    ``scores [A, k]`` and next-token ``logits [A*k, V]`` give candidate scores ``[A, 2k]``, the
    decoder row each candidate extends (its backpointer) ``[A, 2k]`` and its token ``[A, 2k]``.
    Taking 2k guarantees k candidates that do not end in EOS: each beam has only one EOS extension.
    A sentence's 2k best candidates are among its beams' 2k best tokens each, so only those are
    normalised (logit − logsumexp): no [A*k, V] log-softmax, and a top-k over 2k² candidates, not kV.
    """
    n_active = scores.size(0)
    logits = logits.float()
    row_best, row_tokens = logits.topk(2 * k, dim=-1)  # [A*k, 2k] each
    row_log_probs = row_best - logits.logsumexp(dim=-1, keepdim=True)  # [A*k, 2k]
    # Candidate (beam j, its i-th best token) of a sentence sits at flat index j*2k + i.
    candidates = (scores.unsqueeze(-1) + row_log_probs.view(n_active, k, 2 * k)).view(n_active, -1)
    top_scores, top_index = candidates.topk(2 * k, dim=1)  # [A, 2k]
    top_tokens = row_tokens.view(n_active, -1).gather(1, top_index)  # [A, 2k]
    # Undo the flattening: beam j = index // 2k; sentence a's beams are rows a*k .. a*k+k-1.
    top_rows = torch.div(top_index, 2 * k, rounding_mode="floor") + (
        torch.arange(n_active, device=scores.device) * k).unsqueeze(1)
    return top_scores, top_rows, top_tokens


def _search_is_over(hyps: list[Hypothesis], best_alive: float, at_limit: bool, limit: int,
                    k: int, n_best: int, alpha: float) -> bool:
    """Whether a sentence can stop: at its length limit, k finished, or no live beam can still win.

    k finished hypotheses end the search even if a live one could still score better (the usual
    beam convention), so beam search can return a worse 1-best than greedy search.
    """
    best_finished = max((h.norm_score for h in hyps), default=float("-inf"))
    # A live hypothesis's log-prob only falls, and (for alpha ≥ 0) the penalty grows with length:
    # the best normalised score it can still reach is its current score at the longest length.
    bound = best_alive / length_penalty(limit, alpha)
    return at_limit or len(hyps) >= k or (len(hyps) >= n_best and best_finished >= bound)


@torch.no_grad()
def beam_search(
    model: Seq2Seq,
    src: torch.Tensor,
    src_lengths: torch.Tensor,
    *,
    beam_size: int = 5,
    n_best: int = 1,
    alpha: float = 0.6,
    max_len_ratio: float = 1.5,
    max_len_extra: int = 10,
    return_attention: bool = False,
    placeholders: PlaceholderBudget | None = None,
) -> list[list[Hypothesis]]:
    """Beam search with GNMT length penalty; returns the ``n_best`` hypotheses per sentence, best first.

    A sentence stops when it has ``beam_size`` finished hypotheses, when no live hypothesis can
    still beat its best finished one, or at its maximum length. Finished sentences are dropped
    from the batch so the remaining ones run faster. With ``placeholders`` (one budget row per
    sentence), every hypothesis holds exactly its source's placeholder tokens (``PlaceholderBudget``).
    """
    if not 1 <= n_best <= beam_size:
        raise ValueError(f"n_best must be between 1 and beam_size={beam_size}, got {n_best}")
    vocab = model.config.tgt_vocab_size
    if vocab < 2 * beam_size:
        raise ValueError(f"beam_size {beam_size} is too large for a vocabulary of {vocab}")
    device = src.device
    batch, k = src.size(0), beam_size
    limits = max_output_lengths(src_lengths, max_len_ratio, max_len_extra, model.config.max_tgt_len)
    src_len_list = src_lengths.tolist()
    # The decoder runs on a flat batch of A*k rows: row a*k + j is beam j of sentence active[a].
    enc = model.encode(src, src_lengths)  # states [B, S, De]
    enc = enc.index_select(torch.arange(batch, device=device).repeat_interleave(k))  # [B*k, S, De]
    state = model.init_state(enc)  # hidden [L, B*k, H]
    if placeholders is not None:  # one budget row per beam, like the encoder states
        placeholders.select(torch.arange(batch, device=device).repeat_interleave(k))
    limits_t = torch.tensor(limits, device=device)  # [B]

    active = list(range(batch))  # sentence ids still searching, in row-block order (A of them)
    scores = torch.full((batch, k), float("-inf"), device=device)  # [A, k] beam log-probs, best first
    scores[:, 0] = 0.0  # all beams start identical: only the first may expand
    prev = torch.full((batch * k,), BOS_ID, dtype=torch.long, device=device)  # [A*k] last token
    seqs = torch.empty(batch * k, 0, dtype=torch.long, device=device)  # [A*k, t] tokens so far
    attn = (torch.empty(batch * k, 0, src.size(1), device=device)  # [A*k, t, S]
            if return_attention else None)
    coverage = torch.zeros(batch * k, src.size(1), device=device)  # [A*k, S] float32 attention sums
    finished: list[list[Hypothesis]] = [[] for _ in range(batch)]  # per sentence id, any order
    ranks = torch.arange(2 * k, device=device)  # [2k] rank of each top candidate

    for t in range(max(limits)):
        length = t + 1  # tokens in a hypothesis after this step, EOS included
        logits, weights, state = model.step_logits(prev, enc, state)  # [A*k, V], [A*k, S]
        if placeholders is not None:
            steps_left = limits_t[torch.tensor(active, device=device)].repeat_interleave(k) - t  # [A*k]
            logits = placeholders.mask(logits, steps_left)
        top_scores, top_rows, top_tokens = _top_candidates(scores, logits, k)  # [A, 2k] each
        limited = [limits[s] <= length for s in active]  # [A]: this step emits the last allowed token
        at_limit = torch.tensor(limited, device=device)  # [A]
        is_eos = top_tokens == EOS_ID  # [A, 2k]

        # A hypothesis ends when one of the k best candidates is EOS (one ranked lower would not
        # have made the beam), or unfinished at the sentence's length limit; -inf candidates are
        # not hypotheses. Bookkeeping runs on the host: one transfer per step, not per hypothesis.
        finalize = (is_eos | at_limit.unsqueeze(1)) & (ranks < k) & torch.isfinite(top_scores)  # [A, 2k]
        hits = finalize.nonzero()  # [H, 2]: (sentence position a, candidate rank)
        if len(hits):
            hit_rows = top_rows[hits[:, 0], hits[:, 1]]  # [H] decoder row each hypothesis extends
            prefixes = seqs[hit_rows].tolist()  # [H][t]
            hit_tokens = top_tokens[hits[:, 0], hits[:, 1]].tolist()  # [H]
            hit_scores = top_scores[hits[:, 0], hits[:, 1]].tolist()  # [H]
            hit_attn = (torch.cat([attn[hit_rows], weights[hit_rows].unsqueeze(1)], 1).float().cpu()
                        if attn is not None else None)  # [H, t+1, S]
            hit_coverage = (coverage.index_select(0, hit_rows)  # [H, S]
                            + weights.index_select(0, hit_rows).float()).cpu()
            for j, (a, token, raw) in enumerate(zip(hits[:, 0].tolist(), hit_tokens, hit_scores,
                                                   strict=True)):
                sent = active[a]
                out = prefixes[j] + ([] if token == EOS_ID else [token])
                att = hit_attn[j, :, : src_len_list[sent]] if hit_attn is not None else None
                finished[sent].append(Hypothesis(out, raw, raw / length_penalty(length, alpha), att,
                                                 finished=token == EOS_ID,
                                                 coverage=hit_coverage[j, : src_len_list[sent]]))

        # The k best candidates that did not end continue: EOS candidates get a sort key past
        # every other rank (2k + rank), so the first k of the argsort are the best non-EOS ones.
        keep = (is_eos.long() * 2 * k + ranks).argsort(dim=1)[:, :k]  # [A, k] candidate ranks
        scores = top_scores.gather(1, keep)  # [A, k], still best first
        rows = top_rows.gather(1, keep).view(-1)  # [A*k] backpointers: the row each new beam extends
        prev = top_tokens.gather(1, keep).view(-1)  # [A*k]
        seqs = torch.cat([seqs[rows], prev.unsqueeze(1)], dim=1)  # [A*k, t+1]
        if attn is not None:
            attn = torch.cat([attn[rows], weights[rows].unsqueeze(1)], dim=1)  # [A*k, t+1, S]
        # Reordered by backpointers, like the beams (index_select: cheaper than indexing on CPU).
        coverage = coverage.index_select(0, rows) + weights.index_select(0, rows).float()  # [A*k, S]
        state = state.index_select(rows)
        if placeholders is not None:
            placeholders.select(rows)
            placeholders.advance(prev)

        best_alive = scores[:, 0].tolist()  # [A]
        done = [_search_is_over(finished[sent], best_alive[a], limited[a], limits[sent], k, n_best, alpha)
                for a, sent in enumerate(active)]  # [A]
        if all(done):
            break
        if any(done):
            # Drop finished sentences: keep the others' blocks of k rows (a*k .. a*k+k-1), in order.
            keep_sent = torch.tensor([a for a, d in enumerate(done) if not d], device=device)  # [A']
            keep_rows = (keep_sent.unsqueeze(1) * k + torch.arange(k, device=device)).view(-1)  # [A'*k]
            active = [s for s, d in zip(active, done, strict=True) if not d]
            enc, state = enc.index_select(keep_rows), state.index_select(keep_rows)
            scores, prev, seqs = scores[keep_sent], prev[keep_rows], seqs[keep_rows]
            coverage = coverage.index_select(0, keep_rows)
            if placeholders is not None:
                placeholders.select(keep_rows)
            if attn is not None:
                attn = attn[keep_rows]

    return [sorted(hyps, key=lambda h: h.norm_score, reverse=True)[:n_best] for hyps in finished]
