"""Null and repeated ids found in bounded memory, without false duplicates."""

from __future__ import annotations

import pyarrow as pa

from s2s_core.corpus.idcheck import find_duplicate_ids


def test_id_check_bounds_memory_with_passes_and_never_reports_false_duplicates():
    arrays = [pa.array([f"id{i}" for i in range(k, k + 100)]) for k in range(0, 1000, 100)]
    report = find_duplicate_ids(lambda: iter(arrays), 1000, max_ids_in_memory=128)
    assert report.ok and report.passes == 8 and report.rows == 1000
    arrays.append(pa.array(["id5", None, "id999", "id5"]))
    report = find_duplicate_ids(lambda: iter(arrays), 1004, max_ids_in_memory=300)
    assert report.duplicates == {"id5": 3, "id999": 2} and report.nulls == 1
    ints = [pa.array([1, 2, 3], pa.int64()), pa.array([4, 2], pa.int64())]
    assert find_duplicate_ids(lambda: iter(ints), 5).duplicates == {"2": 2}
