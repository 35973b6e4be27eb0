"""Byte-level I/O on fsspec URLs with atomic writes (no half-written object under its final name)."""

from __future__ import annotations

import os
import posixpath
import uuid
from typing import Any

import fsspec
from fsspec.implementations.local import LocalFileSystem


def filesystem(url: str, **storage_options: Any) -> tuple[fsspec.AbstractFileSystem, str]:
    """The filesystem serving ``url`` and the path inside it."""
    fs, path = fsspec.core.url_to_fs(url, **storage_options)
    return fs, path


def join(url: str, *parts: str) -> str:
    """Join path parts onto a URL (``s3://b/p`` + ``x`` → ``s3://b/p/x``)."""
    return posixpath.join(url.rstrip("/"), *parts)


def exists(url: str, **storage_options: Any) -> bool:
    fs, path = filesystem(url, **storage_options)
    return fs.exists(path)


def read_bytes(url: str, **storage_options: Any) -> bytes:
    fs, path = filesystem(url, **storage_options)
    with fs.open(path, "rb") as f:
        return f.read()


def read_text(url: str, **storage_options: Any) -> str:
    return read_bytes(url, **storage_options).decode("utf-8")


def write_bytes(url: str, data: bytes, **storage_options: Any) -> None:
    """Write ``data`` so that readers see either the old object or the complete new one.

    Local files are written to a temporary sibling and renamed (atomic on POSIX). Object stores
    (S3 and the like) publish an object only when its upload completes, so a direct put is atomic.
    """
    fs, path = filesystem(url, **storage_options)
    if isinstance(fs, LocalFileSystem):
        parent = posixpath.dirname(path)
        fs.makedirs(parent, exist_ok=True)
        tmp = posixpath.join(parent, f".tmp-{uuid.uuid4().hex}-{posixpath.basename(path)}")
        try:
            with fs.open(tmp, "wb") as f:
                f.write(data)
            os.replace(tmp, path)
        finally:
            if fs.exists(tmp):
                fs.rm(tmp)
    else:
        fs.pipe_file(path, data)


def write_text(url: str, text: str, **storage_options: Any) -> None:
    write_bytes(url, text.encode("utf-8"), **storage_options)


def create_bytes(url: str, data: bytes, **storage_options: Any) -> None:
    """Publish ``data`` at ``url`` only if nothing is there yet; ``FileExistsError`` otherwise.

    An exclusive create is a compare-and-swap on "absent": of two concurrent writers exactly one
    succeeds. Local files: a complete temporary sibling is hard-linked to the final name (``link``
    fails if the name exists, and readers never see a partial file, unlike ``open(path, "xb")``).
    Object stores: fsspec's ``mode="create"`` (a conditional ``If-None-Match: *`` put on S3).
    """
    fs, path = filesystem(url, **storage_options)
    if not isinstance(fs, LocalFileSystem):
        fs.pipe_file(path, data, mode="create")
        return
    parent = posixpath.dirname(path)
    fs.makedirs(parent, exist_ok=True)
    tmp = posixpath.join(parent, f".tmp-{uuid.uuid4().hex}")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())  # a record that others act on must survive a crash whole
        os.link(tmp, path)
    finally:
        os.unlink(tmp)


def list_names(url: str, **storage_options: Any) -> list[str]:
    """Sorted base names directly under ``url`` from a fresh listing ([] if it does not exist).

    s3fs caches listings per filesystem instance, so another process's writes would be missed
    without the refresh; temporary files (leading dot) are skipped.
    """
    fs, path = filesystem(url, **storage_options)
    fs.invalidate_cache(path)
    try:
        entries = fs.ls(path, detail=False, refresh=True)
    except FileNotFoundError:
        return []
    names = (posixpath.basename(e.rstrip("/")) for e in entries)
    return sorted(n for n in names if n and not n.startswith("."))


def remove(url: str, recursive: bool = False, **storage_options: Any) -> None:
    fs, path = filesystem(url, **storage_options)
    if fs.exists(path):
        fs.rm(path, recursive=recursive)
