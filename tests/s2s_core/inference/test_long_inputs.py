"""Rows of several lines and over-long rows are translated piece by piece and joined back."""

import itertools

import pytest

from s2s_core.inference.translator import DecodeConfig, Translator

SENTENCE = "a b c d e f g h"  # 8 tokens; the reverse model's limit is 63 source tokens


@pytest.fixture(scope="module")
def translator(reverse_task) -> Translator:
    return Translator(reverse_task.model, reverse_task.tokenizers)


def alone(translator: Translator, pieces: list[str]) -> list[str]:
    return [t.text for t in translator.translate(pieces)]


def test_lines_of_a_row_are_translated_apart_and_its_layout_kept(translator):
    (t,) = translator.translate(["a b c\n\n   d e f g\r\n"])
    assert t.text == "c b a\n\n   g f e d\r\n" and t.status == "ok" and t.segments == 2


def test_an_over_long_row_is_split_into_sentences_not_truncated(translator):
    # Single letters before "." read as initials ("Albert I. Jones"), so these sentences end in "!"/"?".
    sentences = [f"{SENTENCE}!" for _ in range(6)] + ["l k j i?"] * 3
    row = "  ".join(sentences[:5]) + " " + " ".join(sentences[5:])
    ids = translator.tokenizers.src.encode([row])[0]
    assert len(ids) > translator.model.config.max_src_len  # too long as a whole
    (t,) = translator.translate([row])
    assert t.status == "ok" and t.segments == len(sentences)
    pieces = alone(translator, sentences)
    assert t.text == "  ".join(pieces[:5]) + " " + " ".join(pieces[5:])
    assert len(t.src_tokens) == sum(len(p) for p in translator.tokenizers.src.encode(sentences))


def test_only_a_sentence_over_the_limit_is_truncated(translator):
    long_sentence = " ".join([SENTENCE] * 10)  # one sentence, no boundary to split at
    (t,) = translator.translate([f"{SENTENCE}! {long_sentence}"])
    assert t.status == "truncated" and t.segments == 2
    assert t.text.startswith(alone(translator, [f"{SENTENCE}!"])[0] + " ")


def test_piece_results_combine_into_the_rows_score_and_n_best(translator):
    config = DecodeConfig(beam_size=3, n_best=2)
    (row,) = translator.translate(["a b c\nd e f"], config)
    first, second = translator.translate(["a b c", "d e f"], config)
    weights = [len(first.tokens) + 1, len(second.tokens) + 1]
    assert row.score == pytest.approx((first.score * weights[0] + second.score * weights[1]) / sum(weights))
    assert row.nbest[0] == (row.text, pytest.approx(row.score))


def test_the_n_best_of_a_row_of_pieces_are_its_best_combinations(translator):
    """Every pick of one alternative per piece, ranked by the sum of the pieces' search scores: the
    row's n-best are exactly the top picks (not each piece's k-th alternative joined)."""
    lines = ["a b c d", "e f g", "h i j k l"]
    config = DecodeConfig(beam_size=4, n_best=4)
    (row,) = translator.translate(["\n".join(lines)], config)
    pieces = translator.translate(lines, config)
    picks = sorted(itertools.product(*(range(len(p.nbest)) for p in pieces)),
                   key=lambda pick: -sum(p.ranking[k][0] for p, k in zip(pieces, pick, strict=True)))[:4]
    expected = []
    for pick in picks:
        chosen = [(p.nbest[k], p.ranking[k][1] + 1) for p, k in zip(pieces, pick, strict=True)]
        score = sum(s * w for (_, s), w in chosen) / sum(w for _, w in chosen)
        expected.append(("\n".join(text for (text, _), _ in chosen), pytest.approx(score)))
    assert row.nbest == expected
    assert picks[1] != (1, 1, 1)  # the case the k-th-joined approximation got wrong


def test_rows_with_pieces_keep_input_order_among_plain_rows(translator):
    texts = ["a b", "c d\ne f", "", "g h", " \n \n", "i j\nk l\nb a"]
    out = translator.translate(texts, DecodeConfig(max_tokens=8))
    assert [t.text for t in out] == ["b a", "d c\nf e", "", "h g", "", "j i\nl k\na b"]
    assert [t.segments for t in out] == [1, 2, 0, 1, 0, 3]
