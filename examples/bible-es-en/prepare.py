#!/usr/bin/env python
"""Rebuild the Spanish→English Bible corpus (train/dev/test Parquet, columns ``id, src, tgt``).

Sources are two public-domain SWORD modules packaged by Debian: the Reina-Valera 1909
(``spaRV1909eb``, source side) and the World English Bible (``engWEB2015eb``, target side). Set-up
on a fresh Debian/Ubuntu machine (or pass ``--install`` to run it)::

    sudo apt-get install sword-text-sparv sword-text-web libsword-utils

``mod2imp MODULE`` prints every entry as a line ``$$$Book C:V`` followed by its OSIS markup. Each
verse is cleaned by dropping ``<note>``/``<title>`` elements with their content (footnotes and
headings are not translation), cutting anything after the end-of-book marker (the WEB appends its
glossary to Revelation 22:21), stripping the remaining tags, unescaping entities and normalizing
with ``clean_text`` (as training and inference do). Verses present and non-empty in both modules are
paired, keeping canonical order; ids look like ``Genesis 1:1``.

The split is deterministic and independent of the row set: ``int(sha1(id).hexdigest(), 16) % 100``
below 3 → test, 3–5 → dev, else train (about 3 % / 3 % / 94 %). This reproduces the published
``shared/data/bible-es-en`` split exactly, and a verse stays in its split if other verses change.

Usage::

    python examples/bible-es-en/prepare.py                      # write to the default --out
    python examples/bible-es-en/prepare.py --out /tmp/bible --check shared/data/bible-es-en

``--out`` defaults to ``shared/data/bible-es-en`` next to the repository checkout, i.e.
``<this file>/../../../shared/data/bible-es-en`` (resolved from the script's location, not the
working directory). Any fsspec URL works for ``--out``.
"""

from __future__ import annotations

import argparse
import hashlib
import html
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import polars as pl

# Make ``s2s_core`` importable when the script is run from a plain checkout (not pip-installed).
REPO_ROOT = Path(__file__).resolve().parents[2]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from s2s_core.storage import join  # noqa: E402
from s2s_core.text.prepare import write_parquet  # noqa: E402
from s2s_core.text.tokenizer import clean_text  # noqa: E402

SRC_MODULE, TGT_MODULE = "spaRV1909eb", "engWEB2015eb"
APT_PACKAGES = ("sword-text-sparv", "sword-text-web", "libsword-utils")
SETUP_HINT = "sudo apt-get install " + " ".join(APT_PACKAGES)
DEFAULT_OUT = Path(__file__).resolve().parent / ".." / ".." / ".." / "shared" / "data" / "bible-es-en"
SPLITS = ("train", "dev", "test")

# Footnotes and section headings are commentary, not the verse: removed with their content. They are
# replaced by a space because they often sit between two words ("God<note>…</note><w>created").
DROP_ELEMENTS = re.compile(r"<(note|title)\b[^>]*?(?<!/)>.*?</\1\s*>", re.DOTALL)
# End of a book (``<div … eID=… type="book"/>``): whatever follows is back matter such as a glossary.
BOOK_END = re.compile(r'<div\b(?=[^>]*\beID=)(?=[^>]*\btype="book")[^>]*/>')
# Other tags are word/lemma wrappers and milestones: removed without a space, because the spacing is
# already in the text between them ("siempre<transChange>es</transChange>" follows the module).
TAG = re.compile(r"<[^>]*>")
HEADER = re.compile(r"^\$\$\$(.*)$")
VERSE_KEY = re.compile(r"^(?P<book>.+) (?P<chapter>\d+):(?P<verse>\d+)$")


def ensure_tools(install: bool) -> None:
    """Check that mod2imp and both modules are there; install them with apt-get if asked."""
    if install:
        command = ["apt-get", "install", "-y", *APT_PACKAGES]
        if hasattr(os, "geteuid") and os.geteuid() != 0:
            command.insert(0, "sudo")
        print("+", " ".join(command), file=sys.stderr)
        subprocess.run(command, check=True)
    if shutil.which("mod2imp") is None:
        sys.exit(f"mod2imp not found. Install the SWORD tools and modules first:\n    {SETUP_HINT}")


def export_module(module: str) -> str:
    """The ``mod2imp`` export of one SWORD module, as text."""
    result = subprocess.run(["mod2imp", module], capture_output=True, check=False)
    if result.returncode != 0 or not result.stdout.strip():
        detail = result.stderr.decode("utf-8", "replace").strip().splitlines()
        sys.exit(
            f"mod2imp {module} produced no text ({detail[-1] if detail else f'exit {result.returncode}'}). "
            f"Is the module installed?\n    {SETUP_HINT}"
        )
    return result.stdout.decode("utf-8")  # both modules declare Encoding=UTF-8


def verse_text(markup: str) -> str:
    """Plain text of one verse's OSIS markup."""
    end = BOOK_END.search(markup)
    if end:
        markup = markup[: end.start()]
    text = DROP_ELEMENTS.sub(" ", markup)
    text = TAG.sub("", text)
    return clean_text(html.unescape(text))


def parse_imp(export: str) -> dict[str, str]:
    """Verse id → cleaned text, in the module's canonical order (verse 0 intros and headings skipped)."""
    verses: dict[str, str] = {}
    key: str | None = None
    lines: list[str] = []

    def flush() -> None:
        if key is not None:
            match = VERSE_KEY.match(key)
            if match and int(match["verse"]) > 0:
                verses[key] = verse_text("\n".join(lines))

    for line in export.split("\n"):
        header = HEADER.match(line)
        if header:
            flush()
            key, lines = header[1].strip(), []
        else:
            lines.append(line)
    flush()
    return verses


def pair_verses(src: dict[str, str], tgt: dict[str, str]) -> pl.DataFrame:
    """Verses present and non-empty in both translations, in source order."""
    rows = [(key, text, tgt[key]) for key, text in src.items() if text and tgt.get(key)]
    return pl.DataFrame(rows, schema={"id": pl.String, "src": pl.String, "tgt": pl.String}, orient="row")


def split_of(verse_id: str) -> str:
    """The split a verse id belongs to (hash of the id: stable whatever other rows exist)."""
    bucket = int(hashlib.sha1(verse_id.encode("utf-8")).hexdigest(), 16) % 100
    return "test" if bucket < 3 else "dev" if bucket < 6 else "train"


def split_corpus(df: pl.DataFrame) -> dict[str, pl.DataFrame]:
    """train/dev/test by id hash, each keeping canonical verse order."""
    labels = df.select(pl.col("id").map_elements(split_of, return_dtype=pl.String).alias("split"))["split"]
    return {name: df.filter(labels == name) for name in SPLITS}


def check_against(parts: dict[str, pl.DataFrame], reference_dir: str) -> bool:
    """Print how the rebuilt splits compare with an existing corpus directory; True if identical."""
    identical = True
    print(f"comparison with {reference_dir}:")
    rebuilt_all = pl.concat([p.with_columns(pl.lit(n).alias("split")) for n, p in parts.items()])
    reference = {name: pl.read_parquet(join(reference_dir, f"{name}.parquet")) for name in SPLITS}
    reference_all = pl.concat([p.with_columns(pl.lit(n).alias("split")) for n, p in reference.items()])
    for name in SPLITS:
        ours, theirs = parts[name], reference[name]
        same_ids = len(set(ours["id"]) & set(theirs["id"]))
        exact = ours.join(theirs, on=["id", "src", "tgt"], how="inner").height
        same_order = ours.height == theirs.height and ours["id"].equals(theirs["id"])
        identical &= same_order and exact == theirs.height
        print(
            f"  {name:5s} rebuilt {ours.height:6d}  reference {theirs.height:6d}  "
            f"ids in both {same_ids:6d}  identical rows {exact:6d} "
            f"({100.0 * exact / max(theirs.height, 1):.2f}% of reference)  same order: {same_order}"
        )
    moved = rebuilt_all.join(reference_all, on="id", suffix="_ref").filter(
        pl.col("split") != pl.col("split_ref")
    )
    only_ours = rebuilt_all.join(reference_all, on="id", how="anti")
    only_ref = reference_all.join(rebuilt_all, on="id", how="anti")
    text_diff = rebuilt_all.join(reference_all, on="id", suffix="_ref").filter(
        (pl.col("src") != pl.col("src_ref")) | (pl.col("tgt") != pl.col("tgt_ref"))
    )
    print(
        f"  ids only rebuilt: {only_ours.height}, only reference: {only_ref.height}, "
        f"in another split: {moved.height}, text differs: {text_diff.height}"
    )
    for row in text_diff.head(5).iter_rows(named=True):
        side = "src" if row["src"] != row["src_ref"] else "tgt"
        print(f"    {row['id']} ({side}): {row[side][:80]!r} vs {row[side + '_ref'][:80]!r}")
    return identical and not (moved.height or only_ours.height or only_ref.height)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--out", default=str(DEFAULT_OUT), help="output directory or URL (default: %(default)s)"
    )
    parser.add_argument("--check", metavar="DIR", help="compare the result with an existing corpus directory")
    parser.add_argument("--no-write", action="store_true", help="build (and --check) without writing")
    parser.add_argument("--install", action="store_true", help=f"first run: {SETUP_HINT}")
    args = parser.parse_args(argv)

    ensure_tools(args.install)
    src, tgt = parse_imp(export_module(SRC_MODULE)), parse_imp(export_module(TGT_MODULE))
    corpus = pair_verses(src, tgt)
    print(f"{SRC_MODULE}: {len(src)} verses, {TGT_MODULE}: {len(tgt)} verses, paired: {corpus.height}")
    parts = split_corpus(corpus)
    print("  " + ", ".join(f"{name} {parts[name].height}" for name in SPLITS))

    if not args.no_write:
        for name in SPLITS:
            write_parquet(parts[name], join(args.out, f"{name}.parquet"))
        print(f"wrote {', '.join(f'{n}.parquet' for n in SPLITS)} to {args.out}")
    if args.check:
        return 0 if check_against(parts, args.check) else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
