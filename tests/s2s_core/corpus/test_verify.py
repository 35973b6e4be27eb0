"""Verification: streams compared across batch boundaries, a tampered output refused."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from s2s_core.corpus.verify import (
    LOCAL_WORKERS,
    REMOTE_WORKERS,
    DamagedChunksError,
    VerificationError,
    first_difference,
    ordered_map,
    read_workers,
    verify_output,
)
from s2s_core.storage import Store
from tests.s2s_core.corpus.helpers import job, reverse_corpus, run_job


def test_first_difference_walks_streams_with_different_batch_boundaries():
    left = [pa.array([1, 2, 3]), pa.array([4]), pa.array([5, 6])]
    assert first_difference(iter(left), iter([pa.array([1, 2]), pa.array([3, 4, 5, 6])])) is None
    assert first_difference(iter(left), iter([pa.array([1, 2, 3, 4, 9, 6])])) == 4
    assert first_difference(iter(left), iter([pa.array([1, 2, 3])])) == 3


def test_ordered_map_keeps_order_with_few_results_in_flight():
    assert list(ordered_map(lambda x: x * x, range(100), workers=4)) == [x * x for x in range(100)]


def test_reads_run_few_at_a_time_on_a_local_disk_and_many_where_a_store_is_remote(tmp_path):
    local, remote = Store(str(tmp_path)), Store("memory://bucket/out")
    assert read_workers(local, local) == LOCAL_WORKERS < REMOTE_WORKERS
    assert read_workers(local, remote) == read_workers(remote) == REMOTE_WORKERS


def test_damaged_committed_parts_are_uncommitted_and_translated_again(tmp_path, translator):
    spec = job(reverse_corpus(tmp_path, sizes=(40,)), tmp_path / "out", chunk_rows=10)
    plan, records = run_job(translator, spec)
    clean = {r["part"]: pq.read_table(tmp_path / "out" / r["part"]) for r in records}
    torn, short, lost = (tmp_path / "out" / records[i]["part"] for i in (0, 1, 3))
    torn.write_bytes(torn.read_bytes()[: torn.stat().st_size // 2])  # a torn copy: no footer
    pq.write_table(clean[short.name].slice(0, 9), short)  # a row lost after commit
    lost.unlink()
    with pytest.raises(DamagedChunksError, match="3 committed chunk") as caught:
        verify_output(spec, plan)
    assert caught.value.chunk_ids == [records[i]["chunk"] for i in (0, 1, 3)]
    assert "10 rows in, part holds 9" in str(caught.value) and "its part is missing" in str(caught.value)
    assert sorted(p.name for p in (tmp_path / "out/_done").iterdir()) == [f"{records[2]['chunk']}.json"]
    assert not (tmp_path / "out/manifest.json").exists()
    # The next run translates exactly the damaged chunks again, and the output verifies.
    _, again = run_job(translator, spec)
    assert [r["skipped"] for r in again] == [False, False, True, False]
    assert verify_output(spec, plan)["rows_out"] == 40
    for name, table in clean.items():
        assert pq.read_table(tmp_path / "out" / name).equals(table)


@pytest.mark.parametrize(("sizes", "chunk", "row"), [((30,), 1, 13), ((30, 25), 4, 43)])
def test_verification_fails_loudly_on_a_tampered_output(tmp_path, translator, sizes, chunk, row):
    spec = job(reverse_corpus(tmp_path, sizes=sizes), tmp_path / "out", chunk_rows=10)
    plan, records = run_job(translator, spec)
    part = tmp_path / "out" / records[chunk]["part"]
    table = pq.read_table(part)
    ids = table.column("id").to_pylist()
    ids[3], ids[4] = ids[4], ids[3]  # rows swapped
    pq.write_table(table.set_column(0, "id", pa.array(ids)), part)
    with pytest.raises(VerificationError, match=f"output row {row} does not carry"):
        verify_output(spec, plan)
    assert not (tmp_path / "out/manifest.json").exists()
