"""Training pairs for protected spans: shared spans masked alike on both sides, synthetic placeholders
at aligned positions, and the tokenizer and examples built from them."""

from __future__ import annotations

import random

from s2s_core.text.masking import inject_placeholder, mask_pair, training_pairs
from s2s_core.text.spans import PLACEHOLDERS, protect
from s2s_core.text.tokenizer import TokenizerConfig, train_tokenizers
from s2s_core.training.data import make_examples


def test_shared_spans_become_the_same_placeholders_on_both_sides():
    src, tgt, n = mask_pair("Copiar %1$s a %2$s <b>ya</b>", "Copy %2$s from %1$s <b>now</b>")
    assert (src, tgt, n) == ("Copiar ⦅0⦆ a ⦅1⦆ ⦅2⦆ya⦅3⦆", "Copy ⦅1⦆ from ⦅0⦆ ⦅2⦆now⦅3⦆", 4)


def test_a_source_masked_whole_reads_as_protect_will_make_it_at_translation():
    source = "Abrir %s en {0} &amp; https://x.org/a\n"
    assert mask_pair(source, "Open %s in {0} &amp; https://x.org/a\n")[0] == protect(source).text


def test_spans_on_one_side_only_stay_text():
    src, tgt, n = mask_pair("Borrar %s y %s\nahora", "Delete %s now")
    assert (src, tgt, n) == ("Borrar ⦅0⦆ y %s\nahora", "Delete ⦅0⦆ now", 1)
    assert mask_pair("Sin nada", "Nothing") == ("Sin nada", "Nothing", 0)
    # A translated menu path is no span at all (paths start lowercase): it stays translatable text.
    assert mask_pair("/Amigos/Añadir", "/Buddies/Add") == ("/Amigos/Añadir", "/Buddies/Add", 0)


def test_injection_replaces_a_word_both_sides_share_or_uses_the_same_end():
    rng = random.Random(0)
    assert inject_placeholder("En el año 1990 vino Moisés", "In the year 1990 came Moses", rng) == (
        "En el año ⦅0⦆ vino Moisés", "In the year ⦅0⦆ came Moses")
    for _ in range(20):
        src, tgt = inject_placeholder("Hola mundo", "Hello world", rng)
        assert (src, tgt) in {("⦅0⦆ Hola mundo", "⦅0⦆ Hello world"), ("Hola mundo ⦅0⦆", "Hello world ⦅0⦆")}


def test_training_pairs_inject_the_share_asked_and_never_into_pairs_with_spans():
    plain = [f"frase número {i}" for i in range(2000)]
    src, tgt, stats = training_pairs([*plain, "Abrir %s"], [*plain, "Open %d"], inject_share=0.25, seed=3)
    assert 0.2 < stats["pairs_injected"] / 2000 < 0.3
    assert src[-1] == "Abrir %s" and tgt[-1] == "Open %d"  # a span on one side: no mask, no injection
    assert stats["pairs_masked"] == 0
    assert all((PLACEHOLDERS[0] in s) == (PLACEHOLDERS[0] in t) for s, t in zip(src, tgt, strict=True))


def test_a_placeholder_tokenizer_and_its_examples_see_masked_pairs():
    src = [f"Abrir %s en la carpeta {i} <b>ya</b>" for i in range(200)] + ["hola mundo"] * 50
    tgt = [f"Open %s in folder {i} <b>now</b>" for i in range(200)] + ["hello world"] * 50
    tokenizers = train_tokenizers(src, tgt, TokenizerConfig(vocab_size=120, placeholders=True))
    ids = tokenizers.src.placeholder_ids()
    assert ids is not None and len(set(ids)) == len(PLACEHOLDERS)
    # Span syntax got no pieces of its own: the vocabulary was trained on masked text.
    assert not any("<b>" in p or "%s" in p for p in tokenizers.src.pieces(range(tokenizers.src.vocab_size)))
    examples, _ = make_examples(tokenizers, src, tgt, 64, 64)
    assert ids[0] in examples[0].src and ids[0] in examples[0].tgt and ids[2] in examples[0].tgt
