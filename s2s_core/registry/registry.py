"""Model registry in the store: packages, the serving champion and every promotion decision.

Layout under ``<store>/models/<name>/`` (any fsspec URL)::

    <version>/                      model package (written by training, complete once config.json exists)
    promotions/00000001.json        the champion log, one record per promotion; the highest number
              /00000002.json        is the champion (authoritative)
    rejections/<time>-<version>-<id>.json   one record per rejected challenger, with the reason
    current                         JSON copy of the highest promotion record, for people and tools
    history.jsonl                   every decision in time order (a snapshot rewritten after each one)

The highest promotion record says which model serves. ``current`` and ``history.jsonl`` are views
derived from the records after each decision, never from the decision at hand: a promoter that
finishes late cannot move ``current`` back behind a higher promotion (each writer re-reads the records
after writing and writes again until its views match them). After a crash they may lag until the
next decision; readers that must be right use ``champion()`` and ``history()``.

Every decision carries its run id, so a run re-executed after a crash finds the decision it already
made (``decision_of``) instead of judging its own promotion as a challenger.
"""

from __future__ import annotations

import json
import uuid
from contextlib import suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from s2s_core import storage
from s2s_core.inference.package import read_package_config
from s2s_core.storage import Store

PROMOTIONS, REJECTIONS, CURRENT, HISTORY = "promotions", "rejections", "current", "history.jsonl"
RESERVED = {PROMOTIONS, REJECTIONS, CURRENT, HISTORY}
SEQ_DIGITS = 8


class NoServingModel(FileNotFoundError):
    """A registry URL names a model none of whose versions has been promoted yet."""


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

    def __init__(self, store_url: str, name: str, storage_options: dict[str, Any] | None = None):
        self.store_url, self.name = store_url.rstrip("/"), name
        self.storage_options = dict(storage_options or {})
        self.url = storage.join(self.store_url, "models", name)
        self.folder = Store(self.url, self.storage_options)

    def package_url(self, version: str) -> str:
        return self.folder.url_of(version)

    @staticmethod
    def _promotion_name(seq: int) -> str:
        return f"{PROMOTIONS}/{seq:0{SEQ_DIGITS}d}.json"

    def _promotion_seqs(self) -> list[int]:
        names = self.folder.list_names(PROMOTIONS)
        return sorted(int(n[:-5]) for n in names if n.endswith(".json") and n[:-5].isdigit())

    def champion(self) -> Champion | None:
        """The serving model: the highest-numbered promotion (fresh listing), or None before the first."""
        seqs = self._promotion_seqs()
        if not seqs:
            return None
        record = self.folder.read_json(self._promotion_name(seqs[-1]))
        return Champion(seqs[-1], record["version"], record["model"], record)

    def promote(self, version: str, base: Champion | None, reason: str, details: dict | None = None,
                run_id: str | None = None) -> dict:
        """Make ``version`` the champion if ``base`` still is; ``PromotionConflict`` if another run won.

        ``base`` is the champion the challenger was judged against (None: there was none). This is a
        compare-and-swap: promotion N+1 is *created exclusively*, so of two runs judged against
        promotion N exactly one wins, and a run that dies at any point leaves nothing that blocks
        others (no lock, no lease). The package must be complete (its config.json exists) first, so a
        crash between writing it and promoting leaves the old champion serving.
        """
        url = self._checked_package(version)
        seq = (base.seq if base else 0) + 1
        record = {"decision": "promoted", "seq": seq, "version": version, "model": url,
                  "previous": {"seq": base.seq, "version": base.version} if base else None,
                  "reason": reason, "decided_at": _now(), "run_id": run_id, "details": details or {}}
        try:
            self.folder.create_bytes(self._promotion_name(seq), _json(record))
        except FileExistsError:
            self.folder.refresh(self._promotion_name(seq))
            winner = self.folder.read_json(self._promotion_name(seq))
            if not (run_id and (winner["version"], winner.get("run_id")) == (version, run_id)):
                raise PromotionConflict(f"lost the race: promotion {seq} went to {winner['version']} "
                                        f"(run {winner.get('run_id')}) first") from None
            record = winner  # our own earlier attempt (a retry after a crash): finish it
        self.publish_views()  # the record above is the switch; the views follow the records
        return record

    def reject(self, version: str, base: Champion | None, reason: str, details: dict | None = None,
               run_id: str | None = None) -> dict:
        """Record that ``version`` was not promoted, and why; the champion is untouched."""
        record = {"decision": "rejected", "version": version, "model": self.package_url(version),
                  "champion": {"seq": base.seq, "version": base.version} if base else None,
                  "reason": reason, "decided_at": _now(), "run_id": run_id, "details": details or {}}
        stamp = record["decided_at"].replace("-", "").replace(":", "")
        name = f"{stamp}-{version}-{uuid.uuid4().hex[:8]}.json"
        # Exclusive create: a record is never overwritten, even by a run that reuses a name. The name is
        # unique, so "exists" means our own put landed and its answer was lost (a retried request).
        with suppress(FileExistsError):
            self.folder.create_bytes(f"{REJECTIONS}/{name}", _json(record))
        self.publish_views()
        return record

    def decision_of(self, run_id: str, include_failures: bool = False) -> dict | None:
        """The decision run ``run_id`` already recorded (its promotion first), or None.

        Rejections recorded because the run itself failed (``details.failure``) are skipped unless
        asked for: a re-run that gets further deserves a real decision.
        """
        records = [r for r in self.history() if r.get("run_id") == run_id
                   and (include_failures or not r.get("details", {}).get("failure"))]
        promoted = [r for r in records if r["decision"] == "promoted"]
        return (promoted or records or [None])[-1]

    def history(self) -> list[dict]:
        """Every promotion and rejection, oldest first (from fresh listings, not ``history.jsonl``)."""
        names = [self._promotion_name(seq) for seq in self._promotion_seqs()]
        names += [f"{REJECTIONS}/{n}" for n in self.folder.list_names(REJECTIONS) if n.endswith(".json")]
        records = [json.loads(data) for data in self.folder.read_many(names).values()]
        return sorted(records, key=lambda r: (r["decided_at"], r.get("seq") or 0))

    def publish_views(self, rounds: int = 5) -> None:
        """Rewrite ``current`` and ``history.jsonl`` from the records until they match a fresh read.

        A concurrent decision recorded after our read is either seen on the re-read (we write again)
        or recorded after our last write, in which case its own writer publishes after us.
        """
        written = None
        for _ in range(rounds):
            history = self.history()
            promotions = [r for r in history if r["decision"] == "promoted"]
            views = (_json(max(promotions, key=lambda r: r["seq"])) if promotions else None,
                     "".join(json.dumps(r, sort_keys=True, default=str) + "\n" for r in history))
            if views == written:
                return
            if views[0] is not None:
                self.folder.write_bytes(CURRENT, views[0])
            self.folder.write_text(HISTORY, views[1])
            written = views

    def _checked_package(self, version: str) -> str:
        """URL of the complete package of ``version``; ``PackageError``/``ValueError`` otherwise."""
        if version in RESERVED:
            raise ValueError(f"{version!r} is a reserved name in the registry, not a model version")
        url = self.package_url(version)
        config = read_package_config(url, self.storage_options)  # absent until the package is complete
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
        raise NoServingModel(f"no model has been promoted in {url} yet")
    return champion.model
