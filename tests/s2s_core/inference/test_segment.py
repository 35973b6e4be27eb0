import pytest

from s2s_core.inference.segment import Segmented, SentenceSplitter, split_lines


def test_a_single_line_is_one_piece_kept_whole():
    row = split_lines("  Hola. ¿Qué tal?  ")
    assert row.pieces == ["  Hola. ¿Qué tal?  "] and row.join(["X"]) == "X"


@pytest.mark.parametrize("text", ["", "   ", "\n\n", " \t\n  \n"])
def test_blank_rows_have_no_pieces(text):
    assert split_lines(text).spans == ()


def test_lines_are_pieces_and_the_layout_between_them_is_kept():
    text = "Error: disk full.\r\n\n    at write (io.c:12)\n  \nDone\n"
    row = split_lines(text)
    assert row.pieces == ["Error: disk full.", "at write (io.c:12)", "Done"]
    assert row.join(["A", "B", "C"]) == "A\r\n\n    B\n  \nC\n"
    assert row.join(row.pieces) == text  # identity translations give back the row exactly


def test_one_non_blank_line_among_blank_ones_is_one_whole_piece():
    assert split_lines("\n  solo  \n").pieces == ["\n  solo  \n"]


def test_sentences_of_chosen_pieces_keep_their_whitespace():
    text = "Primera línea.\nHola.  ¿Cómo estás?\n¡Muy bien! Gracias.\n"
    row = SentenceSplitter("es").split(split_lines(text), [1])
    assert row.pieces == ["Primera línea.", "Hola.", "¿Cómo estás?", "¡Muy bien! Gracias."]
    assert row.join(["1", "2", "3", "4"]) == "1\n2  3\n4\n"
    assert row.join(row.pieces) == text


def test_abbreviations_do_not_end_sentences_and_a_sentence_stays_whole():
    splitter = SentenceSplitter("en")
    row = splitter.split(split_lines("Dr. Smith arrived at 3 p.m. yesterday."), [0])
    assert row.pieces == ["Dr. Smith arrived at 3 p.m. yesterday."]
    row = splitter.split(split_lines("no punctuation at all " * 50), [0])
    assert len(row.spans) == 1


def test_join_needs_one_translation_per_piece():
    with pytest.raises(ValueError, match="2 pieces but 1 translations"):
        Segmented("a\nb", ((0, 1), (2, 3))).join(["x"])
