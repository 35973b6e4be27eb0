import random

import pytest

from s2s_core.text.batching import pad_sequences, token_batches
from s2s_core.text.tokenizer import PAD_ID


def test_token_batches_cover_every_example_once_within_budget():
    rng = random.Random(0)
    lengths = [rng.randint(1, 50) for _ in range(1000)]
    batches = token_batches(lengths, max_tokens=400, shuffle_seed=3)
    flat = sorted(i for b in batches for i in b)
    assert flat == list(range(1000))
    for batch in batches:
        assert len(batch) * max(lengths[i] for i in batch) <= 400


def test_batches_group_similar_lengths():
    lengths = [1, 50, 2, 49, 3, 48]
    batches = token_batches(lengths, max_tokens=9)
    assert [sorted(lengths[i] for i in b) for b in batches] == [[1, 2, 3], [48], [49], [50]]


def test_training_order_is_deterministic_per_seed_and_differs_across_seeds():
    lengths = [random.Random(1).randint(1, 30) for _ in range(300)]
    assert token_batches(lengths, 100, shuffle_seed=5) == token_batches(lengths, 100, shuffle_seed=5)
    assert token_batches(lengths, 100, shuffle_seed=5) != token_batches(lengths, 100, shuffle_seed=6)


def test_an_example_longer_than_the_budget_gets_its_own_batch():
    assert token_batches([3, 500, 4], max_tokens=10) == [[0, 2], [1]]


def test_max_sentences_caps_batch_rows():
    assert all(len(b) <= 4 for b in token_batches([1] * 20, max_tokens=1000, max_sentences=4))


def test_bad_budget_is_rejected():
    with pytest.raises(ValueError, match="max_tokens"):
        token_batches([1, 2], 0)


def test_pad_sequences():
    padded, lengths = pad_sequences([[5, 6, 7], [8]])
    assert padded.tolist() == [[5, 6, 7], [8, PAD_ID, PAD_ID]]
    assert lengths.tolist() == [3, 1]
