"""Byte-level I/O on fsspec URLs: one ``Store`` handle per folder, atomic writes, exclusive creates.

No half-written object is ever visible under its final name, and reads that decide something
(is this chunk committed? which promotion is the latest?) bypass s3fs's listing cache.
"""

from __future__ import annotations

import json
import os
import posixpath
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from typing import IO, Any

import fsspec
from fsspec.implementations.local import LocalFileSystem

# Answers to a conditional put that mean "the object exists" or "another conditional write to it is in
# flight", by S3 error code or HTTP status. s3fs maps only a 412 that names the If-None-Match condition to
# FileExistsError; other servers answer 412 without the condition, or 409 (ConditionalRequestConflict).
_CONFLICT_CODES = frozenset({"PreconditionFailed", "ConditionalRequestConflict", "OperationAborted",
                            "412", "409"})
_CONFLICT_STATUSES = frozenset({409, 412})
_CONTENDED_TRIES = 6  # a 409 for a key that does not exist yet: another writer's put is in flight


class ExclusiveCreateUnsupported(ValueError):
    """The store overwrote an object that an exclusive create should have refused."""


def _is_conflict(err: OSError) -> bool:
    """Whether an error from a conditional put is a "precondition failed" or "conflict" answer."""
    response = getattr(err.__cause__, "response", None) or {}
    code = str(response.get("Error", {}).get("Code", ""))
    status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    return code in _CONFLICT_CODES or status in _CONFLICT_STATUSES


def _fsync_directory(path: str) -> None:
    """Make a rename or link inside ``path`` durable: a power loss must not undo it."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _make_directories(path: str) -> None:
    """``os.makedirs`` whose new directory entries are durable too (each parent fsynced)."""
    missing = []
    while path and not os.path.isdir(path):
        missing.append(path)
        path = posixpath.dirname(path)
    for directory in reversed(missing):
        try:
            os.mkdir(directory)
        except FileExistsError:
            continue
        _fsync_directory(posixpath.dirname(directory) or ".")


def reveal(options: Any) -> Any:
    """Storage options as fsspec takes them: every secret value (a pydantic ``SecretStr``, which the
    orchestration layer wraps credentials in so they are never dumped or logged) replaced by what it
    hides. Duck-typed: the core imports no pydantic. Only the filesystem a ``Store`` builds sees them.
    """
    if hasattr(options, "get_secret_value"):
        return options.get_secret_value()
    if isinstance(options, dict):
        return {key: reveal(value) for key, value in options.items()}
    if isinstance(options, list | tuple):
        return type(options)(reveal(value) for value in options)
    return options


def join(url: str, *parts: str) -> str:
    """Join path parts onto a URL (``s3://b/p`` + ``x`` → ``s3://b/p/x``)."""
    return posixpath.join(url.rstrip("/"), *parts)


class Store:
    """A folder on any fsspec filesystem; names are paths relative to it (``""`` is the folder itself).

    The filesystem is built once, from the URL and storage options, and shared by every ``sub``
    store: pass the handle down instead of the URL and options.
    """

    def __init__(self, url: str, storage_options: dict[str, Any] | None = None,
                 _fs: fsspec.AbstractFileSystem | None = None, _root: str | None = None):
        self.url = url.rstrip("/") or url
        # Plain values from here on (the corpus code builds filesystems from them too): a Store lives in
        # memory only, and its repr names the URL alone.
        self.storage_options = reveal(dict(storage_options or {}))
        if _fs is None:
            _fs, _root = fsspec.core.url_to_fs(self.url, **self.storage_options)
        self.fs: fsspec.AbstractFileSystem = _fs
        self.root: str = _root if _root is not None else ""
        self.local = isinstance(self.fs, LocalFileSystem)

    def __repr__(self) -> str:
        return f"Store({self.url!r})"

    def sub(self, name: str) -> Store:
        """The store of a folder below this one, on the same filesystem object."""
        return Store(join(self.url, name), self.storage_options, self.fs, self.path(name))

    def url_of(self, name: str = "") -> str:
        return join(self.url, name) if name else self.url

    def path(self, name: str = "") -> str:
        """The path of ``name`` inside the filesystem (what fsspec and pyarrow take)."""
        return posixpath.join(self.root, name) if name else self.root

    def describe(self, path: str) -> str:
        """How to name a filesystem path in messages: plain local paths, full URLs elsewhere."""
        return path if self.local else self.fs.unstrip_protocol(path)

    # ------------------------------------------------------------------ reading
    def refresh(self, name: str = "") -> None:
        """Forget cached listings around ``name``: another process may have just written it."""
        path = self.path(name)
        self.fs.invalidate_cache(path)
        self.fs.invalidate_cache(posixpath.dirname(path))

    def exists(self, name: str = "") -> bool:
        self.refresh(name)
        return self.fs.exists(self.path(name))

    def open(self, name: str = "", mode: str = "rb") -> IO[bytes]:
        return self.fs.open(self.path(name), mode)

    def read_bytes(self, name: str = "") -> bytes:
        return self.fs.cat_file(self.path(name))

    def read_text(self, name: str = "") -> str:
        return self.read_bytes(name).decode("utf-8")

    def read_json(self, name: str = "") -> Any:
        return json.loads(self.read_bytes(name))

    def read_many(self, names: Sequence[str], batch: int = 512) -> dict[str, bytes]:
        """Several objects, a batch at a time (concurrent GETs on object stores)."""
        out: dict[str, bytes] = {}
        for i in range(0, len(names), batch):
            part = list(names[i:i + batch])
            paths = [self.path(n) for n in part]
            contents = self.fs.cat(paths)  # a list always gives a dict keyed by these paths
            out.update((n, contents[p]) for n, p in zip(part, paths, strict=True))
        return out

    def list_names(self, name: str = "") -> list[str]:
        """Sorted base names directly under ``name`` from a fresh listing ([] if it does not exist).

        Temporary files (leading dot) are skipped.
        """
        self.refresh(name)
        try:
            entries = self.fs.ls(self.path(name), detail=False, refresh=True)
        except FileNotFoundError:
            return []
        names = (posixpath.basename(e.rstrip("/")) for e in entries)
        return sorted(n for n in names if n and not n.startswith("."))

    # ------------------------------------------------------------------ writing
    def write_bytes(self, name: str, data: bytes) -> None:
        """Write ``data`` so that readers see either the old object or the complete new one.

        Local files are written to a temporary sibling, fsynced, renamed (atomic on POSIX) and the
        directory fsynced, so once this returns the new object survives a power loss. Object stores
        publish an object only when its upload completes, so a put is atomic (and durable).
        """
        path = self.path(name)
        if not self.local:
            self.fs.pipe_file(path, data)
            return
        tmp = self._local_temporary(path, data)
        try:
            os.replace(tmp, path)
        finally:
            with suppress(FileNotFoundError):
                os.unlink(tmp)
        _fsync_directory(posixpath.dirname(path))

    @contextmanager
    def writing(self, name: str = "") -> Iterator[IO[bytes]]:
        """A local file to stream ``name``'s content into; published atomically (as ``write_bytes``)
        only when the block ends without an error, so a failed or killed writer leaves nothing.

        For content too large to hold in memory: object stores get it by one upload of the finished
        file (s3fs's multipart upload completes only then).
        """
        path = self.path(name)
        if self.local:
            parent = posixpath.dirname(path)
            _make_directories(parent)
            tmp = posixpath.join(parent, f".tmp-{uuid.uuid4().hex}-{posixpath.basename(path)}")
            try:
                with open(tmp, "wb") as f:
                    yield f
                    f.flush()
                    os.fsync(f.fileno())
                os.replace(tmp, path)
            finally:
                with suppress(FileNotFoundError):
                    os.unlink(tmp)
            _fsync_directory(parent)
            return
        with tempfile.NamedTemporaryFile(prefix="s2s-", suffix=f"-{posixpath.basename(path)}") as f:
            yield f
            f.flush()
            self.fs.put_file(f.name, path)

    def write_text(self, name: str, text: str) -> None:
        self.write_bytes(name, text.encode("utf-8"))

    def write_json(self, name: str, record: Any, **dumps: Any) -> None:
        self.write_bytes(name, json.dumps(record, **{"indent": 1, **dumps}).encode("utf-8"))

    def create_bytes(self, name: str, data: bytes) -> None:
        """Publish ``data`` at ``name`` only if nothing is there yet; ``FileExistsError`` otherwise.

        An exclusive create is a compare-and-swap on "absent": of two concurrent writers exactly one
        succeeds. Local files: a complete temporary sibling is hard-linked to the final name (``link``
        fails if the name exists, and readers never see a partial file, unlike ``open(path, "xb")``).
        Object stores: fsspec's ``mode="create"`` (a conditional ``If-None-Match: *`` put on S3); every
        "precondition failed" or "conflict" answer becomes ``FileExistsError`` once a fresh check finds
        the object (servers answer 412 with or without naming the condition, or 409). Whether a store
        honours the condition at all is what ``check_exclusive_create`` finds out.
        """
        path = self.path(name)
        if self.local:
            tmp = self._local_temporary(path, data)
            try:
                os.link(tmp, path)
            finally:
                os.unlink(tmp)
            _fsync_directory(posixpath.dirname(path))  # the new name is durable before anyone acts on it
            return
        for attempt in range(_CONTENDED_TRIES):
            try:
                self.fs.pipe_file(path, data, mode="create")
                return
            except FileExistsError:
                raise
            except OSError as err:
                if not _is_conflict(err):
                    raise
                if self.exists(name):
                    raise FileExistsError(f"{self.describe(path)} already exists") from err
                if attempt == _CONTENDED_TRIES - 1:
                    raise  # still contended: a transient error, which the task's retries handle
                time.sleep(0.05 * 2**attempt)

    def check_exclusive_create(self) -> None:
        """Refuse a store that does not honour exclusive create (``ExclusiveCreateUnsupported``).

        Creates one probe object twice: the second create must fail. Some S3-compatible servers
        ignore ``If-None-Match``; on them commit markers and promotions would silently overwrite.
        Local directories always honour it (``link``), so they are not probed.
        """
        if self.local:
            return
        probe = f".s2s-probe-{uuid.uuid4().hex}"
        try:
            # FileExistsError here: our own first put landed, its answer was lost and a retry found it.
            with suppress(FileExistsError):
                self.create_bytes(probe, b"1")
            try:
                self.create_bytes(probe, b"2")
            except FileExistsError:
                return
            raise ExclusiveCreateUnsupported(
                f"the object store at {self.url} does not honour exclusive create (a conditional "
                "If-None-Match put overwrote an existing object): commit markers and model promotions "
                "would silently overwrite each other; use a server that supports conditional writes")
        finally:
            with suppress(OSError):
                self.fs.rm(self.path(probe))

    def remove(self, name: str = "", recursive: bool = False) -> None:
        if self.exists(name):
            self.fs.rm(self.path(name), recursive=recursive)

    def _local_temporary(self, path: str, data: bytes) -> str:
        """A complete, fsynced temporary sibling of ``path``: what others act on must survive a crash."""
        parent = posixpath.dirname(path)
        _make_directories(parent)
        tmp = posixpath.join(parent, f".tmp-{uuid.uuid4().hex}-{posixpath.basename(path)}")
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        return tmp


# Single-object conveniences for code that holds one URL, not a folder.
def exists(url: str, **storage_options: Any) -> bool:
    return Store(url, storage_options).exists()


def read_bytes(url: str, **storage_options: Any) -> bytes:
    return Store(url, storage_options).read_bytes()


def read_text(url: str, **storage_options: Any) -> str:
    return read_bytes(url, **storage_options).decode("utf-8")


def write_bytes(url: str, data: bytes, **storage_options: Any) -> None:
    Store(url, storage_options).write_bytes("", data)


def write_text(url: str, text: str, **storage_options: Any) -> None:
    write_bytes(url, text.encode("utf-8"), **storage_options)
