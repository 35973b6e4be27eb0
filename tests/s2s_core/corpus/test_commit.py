"""Commit markers: created exactly once, never half-written, listed fresh (locally and on S3)."""

from __future__ import annotations

import os

import pyarrow as pa
import pytest
import s3fs

from s2s_core.corpus import commit
from s2s_core.storage import Store


def test_a_marker_is_created_once_and_never_half_written(tmp_path):
    output = Store(str(tmp_path / "out"))
    assert commit.commit(output, "c1", {"rows_out": 1})
    assert not commit.commit(output, "c1", {"rows_out": 2})
    assert commit.read_markers(output, ["c1"]) == {"c1": {"rows_out": 1}}
    assert commit.committed_ids(output) == {"c1"}
    assert commit.is_committed(output, "c1") and not commit.is_committed(output, "c2")
    assert os.listdir(tmp_path / "out/_done") == ["c1.json"]  # no temporary files left behind


def test_a_marker_on_s3_is_created_once_and_listed_fresh(s3_server):
    opts = s3_server["storage_options"]
    fs = s3fs.S3FileSystem(**opts)
    fs.mkdir("s2s-markers")
    output = Store("s3://s2s-markers/out", opts)
    assert commit.committed_ids(output) == set()
    fs.ls("s2s-markers")  # fill s3fs's listing cache before the commits below
    assert commit.commit(output, "c1", {"rows_out": 1})
    assert not commit.commit(output, "c1", {"rows_out": 2})
    assert commit.commit(output, "c2", {"rows_out": 3})
    assert commit.committed_ids(output) == {"c1", "c2"}
    assert commit.read_markers(output, ["c1", "c2"]) == {"c1": {"rows_out": 1}, "c2": {"rows_out": 3}}


@pytest.mark.parametrize("where", ["local", "s3"])
def test_a_part_reads_the_same_whole_or_by_ranged_reads_and_a_torn_one_is_refused(tmp_path, where, request):
    if where == "s3":
        opts = request.getfixturevalue("s3_server")["storage_options"]
        s3fs.S3FileSystem(**opts).mkdir("s2s-parts")
        output = Store("s3://s2s-parts/out", opts)
    else:
        output = Store(str(tmp_path / "out"))
    table = pa.table({"id": [f"r{i}" for i in range(500)], "status": ["ok"] * 499 + ["failed"],
                      "translation": [f"text {i}" for i in range(500)]})
    size = commit.write_part(output, "c1", table)
    for hint in (None, size, commit.WHOLE_READ_BYTES + 1):  # no size, a small part, a large one
        assert commit.read_part(output, "c1", columns=["status", "id"], size=hint).equals(
            table.select(["status", "id"]))
    output.write_bytes(commit.part_name("c1"), output.read_bytes(commit.part_name("c1"))[: size // 2])
    for hint in (size, None):
        with pytest.raises(pa.ArrowInvalid):
            commit.read_part(output, "c1", columns=["status"], size=hint)
