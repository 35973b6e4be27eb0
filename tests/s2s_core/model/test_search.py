import math
from itertools import pairwise
from types import SimpleNamespace

import pytest
import torch

from s2s_core.model.decoder import DecoderState
from s2s_core.model.encoder import EncoderOutput
from s2s_core.model.search import beam_search, greedy_search, length_penalty
from s2s_core.model.seq2seq import build_model
from s2s_core.text.batching import pad_sequences
from s2s_core.text.tokenizer import BOS_ID, EOS_ID, PAD_ID, UNK_ID
from tests.s2s_core.conftest import reverse_model_config
from tests.s2s_core.synthetic import reverse_pairs


def encode(task, texts):
    return [ids + [EOS_ID] for ids in task.tokenizers.src.encode(texts)]


def gnmt_penalty(length: int, alpha: float) -> float:
    """GNMT length penalty (Wu et al., 2016), written out here rather than taken from the code under test."""
    return math.pow((5 + length) / (5 + 1), alpha)


def forced_log_prob(model, source: list[int], tokens: list[int], finished: bool) -> float:
    """Log-prob of ``tokens`` (then EOS when ``finished``) given ``source``, by teacher forcing.

    Runs the model's full-sequence ``forward`` rather than the step-by-step path the search uses.
    """
    target = tokens + ([EOS_ID] if finished else [])
    src, src_lengths = pad_sequences([source])
    tgt_in = torch.tensor([[BOS_ID, *target[:-1]]])
    with torch.no_grad():
        log_probs = torch.log_softmax(model(src, src_lengths, tgt_in).float(), dim=-1)[0]  # [T, V]
    return float(log_probs[torch.arange(len(target)), torch.tensor(target)].sum())


def search(model, sources, beam):
    src, lengths = pad_sequences(sources)
    if beam == 1:
        return greedy_search(model, src, lengths, return_attention=True)
    return beam_search(model, src, lengths, beam_size=beam, n_best=beam, alpha=0.6, return_attention=True)


@pytest.mark.parametrize("beam", [1, 4])
@pytest.mark.parametrize("trained", [True, False])
def test_hypotheses_do_not_depend_on_batch_composition(reverse_task, beam, trained):
    """A sentence alone and inside a batch of mixed lengths gives identical output."""
    if trained:
        model = reverse_task.model
    else:  # an untrained model has no margin between candidates: a harsh check for padding leaks
        torch.manual_seed(3)
        model = build_model(reverse_model_config(reverse_task.tokenizers, dropout=0.0)).eval()
    src, _ = reverse_pairs(12, seed=11, min_len=1, max_len=20)
    sources = encode(reverse_task, src)
    together = search(model, sources, beam)
    for i, source in enumerate(sources):
        alone = search(model, [source], beam)[0]
        assert [h.tokens for h in alone] == [h.tokens for h in together[i]]
        for a, b in zip(alone, together[i], strict=True):
            assert a.score == pytest.approx(b.score, abs=1e-4)
            torch.testing.assert_close(a.attention, b.attention, atol=1e-5, rtol=1e-4)


def test_beam_score_is_at_least_greedy(reverse_task):
    model = reverse_task.model
    src, _ = reverse_pairs(60, seed=12, min_len=3, max_len=12)
    sources = encode(reverse_task, src)
    padded, lengths = pad_sequences(sources)
    greedy = greedy_search(model, padded, lengths)
    beam = beam_search(model, padded, lengths, beam_size=5, n_best=5, alpha=0.0)
    for source, g, nbest in zip(sources, greedy, beam, strict=True):
        assert g[0].score == pytest.approx(forced_log_prob(model, source, g[0].tokens, g[0].finished),
                                           abs=1e-4)
        assert len(nbest) == 5
        assert nbest[0].score >= g[0].score - 1e-5
        assert len({tuple(h.tokens) for h in nbest}) == 5  # distinct hypotheses


@pytest.mark.parametrize("alpha", [0.0, 0.6])
@pytest.mark.parametrize("trained", [True, False])
def test_nbest_scores_match_forced_decoding_and_rank_by_it(reverse_task, trained, alpha):
    """Every reported score is re-derived independently, and the n-best order follows it.

    Wrong backpointers (tokens of one beam, score of another), a wrong length or a missing sort
    all show up here.
    """
    if trained:
        model = reverse_task.model
    else:  # flat distributions: many close hypotheses, and some cut at the length limit
        torch.manual_seed(5)
        model = build_model(reverse_model_config(reverse_task.tokenizers, dropout=0.0)).eval()
    src, _ = reverse_pairs(20, seed=14, min_len=2, max_len=10)
    sources = encode(reverse_task, src)
    padded, lengths = pad_sequences(sources)
    results = beam_search(model, padded, lengths, beam_size=4, n_best=4, alpha=alpha)
    for source, nbest in zip(sources, results, strict=True):
        assert len(nbest) == 4
        rescored = []
        for h in nbest:
            score = forced_log_prob(model, source, h.tokens, h.finished)
            norm = score / gnmt_penalty(len(h.tokens) + int(h.finished), alpha)
            assert h.score == pytest.approx(score, abs=1e-4)
            assert h.norm_score == pytest.approx(norm, abs=1e-4)
            rescored.append(norm)
        # Best first by the independent score (hypotheses tied within float noise may swap).
        assert all(a >= b - 1e-4 for a, b in pairwise(rescored))


@pytest.mark.parametrize(("length", "alpha", "expected"), [
    (1, 0.6, 1.0), (9, 0.0, 1.0), (40, 0.0, 1.0),  # |Y| = 1 and alpha = 0: no penalty
    (7, 1.0, 2.0), (13, 1.0, 3.0), (19, 2.0, 16.0), (13, 0.5, math.sqrt(3.0)),
    (7, 0.6, 1.515716566510398),  # 2 ** 0.6
])
def test_length_penalty_is_gnmt(length, alpha, expected):
    assert length_penalty(length, alpha) == pytest.approx(expected, rel=1e-12)


class BigramModel:
    """A stand-in for ``Seq2Seq`` whose next-token distribution depends only on the previous token."""

    WORD = 4

    def __init__(self, vocab: int = 8):
        probs = torch.zeros(vocab, vocab)
        rest = [tok for tok in range(vocab) if tok not in (EOS_ID, self.WORD)]
        for prev, eos, word in ((BOS_ID, 0.40, 0.55), (self.WORD, 0.60, 0.30)):
            probs[prev, EOS_ID], probs[prev, self.WORD] = eos, word
            probs[prev, rest] = (1.0 - eos - word) / len(rest)
        for prev in (PAD_ID, UNK_ID, EOS_ID, 5, 6, 7):
            probs[prev] = 1.0 / vocab
        self.log_probs = probs.log()  # [prev, next]
        self.config = SimpleNamespace(tgt_vocab_size=vocab, max_tgt_len=20)

    def encode(self, src: torch.Tensor, lengths: torch.Tensor) -> EncoderOutput:
        mask = torch.arange(src.size(1)).unsqueeze(0) < lengths.unsqueeze(1)
        return EncoderOutput(torch.zeros(src.size(0), src.size(1), 1), mask, torch.zeros(src.size(0), 1))

    def init_state(self, enc: EncoderOutput) -> DecoderState:
        return DecoderState(torch.zeros(1, enc.final.size(0), 1), None)

    def step_logits(self, prev: torch.Tensor, enc: EncoderOutput, state: DecoderState):
        """Log-probabilities serve as logits: they are already normalised."""
        weights = enc.mask.float() / enc.mask.sum(1, keepdim=True)
        return self.log_probs[prev], weights, state


SHORT, LONG = [], [BigramModel.WORD]


@pytest.mark.parametrize(("alpha", "order"),
                         [(0.0, [SHORT, LONG]), (1.0, [SHORT, LONG]), (2.0, [LONG, SHORT])])
def test_length_penalty_decides_between_short_and_long_hypotheses(alpha, order):
    """EOS at once scores log 0.4 (length 1); WORD then EOS log 0.55 + log 0.6 (length 2).

    The longer one has the lower raw score, and wins only once alpha exceeds
    log(1.109 / 0.916) / log(7 / 6) ≈ 1.24: with the penalty ignored or mis-sized, this fails.
    """
    model = BigramModel()
    src, lengths = pad_sequences([[5, 6, EOS_ID]])
    (nbest,) = beam_search(model, src, lengths, beam_size=2, n_best=2, alpha=alpha)
    assert [h.tokens for h in nbest] == order
    by_tokens = {tuple(h.tokens): h for h in nbest}
    expected = {tuple(SHORT): (math.log(0.40), 1), tuple(LONG): (math.log(0.55) + math.log(0.60), 2)}
    for tokens, (score, length) in expected.items():
        assert by_tokens[tokens].finished
        assert by_tokens[tokens].score == pytest.approx(score, abs=1e-6)
        assert by_tokens[tokens].norm_score == pytest.approx(score / gnmt_penalty(length, alpha), abs=1e-6)


def test_output_length_is_capped_by_ratio(reverse_task):
    torch.manual_seed(4)
    model = build_model(reverse_model_config(reverse_task.tokenizers, dropout=0.0)).eval()
    sources = encode(reverse_task, ["a b", "a b c d e f g h i j"])
    padded, lengths = pad_sequences(sources)
    for hyps in (greedy_search(model, padded, lengths, max_len_ratio=1.0, max_len_extra=2),
                 beam_search(model, padded, lengths, beam_size=3, max_len_ratio=1.0, max_len_extra=2)):
        for h, source in zip(hyps, sources, strict=True):
            assert len(h[0].tokens) + int(h[0].finished) <= len(source) + 2


def test_beam_rejects_bad_arguments(reverse_task):
    padded, lengths = pad_sequences(encode(reverse_task, ["a b"]))
    with pytest.raises(ValueError, match="n_best"):
        beam_search(reverse_task.model, padded, lengths, beam_size=2, n_best=3)
    with pytest.raises(ValueError, match="too large for a vocabulary"):
        beam_search(reverse_task.model, padded, lengths, beam_size=100)


@pytest.mark.parametrize("beam", [1, 4])
@pytest.mark.parametrize("trained", [True, False])
def test_coverage_is_the_attention_summed_over_target_steps(reverse_task, beam, trained):
    """The running sum kept during the search equals the sum of the full attention matrix.

    With n_best = beam, hypotheses come from beams reordered by backpointers many times (and, with
    the untrained model, some are cut at the length limit): coverage not reordered with the beams
    would be another beam's sum.
    """
    if trained:
        model = reverse_task.model
    else:
        torch.manual_seed(6)
        model = build_model(reverse_model_config(reverse_task.tokenizers, dropout=0.0)).eval()
    src, _ = reverse_pairs(16, seed=13, min_len=1, max_len=15)
    sources = encode(reverse_task, src)
    for source, nbest in zip(sources, search(model, sources, beam), strict=True):
        for h in nbest:
            assert h.coverage.shape == (len(source),)
            torch.testing.assert_close(h.coverage, h.attention.sum(0), atol=1e-5, rtol=1e-5)
    # without attention requested the coverage is still there, and the same
    padded, lengths = pad_sequences(sources)
    plain = (greedy_search(model, padded, lengths) if beam == 1
             else beam_search(model, padded, lengths, beam_size=beam, n_best=beam))
    for with_attention, without in zip(search(model, sources, beam), plain, strict=True):
        for a, b in zip(with_attention, without, strict=True):
            assert a.tokens == b.tokens and b.attention is None
            torch.testing.assert_close(a.coverage, b.coverage, atol=0, rtol=0)
