"""Corpora as data tools write them: evolving schemas, every string encoding, CSV/TSV/JSON Lines."""

from __future__ import annotations

import gzip
import json

import pandas as pd
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from s2s_core.corpus import commit
from s2s_core.corpus.chunk import Translate, translate_chunk
from s2s_core.corpus.files import open_corpus
from s2s_core.corpus.formats import STAGED_ROW_GROUP_ROWS, format_of
from s2s_core.corpus.plan import JobSpec, PlanMismatchError, plan_job, previous_run
from s2s_core.corpus.verify import DamagedChunksError, output_parts, remove_staging, verify_output
from s2s_core.errors import InputDataError
from s2s_core.inference.translator import DecodeConfig, Translation
from s2s_core.storage import Store
from tests.s2s_core.corpus.helpers import DECODE, MODEL, NUMERICS, job, loader, run_job
from tests.s2s_core.synthetic import reverse_pairs

SRC, _ = reverse_pairs(60, seed=5)


def parts(output) -> list[pa.Table]:
    """A verified output's parts in corpus order, each with its own columns."""
    return [pq.read_table(p) for p in output_parts(Store(str(output)))]


def translations(output) -> list[str]:
    return [t for part in parts(output) for t in part.column("translation").to_pylist()]


def test_files_may_add_drop_and_reorder_other_columns_across_files_and_runs(tmp_path, translator):
    root = tmp_path / "in"
    root.mkdir()
    pq.write_table(pa.table({"id": [f"r{i}" for i in range(10)], "src": SRC[:10], "n": list(range(10))}),
                   root / "0.parquet")
    pl.DataFrame({"src": SRC[10:20], "id": [f"r{i}" for i in range(10, 20)],
                  "lang": ["es"] * 10}).write_parquet(root / "1.parquet")  # reordered, n dropped, lang added
    pd.DataFrame({"id": [f"r{i}" for i in range(20, 25)], "src": SRC[20:25]}).to_parquet(root / "2.parquet")
    spec = job(root, tmp_path / "out", chunk_rows=4)
    plan, _ = run_job(translator, spec)
    manifest = verify_output(spec, plan)
    assert manifest["rows_in"] == manifest["rows_out"] == 25 and manifest["ids"]["aligned_with_input"]
    # Each part keeps its own file's columns, in its order, plus the translation's.
    added = ["translation", "score", "status", "segments", "flags"]
    assert [p.column_names for p in parts(tmp_path / "out")] == (
        [["id", "src", "n", *added]] * 3 + [["src", "id", "lang", *added]] * 3 + [["id", "src", *added]] * 2)
    # The manifest records each file's schema (three distinct ones) for the next run.
    assert len(manifest["schemas"]) == 3 and [f["schema"] for f in manifest["inputs"]] == [0, 1, 2]
    # The next night an upstream adds a column in a new file: the old files' chunks are reused.
    pq.write_table(pa.table({"id": ["r25", "r26"], "src": SRC[25:27], "source": ["web", "web"],
                             "n": [1, 2]}), root / "3.parquet")
    plan, records = run_job(translator, spec)
    assert [r["skipped"] for r in records] == [True] * 8 + [False]
    manifest = verify_output(spec, plan)
    assert manifest["changes"]["files"]["reused"] == 3 and manifest["changes"]["rows"]["added"] == 2
    assert parts(tmp_path / "out")[-1].column_names == ["id", "src", "source", "n", *added]
    assert [s.names[:2] for s in previous_run(spec.output).schemas] == [["id", "src"], ["src", "id"],
                                                                        ["id", "src"], ["id", "src"]]


def test_a_type_change_of_the_id_or_text_column_is_refused_naming_the_file(tmp_path):
    root = tmp_path / "in"
    root.mkdir()
    pq.write_table(pa.table({"id": ["a", "b"], "src": SRC[:2]}), root / "0.parquet")
    pq.write_table(pa.table({"id": [3, 4], "src": SRC[2:4]}), root / "1.parquet")
    with pytest.raises(InputDataError, match=r"id column 'id' of input file 1.parquet holds integers, "
                                             r"input file 0.parquet strings: a type change"):
        plan_job(job(root, tmp_path / "out"), MODEL, DECODE, NUMERICS)
    pq.write_table(pa.table({"id": ["c", "d"], "src": [1.5, 2.5]}), root / "1.parquet")
    with pytest.raises(InputDataError, match="text column 'src' of input file 1.parquet holds double"):
        plan_job(job(root, tmp_path / "out"), MODEL, DECODE, NUMERICS)
    pq.write_table(pa.table({"id": ["c", "d"], "text": SRC[2:4]}), root / "1.parquet")
    with pytest.raises(InputDataError, match=r"1.parquet has no text column 'src' \(columns: id, text\)"):
        plan_job(job(root, tmp_path / "out"), MODEL, DECODE, NUMERICS)


def test_every_string_encoding_of_ids_and_text_reads_as_strings(tmp_path, translator):
    ids = [f"r{i}" for i in range(24)]
    plain = tmp_path / "plain"
    plain.mkdir()
    pq.write_table(pa.table({"id": ids, "src": SRC[:24]}), plain / "0.parquet")
    root = tmp_path / "in"
    root.mkdir()
    # pandas category → dictionary<string>; polars → large_string; pyarrow → string_view.
    categories = pd.DataFrame({"id": pd.Categorical(ids[:8]), "src": pd.Categorical(SRC[:8])})
    categories.to_parquet(root / "0.parquet")
    pl.DataFrame({"id": ids[8:16], "src": SRC[8:16]}).write_parquet(root / "1.parquet")
    pq.write_table(pa.table({"id": pa.array(ids[16:], pa.string_view()),
                             "src": pa.array(SRC[16:24], pa.string_view())}), root / "2.parquet")
    types = [pq.read_schema(root / f"{i}.parquet").field("src").type for i in range(3)]
    assert pa.types.is_dictionary(types[0]) and pa.types.is_large_string(types[1])
    assert pa.types.is_string_view(types[2])
    expected_spec = job(plain, tmp_path / "expected", chunk_rows=8)
    verify_output(expected_spec, run_job(translator, expected_spec)[0])
    spec = job(root, tmp_path / "out", chunk_rows=8)
    manifest = verify_output(spec, run_job(translator, spec)[0])
    assert manifest["ids"]["unique"] and manifest["ids"]["aligned_with_input"]
    assert translations(tmp_path / "out") == translations(tmp_path / "expected")
    assert parts(tmp_path / "out")[0].schema.field("src").type == types[0]  # parts keep the file's types
    # Ids are compared and hashed by value, not encoding: a repeat across encodings is found.
    pl.DataFrame({"id": ["r3"], "src": ["x y"]}).write_parquet(root / "3.parquet")
    with pytest.raises(ValueError, match=r"ids are not unique \('r3' ×2\)"):
        plan_job(job(root, tmp_path / "out2", chunk_rows=8), MODEL, DECODE, NUMERICS)


def test_binary_text_needs_an_encoding_and_bad_bytes_are_named_by_row(tmp_path, translator):
    root = tmp_path / "in"
    root.mkdir()
    texts = [s.encode("latin-1") for s in SRC[:5]]
    pq.write_table(pa.table({"id": [f"r{i}" for i in range(5)], "src": pa.array(texts, pa.binary())}),
                   root / "0.parquet")
    with pytest.raises(InputDataError, match="holds bytes .*give --text-encoding utf-8"):
        plan_job(job(root, tmp_path / "out"), MODEL, DECODE, NUMERICS)
    spec = job(root, tmp_path / "out", text_encoding="utf-8", chunk_rows=5)
    verify_output(spec, run_job(translator, spec)[0])
    assert parts(tmp_path / "out")[0].column("status").to_pylist() == ["ok"] * 5
    texts[3] = b"caf\xe9 " + texts[3]
    pq.write_table(pa.table({"id": [f"r{i}" for i in range(5)], "src": pa.array(texts, pa.binary())}),
                   root / "0.parquet")
    spec = job(root, tmp_path / "out-bad", text_encoding="utf-8", chunk_rows=5)
    plan = plan_job(spec, MODEL, DECODE, NUMERICS)
    with pytest.raises(InputDataError, match=r"0.parquet row 3: text is not valid utf-8 at byte offset 3 "
                                             r"\(0xe9\)"):
        translate_chunk(spec, plan.fingerprint, plan.chunks[0], loader(translator))
    assert not commit.committed_ids(spec.output)  # nothing committed, nothing lost: fix and re-run
    spec = job(root, tmp_path / "out-latin", text_encoding="latin-1", chunk_rows=5)
    verify_output(spec, run_job(translator, spec)[0])


def _rows(n: int) -> tuple[list[str], list[str]]:
    """Ids with leading zeros and texts with the characters CSV must quote."""
    ids = [f"{i:03d}" for i in range(n)]
    texts = list(SRC[:n])
    texts[1] = 'dijo: "sea la luz", y fue'
    texts[2] = "primera línea\nsegunda línea"
    texts[3] = ""
    texts[4] = "\ttab\tseparado"
    return ids, texts


@pytest.mark.parametrize("writer", ["pandas-csv", "polars-csv", "pyarrow-csv", "pandas-tsv-gz",
                                    "polars-tsv", "pandas-jsonl-gz", "polars-ndjson"])
def test_csv_tsv_and_json_lines_corpora_are_translated_row_exact(tmp_path, translator, writer):
    ids, texts = _rows(40)
    root = tmp_path / "in"
    root.mkdir()
    frame = pd.DataFrame({"id": ids, "src": texts, "n": range(40)})
    name = {"pandas-csv": "c.csv", "polars-csv": "c.csv", "pyarrow-csv": "c.csv", "pandas-tsv-gz": "c.tsv.gz",
            "polars-tsv": "c.tsv", "pandas-jsonl-gz": "c.jsonl.gz", "polars-ndjson": "c.ndjson"}[writer]
    path = root / name
    if writer == "pandas-csv":
        frame.to_csv(path, index=False)
    elif writer == "polars-csv":
        pl.from_pandas(frame).write_csv(path)
    elif writer == "pyarrow-csv":
        import pyarrow.csv as pacsv

        pacsv.write_csv(pa.Table.from_pandas(frame, preserve_index=False), path)
    elif writer == "pandas-tsv-gz":
        frame.to_csv(path, sep="\t", index=False, compression="gzip")
    elif writer == "polars-tsv":
        pl.from_pandas(frame).write_csv(path, separator="\t")
    elif writer == "pandas-jsonl-gz":
        frame.to_json(path, orient="records", lines=True, compression="gzip", force_ascii=False)
    else:
        pl.from_pandas(frame).write_ndjson(path)
    spec = job(root, tmp_path / "out", chunk_rows=16)
    plan, records = run_job(translator, spec)
    assert [c.rows for c in plan.chunks] == [13, 13, 14]  # cut like a Parquet file of one row group
    manifest = verify_output(spec, plan)
    assert manifest["rows_in"] == manifest["rows_out"] == 40
    assert manifest["inputs"][0]["format"] == format_of(name)[0]
    out = pa.concat_tables(parts(tmp_path / "out"))
    # Exactly the rows written: ids keep their leading zeros (text formats are read as strings),
    # quoted commas, quotes, tabs and line breaks survive, the empty field is the empty string.
    assert out.column("id").to_pylist() == ids
    assert out.column("src").to_pylist() == texts
    assert out.column("status").to_pylist()[3] == "empty"
    n = out.column("n").to_pylist()
    assert n == (list(range(40)) if writer.endswith(("jsonl-gz", "ndjson")) else [str(i) for i in range(40)])
    # The same rows from Parquet get the same translations.
    pq.write_table(pa.table({"id": ids, "src": texts}), tmp_path / "same.parquet")
    same = job(tmp_path / "same.parquet", tmp_path / "same-out", chunk_rows=16)
    verify_output(same, run_job(translator, same)[0])
    assert translations(tmp_path / "out") == translations(tmp_path / "same-out")


def test_staged_copies_go_after_the_run_and_come_back_for_a_damaged_part(tmp_path, translator):
    ids, texts = _rows(STAGED_ROW_GROUP_ROWS // 100)
    root = tmp_path / "in"
    root.mkdir()
    pd.DataFrame({"id": ids, "src": texts}).to_csv(root / "a.csv", index=False)
    spec = job(root, tmp_path / "out", chunk_rows=10)
    plan = plan_job(spec, MODEL, DECODE, NUMERICS)
    staged = [n for n in spec.staging.list_names() if n.endswith(".parquet")]
    assert len(staged) == 1 and staged[0].startswith(plan.corpus.files[0].key)
    for chunk in plan.chunks:
        translate_chunk(spec, plan.fingerprint, chunk, loader(translator))
    verify_output(spec, plan)
    assert remove_staging(spec) == 1 and not spec.staging.list_names()
    before = translations(tmp_path / "out")
    # A nightly re-run of an unchanged CSV does not stage it again (its rows are on record) ...
    plan = plan_job(spec, MODEL, DECODE, NUMERICS)
    assert not spec.staging.list_names()
    # ... but a damaged part must be translated again from the input: the file is staged again.
    spec.output.remove(commit.part_name(plan.chunks[1].id))
    with pytest.raises(DamagedChunksError):
        verify_output(spec, plan)
    translate_chunk(spec, plan.fingerprint, plan.chunks[1], loader(translator))
    verify_output(spec, plan)
    assert translations(tmp_path / "out") == before


def test_unreadable_text_corpora_are_refused_with_the_line(tmp_path):
    root = tmp_path / "in"
    root.mkdir()
    (root / "a.csv").write_text("id,src\n1,hola\n2,uno,dos\n", encoding="utf-8")
    with pytest.raises(InputDataError, match=r"a.csv is not a readable CSV file: CSV parse error: "
                                             r"Row #3: Expected 2 columns, got 3"):
        plan_job(job(root, tmp_path / "out"), MODEL, DECODE, NUMERICS)
    (root / "a.csv").write_bytes(b"id,src\n1,hola\n2,caf\xe9\n")
    with pytest.raises(InputDataError, match=r"a.csv: row 1 \(column 'src'\) is not valid UTF-8 at byte "
                                             r"offset 3 \(0xe9\); give --text-encoding"):
        plan_job(job(root, tmp_path / "out"), MODEL, DECODE, NUMERICS)
    spec = job(root, tmp_path / "out-latin", text_encoding="latin-1")
    plan = plan_job(spec, MODEL, DECODE, NUMERICS)
    assert plan.corpus.rows == 2
    (root / "a.csv").unlink()
    with gzip.open(root / "b.jsonl.gz", "wt") as f:
        f.write(json.dumps({"id": "1", "src": "hola"}) + "\n{not json\n")
    with pytest.raises(InputDataError, match="b.jsonl.gz is not a readable JSON Lines file"):
        plan_job(job(root, tmp_path / "out2"), MODEL, DECODE, NUMERICS)


def test_a_file_whose_name_does_not_say_its_format_is_refused_with_how_to_choose(tmp_path):
    root = tmp_path / "in"
    root.mkdir()
    (root / "data.json").write_text('{"id": "1", "src": "hola"}\n')
    with pytest.raises(InputDataError, match="whose names do not say their format.*choose --format jsonl"):
        open_corpus(Store(str(root)))
    corpus = open_corpus(Store(str(root)), chosen_format="jsonl")
    assert [f.format for f in corpus.files] == ["jsonl"]
    (root / "corpus.dat").write_text("x")
    with pytest.raises(InputDataError, match="cannot tell the format of .*corpus.dat from its name"):
        open_corpus(Store(str(root / "*")))


def _read_part(path, fmt: str) -> pl.DataFrame:
    """A part as its format's usual reader gives it (text formats: every column as strings)."""
    if fmt == "jsonl":
        return pl.read_ndjson(path)
    return pl.read_csv(path, separator="\t" if fmt == "tsv" else ",", infer_schema=False)


@pytest.mark.parametrize("fmt", ["csv", "tsv", "jsonl"])
def test_parts_in_the_output_format_are_verified_retried_and_readable_by_data_tools(tmp_path, translator,
                                                                                     fmt):
    ids, texts = _rows(30)
    root = tmp_path / "in"
    root.mkdir()
    pq.write_table(pa.table({"id": list(range(30)), "src": texts, "tags": [["a", "b"]] * 30}),
                   root / "0.parquet")
    spec = job(root, tmp_path / "out", chunk_rows=10, output_format=fmt)
    plan = plan_job(spec, MODEL, DECODE, NUMERICS)
    assert plan.record["output_format"] == fmt

    def out_of_memory_on_row_5() -> Translate:
        def translate(batch):
            return [Translation("", 0.0, "failed", [], [], error="OutOfMemoryError") if t == texts[5] else o
                    for t, o in zip(batch, translator.translate(batch, DECODE), strict=True)]
        return translate

    for chunk in plan.chunks:
        translate_chunk(spec, plan.fingerprint, chunk, out_of_memory_on_row_5)
    manifest = verify_output(spec, plan)
    assert manifest["statuses"] == {"empty": 1, "failed": 1, "ok": 28}
    names = [u.rsplit("/", 1)[-1] for u in output_parts(spec.output)]
    assert all(n.startswith("part-") and n.endswith(f".{fmt}") for n in names)
    frame = pl.concat([_read_part(u, fmt) for u in output_parts(spec.output)])
    assert frame["src"].to_list() == texts and frame["status"].to_list()[5] == "failed"
    assert [str(i) for i in frame["id"].to_list()] == [str(i) for i in range(30)]
    flags = [json.loads(f) if fmt != "jsonl" else f for f in frame["flags"].to_list()]  # CSV: JSON text
    assert all(isinstance(f, list) and all(isinstance(x, str) for x in f) for f in flags) and any(flags)
    # --retry-failed rewrites the part with the row translated; every other row is unchanged.
    before = frame
    translate_chunk(spec, plan.fingerprint, plan.chunks[0], loader(translator), retry_failed=True)
    manifest = verify_output(spec, plan)
    assert manifest["statuses"] == {"empty": 1, "ok": 29}
    after = pl.concat([_read_part(u, fmt) for u in output_parts(spec.output)])
    unchanged = [i for i in range(30) if i != 5]
    assert after[unchanged].equals(before[unchanged]) and after["status"][5] == "ok"
    # A part cut short after the job is damage, found and un-committed by verification.
    part = tmp_path / "out" / names[1]
    part.write_bytes(part.read_bytes()[: len(part.read_bytes()) // 2])
    with pytest.raises(DamagedChunksError, match=plan.chunks[1].id):
        verify_output(spec, plan)
    translate_chunk(spec, plan.fingerprint, plan.chunks[1], loader(translator))
    assert verify_output(spec, plan)["rows_out"] == 30
    # Another output format is another output: refused like any other changed setting.
    with pytest.raises(PlanMismatchError, match="different output_format"):
        plan_job(job(root, tmp_path / "out", chunk_rows=10), MODEL, DECODE, NUMERICS)


def test_hive_and_spark_layouts_big_row_groups_and_empty_files_are_read_row_exact(tmp_path, translator):
    root = tmp_path / "in"
    for part, year in ((0, 2023), (1, 2024)):
        folder = root / f"year={year}"
        folder.mkdir(parents=True)
        n = 20_000 if part else 30
        # One 20,000-row row group (Spark's default is far larger than a chunk), int64 ids, and
        # polars' large_string text; a 0-row file beside it.
        table = pl.DataFrame({"id": range(part * 100_000, part * 100_000 + n),
                              "src": [SRC[i % len(SRC)][:12] for i in range(n)]}).to_arrow()
        assert pa.types.is_large_string(table.schema.field("src").type)
        pq.write_table(table, folder / f"part-0000{part}-c000.snappy.parquet", row_group_size=n)
        pq.write_table(table.slice(0, 0), folder / "part-00009-c000.snappy.parquet")
        sides = ("_SUCCESS", f"_committed_{part}", f"_started_{part}",
                 f".part-0000{part}-c000.snappy.parquet.crc")
        for side in sides:
            (folder / side).write_text("")
    spec = job(root, tmp_path / "out", chunk_rows=2000)
    plan = plan_job(spec, MODEL, DECODE, NUMERICS)
    assert [f.name for f in plan.corpus.files] == [
        "year=2023/part-00000-c000.snappy.parquet", "year=2023/part-00009-c000.snappy.parquet",
        "year=2024/part-00001-c000.snappy.parquet", "year=2024/part-00009-c000.snappy.parquet"]
    assert [c.rows for c in plan.chunks] == [30] + [2000] * 10
    fast = DecodeConfig(beam_size=1, max_len_extra=1)
    for chunk in plan.chunks:
        translate_chunk(spec, plan.fingerprint, chunk, loader(translator, fast))
    manifest = verify_output(spec, plan)
    assert manifest["rows_in"] == manifest["rows_out"] == 20_030 and manifest["ids"]["unique"]
    ids = [i for p in parts(tmp_path / "out") for i in p.column("id").to_pylist()]
    assert ids == list(range(30)) + list(range(100_000, 120_000))


def test_compressed_csv_and_json_lines_on_s3_are_staged_translated_and_cleaned_up(tmp_path, translator,
                                                                                  s3_server):
    import s3fs

    opts = s3_server["storage_options"]
    fs = s3fs.S3FileSystem(**opts)
    fs.mkdir("s2s-formats")
    ids, texts = _rows(25)
    local = tmp_path / "in"
    local.mkdir()
    pd.DataFrame({"id": ids[:12], "src": texts[:12]}).to_csv(local / "a.csv.gz", index=False,
                                                             compression="gzip")
    nested = pl.DataFrame({"id": ids[12:], "src": texts[12:], "meta": [{"k": 1}] * 13})
    nested.write_ndjson(local / "b.ndjson")
    fs.put(str(local) + "/", "s2s-formats/in/", recursive=True)
    spec = JobSpec(Store("s3://s2s-formats/in", opts), Store("s3://s2s-formats/out", opts), chunk_rows=5,
                   output_format="jsonl")
    plan, _ = run_job(translator, spec)
    assert [f.format for f in plan.corpus.files] == ["csv", "jsonl"]
    assert len(fs.ls("s2s-formats/out/_staged")) == 2
    manifest = verify_output(spec, plan)
    assert manifest["rows_out"] == 25 and manifest["ids"]["aligned_with_input"]
    assert remove_staging(spec) == 2 and not spec.staging.list_names()
    rows = [json.loads(line) for url in output_parts(spec.output)
            for line in Store(url, opts).read_text().splitlines()]
    assert [r["id"] for r in rows] == ids and [r["src"] for r in rows] == texts
    assert rows[-1]["meta"] == {"k": 1} and "meta" not in rows[0]  # each part its own file's columns


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_a_file_of_many_blocks_is_staged_in_row_groups_row_exact(tmp_path, monkeypatch, fmt):
    from s2s_core.corpus import formats

    monkeypatch.setattr(formats, "BLOCK_BYTES", 1 << 16)  # many blocks from a small file
    n = 2 * STAGED_ROW_GROUP_ROWS + 1000
    ids = [f"{i:06d}" for i in range(n)]
    texts = [f'{SRC[i % len(SRC)]}, "{i}"\n{i}' for i in range(n)]
    root = tmp_path / "in"
    root.mkdir()
    frame = pl.DataFrame({"id": ids, "src": texts})
    frame.write_csv(root / "a.csv") if fmt == "csv" else frame.write_ndjson(root / "a.jsonl")
    assert (root / f"a.{fmt}").stat().st_size > 4 * formats.BLOCK_BYTES
    plan = plan_job(job(root, tmp_path / "out", chunk_rows=3000), MODEL, DECODE, NUMERICS)
    assert plan.corpus.files[0].row_groups == (STAGED_ROW_GROUP_ROWS, STAGED_ROW_GROUP_ROWS, 1000)
    staged = pq.read_table(Store(plan.corpus.files[0].staged.data).path())
    assert staged.column("id").to_pylist() == ids and staged.column("src").to_pylist() == texts
