"""Corpus preparation: readers, filter counts, errors on bad input, splits, local and S3 I/O."""

from __future__ import annotations

import gzip
import re
import uuid

import polars as pl
import pytest

from s2s_core.text.prepare import (
    PrepareConfig,
    clean_parallel,
    read_parallel,
    split_parallel,
    write_parquet,
)

# ------------------------------------------------------------------------------------- clean_parallel

FILTER_CONFIG = PrepareConfig(min_chars=2, max_chars=50, max_length_ratio=3.0, ratio_min_chars=10)


def crafted_corpus() -> tuple[pl.DataFrame, list[str]]:
    """Rows whose fate under FILTER_CONFIG is known exactly, and the ids expected to survive."""
    rows: list[tuple[str, str | None, str | None]] = [
        ("g0", "source sentence 0", "target sentence 0"),
        ("e1", None, "a target"),  # empty: null source
        ("g1", "source sentence 1", "target sentence 1"),
        ("e2", "   ", "a target"),  # empty: whitespace only
        ("g2", "source sentence 2", "target sentence 2"),
        ("e3", "\u200b\x07\u200e", "hello there"),  # empty: only format/control characters
        ("s1", "a", "ab"),  # too_short: 1 char source (min_chars=2)
        ("l1", "s" * 51, "t" * 51),  # too_long
        ("l2", "ok source", "t" * 60),  # too_long wins over the (also bad) ratio: rules are ordered
        ("r1", "short one", "t" * 40),  # length_ratio: 40 / max(9, 10) = 4 > 3
        ("d1", "source sentence 0", "target sentence 0"),  # duplicate of g0
        ("g3", "Sí.", "Yes, indeed."),  # short pair: 12 / max(3, 10) = 1.2, kept
        ("g4", "abcdefghij", "x" * 30),  # ratio exactly 3.0: kept (the rule is "> max")
        ("d2", "  source   sentence 0 ", "target sentence 0\n"),  # duplicate only after normalization
        ("d3", "source sentence 1", "target sentence 1"),  # duplicate of g1
        ("g5", "source sentence 1", "another target"),  # same source, other target: kept
        ("r2", "short one", "t" * 40),  # repeat of a row the ratio rule dropped: counted as length_ratio
        ("d4", "ｓｏｕｒｃｅ sentence 2", "target sentence 2"),  # fullwidth: NFKC makes it a duplicate of g2
    ]
    df = pl.DataFrame(rows, schema={"id": pl.String, "src": pl.String, "tgt": pl.String}, orient="row")
    return df, ["g0", "g1", "g2", "g3", "g4", "g5"]


def test_clean_parallel_counts_each_rule_exactly():
    df, kept_ids = crafted_corpus()
    out, report = clean_parallel(df, FILTER_CONFIG)
    assert report == {
        "input_rows": 18,
        "empty": 3,
        "too_short": 1,
        "too_long": 2,
        "length_ratio": 2,
        "duplicate": 4,
        "output_rows": 6,
    }
    assert out.columns == ["id", "src", "tgt"]
    assert out["id"].to_list() == kept_ids  # first occurrences kept, order preserved
    assert out.filter(pl.col("id") == "g3").row(0) == ("g3", "Sí.", "Yes, indeed.")


def test_clean_parallel_normalizes_like_clean_text():
    df = pl.DataFrame({"id": ["1"], "src": ["  ﬁne\u200b\tday\r\n"], "tgt": ["Ｈｅｌｌｏ  world"]})
    out, report = clean_parallel(df, PrepareConfig(max_length_ratio=None))
    assert out.row(0) == ("1", "fine day", "Hello world")
    assert report["output_rows"] == 1


def test_clean_parallel_can_keep_line_breaks_for_masking():
    df = pl.DataFrame({"id": ["1", "2"], "src": ["Uso:\r\n  %s  [opciones]\n", "a\tb"],
                       "tgt": ["Usage:\n  %s [options]\n", "a b"]})
    out, _ = clean_parallel(df, PrepareConfig(max_length_ratio=None, keep_line_breaks=True))
    # Runs of spaces collapse; line breaks, tabs and a final line break stay, so masking sees them.
    assert out.rows() == [("1", "Uso:\n %s [opciones]\n", "Usage:\n %s [options]\n"), ("2", "a\tb", "a b")]
    plain, _ = clean_parallel(df, PrepareConfig(max_length_ratio=None))
    assert plain["src"].to_list() == ["Uso: %s [opciones]", "a b"]


def test_clean_parallel_without_dedupe_keeps_repeats():
    df, _ = crafted_corpus()
    config = PrepareConfig(min_chars=2, max_chars=50, dedupe=False)
    out, report = clean_parallel(df, config)
    assert report["duplicate"] == 0
    assert report["output_rows"] == 10
    assert (
        report["input_rows"]
        == sum(v for k, v in report.items() if k not in ("input_rows", "output_rows")) + 10
    )


def test_clean_parallel_requires_standard_columns():
    with pytest.raises(ValueError, match=r"missing \['tgt'\]"):
        clean_parallel(pl.DataFrame({"id": ["1"], "src": ["a"]}))


# -------------------------------------------------------------------------------------------- readers


def test_read_tsv_with_header_and_id(tmp_path):
    path = tmp_path / "corpus.tsv"
    path.write_text('id\tsrc\ttgt\nx1\tHola "mundo\tHello "world\nx2\t\tvacío\n', encoding="utf-8")
    df = read_parallel(str(path))
    assert df.schema == pl.Schema({"id": pl.String, "src": pl.String, "tgt": pl.String})
    assert df["id"].to_list() == ["x1", "x2"]
    assert df.row(0) == ("x1", 'Hola "mundo', 'Hello "world')  # quotes are text, not CSV quoting
    assert df["src"][1] is None  # nulls survive reading; clean_parallel drops and counts them
    _, report = clean_parallel(df)
    assert report["empty"] == 1


def test_read_tsv_custom_columns_without_id_numbers_rows(tmp_path):
    path = tmp_path / "corpus.tsv"
    path.write_text("es\ten\tscore\nuno\tone\t0.9\ndos\ttwo\t0.8\n", encoding="utf-8")
    df = read_parallel(str(path), PrepareConfig(src_column="es", tgt_column="en"))
    assert df.rows() == [("1", "uno", "one"), ("2", "dos", "two")]


def test_read_tsv_headerless_two_and_three_columns(tmp_path):
    two = tmp_path / "two.tsv"
    two.write_bytes("\ufeffuno\tone\r\ndos\ttwo\r\n".encode())  # BOM and CRLF are accepted
    assert read_parallel(str(two)).rows() == [("1", "uno", "one"), ("2", "dos", "two")]
    three = tmp_path / "three.tsv"
    three.write_text("a\tuno\tone\nb\tdos\ttwo\n", encoding="utf-8")
    assert read_parallel(f"file://{three}").rows() == [("a", "uno", "one"), ("b", "dos", "two")]


def test_read_tsv_gz(tmp_path):
    path = tmp_path / "corpus.tsv.gz"
    path.write_bytes(gzip.compress("src\ttgt\nsí\tyes\n".encode()))
    assert read_parallel(str(path)).rows() == [("1", "sí", "yes")]


def test_read_parquet_casts_ids_to_strings(tmp_path):
    path = tmp_path / "corpus.parquet"
    pl.DataFrame({"key": [10, 11], "de": ["eins", None], "en": ["one", "two"]}).write_parquet(path)
    config = PrepareConfig(src_column="de", tgt_column="en", id_column="key")
    df = read_parallel(str(path), config)
    assert df.rows() == [("10", "eins", "one"), ("11", None, "two")]


def test_read_text_pair(tmp_path):
    src, tgt = tmp_path / "train.es", tmp_path / "train.en"
    # U+2028 inside a line must not split it (str.splitlines would, misaligning the sides).
    src.write_text("uno\r\ndos\u2028bis\n\ntres", encoding="utf-8")
    tgt.write_text("one\ntwo\nempty source\nthree\n", encoding="utf-8")
    df = read_parallel(str(src), tgt_url=str(tgt))
    assert df["id"].to_list() == ["1", "2", "3", "4"]
    assert df["src"].to_list() == ["uno", "dos\u2028bis", "", "tres"]
    assert df["tgt"].to_list() == ["one", "two", "empty source", "three"]


def test_write_parquet_roundtrip_is_atomic(tmp_path):
    df = pl.DataFrame({"id": ["1", "2"], "src": ["a", "b"], "tgt": ["x", "y"]})
    url = str(tmp_path / "out" / "train.parquet")
    write_parquet(df, url)
    assert read_parallel(url).equals(df)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["train.parquet"]  # no temp files left


# ------------------------------------------------------------------------------------ bad-input errors


def test_missing_file(tmp_path):
    url = str(tmp_path / "nope.parquet")
    with pytest.raises(FileNotFoundError, match=re.escape(f"input file not found: {url}")):
        read_parallel(url)
    src = tmp_path / "a.es"
    src.write_text("uno\n", encoding="utf-8")
    missing_tgt = str(tmp_path / "a.en")
    with pytest.raises(FileNotFoundError, match=re.escape(missing_tgt)):
        read_parallel(str(src), tgt_url=missing_tgt)


def test_missing_column_lists_available(tmp_path):
    parquet = tmp_path / "c.parquet"
    pl.DataFrame({"id": ["1"], "source": ["a"], "tgt": ["b"]}).write_parquet(parquet)
    with pytest.raises(ValueError, match=r"c\.parquet: missing column 'src' \(available: id, source, tgt\)"):
        read_parallel(str(parquet))
    tsv = tmp_path / "c.tsv"
    tsv.write_text("id\tsrc\ttarget\n1\t2\t3\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"c\.tsv: missing column 'tgt' \(available: id, src, target\)"):
        read_parallel(str(tsv))
    wide = tmp_path / "w.tsv"
    wide.write_text("a\tb\tc\td\n1\t2\t3\t4\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"w\.tsv: first line has 4 tab-separated fields and names none"):
        read_parallel(str(wide))


def test_empty_inputs(tmp_path):
    empty_parquet = tmp_path / "e.parquet"
    pl.DataFrame(schema={"src": pl.String, "tgt": pl.String}).write_parquet(empty_parquet)
    with pytest.raises(ValueError, match=r"e\.parquet: no rows"):
        read_parallel(str(empty_parquet))
    empty_tsv = tmp_path / "e.tsv"
    empty_tsv.write_text("\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"e\.tsv: empty file \(no rows\)"):
        read_parallel(str(empty_tsv))
    header_only = tmp_path / "h.tsv"
    header_only.write_text("src\ttgt\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"h\.tsv: no rows \(only a header\)"):
        read_parallel(str(header_only))
    src, tgt = tmp_path / "e.es", tmp_path / "e.en"
    src.write_text("", encoding="utf-8")
    tgt.write_text("one\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"e\.es: empty file \(no rows\)"):
        read_parallel(str(src), tgt_url=str(tgt))


def test_non_utf8_names_file_offset_and_line(tmp_path):
    tsv = tmp_path / "latin1.tsv"
    tsv.write_bytes(b"src\ttgt\nbien\tgood\n" + "canción\tsong\n".encode("latin-1"))
    # "src\ttgt\n" (8) + "bien\tgood\n" (10) + "canci" (5) → the 0xF3 byte of "ó" is at offset 23.
    with pytest.raises(
        ValueError, match=r"latin1\.tsv: not valid UTF-8 at byte offset 23 \(line 3, bytes 0xf3\)"
    ):
        read_parallel(str(tsv))
    src, tgt = tmp_path / "t.es", tmp_path / "t.en"
    src.write_text("uno\n", encoding="utf-8")
    tgt.write_bytes(b"\xffone\n")
    with pytest.raises(ValueError, match=r"t\.en: not valid UTF-8 at byte offset 0 \(line 1"):
        read_parallel(str(src), tgt_url=str(tgt))
    gz = tmp_path / "bad.tsv.gz"
    gz.write_bytes(gzip.compress(b"a\tb\n\xc3(\tc\n"))
    with pytest.raises(
        ValueError, match=r"bad\.tsv\.gz: not valid UTF-8 at decompressed byte offset 4 \(line 2"
    ):
        read_parallel(str(gz))


def test_text_pair_line_count_mismatch(tmp_path):
    src, tgt = tmp_path / "m.es", tmp_path / "m.en"
    src.write_text("uno\ndos\ntres\n", encoding="utf-8")
    tgt.write_text("one\ntwo\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"line counts differ: .*m\.es has 3 lines, .*m\.en has 2 lines"):
        read_parallel(str(src), tgt_url=str(tgt))


def test_ragged_tsv_and_unknown_format(tmp_path):
    tsv = tmp_path / "r.tsv"
    tsv.write_text("src\ttgt\na\tb\nc\td\te\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"r\.tsv: line 3 has 3 tab-separated fields, expected 2"):
        read_parallel(str(tsv))
    with pytest.raises(ValueError, match=r"x\.csv: unknown corpus format"):
        read_parallel(str(tmp_path / "x.csv"))


def test_config_validation():
    with pytest.raises(ValueError, match="dev_size as a fraction"):
        PrepareConfig(dev_size=1.5)
    with pytest.raises(ValueError, match="test_size as a row count"):
        PrepareConfig(test_size=-1)
    with pytest.raises(ValueError, match="max_length_ratio"):
        PrepareConfig(max_length_ratio=0.5)


# ---------------------------------------------------------------------------------------------- split


def numbered(n: int) -> pl.DataFrame:
    return pl.DataFrame({"id": [f"r{i}" for i in range(n)], "src": ["s"] * n, "tgt": ["t"] * n})


def test_split_is_deterministic_disjoint_and_complete():
    df = numbered(1000)
    config = PrepareConfig(dev_size=0.05, test_size=30, seed=7)
    first, again = split_parallel(df, config), split_parallel(df, config)
    assert {name: part.height for name, part in first.items()} == {"train": 920, "dev": 50, "test": 30}
    for name in ("train", "dev", "test"):
        assert first[name].equals(again[name])
        positions = [int(i[1:]) for i in first[name]["id"]]
        assert positions == sorted(positions)  # corpus order kept within each split
    ids = {name: set(part["id"]) for name, part in first.items()}
    assert not (ids["train"] & ids["dev"] or ids["train"] & ids["test"] or ids["dev"] & ids["test"])
    assert ids["train"] | ids["dev"] | ids["test"] == set(df["id"])
    other = split_parallel(df, PrepareConfig(dev_size=0.05, test_size=30, seed=8))
    assert set(other["test"]["id"]) != ids["test"]


def test_split_sizes_small_and_too_large():
    parts = split_parallel(numbered(10), PrepareConfig(dev_size=0.01, test_size=0.0))
    assert {name: part.height for name, part in parts.items()} == {"train": 9, "dev": 1, "test": 0}
    with pytest.raises(ValueError, match=r"dev \(5\) \+ test \(5\) rows leave no training rows out of 10"):
        split_parallel(numbered(10), PrepareConfig(dev_size=5, test_size=5))


# ------------------------------------------------------------------------------------------------- S3


def test_s3_roundtrip(s3_server):
    import s3fs

    from s2s_core.storage import write_bytes

    options = s3_server["storage_options"]
    bucket = f"prep-{uuid.uuid4().hex[:12]}"
    s3fs.S3FileSystem(endpoint_url=s3_server["endpoint_url"]).mkdir(bucket)
    write_bytes(
        f"s3://{bucket}/raw/corpus.tsv",
        b"src\ttgt\nuno\tone\ndos\ttwo\nuno\tone\ntres\tthree\n",
        **options,
    )

    df = read_parallel(f"s3://{bucket}/raw/corpus.tsv", storage_options=options)
    clean, report = clean_parallel(df)
    assert report["duplicate"] == 1 and report["output_rows"] == 3
    parts = split_parallel(clean, PrepareConfig(dev_size=1, test_size=1))
    for name, part in parts.items():
        write_parquet(part, f"s3://{bucket}/prepared/{name}.parquet", storage_options=options)
    back = {
        name: read_parallel(f"s3://{bucket}/prepared/{name}.parquet", storage_options=options)
        for name in parts
    }
    assert all(back[name].equals(parts[name]) for name in parts)
    assert sorted(pl.concat(back.values())["src"]) == ["dos", "tres", "uno"]

    missing = f"s3://{bucket}/raw/missing.tsv"
    with pytest.raises(FileNotFoundError, match=re.escape(missing)):
        read_parallel(missing, storage_options=options)
