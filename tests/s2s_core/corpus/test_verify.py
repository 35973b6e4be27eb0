"""Verification: streams compared across batch boundaries, a tampered output refused."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from s2s_core.corpus.verify import VerificationError, first_difference, verify_output
from tests.s2s_core.corpus.helpers import job, reverse_corpus, run_job


def test_first_difference_walks_streams_with_different_batch_boundaries():
    left = [pa.array([1, 2, 3]), pa.array([4]), pa.array([5, 6])]
    assert first_difference(iter(left), iter([pa.array([1, 2]), pa.array([3, 4, 5, 6])])) is None
    assert first_difference(iter(left), iter([pa.array([1, 2, 3, 4, 9, 6])])) == 4
    assert first_difference(iter(left), iter([pa.array([1, 2, 3])])) == 3


def test_verification_fails_loudly_on_a_tampered_output(tmp_path, translator):
    spec = job(reverse_corpus(tmp_path, sizes=(30,)), tmp_path / "out", chunk_rows=10)
    plan, records = run_job(translator, spec)
    part = tmp_path / "out" / records[1]["part"]
    table = pq.read_table(part)
    pq.write_table(table.slice(0, 9), part)  # a row lost after commit
    with pytest.raises(VerificationError, match="10 rows in, part holds 9"):
        verify_output(spec, plan)
    ids = table.column("id").to_pylist()
    ids[3], ids[4] = ids[4], ids[3]  # rows swapped
    pq.write_table(table.set_column(0, "id", pa.array(ids)), part)
    with pytest.raises(VerificationError, match="output row 13 does not carry"):
        verify_output(spec, plan)
    assert not (tmp_path / "out/manifest.json").exists()
