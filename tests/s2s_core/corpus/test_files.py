"""Finding the input files, cutting chunks along row groups and reading a chunk's rows exactly."""

from __future__ import annotations

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from s2s_core.corpus.files import cut_chunks, is_chunk_id, open_corpus, read_chunk
from s2s_core.corpus.plan import plan_job
from s2s_core.storage import Store
from tests.s2s_core.corpus.helpers import DECODE, MODEL, NUMERICS, job, reverse_corpus


def test_chunks_cover_every_row_once_in_order_with_stable_ids(tmp_path):
    url = reverse_corpus(tmp_path, sizes=(50, 37, 5), row_group_size=10)
    (tmp_path / "in" / "_SUCCESS").write_text("")  # side files are not input
    input = Store(url)
    corpus = open_corpus(input)
    chunks = cut_chunks(corpus, chunk_rows=25)
    assert [c.id for c in chunks] == [c.id for c in cut_chunks(open_corpus(Store(url)), 25)]
    # Ids are content-addressed: "<hash of relative path + fingerprint>-<start>-<stop>".
    assert all(is_chunk_id(c.id) and c.id.endswith(f"-{c.start:010d}-{c.stop:010d}") for c in chunks)
    assert len({c.id.split("-")[0] for c in chunks}) == 3
    assert all(0 < c.rows <= 25 for c in chunks)
    # Row groups of 10 rows are packed two to a chunk, never split.
    assert [(c.file_index, c.start, c.stop) for c in chunks] == [
        (0, 0, 20), (0, 20, 40), (0, 40, 50), (1, 0, 20), (1, 20, 37), (2, 0, 5)]
    rows = pl.concat([pl.from_arrow(read_chunk(input, c)) for c in chunks])
    assert rows["n"].to_list() == list(range(50)) + list(range(37)) + list(range(5))
    assert rows["id"].to_list() == [f"r{i}" for i in range(92)]


def test_a_large_row_group_is_cut_into_row_ranges_read_exactly(tmp_path):
    url = reverse_corpus(tmp_path, sizes=(103,), row_group_size=1000)
    input = Store(url + "/0.parquet")
    chunks = cut_chunks(open_corpus(input), chunk_rows=25)
    assert [c.rows for c in chunks] == [20, 21, 20, 21, 21]
    for chunk in chunks:
        table = read_chunk(input, chunk, columns=["n"])
        assert table.column_names == ["n"]
        assert table.column("n").to_pylist() == list(range(chunk.start, chunk.stop))


def test_globs_select_files_and_bad_inputs_fail_with_the_reason(tmp_path):
    url = reverse_corpus(tmp_path, sizes=(5, 6, 7), row_group_size=10)
    assert [f.rows for f in open_corpus(Store(url + "/[02].parquet")).files] == [5, 7]
    with pytest.raises(FileNotFoundError, match="input not found"):
        open_corpus(Store(str(tmp_path / "missing.parquet")))
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no corpus files"):
        open_corpus(Store(str(tmp_path / "empty")))
    pq.write_table(pa.table({"id": ["x"], "src": [1]}), tmp_path / "in" / "3.parquet")
    with pytest.raises(ValueError, match="text column 'src' of input file 3.parquet holds int64"):
        plan_job(job(url, tmp_path / "out"), MODEL, DECODE, NUMERICS)
    with pytest.raises(ValueError, match="holds int64, not strings"):
        plan_job(job(tmp_path / "in" / "3.parquet", tmp_path / "out"), MODEL, DECODE, NUMERICS)
    with pytest.raises(ValueError, match="no text column 'text'"):
        plan_job(job(url + "/0.parquet", tmp_path / "out", text_column="text"), MODEL, DECODE, NUMERICS)
    pq.write_table(pa.table({"id": ["x"], "src": ["a"], "status": ["old"]}), tmp_path / "status.parquet")
    with pytest.raises(ValueError, match="already has column"):
        plan_job(job(tmp_path / "status.parquet", tmp_path / "out"), MODEL, DECODE, NUMERICS)
