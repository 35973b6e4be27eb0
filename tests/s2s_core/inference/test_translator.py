import pytest
import torch

from s2s_core.inference.translator import DecodeConfig, Translator

BAD_INPUTS = ["", "   \t  ", None, "a " * 2500, "ж щ ю 中文 العربية", "😀🚀 a b", "a\x00b\x07c\u200b d\x1b",
              "\n\n", "a b c"]


@pytest.mark.parametrize("beam", [1, 3])
def test_bad_input_never_crashes_and_keeps_every_row(reverse_task, beam):
    translator = Translator(reverse_task.model, reverse_task.tokenizers)
    out = translator.translate(BAD_INPUTS, DecodeConfig(beam_size=beam))
    assert len(out) == len(BAD_INPUTS)
    statuses = [t.status for t in out]
    assert statuses[:3] == ["empty"] * 3 and statuses[7] == "empty"
    assert all(t.text == "" and t.score == 0.0 for t in out if t.status == "empty")
    assert statuses[3] == "truncated"
    assert len(out[3].src_tokens) == reverse_task.model.config.max_src_len - 1
    assert statuses[4:7] == ["ok"] * 3
    assert out[8].text == "c b a"


class CountingTranslator(Translator):
    """Records every source row handed to the search."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.searched: list[tuple[int, ...]] = []

    def _search(self, sources, config):
        self.searched += [tuple(s) for s in sources]
        return super()._search(sources, config)


@pytest.mark.parametrize("beam", [1, 3])
def test_order_and_duplicates(reverse_task, beam):
    translator = CountingTranslator(reverse_task.model, reverse_task.tokenizers)
    # The last row differs from the first only in whitespace: the same ids after cleaning.
    texts = ["a b c", "d e f g h", "a b c", "", "l k", "a  b\tc"]
    # A small token budget spreads the rows over several length-sorted batches.
    out = translator.translate(texts, DecodeConfig(beam_size=beam, max_tokens=12))
    assert [t.text for t in out] == ["c b a", "h g f e d", "c b a", "", "k l", "c b a"]
    assert out[0].score == out[2].score == out[5].score < 0
    # Three distinct non-empty sources: each searched exactly once, however often it repeats.
    assert len(translator.searched) == len(set(translator.searched)) == 3


def test_control_characters_are_cleaned_before_translation(reverse_task):
    translator = Translator(reverse_task.model, reverse_task.tokenizers)
    clean, dirty = translator.translate(["a b c", "a\x00 b\u200b\tc\x7f"])
    assert dirty.src_tokens == clean.src_tokens and dirty.text == clean.text


class FlakyTranslator(Translator):
    """Runs out of memory on batches of more than two sentences and on any sentence containing 'l';
    ``broken`` raises another error instead (fault injection)."""

    broken: str | None = None

    def _search(self, sources, config):
        if self.broken:
            raise RuntimeError(self.broken)
        if len(sources) > 2:
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        if any(self.tokenizers.src.encode(["l"])[0][0] in s for s in sources):
            raise RuntimeError("DefaultCPUAllocator: not enough memory: you tried to allocate 1 GB")
        return super()._search(sources, config)


def test_batches_out_of_memory_are_split_and_single_failures_flagged(reverse_task):
    translator = FlakyTranslator(reverse_task.model, reverse_task.tokenizers)
    texts = ["a b", "b c d", "l a", "d e", "e f g", "", "g h"]
    out = translator.translate(texts)
    assert [t.status for t in out] == ["ok", "ok", "failed", "ok", "ok", "empty", "ok"]
    assert [t.text for t in out] == ["b a", "d c b", "", "e d", "g f e", "", "h g"]
    assert "not enough memory" in out[2].error


@pytest.mark.parametrize("error", ["CUDA error: device-side assert triggered",
                                   "Expected all tensors to be on the same device"])
def test_errors_other_than_out_of_memory_propagate_instead_of_failing_rows(reverse_task, error):
    translator = FlakyTranslator(reverse_task.model, reverse_task.tokenizers)
    translator.broken = error
    with pytest.raises(RuntimeError, match=error.split(":")[0]):
        translator.translate(["a b", "b c d"])


def test_attention_is_returned_per_sentence(reverse_task):
    translator = Translator(reverse_task.model, reverse_task.tokenizers)
    (t,) = translator.translate(["a b c d"], DecodeConfig(return_attention=True))
    assert t.attention.shape == (len(t.tokens) + 1, len(t.src_tokens) + 1)
    # Reversal: the first output symbol attends most to the last source symbol.
    assert int(t.attention[0].argmax()) == len(t.src_tokens) - 1


def test_decode_config_validation():
    with pytest.raises(ValueError, match="beam_size"):
        DecodeConfig(beam_size=0)
    with pytest.raises(ValueError, match="n_best"):
        DecodeConfig(beam_size=2, n_best=3)


@pytest.mark.parametrize("beam", [1, 3])
def test_a_rows_leading_and_trailing_whitespace_comes_back_verbatim(reverse_task, beam):
    """UI strings are concatenated ("Changed to " + value) and msgfmt -c checks that a message and its
    translation both begin and end with a line break or not: the row's edges are not the model's."""
    translator = Translator(reverse_task.model, reverse_task.tokenizers)
    rows = ["  a b c\n", "\ta b", "a b c  ", "a b c", "a b\nd e f\n\n", " \t "]
    out = translator.translate(rows, DecodeConfig(beam_size=beam, n_best=beam))
    assert [t.text for t in out] == ["  c b a\n", "\tb a", "c b a  ", "c b a", "b a\nf e d\n\n", ""]
    assert out[0].src_tokens == out[2].src_tokens == out[3].src_tokens  # the same sentence inside
    assert out[-1].status == "empty"
    if beam > 1:
        assert all(text.startswith("  ") and text.endswith("\n") for text, _ in out[0].nbest)
        assert all(text.startswith("\t") for text, _ in out[1].nbest)
