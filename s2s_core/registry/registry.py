"""Model registry in the store: packages, the serving champion and every promotion decision.

Layout under ``<store>/models/<name>/`` (any fsspec URL)::

    <version>/                      model package (written by training, complete once config.json exists)
    promotions/00000001.json        the champion log, one record per promotion; the highest number
              /00000002.json        is the champion (authoritative)
    rejections/<time>-<version>-<id>.json   one record per rejected challenger, with the reason
    current                         JSON copy of the latest promotion record, for people and tools
    history.jsonl                   every decision in time order (a snapshot rewritten after each one)

Promotion is a compare-and-swap: a challenger compared against the champion of promotion N is
promoted by *exclusively creating* promotion N+1 (``storage.create_bytes``: a hard link locally, a
conditional put on S3). Of two runs that compared against the same champion, exactly one creates
N+1; the other gets ``PromotionConflict`` and is recorded as rejected. No lock, no lease: a run that
dies at any point leaves no state that blocks others.

Crash safety: the package is complete before it can be promoted (``promote`` checks its config.json),
so a crash between writing the package and creating the promotion record leaves the old champion
serving. ``current`` and ``history.jsonl`` are rewritten after the record; a crash in between leaves
them one decision behind until the next decision, which is why readers that must be right
(``champion()``) use a fresh listing of ``promotions/`` instead.
"""

from __future__ import annotations

import json
import posixpath
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from s2s_core import storage
from s2s_core.inference.package import read_package_config

PROMOTIONS, REJECTIONS, CURRENT, HISTORY = "promotions", "rejections", "current", "history.jsonl"
RESERVED = {PROMOTIONS, REJECTIONS, CURRENT, HISTORY}
SEQ_DIGITS = 8


class PromotionConflict(FileExistsError):
    """Another run promoted a model first: the champion this decision was based on is stale."""


@dataclass(frozen=True)
class Champion:
    seq: int  # number of the promotion that made it champion
    version: str
    model: str  # package URL
    record: dict  # the promotion record (reason, scores, time, run)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _json(record: dict) -> bytes:
    return json.dumps(record, indent=1, sort_keys=True, default=str).encode()


class Registry:
    """The registry of one model name in a store (see module docstring)."""

    def __init__(self, store: str, name: str, storage_options: dict[str, Any] | None = None):
        self.store, self.name = store.rstrip("/"), name
        self.opts = storage_options or {}
        self.root = storage.join(self.store, "models", name)

    def package_url(self, version: str) -> str:
        return storage.join(self.root, version)

    def _promotion_url(self, seq: int) -> str:
        return storage.join(self.root, PROMOTIONS, f"{seq:0{SEQ_DIGITS}d}.json")

    def _read(self, url: str) -> dict:
        """A record, bypassing s3fs's listing cache (a record just made by another run is not in it)."""
        fs, path = storage.filesystem(url, **self.opts)
        fs.invalidate_cache(posixpath.dirname(path))
        return json.loads(fs.cat_file(path))

    def _promotion_seqs(self) -> list[int]:
        names = storage.list_names(storage.join(self.root, PROMOTIONS), **self.opts)
        return sorted(int(n[:-5]) for n in names if n.endswith(".json") and n[:-5].isdigit())

    def champion(self) -> Champion | None:
        """The serving model: the highest-numbered promotion (fresh listing), or None before the first."""
        seqs = self._promotion_seqs()
        if not seqs:
            return None
        record = self._read(self._promotion_url(seqs[-1]))
        return Champion(seqs[-1], record["version"], record["model"], record)

    def promote(self, version: str, base: Champion | None, reason: str, details: dict | None = None,
                run_id: str | None = None) -> dict:
        """Make ``version`` the champion if ``base`` still is; ``PromotionConflict`` if another run won.

        ``base`` is the champion the challenger was judged against (None: there was none).
        """
        url = self._checked_package(version)
        seq = (base.seq if base else 0) + 1
        record = {"decision": "promoted", "seq": seq, "version": version, "model": url,
                  "previous": {"seq": base.seq, "version": base.version} if base else None,
                  "reason": reason, "decided_at": _now(), "run_id": run_id, "details": details or {}}
        try:
            storage.create_bytes(self._promotion_url(seq), _json(record), **self.opts)
        except FileExistsError:
            winner = self._read(self._promotion_url(seq))
            if not (run_id and (winner["version"], winner.get("run_id")) == (version, run_id)):
                raise PromotionConflict(f"lost the race: promotion {seq} went to {winner['version']} "
                                        f"(run {winner.get('run_id')}) first") from None
            record = winner  # our own earlier attempt (a retry after a crash): finish it
        # The record above is the switch; these two are conveniences that may lag after a crash.
        storage.write_bytes(storage.join(self.root, CURRENT), _json(record), **self.opts)
        self._write_history()
        return record

    def reject(self, version: str, base: Champion | None, reason: str, details: dict | None = None,
               run_id: str | None = None) -> dict:
        """Record that ``version`` was not promoted, and why; the champion is untouched."""
        record = {"decision": "rejected", "version": version, "model": self.package_url(version),
                  "champion": {"seq": base.seq, "version": base.version} if base else None,
                  "reason": reason, "decided_at": _now(), "run_id": run_id, "details": details or {}}
        stamp = record["decided_at"].replace("-", "").replace(":", "")
        name = f"{stamp}-{version}-{uuid.uuid4().hex[:8]}.json"
        # Exclusive create: a record is never overwritten, even by a run that reuses a name.
        storage.create_bytes(storage.join(self.root, REJECTIONS, name), _json(record), **self.opts)
        self._write_history()
        return record

    def history(self) -> list[dict]:
        """Every promotion and rejection, oldest first (from fresh listings, not ``history.jsonl``)."""
        urls = [self._promotion_url(seq) for seq in self._promotion_seqs()]
        rejections = storage.join(self.root, REJECTIONS)
        urls += [storage.join(rejections, n) for n in storage.list_names(rejections, **self.opts)
                 if n.endswith(".json")]
        if not urls:
            return []
        fs, _ = storage.filesystem(self.root, **self.opts)
        paths = [storage.filesystem(u, **self.opts)[1] for u in urls]
        contents = fs.cat(paths)  # a dict (keys normalised by fsspec); concurrent GETs on object stores
        records = [json.loads(data) for data in contents.values()]
        return sorted(records, key=lambda r: (r["decided_at"], r.get("seq") or 0))

    def _write_history(self) -> None:
        lines = "".join(json.dumps(r, sort_keys=True, default=str) + "\n" for r in self.history())
        storage.write_text(storage.join(self.root, HISTORY), lines, **self.opts)

    def _checked_package(self, version: str) -> str:
        """URL of the complete package of ``version``; ``PackageError``/``ValueError`` otherwise."""
        if version in RESERVED:
            raise ValueError(f"{version!r} is a reserved name in the registry, not a model version")
        url = self.package_url(version)
        config = read_package_config(url, self.opts)  # absent until the package is complete
        if config.get("name", self.name) != self.name:
            raise ValueError(f"package {url} is a {config['name']!r} model, not {self.name!r}")
        return url


def resolve_model(url: str, storage_options: dict[str, Any] | None = None) -> str:
    """A package URL as given; a registry URL (``<store>/models/<name>``) → its champion's package.

    Lets scheduled jobs name "whatever model is serving" instead of a fixed version.
    """
    opts = storage_options or {}
    parent, _, name = url.rstrip("/").rpartition("/")
    if not parent.endswith("/models") or storage.exists(storage.join(url, "config.json"), **opts):
        return url
    champion = Registry(parent[: -len("/models")], name, opts).champion()
    if champion is None:
        raise FileNotFoundError(f"no model has been promoted in {url} yet")
    return champion.model
