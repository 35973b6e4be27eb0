import pytest
import torch

from s2s_core.model.search import beam_search, greedy_search
from s2s_core.model.seq2seq import build_model
from s2s_core.text.batching import pad_sequences
from s2s_core.text.tokenizer import EOS_ID
from tests.s2s_core.conftest import reverse_model_config
from tests.s2s_core.synthetic import reverse_pairs


def encode(task, texts):
    return [ids + [EOS_ID] for ids in task.tokenizers.src.encode(texts)]


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


def test_beam_score_is_at_least_greedy_and_nbest_is_sorted(reverse_task):
    model = reverse_task.model
    src, _ = reverse_pairs(60, seed=12, min_len=3, max_len=12)
    sources = encode(reverse_task, src)
    padded, lengths = pad_sequences(sources)
    greedy = greedy_search(model, padded, lengths)
    beam = beam_search(model, padded, lengths, beam_size=5, n_best=5, alpha=0.0)
    for g, nbest in zip(greedy, beam, strict=True):
        assert len(nbest) == 5
        assert nbest[0].score >= g[0].score - 1e-5
        norm = [h.norm_score for h in nbest]
        assert norm == sorted(norm, reverse=True)
        assert len({tuple(h.tokens) for h in nbest}) == 5  # distinct hypotheses


def test_length_penalty_favours_longer_hypotheses(reverse_task):
    model = reverse_task.model
    src, _ = reverse_pairs(30, seed=13)
    padded, lengths = pad_sequences(encode(reverse_task, src))
    plain = beam_search(model, padded, lengths, beam_size=4, n_best=4, alpha=0.0)
    for nbest in plain:
        assert all(h.norm_score == h.score for h in nbest)
    penalised = beam_search(model, padded, lengths, beam_size=4, n_best=4, alpha=1.0)
    for nbest in penalised:
        assert all(h.norm_score > h.score for h in nbest)  # negative scores divided by lp > 1


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
