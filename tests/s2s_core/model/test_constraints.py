"""Placeholder constraints in greedy and beam search: every hypothesis holds exactly its source's
placeholder tokens, whatever the model's scores (an untrained model scores them at random)."""

from __future__ import annotations

import random
from collections import Counter
from types import SimpleNamespace

import pytest
import torch

from s2s_core.inference.precision import prepare_model
from s2s_core.model.constraints import PlaceholderBudget
from s2s_core.model.search import beam_search, greedy_search
from s2s_core.model.seq2seq import build_model
from s2s_core.text.batching import pad_sequences
from s2s_core.text.tokenizer import EOS_ID
from tests.s2s_core.conftest import reverse_model_config

VOCAB = 48
PLACEHOLDER_IDS = torch.arange(20, 28)  # 8 token ids standing for ｟0｠ … ｟7｠ (joint vocabulary)


def untrained_model(seed: int):
    torch.manual_seed(seed)
    sizes = SimpleNamespace(src=SimpleNamespace(vocab_size=VOCAB), tgt=SimpleNamespace(vocab_size=VOCAB))
    return build_model(reverse_model_config(sizes, dropout=0.0)).eval()


def sources(n: int, seed: int) -> list[list[int]]:
    """Random word ids with 0–5 placeholders each (some repeated), EOS-terminated."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        words = [rng.randrange(4, 20) for _ in range(rng.randint(1, 15))]
        for _ in range(rng.choice([0, 0, 1, 2, 3, 5])):
            words.insert(rng.randrange(len(words) + 1), int(PLACEHOLDER_IDS[rng.randrange(4)]))
        rows.append(words + [EOS_ID])
    return rows


def placeholder_counts(ids) -> Counter[int]:
    return Counter(i for i in ids if i in set(PLACEHOLDER_IDS.tolist()))


def search(model, rows, beam, constrained=True, **limits):
    src, lengths = pad_sequences(rows)
    budget = PlaceholderBudget.from_sources(src, PLACEHOLDER_IDS, PLACEHOLDER_IDS) if constrained else None
    if beam == 1:
        return greedy_search(model, src, lengths, placeholders=budget, **limits)
    return beam_search(model, src, lengths, beam_size=beam, n_best=beam, placeholders=budget, **limits)


@pytest.mark.parametrize("beam", [1, 4])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_every_hypothesis_holds_exactly_the_source_placeholders(beam, seed):
    model, rows = untrained_model(seed), sources(40, seed)
    for row, hyps in zip(rows, search(model, rows, beam), strict=True):
        for hyp in hyps:
            assert placeholder_counts(hyp.tokens) == placeholder_counts(row)


@pytest.mark.parametrize("beam", [1, 4])
def test_without_constraints_the_same_search_breaks_placeholders(beam):
    """The check above can fail: unconstrained, the untrained model drops or invents placeholders."""
    model, rows = untrained_model(0), sources(40, 0)
    broken = sum(placeholder_counts(hyps[0].tokens) != placeholder_counts(row)
                 for row, hyps in zip(rows, search(model, rows, beam, constrained=False), strict=True))
    assert broken > 5


@pytest.mark.parametrize("beam", [1, 3])
def test_placeholders_still_owed_at_the_length_limit_are_forced(beam):
    """With room for just the placeholders, the output is exactly those, in some order."""
    model = untrained_model(4)
    rows = [[5, int(PLACEHOLDER_IDS[0]), 6, int(PLACEHOLDER_IDS[2]), 7, int(PLACEHOLDER_IDS[0]), EOS_ID]]
    for hyp in search(model, rows, beam, max_len_ratio=0.0, max_len_extra=3)[0]:
        assert Counter(hyp.tokens) == placeholder_counts(rows[0])


@pytest.mark.parametrize("beam", [1, 4])
@pytest.mark.parametrize("precision", ["fp32", "int8"])  # int8: weight-only, the quantized copy
def test_constrained_search_is_batch_invariant(beam, precision):
    model, rows = prepare_model(untrained_model(5), precision), sources(16, 5)
    together = search(model, rows, beam)
    for row, hyps in zip(rows, together, strict=True):
        alone = search(model, [row], beam)[0]
        assert [h.tokens for h in alone] == [h.tokens for h in hyps]
        assert [h.score for h in alone] == pytest.approx([h.score for h in hyps], abs=1e-4)


def test_eos_waits_for_the_last_placeholder():
    """A row that owes a placeholder cannot end; once none is owed it can, and spent ones are barred."""
    budget = PlaceholderBudget(PLACEHOLDER_IDS[:2], torch.tensor([[1, 0], [0, 0]]))
    logits = budget.mask(torch.zeros(2, VOCAB), steps_left=torch.tensor([5, 5]))
    assert logits[0, EOS_ID] == float("-inf") and logits[1, EOS_ID] == 0
    assert logits[0, int(PLACEHOLDER_IDS[0])] == 0 and logits[0, int(PLACEHOLDER_IDS[1])] == float("-inf")
    budget.advance(torch.tensor([int(PLACEHOLDER_IDS[0]), 7]))
    assert budget.owed.tolist() == [[0, 0], [0, 0]]
    assert budget.mask(torch.zeros(2, VOCAB), torch.tensor([4, 4]))[0, EOS_ID] == 0
