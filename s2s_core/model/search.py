"""Batched greedy and beam search over a ``Seq2Seq`` model.

Every sentence in a batch is searched independently: its hypotheses do not depend on the other
sentences or on padding (the encoder packs sequences and attention masks padding).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from s2s_core.model.seq2seq import Seq2Seq
from s2s_core.text.tokenizer import BOS_ID, EOS_ID


@dataclass
class Hypothesis:
    tokens: list[int]  # target ids, without BOS/EOS
    score: float  # sum of token log-probs (EOS included when emitted)
    norm_score: float  # score divided by the length penalty (what beam search ranks by)
    attention: torch.Tensor | None = None  # [len(tokens)+1, source length] when requested
    finished: bool = True  # False when cut at the maximum length without EOS


def length_penalty(length: int, alpha: float) -> float:
    """GNMT length penalty ((5 + |Y|) / 6) ** alpha (Wu et al., 2016)."""
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
) -> list[list[Hypothesis]]:
    """Arg-max decoding of each sentence; returns a one-element n-best list per sentence."""
    batch = src.size(0)
    limits = max_output_lengths(src_lengths, max_len_ratio, max_len_extra, model.config.max_tgt_len)
    limit_t = torch.tensor(limits, device=src.device)
    enc = model.encode(src, src_lengths)
    state = model.init_state(enc)
    prev = torch.full((batch,), BOS_ID, dtype=torch.long, device=src.device)
    done = torch.zeros(batch, dtype=torch.bool, device=src.device)
    scores = torch.zeros(batch, device=src.device)
    steps: list[torch.Tensor] = []
    attn: list[torch.Tensor] = []
    for t in range(max(limits)):
        log_probs, weights, state = model.decode_step(prev, enc, state)
        best_lp, prev = log_probs.max(dim=-1)
        scores += best_lp.masked_fill(done, 0.0)
        steps.append(prev.masked_fill(done, EOS_ID))
        if return_attention:
            attn.append(weights)
        done |= (prev == EOS_ID) | (limit_t <= t + 1)
        if bool(done.all()):
            break
    tokens = torch.stack(steps, 1).tolist()
    attn_t = torch.stack(attn, 1).float().cpu() if return_attention else None
    results = []
    for row in range(batch):
        seq = tokens[row][: limits[row]]
        emitted = seq.index(EOS_ID) + 1 if EOS_ID in seq else len(seq)
        out = [tok for tok in seq[:emitted] if tok != EOS_ID]
        score = float(scores[row])
        att = attn_t[row, :emitted, : int(src_lengths[row])] if attn_t is not None else None
        results.append([Hypothesis(out, score, score, att, finished=EOS_ID in seq[:emitted])])
    return results


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
) -> list[list[Hypothesis]]:
    """Beam search with GNMT length penalty; returns the ``n_best`` hypotheses per sentence, best first.

    A sentence stops when it has ``beam_size`` finished hypotheses, when no live hypothesis can
    still beat its best finished one, or at its maximum length. Finished sentences are dropped
    from the batch so the remaining ones run faster.
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
    enc = model.encode(src, src_lengths)
    enc = enc.index_select(torch.arange(batch, device=device).repeat_interleave(k))
    state = model.init_state(enc)

    active = list(range(batch))  # sentence ids still searching, in row-block order
    scores = torch.full((batch, k), float("-inf"), device=device)
    scores[:, 0] = 0.0  # all beams start identical: only the first may expand
    prev = torch.full((batch * k,), BOS_ID, dtype=torch.long, device=device)
    seqs = torch.empty(batch * k, 0, dtype=torch.long, device=device)
    attn = torch.empty(batch * k, 0, src.size(1), device=device) if return_attention else None
    finished: list[list[Hypothesis]] = [[] for _ in range(batch)]
    ranks = torch.arange(2 * k, device=device)

    for t in range(max(limits)):
        length = t + 1
        n_active = len(active)
        log_probs, weights, state = model.decode_step(prev, enc, state)
        candidates = (scores.unsqueeze(-1) + log_probs.view(n_active, k, vocab)).view(n_active, -1)
        top_scores, top_index = candidates.topk(2 * k, dim=1)
        top_rows = torch.div(top_index, vocab, rounding_mode="floor") + (
            torch.arange(n_active, device=device) * k).unsqueeze(1)
        top_tokens = top_index % vocab
        at_limit = torch.tensor([limits[s] <= length for s in active], device=device)
        is_eos = top_tokens == EOS_ID

        # Finalise EOS candidates ranked within the beam (and everything at the length limit).
        # Bookkeeping runs on the host: one transfer per step rather than one per hypothesis.
        finalize = (is_eos | at_limit.unsqueeze(1)) & (ranks < k) & torch.isfinite(top_scores)
        hits = finalize.nonzero()
        if len(hits):
            hit_rows = top_rows[hits[:, 0], hits[:, 1]]
            prefixes = seqs[hit_rows].tolist()
            hit_tokens = top_tokens[hits[:, 0], hits[:, 1]].tolist()
            hit_scores = top_scores[hits[:, 0], hits[:, 1]].tolist()
            hit_attn = (torch.cat([attn[hit_rows], weights[hit_rows].unsqueeze(1)], 1).float().cpu()
                        if attn is not None else None)
            for j, (a, token, raw) in enumerate(zip(hits[:, 0].tolist(), hit_tokens, hit_scores,
                                                   strict=True)):
                sent = active[a]
                out = prefixes[j] + ([] if token == EOS_ID else [token])
                att = hit_attn[j, :, : src_len_list[sent]] if hit_attn is not None else None
                finished[sent].append(Hypothesis(out, raw, raw / length_penalty(length, alpha), att,
                                                 finished=token == EOS_ID))

        # The k best candidates that did not end continue (EOS candidates sort last).
        keep = (is_eos.long() * 2 * k + ranks).argsort(dim=1)[:, :k]
        scores = top_scores.gather(1, keep)
        rows = top_rows.gather(1, keep).view(-1)
        prev = top_tokens.gather(1, keep).view(-1)
        seqs = torch.cat([seqs[rows], prev.unsqueeze(1)], dim=1)
        if attn is not None:
            attn = torch.cat([attn[rows], weights[rows].unsqueeze(1)], dim=1)
        state = state.index_select(rows)

        # A live hypothesis's log-prob only falls; the best it can reach is at its longest length.
        done = []
        for sent, best_alive, limited in zip(active, scores[:, 0].tolist(), at_limit.tolist(), strict=True):
            hyps = finished[sent]
            best_finished = max((h.norm_score for h in hyps), default=float("-inf"))
            bound = best_alive / length_penalty(limits[sent], alpha)
            done.append(limited or len(hyps) >= k or (len(hyps) >= n_best and best_finished >= bound))
        if all(done):
            break
        if any(done):
            keep_sent = torch.tensor([a for a, d in enumerate(done) if not d], device=device)
            keep_rows = (keep_sent.unsqueeze(1) * k + torch.arange(k, device=device)).view(-1)
            active = [s for s, d in zip(active, done, strict=True) if not d]
            enc, state = enc.index_select(keep_rows), state.index_select(keep_rows)
            scores, prev, seqs = scores[keep_sent], prev[keep_rows], seqs[keep_rows]
            if attn is not None:
                attn = attn[keep_rows]

    return [sorted(hyps, key=lambda h: h.norm_score, reverse=True)[:n_best] for hyps in finished]
