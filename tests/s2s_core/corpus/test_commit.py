"""Commit markers: created exactly once, never half-written, listed fresh (locally and on S3)."""

from __future__ import annotations

import os

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
    import s3fs

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
