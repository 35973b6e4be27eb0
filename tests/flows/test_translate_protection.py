"""Protected spans through `s2s translate`: a model trained with the placeholder symbols protects by
default, and the corpus manifest, the run's summary and the text path's summary give the placeholder
exact-match rate of the per-row check, consistent with the rows' own ``placeholder`` flags."""

from __future__ import annotations

import json

import polars as pl
import pytest

from flows.cli import main
from s2s_core.text.spans import has_spans
from tests.faults.trials import read_parts, write_corpus
from tests.flows.conftest import ROOT, tiny_config

SPANS = ["%s", "{0}", "<b>", "https://example.org/ayuda", "--verbose", "%(name)s", "&amp;"]


@pytest.fixture(scope="module")
def protected_model(prefect_harness, tmp_path_factory) -> str:
    from flows.train import train_flow

    config = tiny_config(str(tmp_path_factory.mktemp("store")), ["tokenizer.placeholders=true"])
    return train_flow(config)["model"]


def software_rows(n: int = 60) -> pl.DataFrame:
    """Verses of the tiny corpus, two of three with one or two spans put in (between words)."""
    verses = pl.read_csv(ROOT / "examples/tiny/pairs.tsv", separator="\t", quote_char=None)["src"].head(n)
    rows = []
    for i, verse in enumerate(verses):
        words = verse.split()
        for k in range(i % 3):
            words.insert((3 * k + i) % (len(words) + 1), SPANS[(i + k) % len(SPANS)])
        rows.append(" ".join(words))
    return pl.DataFrame({"id": [f"m{i}" for i in range(n)], "src": rows})


def expected_rate(sources: list[str], flags: list[list[str]]) -> dict:
    """The rate as the manifest must give it, from the input and the parts' flags alone."""
    with_spans = [has_spans(s) for s in sources]
    flagged = ["placeholder" in f for f in flags]
    rows = sum(with_spans)
    exact = sum(s and not f for s, f in zip(with_spans, flagged, strict=True))
    return {"rows_with_spans": rows, "exact": exact, "rate": round(exact / rows, 4),
            "invented": sum(f and not s for s, f in zip(with_spans, flagged, strict=True))}


def test_manifest_summary_and_text_path_give_the_placeholder_exact_match_rate(
        protected_model, tmp_path, capsys):
    frame = software_rows()
    corpus = write_corpus(frame, tmp_path / "in", files=2)
    base = ["translate", "--model", protected_model, "--input", str(corpus), "--beam", "2",
            "--chunk-rows", "20", "--workers", "1", "--no-memory"]
    rates = {}
    for mode in ("--protect", "--no-protect"):
        out = tmp_path / mode.strip("-")
        capsys.readouterr()
        assert main([*base, "--output", str(out), mode]) == 0
        summary = json.loads(capsys.readouterr().out)
        manifest = json.loads((out / "manifest.json").read_text())
        parts = read_parts(out).sort("id").join(frame.rename({"src": "source"}), on="id")
        want = expected_rate(parts["source"].to_list(), parts["flags"].to_list())
        assert want["rows_with_spans"] == 40
        assert manifest["placeholders"] == summary["placeholders"] == want
        assert manifest["flags"].get("placeholder", 0) == 40 - want["exact"] + want["invented"]
        rates[mode] = want["rate"]

    # Constrained search puts every placeholder in; left as text, a tiny model mangles spans.
    assert rates["--protect"] > rates["--no-protect"]

    # The text path counts the same rows the same way (hypotheses do not depend on the batch).
    lines = tmp_path / "lines.txt"
    lines.write_text("\n".join(frame["src"]) + "\n", encoding="utf-8")
    capsys.readouterr()
    assert main(["translate", "--model", protected_model, "--input", str(lines), "--beam", "2",
                 "--output", str(tmp_path / "lines.out"), "--device", "cpu"]) == 0
    text_summary = json.loads(capsys.readouterr().out)
    protected = json.loads((tmp_path / "protect" / "manifest.json").read_text())["placeholders"]
    assert text_summary["placeholders"] == protected
