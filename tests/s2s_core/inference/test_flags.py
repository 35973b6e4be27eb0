"""Quality flags: each rule on constructed inputs, their union over a row's pieces, batch invariance."""

import pytest

from s2s_core.inference import flags as qf
from s2s_core.inference.flags import FlagThresholds, piece_flags
from s2s_core.inference.translator import DecodeConfig, Translator

TH = FlagThresholds()


def clean(**overrides):
    """A piece no rule flags, with ``overrides`` applied: the one rule under test then fires alone."""
    piece = {"src_tokens": list(range(10, 20)), "tokens": list(range(30, 41)), "finished": True,
             "src_text": "la casa de mi padre es grande", "out_text": "my father's house is big"}
    return {**piece, **overrides}


def test_a_clean_piece_has_no_flags():
    assert piece_flags(**clean()) == ()


@pytest.mark.parametrize(("n_tgt", "flagged"), [(4, True), (5, False), (20, False), (21, True)])
def test_length_ratio(n_tgt, flagged):
    # 10 source tokens; the default range is [0.5, 2.0]
    assert (piece_flags(**clean(tokens=list(range(100, 100 + n_tgt)))) == ("length_ratio",)) == flagged


def test_length_ratio_skips_short_sources():
    assert not qf.length_ratio_out_of_range(TH.ratio_min_tokens - 1, 50)
    assert qf.length_ratio_out_of_range(TH.ratio_min_tokens, 50)


@pytest.mark.parametrize(("tokens", "flagged"), [
    ([1, 5, 5, 5, 2], True),               # a token three times in a row
    ([1, 5, 6, 5, 6, 5, 6, 7], True),      # a bigram looping
    ([5, 6, 7, 8, 5, 6, 7, 8, 5, 6, 7, 8], True),  # a 4-gram looping
    ([1, 5, 5, 2, 5, 5], False),           # twice in a row is ordinary text ("very very")
    ([5, 6, 7, 8, 9, 5, 6, 7, 8, 9, 5, 6, 7, 8, 9], False),  # a 5-gram: beyond repeat_max_n
    (list(range(20)), False),
])
def test_repetition_loops(tokens, flagged):
    assert qf.has_loop(tokens, TH.repeat_max_n, TH.repeat_times) == flagged


def test_repetition_fires_for_a_hypothesis_cut_at_the_length_limit():
    assert piece_flags(**clean(finished=False)) == ("repetition",)
    assert piece_flags(**clean(tokens=[30, 31, 32, 31, 32, 31, 32, 33, 34, 35])) == ("repetition",)


def test_word_coverage_sums_a_words_subwords():  # a measurement for bench/flags.py, no flag
    assert qf.word_coverage(["▁a", "b", "▁c"], [0.25, 0.5, 1.0, 7.0]) == [("ab", 0.75), ("c", 1.0)]
    assert qf.min_word_coverage(["▁casa", "▁.", "▁¿"], [1.0, 0.0, 0.0]) == 1.0  # punctuation skipped


def test_copy():
    src = "En el principio creó Dios los cielos y la tierra."
    assert piece_flags(**clean(src_text=src, out_text=src)) == ("copy",)
    shouted = "  EN el principio creó Dios los cielos y la tierra "
    assert piece_flags(**clean(src_text=src, out_text=shouted)) == ("copy",)
    english = "In the beginning God created the heavens and the earth."
    assert piece_flags(**clean(src_text=src, out_text=english)) == ()
    # short sources (a name, "Amén.") may legitimately come back unchanged
    assert piece_flags(**clean(src_text="Jerusalén", out_text="Jerusalén")) == ()


def test_flags_come_in_canonical_order_and_union_keeps_it():
    fired = piece_flags(**clean(finished=False, tokens=[1] * 30, src_text="a" * 30, out_text="a" * 30))
    assert fired == ("length_ratio", "repetition", "copy")
    assert qf.union([("copy",), (), ("length_ratio", "copy"), ("repetition",)]) == \
        ("length_ratio", "repetition", "copy")
    assert qf.flag_counts([("copy",), (), ("copy", "repetition")]) == \
        {"low_confidence": 0, "length_ratio": 0, "repetition": 1, "copy": 2, "placeholder": 0, "any": 2}


def test_low_confidence_fires_below_the_mean_log_prob_threshold():
    assert piece_flags(**clean(), mean_log_prob=TH.min_mean_log_prob - 0.01) == ("low_confidence",)
    assert piece_flags(**clean(), mean_log_prob=TH.min_mean_log_prob) == ()
    assert piece_flags(**clean()) == ()  # no score given: not judged


def test_low_confidence_reads_the_searchs_own_scores(reverse_task):
    """Each row is judged by its best hypothesis's log-prob per token, the score the row reports."""
    translator = Translator(reverse_task.model, reverse_task.tokenizers)
    rows = ["a b c", "d e f g h", "l k", "a a a a a a a a a a a a"]
    scores = [t.score for t in translator.translate(rows)]
    middle = sorted(scores)[1]
    judged = Translator(reverse_task.model, reverse_task.tokenizers,
                        thresholds=FlagThresholds(min_mean_log_prob=middle)).translate(rows)
    assert [("low_confidence" in t.flags) for t in judged] == [s < middle for s in scores]
    assert sum("low_confidence" in t.flags for t in judged) == 1


class FlagOnLetter(Translator):
    """Flags a piece ``copy`` when its source contains 'a', ``repetition`` when it contains 'd'."""

    def _flags(self, src_ids, best, text):
        (src,) = self.tokenizers.src.decode([src_ids])
        words = src.split()
        return qf.union([("copy",) if "a" in words else (), ("repetition",) if "d" in words else ()])


@pytest.mark.parametrize("beam", [1, 3])
def test_a_row_gets_the_union_of_its_pieces_flags(reverse_task, beam):
    translator = FlagOnLetter(reverse_task.model, reverse_task.tokenizers)
    out = translator.translate(["a b\nc d", "b c\nd e", "b c", "", None], DecodeConfig(beam_size=beam))
    assert [t.segments for t in out] == [2, 2, 1, 0, 0]
    assert [t.flags for t in out] == [("repetition", "copy"), ("repetition",), (), (), ()]


def test_empty_and_failed_rows_have_no_flags(reverse_task):
    translator = Translator(reverse_task.model, reverse_task.tokenizers,
                            thresholds=FlagThresholds(min_mean_log_prob=0.0))  # every row "unsure"
    ok, empty = translator.translate(["a b c", "  "])
    assert ok.flags == ("low_confidence",) and empty.flags == ()

    class Failing(Translator):
        def _search(self, sources, config):
            raise RuntimeError("not enough memory")

    (failed,) = Failing(reverse_task.model, reverse_task.tokenizers,
                        thresholds=FlagThresholds(min_mean_log_prob=0.0)).translate(["a b c"])
    assert failed.status == "failed" and failed.flags == ()


def test_the_placeholder_check_compares_a_rows_spans_as_a_multiset():
    assert qf.with_placeholder_check((), "Copy %s to <b>%s</b>", "<b>%s</b>: copia %s") == ()
    assert qf.with_placeholder_check(("copy",), "Copy %s", "Copia") == ("copy", "placeholder")
    assert qf.with_placeholder_check((), "Plain", "Llano {0}") == ("placeholder",)  # invented
    assert qf.with_placeholder_check((), "%d files", "%s archivos") == ("placeholder",)  # altered


def test_a_row_whose_translation_lost_a_placeholder_is_flagged(reverse_task):
    translator = Translator(reverse_task.model, reverse_task.tokenizers)
    lost, plain, empty = translator.translate(["a b %s c", "a b c", ""])
    assert "%s" not in lost.text and "placeholder" in lost.flags  # the toy vocabulary has no '%'
    assert "placeholder" not in plain.flags and empty.flags == ()


@pytest.mark.parametrize("beam", [1, 3])
def test_flags_do_not_depend_on_batch_composition(reverse_task, beam):
    from tests.s2s_core.synthetic import reverse_pairs
    src, _ = reverse_pairs(30, seed=21, min_len=1, max_len=20)
    # thresholds near the middle of the data, so that many rows sit close to a boundary (the score's
    # between two rows' scores: batch invariance holds up to float rounding, not a tie at the threshold)
    scores = sorted(t.score for t in Translator(reverse_task.model, reverse_task.tokenizers).translate(src))
    middle = (scores[14] + scores[15]) / 2
    translator = Translator(reverse_task.model, reverse_task.tokenizers, thresholds=FlagThresholds(
        min_mean_log_prob=middle, ratio_min_tokens=1, max_ratio=1.0))
    config = DecodeConfig(beam_size=beam)
    together = translator.translate(src, config)
    assert any(t.flags for t in together) and not all(t.flags for t in together)
    assert [t.flags for t in together] == [translator.translate([s], config)[0].flags for s in src]
