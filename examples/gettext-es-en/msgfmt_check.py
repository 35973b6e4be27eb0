#!/usr/bin/env python
"""Write translated messages as a PO catalog and let ``msgfmt -c`` judge it, as a localization engineer would.

Each distinct source message becomes an entry (``msgid`` = the source, ``msgstr`` = its translation);
entries whose source holds printf or python-format specifiers get the ``#, c-format`` /
``#, python-format`` flag (python wins where a message has both), brace formats
``#, python-brace-format``, as xgettext marks them. ``msgfmt -c`` then checks the format directives
and the leading and trailing line breaks of every entry. Prints a JSON line: entries, fatal errors, and
the first few error lines; the catalog is kept at ``--po``.

Usage::

    python examples/gettext-es-en/msgfmt_check.py <store>/runs/<run>/reports/test.translations.parquet
    python examples/gettext-es-en/msgfmt_check.py out/part-*.parquet --source src --translation translation
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from s2s_core.text.spans import find_spans  # noqa: E402

FORMAT_FLAGS = {"python": "python-format", "printf": "c-format", "brace": "python-brace-format"}


def po_string(text: str) -> str:
    escaped = (text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\t", "\\t")
               .replace("\r", "\\r"))
    return f'"{escaped}"'


def format_flags(source: str) -> list[str]:
    kinds = {span.kind for span in find_spans(source)}
    flags = [FORMAT_FLAGS["python"] if "python" in kinds else FORMAT_FLAGS["printf"]] \
        if kinds & {"python", "printf"} else []
    return flags + ([FORMAT_FLAGS["brace"]] if "brace" in kinds else [])


def write_po(pairs: list[tuple[str, str]], path: Path) -> int:
    seen: set[str] = set()
    with path.open("w", encoding="utf-8") as po:
        po.write('msgid ""\nmsgstr ""\n"Content-Type: text/plain; charset=UTF-8\\n"\n\n')
        for source, translation in pairs:
            if not source or source in seen:
                continue
            seen.add(source)
            if flags := format_flags(source):
                po.write(f"#, {', '.join(flags)}\n")
            po.write(f"msgid {po_string(source)}\nmsgstr {po_string(translation or '')}\n\n")
    return len(seen)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("parquet", nargs="+",
                        help="translations: Parquet file(s) with a source and a translation column")
    parser.add_argument("--source", default="src", help="source column (default: src)")
    parser.add_argument("--translation", default="hyp",
                        help="translation column (default: hyp, as in reports)")
    parser.add_argument("--po", type=Path, default=Path("translations.po"),
                        help="where the catalog is written")
    args = parser.parse_args()
    if shutil.which("msgfmt") is None:
        parser.error("msgfmt not found: install GNU gettext (apt-get install gettext)")
    frame = pl.concat([pl.read_parquet(p, columns=[args.source, args.translation]) for p in args.parquet])
    entries = write_po(list(zip(frame[args.source], frame[args.translation], strict=True)), args.po)
    result = subprocess.run(["msgfmt", "-c", "-o", "/dev/null", str(args.po)], capture_output=True, text=True)
    errors = [line for line in result.stderr.splitlines()
              if re.match(rf"{re.escape(str(args.po))}:\d+: (?!warning)", line)]
    print(json.dumps({"po": str(args.po), "entries": entries, "fatal_errors": len(errors),
                      "msgfmt_exit": result.returncode, "first_errors": errors[:5]}, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
