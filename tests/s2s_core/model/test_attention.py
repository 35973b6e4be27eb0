import pytest
import torch

from s2s_core.model.attention import SCORERS, Attention


@pytest.mark.parametrize("kind", SCORERS)
def test_weights_sum_to_one_over_real_positions_and_zero_on_padding(kind):
    torch.manual_seed(0)
    attention = Attention(kind, query_dim=16, key_dim=16)
    keys = torch.randn(3, 7, 16)
    queries = torch.randn(3, 4, 16)
    lengths = torch.tensor([7, 2, 5])
    mask = torch.arange(7).unsqueeze(0) < lengths.unsqueeze(1)

    context, weights = attention(queries, keys, mask)

    assert weights.shape == (3, 4, 7) and context.shape == (3, 4, 16)
    for row, length in enumerate(lengths.tolist()):
        torch.testing.assert_close(weights[row, :, :length].sum(-1), torch.ones(4))
        assert torch.all(weights[row, :, length:] == 0)
        assert torch.all(weights[row, :, :length] > 0)
    torch.testing.assert_close(context, torch.bmm(weights, keys))


@pytest.mark.parametrize("kind", SCORERS)
def test_padding_values_do_not_change_the_result(kind):
    torch.manual_seed(1)
    attention = Attention(kind, query_dim=8, key_dim=8)
    keys = torch.randn(1, 5, 8)
    mask = torch.tensor([[True, True, True, False, False]])
    query = torch.randn(1, 1, 8)
    noisy = keys.clone()
    noisy[:, 3:] = 1e3 * torch.randn(1, 2, 8)
    torch.testing.assert_close(attention(query, keys, mask), attention(query, noisy, mask))


@pytest.mark.parametrize("kind", ["general", "additive", "cosine"])
def test_scorers_accept_different_query_and_key_sizes(kind):
    attention = Attention(kind, query_dim=12, key_dim=20)
    mask = torch.ones(2, 3, dtype=torch.bool)
    context, weights = attention(torch.randn(2, 1, 12), torch.randn(2, 3, 20), mask)
    assert context.shape == (2, 1, 20) and weights.shape == (2, 1, 3)


def test_dot_attention_rejects_mismatched_sizes_clearly():
    with pytest.raises(ValueError, match="dot attention needs equal query and key sizes"):
        Attention("dot", query_dim=12, key_dim=20)


def test_unknown_scorer_is_rejected():
    with pytest.raises(ValueError, match="attention must be one of"):
        Attention("softmax", 4, 4)
