"""Corpus chunking, the chunk commit protocol, id checks and verification (no Prefect)."""

from __future__ import annotations

import os

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from s2s_core.corpus import commit as parts
from s2s_core.corpus.files import input_filesystem, open_corpus, plan_chunks, read_chunk
from s2s_core.corpus.idcheck import find_duplicate_ids
from s2s_core.corpus.plan import JobSpec, PlanMismatchError, decode_settings, plan_job, translate_chunk
from s2s_core.corpus.verify import VerificationError, finalize_job, first_difference
from s2s_core.inference.translator import DecodeConfig, Translator
from s2s_core.model.seq2seq import build_model
from tests.s2s_core.conftest import reverse_model_config
from tests.s2s_core.synthetic import reverse_pairs, reverse_tokenizers

MODEL = {"url": "memory://reverse", "name": "reverse", "version": "0", "weights_sha256": "abc"}
DECODE = DecodeConfig(beam_size=1, max_len_extra=2)


@pytest.fixture(scope="module")
def translator() -> Translator:
    """An untrained reverse-task model: the plumbing, not the translations, is under test."""
    torch.manual_seed(0)
    tokenizers = reverse_tokenizers()
    return Translator(build_model(reverse_model_config(tokenizers)), tokenizers, torch.device("cpu"))


def write_corpus(path, ids: list[str], texts: list[str | None], row_group_size: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    table = pa.table({"id": pa.array(ids), "src": pa.array(texts, pa.string()),
                      "n": pa.array(range(len(ids)), pa.int64())})
    pq.write_table(table, path, row_group_size=row_group_size)


def reverse_corpus(tmp_path, sizes=(50, 37), row_group_size=10, name="in"):
    """Files ``0.parquet``, ``1.parquet``, ... of synthetic sentences with globally unique ids."""
    src, _ = reverse_pairs(sum(sizes), seed=3)
    start = 0
    for i, n in enumerate(sizes):
        write_corpus(tmp_path / name / f"{i}.parquet", [f"r{j}" for j in range(start, start + n)],
                     src[start:start + n], row_group_size)
        start += n
    return str(tmp_path / name)


def test_chunks_cover_every_row_once_in_order_with_stable_ids(tmp_path):
    url = reverse_corpus(tmp_path, sizes=(50, 37, 5), row_group_size=10)
    (tmp_path / "in" / "_SUCCESS").write_text("")  # side files are not input
    corpus = open_corpus(url)
    chunks = plan_chunks(corpus, chunk_rows=25)
    assert [c.id for c in chunks] == [c.id for c in plan_chunks(open_corpus(url), 25)]
    assert [c.id for c in chunks] == sorted(c.id for c in chunks)
    assert all(0 < c.rows <= 25 for c in chunks)
    # Row groups of 10 rows are packed two to a chunk, never split.
    assert [(c.file_index, c.start, c.stop) for c in chunks] == [
        (0, 0, 20), (0, 20, 40), (0, 40, 50), (1, 0, 20), (1, 20, 37), (2, 0, 5)]
    fs = input_filesystem(url)
    rows = pl.concat([pl.from_arrow(read_chunk(fs, c)) for c in chunks])
    assert rows["n"].to_list() == list(range(50)) + list(range(37)) + list(range(5))
    assert rows["id"].to_list() == [f"r{i}" for i in range(92)]


def test_a_large_row_group_is_cut_into_row_ranges_read_exactly(tmp_path):
    url = reverse_corpus(tmp_path, sizes=(103,), row_group_size=1000)
    corpus = open_corpus(url + "/0.parquet")
    chunks = plan_chunks(corpus, chunk_rows=25)
    assert [c.rows for c in chunks] == [20, 21, 20, 21, 21]
    fs = input_filesystem(url)
    for chunk in chunks:
        table = read_chunk(fs, chunk, columns=["n"])
        assert table.column_names == ["n"]
        assert table.column("n").to_pylist() == list(range(chunk.start, chunk.stop))


def test_globs_select_files_and_bad_inputs_fail_with_the_reason(tmp_path):
    url = reverse_corpus(tmp_path, sizes=(5, 6, 7), row_group_size=10)
    assert [f.rows for f in open_corpus(url + "/[02].parquet").files] == [5, 7]
    with pytest.raises(FileNotFoundError, match="input not found"):
        open_corpus(str(tmp_path / "missing.parquet"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no Parquet files"):
        open_corpus(str(tmp_path / "empty"))
    pq.write_table(pa.table({"id": ["x"], "src": [1]}), tmp_path / "in" / "3.parquet")
    with pytest.raises(ValueError, match="different schemas"):
        open_corpus(url)
    spec = JobSpec(str(tmp_path / "in" / "3.parquet"), str(tmp_path / "out"))
    with pytest.raises(ValueError, match="holds int64, not strings"):
        plan_job(spec, MODEL, DECODE)
    with pytest.raises(ValueError, match="no text column 'text'"):
        plan_job(JobSpec(url + "/0.parquet", str(tmp_path / "out"), text_column="text"), MODEL, DECODE)
    pq.write_table(pa.table({"id": ["x"], "src": ["a"], "status": ["old"]}), tmp_path / "status.parquet")
    with pytest.raises(ValueError, match="already has column"):
        plan_job(JobSpec(str(tmp_path / "status.parquet"), str(tmp_path / "out")), MODEL, DECODE)


def test_repeated_or_null_input_ids_are_refused_before_translating(tmp_path):
    write_corpus(tmp_path / "dup.parquet", ["a", "b", "a"], ["x", "y", "z"], 2)
    with pytest.raises(ValueError, match=r"not unique \('a' ×2\)"):
        plan_job(JobSpec(str(tmp_path / "dup.parquet"), str(tmp_path / "out")), MODEL, DECODE)
    write_corpus(tmp_path / "null.parquet", ["a", None], ["x", "y"], 2)
    with pytest.raises(ValueError, match="1 rows have a null id"):
        plan_job(JobSpec(str(tmp_path / "null.parquet"), str(tmp_path / "out2")), MODEL, DECODE)
    assert not (tmp_path / "out").exists()  # nothing pinned, nothing translated
    # Without an id column the same rows are fine.
    plan = plan_job(JobSpec(str(tmp_path / "dup.parquet"), str(tmp_path / "out3"), id_column=None),
                    MODEL, DECODE)
    assert plan.corpus.rows == 3


def test_id_check_bounds_memory_with_passes_and_never_reports_false_duplicates():
    arrays = [pa.array([f"id{i}" for i in range(k, k + 100)]) for k in range(0, 1000, 100)]
    report = find_duplicate_ids(lambda: iter(arrays), 1000, max_ids_in_memory=128)
    assert report.ok and report.passes == 8 and report.rows == 1000
    arrays.append(pa.array(["id5", None, "id999", "id5"]))
    report = find_duplicate_ids(lambda: iter(arrays), 1004, max_ids_in_memory=300)
    assert report.duplicates == {"id5": 3, "id999": 2} and report.nulls == 1
    ints = [pa.array([1, 2, 3], pa.int64()), pa.array([4, 2], pa.int64())]
    assert find_duplicate_ids(lambda: iter(ints), 5).duplicates == {"2": 2}


def test_first_difference_walks_streams_with_different_batch_boundaries():
    left = [pa.array([1, 2, 3]), pa.array([4]), pa.array([5, 6])]
    assert first_difference(iter(left), iter([pa.array([1, 2]), pa.array([3, 4, 5, 6])])) is None
    assert first_difference(iter(left), iter([pa.array([1, 2, 3, 4, 9, 6])])) == 4
    assert first_difference(iter(left), iter([pa.array([1, 2, 3])])) == 3


def test_a_marker_is_created_once_and_never_half_written(tmp_path):
    output = str(tmp_path / "out")
    assert parts.commit(output, "c1", {"rows_out": 1}, {})
    assert not parts.commit(output, "c1", {"rows_out": 2}, {})
    assert parts.read_markers(output, ["c1"], {}) == {"c1": {"rows_out": 1}}
    assert parts.committed_ids(output, {}) == {"c1"}
    assert os.listdir(tmp_path / "out/_done") == ["c1.json"]  # no temporary files left behind


def test_a_marker_on_s3_is_created_once_and_listed_fresh(s3_server):
    import s3fs

    opts = s3_server["storage_options"]
    fs = s3fs.S3FileSystem(**opts)
    fs.mkdir("s2s-markers")
    output = "s3://s2s-markers/out"
    assert parts.committed_ids(output, opts) == set()
    fs.ls("s2s-markers")  # fill s3fs's listing cache before the commits below
    assert parts.commit(output, "c1", {"rows_out": 1}, opts)
    assert not parts.commit(output, "c1", {"rows_out": 2}, opts)
    assert parts.commit(output, "c2", {"rows_out": 3}, opts)
    assert parts.committed_ids(output, opts) == {"c1", "c2"}
    assert parts.read_markers(output, ["c1", "c2"], opts) == {"c1": {"rows_out": 1}, "c2": {"rows_out": 3}}


def run_job(translator, spec, decode=DECODE, only=None):
    plan = plan_job(spec, MODEL, decode)
    records = [translate_chunk(translator, spec, plan.fingerprint, c, decode)
               for i, c in enumerate(plan.chunks) if only is None or i in only]
    return plan, records


def test_resumed_job_translates_only_uncommitted_chunks_and_verifies(tmp_path, translator):
    spec = JobSpec(reverse_corpus(tmp_path), str(tmp_path / "out"), chunk_rows=20)
    plan, first = run_job(translator, spec, only={0, 2})
    with pytest.raises(VerificationError, match="3 of 5 chunks are not committed"):
        finalize_job(spec, plan, decode_settings(DECODE))
    before = {r["chunk"]: (tmp_path / "out/_done" / f"{r['chunk']}.json").read_bytes() for r in first}
    loads = []
    plan, second = run_job(lambda: loads.append(1) or translator, spec)
    assert [r["skipped"] for r in second] == [True, False, True, False, False] and len(loads) == 3
    for chunk, marker in before.items():
        assert (tmp_path / "out/_done" / f"{chunk}.json").read_bytes() == marker
    manifest = finalize_job(spec, plan, decode_settings(DECODE), max_ids_in_memory=30)
    assert manifest["rows_in"] == manifest["rows_out"] == 87
    assert manifest["ids"] == {"column": "id", "aligned_with_input": True, "rows": 87, "unique": True,
                               "passes": 3}
    assert [c["rows_out"] for c in manifest["chunks"]] == [20, 20, 10, 20, 17]
    out = pl.read_parquet(str(tmp_path / "out/part-*.parquet"))
    assert out.columns == ["id", "src", "n", "translation", "score", "status"]
    assert out["id"].to_list() == [f"r{i}" for i in range(87)]
    # A different chunk size (or model, or search) would mix two plans in one output.
    with pytest.raises(PlanMismatchError, match="different chunk_rows"):
        plan_job(JobSpec(spec.input, spec.output, chunk_rows=30), MODEL, DECODE)
    # Batch size does not change hypotheses, so it may change between runs.
    plan_job(spec, MODEL, DecodeConfig(beam_size=1, max_len_extra=2, max_tokens=50))


def test_verification_fails_loudly_on_a_tampered_output(tmp_path, translator):
    spec = JobSpec(reverse_corpus(tmp_path, sizes=(30,)), str(tmp_path / "out"), chunk_rows=10)
    plan, records = run_job(translator, spec)
    part = tmp_path / "out" / records[1]["part"]
    table = pq.read_table(part)
    pq.write_table(table.slice(0, 9), part)  # a row lost after commit
    with pytest.raises(VerificationError, match="10 rows in, part holds 9"):
        finalize_job(spec, plan, decode_settings(DECODE))
    ids = table.column("id").to_pylist()
    ids[3], ids[4] = ids[4], ids[3]  # rows swapped
    pq.write_table(table.set_column(0, "id", pa.array(ids)), part)
    with pytest.raises(VerificationError, match="output row 13 does not carry"):
        finalize_job(spec, plan, decode_settings(DECODE))
    assert not (tmp_path / "out/manifest.json").exists()
