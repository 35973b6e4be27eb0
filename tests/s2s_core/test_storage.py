"""The Store handle on a local directory and on a loopback S3 server: atomic, exclusive, fresh."""

from __future__ import annotations

import uuid

import pytest

from s2s_core import storage
from s2s_core.storage import Store


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
