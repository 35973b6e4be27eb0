"""Protected spans: found where software text has them, not in prose, and always restored byte-exact."""

from __future__ import annotations

import random

import pytest

from s2s_core.text.spans import (
    MAX_PLACEHOLDERS,
    PLACEHOLDERS,
    SpanRules,
    find_spans,
    placeholder,
    protect,
    restore,
    spans_match,
)


@pytest.mark.parametrize(("text", "expected"), [
    ("Open %s", [("printf", "%s")]),
    ("%1$s of %2$d files, %-5.2f%%", [("printf", "%1$s"), ("printf", "%2$d"), ("printf", "%-5.2f"),
                                       ("printf", "%%")]),
    ("%<PRIu64> bytes in %lu blocks", [("printf", "%<PRIu64>"), ("printf", "%lu")]),
    ("%1 of %L2", [("qt", "%1"), ("qt", "%L2")]),
    ("%(name)s has %(count) 5d items", [("python", "%(name)s"), ("python", "%(count) 5d")]),
    ("{0} and {name} and {count:>5} and {}", [("brace", "{0}"), ("brace", "{name}"), ("brace", "{count:>5}"),
                                              ("brace", "{}")]),
    ("$HOME or ${XDG_DATA_HOME}", [("shell", "$HOME"), ("shell", "${XDG_DATA_HOME}")]),
    ('Click <a href="http://x.org/?a=1">here</a>.', [("tag", '<a href="http://x.org/?a=1">'),
                                                     ("tag", "</a>")]),
    ("<b>bold</b><br/>", [("tag", "<b>"), ("tag", "</b>"), ("tag", "<br/>")]),
    ("Tom &amp; Jerry &#169; &#x1F600;", [("entity", "&amp;"), ("entity", "&#169;"),
                                          ("entity", "&#x1F600;")]),
    ("See https://gnome.org/help. Or www.gimp.org!", [("url", "https://gnome.org/help"),
                                                     ("url", "www.gimp.org")]),
    ("Write to joe@example.com.", [("email", "joe@example.com")]),
    ("Edit /etc/fstab or ~/.config/app.conf.", [("path", "/etc/fstab"), ("path", "~/.config/app.conf")]),
    ("Use --verbose, --color=auto or -v.", [("option", "--verbose"), ("option", "--color=auto"),
                                             ("option", "-v")]),
    ("one\\ntwo\nthree\tfour", [("escape", "\\n"), ("newline", "\n"), ("newline", "\t")]),
    ("typed ｟3｠ here", [("placeholder", "｟3｠")]),
])
def test_spans_are_found_in_software_text(text, expected):
    assert [(s.kind, s.text) for s in find_spans(text)] == expected


@pytest.mark.parametrize("prose", [
    "100 % sure, 50% of them", "a well-known e-mail client", "and/or 1/2 of a < b > c", "5 $ and 3 €",
    "El archivo no existe.", "a {b c} set", "R&D; costs", "",
])
def test_prose_holds_no_spans(prose):
    assert find_spans(prose) == []


def test_the_longest_overlapping_span_wins_and_spans_never_overlap():
    text = 'Go to <a href="https://x.org/%s">%s</a> or file:///tmp/a'
    spans = find_spans(text)
    assert [s.text for s in spans] == ['<a href="https://x.org/%s">', "%s", "</a>", "file:///tmp/a"]
    assert all(a.end <= b.start for a, b in zip(spans, spans[1:], strict=False))


def test_protect_replaces_spans_with_indexed_placeholders_and_restore_puts_them_back():
    text = "Delete %s from <b>%s</b>? %s"
    protected = protect(text)
    assert protected.text == "Delete ⦅0⦆ from ⦅1⦆⦅2⦆⦅3⦆? ⦅4⦆"
    assert protected.spans == ("%s", "<b>", "%s", "</b>", "%s")
    # The model may move placeholders: each comes back as the span it stands for.
    assert restore("⦅1⦆⦅2⦆⦅3⦆: delete ⦅0⦆? ⦅4⦆", protected.spans) == "<b>%s</b>: delete %s? %s"
    # An index the source lacks is left as it is: the per-row check flags the row.
    assert restore("no placeholder ⦅9⦆", protected.spans) == "no placeholder ⦅9⦆"


@pytest.mark.parametrize("text", ["｟0｠ and %s and ｟12｠", "⦅0⦆ and %s and ⦅12⦆"])
def test_a_user_typed_placeholder_is_protected_and_comes_back_as_typed(text):
    """Either form (the fullwidth one becomes the other under NFKC, as the tokenizer normalizes)."""
    protected = protect(text)
    assert protected.spans == (text[:3], "%s", text[-4:])
    assert protected.text == "⦅0⦆ and ⦅1⦆ and ⦅2⦆"
    assert restore(protected.text, protected.spans) == text


def test_a_row_with_thousands_of_spans_protects_the_first_ones_and_loses_nothing():
    text = " ".join(f"%{i % 9 + 1}$s <i>x</i>" for i in range(2000))
    protected = protect(text)
    assert len(protected.spans) == MAX_PLACEHOLDERS
    assert all(p in protected.text for p in PLACEHOLDERS) and "%9$s <i>x</i>" in protected.text
    assert restore(protected.text, protected.spans) == text


def test_protect_then_restore_is_the_identity_on_random_text():
    alphabet = list("aé %$<>/&;{}()#:-=._~\\\n\t\"'0123456789sdxb") + [
        "｟", "｠", "⦅", "⦆", "%s", "<b>", "</b>", "{0}", "&amp;", "http://x.y/z", "--opt"]
    rng = random.Random(7)
    for _ in range(3000):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 40)))
        protected = protect(text)
        assert restore(protected.text, protected.spans) == text, text
        for span in protected.spans:
            assert span  # no empty span


def test_spans_match_as_a_multiset_in_any_order():
    source = "Copy %s to %s <b>now</b>"
    assert spans_match(source, "<b>Ahora</b> copia %s a %s")
    assert not spans_match(source, "Copia %s a <b>ahora</b>")  # a %s dropped
    assert not spans_match(source, "Copia %s a %s %s <b>ahora</b>")  # duplicated
    assert not spans_match(source, "Copia %d a %s <b>ahora</b>")  # altered
    assert not spans_match("Plain text", "Texto %s")  # invented


def test_span_rules_choose_kinds_and_add_patterns_and_terms():
    rules = SpanRules(kinds=("printf",), patterns=(r"\bGTK\+?",), terms=("LibreOffice Writer", "GIMP"))
    spans = find_spans("GIMP and LibreOffice Writer use GTK+ and %s at <b>x</b>", rules)
    assert [(s.kind, s.text) for s in spans] == [("term", "GIMP"), ("term", "LibreOffice Writer"),
                                                  ("pattern", "GTK+"), ("printf", "%s")]
    assert find_spans("GIMPY", rules) == []  # whole words only
    assert find_spans("｟1｠ <b>", SpanRules(kinds=())) == [find_spans("｟1｠")[0]]  # typed ones, always


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"kinds": ("printf", "sql")}, "unknown span kind"),
    ({"patterns": ("(",)}, "not a regular expression"),
    ({"patterns": ("x*",)}, "matches the empty string"),
    ({"terms": (" ",)}, "term is empty"),
])
def test_bad_span_rules_are_refused_clearly(kwargs, message):
    with pytest.raises(ValueError, match=message):
        SpanRules(**kwargs)


def test_placeholders_are_one_symbol_each_and_distinct():
    assert len(set(PLACEHOLDERS)) == MAX_PLACEHOLDERS and placeholder(0) == "⦅0⦆"
