"""Protected spans through the translator: an untrained model (which scores placeholders at random)
still returns every row's placeholders and markup byte-exact, on every path (lines, over-long rows
cut into sentences, n-best, repeats), and a model without the placeholder symbols is refused."""

from __future__ import annotations

import random
from collections import Counter

import pytest
import torch

from s2s_core.inference.translator import DecodeConfig, Translator
from s2s_core.model.seq2seq import build_model
from s2s_core.text.spans import DEFAULT_RULES, protect, span_counts
from s2s_core.text.tokenizer import TokenizerConfig, train_tokenizers
from tests.s2s_core.conftest import reverse_model_config
from tests.s2s_core.synthetic import reverse_pairs, reverse_tokenizers

WORDS = ["abrir", "guardar", "archivo", "carpeta", "ventana", "nueva", "el", "la", "de", "en", "ahora", "no",
         "se", "pudo"]
SPANS = ["%s", "%d", "%1$s", "%(name)s", "{0}", "{count}", "<b>", "</b>", "&amp;", "https://example.org/a",
         "/usr/share/doc", "--verbose", "\n", "$HOME", "⦅3⦆", "｟1｠"]


def messages(n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        words = [rng.choice(WORDS) for _ in range(rng.randint(1, 12))]
        for _ in range(rng.choice([0, 1, 2, 3, 6])):
            words.insert(rng.randrange(len(words) + 1), rng.choice(SPANS))
        rows.append(" ".join(words))
    return rows


@pytest.fixture(scope="module")
def translator_parts():
    # Trained on protected text, as with masked training pairs: the vocabulary has no span syntax
    # of its own, so spans come out only through placeholders (a model that invents one from
    # ordinary pieces gets the row flagged; not tested here).
    texts = [protect(t).text for t in messages(400, seed=1)]
    tokenizers = train_tokenizers(texts, texts, TokenizerConfig(vocab_size=200, placeholders=True))
    torch.manual_seed(0)
    model = build_model(reverse_model_config(tokenizers, dropout=0.0, max_src_len=48, max_tgt_len=60)).eval()
    return model, tokenizers


@pytest.mark.parametrize("beam", [1, 3])
def test_every_row_keeps_its_spans_exactly(translator_parts, beam):
    model, tokenizers = translator_parts
    translator = Translator(model, tokenizers, torch.device("cpu"), protect=DEFAULT_RULES)
    rows = messages(60, seed=2)
    rows += ["línea uno %s\nlínea dos <b>%d</b>\n", " ".join(["abrir el archivo %s ahora."] * 8),  # cut
             "sin nada especial", "", "100 % seguro y 50% s"]
    results = translator.translate(rows, DecodeConfig(beam_size=beam, n_best=beam))
    for row, result in zip(rows, results, strict=True):
        if result.status == "truncated":  # a sentence over the limit alone lost its end: flagged
            assert "placeholder" in result.flags or span_counts(result.text) == span_counts(row)
        elif result.status == "ok":
            # Each span's bytes are in the output as often as in the source (a neighbouring word may
            # change how a span reads, e.g. ``nueva--verbose``: so bytes, not a new span search).
            for text in [result.text, *(t for t, _ in result.nbest or [])]:
                for span, n in Counter(protect(row).spans).items():
                    assert text.count(span) >= n, (row, text)
            # Every row whose spans do not read as the source's is flagged (a neighbouring word can
            # run on into a restored span, e.g. ``nueva--verbose``).
            assert ("placeholder" in result.flags) == (span_counts(result.text) != span_counts(row))
    assert results[-4].segments > 1 and results[-4].status == "ok"  # cut into sentences, spans intact
    assert sum(r.status == "ok" for r in results) > 50


def test_without_protection_the_same_model_loses_spans_and_flags_the_rows(translator_parts):
    """The check above can fail: spans left as text come out broken, and the rows are flagged."""
    model, tokenizers = translator_parts
    rows = [r for r in messages(60, seed=2) if span_counts(r)]
    results = Translator(model, tokenizers, torch.device("cpu")).translate(rows)
    broken = [r for row, r in zip(rows, results, strict=True) if span_counts(r.text) != span_counts(row)]
    assert len(broken) > len(rows) // 2
    assert all("placeholder" in r.flags for r in broken if r.status == "ok")


def test_protection_needs_the_placeholder_symbols():
    tokenizers = reverse_tokenizers()
    model = build_model(reverse_model_config(tokenizers)).eval()
    with pytest.raises(ValueError, match="placeholder symbols"):
        Translator(model, tokenizers, torch.device("cpu"), protect=DEFAULT_RULES)
    src, _ = reverse_pairs(3, seed=0)
    assert len(Translator(model, tokenizers, torch.device("cpu")).translate(src)) == 3  # still fine without


def test_a_final_line_break_stays_at_the_end(translator_parts):
    """A message's edges are cut off before protection: a final line break cannot be moved inside it
    (msgfmt -c: "msgid and msgstr entries do not both end with '\\n'"), nor leading spaces lost."""
    model, tokenizers = translator_parts
    translator = Translator(model, tokenizers, torch.device("cpu"), protect=DEFAULT_RULES)
    rows = [r + "\n" for r in messages(30, seed=4)] + ["\n" + r for r in messages(10, seed=5)]
    rows += ["  abrir %s: ", "\tguardar el archivo\n  "]
    results = translator.translate(rows, DecodeConfig(beam_size=2))
    for row, result in zip(rows, results, strict=True):
        assert result.status == "ok"
        lead, trail = row[:len(row) - len(row.lstrip())], row[len(row.rstrip()):]
        assert result.text.startswith(lead) and result.text.endswith(trail), (row, result.text)
