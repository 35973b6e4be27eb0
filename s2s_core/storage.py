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


def remove(url: str, recursive: bool = False, **storage_options: Any) -> None:
    fs, path = filesystem(url, **storage_options)
    if fs.exists(path):
        fs.rm(path, recursive=recursive)
