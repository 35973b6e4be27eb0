"""Find null and repeated ids in a stream of id arrays too large to hold, in bounded memory.

Ids are hashed to 64 bits and only the hashes are kept: 8 bytes a row instead of the ids
themselves. When even that exceeds ``max_ids_in_memory`` rows, the stream is read several times
and each pass keeps only the hashes of one residue class (``hash % passes``), so memory stays
bounded whatever the corpus size, at the price of re-reading the id column once per pass.
Equal hashes are only candidates (a 64-bit collision among 10⁹ ids has a few-percent chance):
a final pass collects the ids behind candidate hashes and compares the ids themselves, so a
reported duplicate is always real and a real duplicate is never missed.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np
import polars as pl
import pyarrow as pa

from s2s_core.corpus.columns import canonical_ids
from s2s_core.errors import InputDataError

DEFAULT_MAX_IDS_IN_MEMORY = 16_000_000  # 128 MB of hashes (+ as much again while concatenating)


@dataclass
class IdReport:
    rows: int
    nulls: int
    passes: int
    duplicates: dict[str, int] = field(default_factory=dict)  # a few repeated ids → occurrences

    @property
    def ok(self) -> bool:
        return not self.nulls and not self.duplicates


def hash_ids(ids: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """64-bit hashes of the non-null ids and the mask of non-null positions (ids of one kind hash
    alike whatever their encoding: ``canonical_ids``)."""
    series = pl.Series(values=canonical_ids(ids))
    valid = series.is_not_null().to_numpy()
    return series.filter(series.is_not_null()).hash(seed=0).to_numpy(), valid


def find_duplicate_ids(stream: Callable[[], Iterator[pa.Array]], total_rows: int,
                       max_ids_in_memory: int = DEFAULT_MAX_IDS_IN_MEMORY, examples: int = 5) -> IdReport:
    """Check the ids yielded by ``stream()`` (called once per pass) for nulls and repeats."""
    passes = max(1, math.ceil(total_rows / max(1, max_ids_in_memory)))
    rows = nulls = 0
    candidates: list[np.ndarray] = []
    for p in range(passes):
        kept: list[np.ndarray] = []
        for ids in stream():
            hashes, valid = hash_ids(ids)
            if p == 0:
                rows += len(valid)
                nulls += int(len(valid) - valid.sum())
            kept.append(hashes if passes == 1 else hashes[hashes % np.uint64(passes) == p])
        merged = np.concatenate(kept) if kept else np.empty(0, np.uint64)
        del kept
        merged.sort()  # in place: no third copy
        repeated = merged[1:][merged[1:] == merged[:-1]]
        candidates.append(np.unique(repeated))
        del merged
    suspects = np.concatenate(candidates)
    duplicates: dict[str, int] = {}
    if len(suspects):
        counts: Counter[str] = Counter()
        for ids in stream():  # confirmation pass: compare the ids themselves, not their hashes
            hashes, valid = hash_ids(ids)
            values = pl.Series(values=canonical_ids(ids)).filter(pl.Series(valid))
            counts.update(str(v) for v in values.filter(pl.Series(np.isin(hashes, suspects))).to_list())
        duplicates = dict(sorted(((k, n) for k, n in counts.items() if n > 1),
                                 key=lambda kv: (-kv[1], kv[0]))[:examples])
    return IdReport(rows, nulls, passes, duplicates)


def check_ids(stream: Callable[[], Iterator[pa.Array]], rows: int, where: str,
              max_ids_in_memory: int = DEFAULT_MAX_IDS_IN_MEMORY) -> dict:
    """Raise ``InputDataError`` on null or repeated ids; returns the check's summary."""
    report = find_duplicate_ids(stream, rows, max_ids_in_memory)
    if report.nulls:
        raise InputDataError(f"{where}: {report.nulls} rows have a null id")
    if report.duplicates:
        shown = ", ".join(f"{k!r} ×{n}" for k, n in report.duplicates.items())
        raise InputDataError(f"{where}: ids are not unique ({shown}); "
                             "pass another --id-column or --id-column ''")
    return {"rows": report.rows, "unique": True, "passes": report.passes}
