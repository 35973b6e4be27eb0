"""The Store handle on a local directory and on a loopback S3 server: atomic, exclusive, fresh."""

from __future__ import annotations

import os
import uuid

import pytest

from s2s_core import storage
from s2s_core.storage import ExclusiveCreateUnsupported, Store
from tests.faults.proxy import Faults


@pytest.fixture(params=["local", "s3"])
def store(request, tmp_path) -> Store:
    if request.param == "local":
        return Store(str(tmp_path / "store"))
    s3 = request.getfixturevalue("s3_server")
    import s3fs

    bucket = f"st-{uuid.uuid4().hex[:12]}"
    s3fs.S3FileSystem(**s3["storage_options"]).mkdir(bucket)
    return Store(f"s3://{bucket}/store", s3["storage_options"])


def test_exclusive_create_refuses_a_second_writer(store):
    store.create_bytes("x/00000001.json", b"first")
    with pytest.raises(FileExistsError):
        store.create_bytes("x/00000001.json", b"second")
    assert store.read_bytes("x/00000001.json") == b"first"
    assert store.list_names("x") == ["00000001.json"]  # no temporary file left behind
    assert store.list_names("nothing-here") == []


def test_write_replaces_whole_objects_and_leaves_no_temporaries(store):
    store.write_bytes("a/b.bin", b"old")
    store.write_bytes("a/b.bin", b"new contents")
    assert store.read_bytes("a/b.bin") == b"new contents"
    assert store.list_names("a") == ["b.bin"]
    if store.local:  # temporaries are dot-files, which list_names hides: look at the directory itself
        assert [p.rsplit("/", 1)[-1] for p in store.fs.ls(store.path("a"), detail=False)] == ["b.bin"]


def test_a_second_handle_sees_writes_made_after_its_first_listing(store):
    """Another process's commit must be seen: listings and exists() are never answered from a cache."""
    reader = Store(store.url, store.storage_options)
    assert reader.list_names("done") == [] and not reader.exists("done/c1.json")
    store.create_bytes("done/c1.json", b"{}")
    assert reader.list_names("done") == ["c1.json"]
    assert reader.exists("done/c1.json")


def test_sub_stores_share_the_filesystem_and_resolve_names(store):
    sub = store.sub("runs/r1")
    assert sub.fs is store.fs and sub.url == storage.join(store.url, "runs/r1")
    sub.write_json("config.json", {"k": 1})
    assert store.read_json("runs/r1/config.json") == {"k": 1}
    assert storage.read_text(sub.url_of("config.json"), **store.storage_options).startswith("{")


def test_read_many_returns_every_object_by_name(store):
    names = [f"m/{i:03d}.json" for i in range(7)]
    for i, name in enumerate(names):
        store.write_text(name, str(i))
    assert store.read_many(names, batch=3) == {n: str(i).encode() for i, n in enumerate(names)}
    assert store.read_many([]) == {}


def test_remove_and_missing_objects(store):
    store.write_bytes("gone.bin", b"x")
    store.remove("gone.bin")
    assert not store.exists("gone.bin")
    store.remove("never-there.bin")  # no error: removing what is absent is a no-op
    with pytest.raises(FileNotFoundError):
        store.read_bytes("gone.bin")


def test_local_writes_fsync_the_data_and_then_the_directory_that_names_it(tmp_path, monkeypatch):
    """A commit marker must never survive a power loss that its part (or its own name) does not."""
    synced: list[str] = []
    real_fsync = os.fsync

    def recording_fsync(fd: int) -> None:
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", recording_fsync)
    (tmp_path / "out").mkdir()
    store = Store(str(tmp_path / "out"))
    store.write_bytes("part-1.parquet", b"rows")
    assert len(synced) == 2 and synced[0].rsplit("/", 1)[-1].startswith(".tmp-")  # the data first
    assert synced[-1] == str(tmp_path / "out")  # then the rename, before anything else happens
    synced.clear()
    store.create_bytes("_done/1.json", b"{}")
    # The new _done/ directory is made durable in its parent, the marker's data, then its name.
    assert synced[0] == str(tmp_path / "out") and synced[-1] == str(tmp_path / "out/_done")
    assert synced[1].rsplit("/", 1)[-1].startswith(".tmp-")


@pytest.mark.parametrize("answer", ["409", "412-bare"])
def test_every_already_exists_answer_becomes_file_exists(fault_proxy, answer):
    """Servers that answer 409 or a 412 not naming the condition still give one error: FileExistsError."""
    import s3fs

    faults = Faults(conflict_answer=answer)
    opts = fault_proxy(faults)
    bucket = f"st-{uuid.uuid4().hex[:12]}"
    s3fs.S3FileSystem(**opts).mkdir(bucket)
    store = Store(f"s3://{bucket}/store", opts)
    store.create_bytes("marker.json", b"first")
    with pytest.raises(FileExistsError):
        store.create_bytes("marker.json", b"second")
    assert store.read_bytes("marker.json") == b"first" and faults.counts[f"rewritten_{answer}"] == 1
    store.check_exclusive_create()  # honoured, whatever the answer looks like


def test_a_store_that_ignores_exclusive_create_is_refused(fault_proxy):
    import s3fs

    opts = fault_proxy(Faults(ignore_if_none_match=True))  # the server overwrites instead
    bucket = f"st-{uuid.uuid4().hex[:12]}"
    s3fs.S3FileSystem(**opts).mkdir(bucket)
    store = Store(f"s3://{bucket}/store", opts)
    with pytest.raises(ExclusiveCreateUnsupported, match="does not honour exclusive create"):
        store.check_exclusive_create()
    assert store.fs.find(f"{bucket}/") == []  # the probe cleaned up after itself
