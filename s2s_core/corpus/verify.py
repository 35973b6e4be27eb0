"""Verify a finished corpus translation chunk by chunk, then write ``manifest.json``.

Checks, each reading footers, markers or one column at a time (memory does not grow with the
corpus, apart from the 8-byte id hashes bounded in ``idcheck``):
every planned chunk is committed and no unplanned one is; every part has exactly its chunk's rows;
the output ids, read part by part, equal the input ids row for row; the output ids are unique.
A manifest is written only when all checks pass, so its presence marks a complete, verified output.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime

import pyarrow as pa

from s2s_core.corpus import commit
from s2s_core.corpus.commit import OUTPUT_COLUMNS
from s2s_core.corpus.files import iter_column
from s2s_core.corpus.idcheck import DEFAULT_MAX_IDS_IN_MEMORY, check_ids
from s2s_core.corpus.plan import JobPlan, JobSpec

MANIFEST = "manifest.json"
MANIFEST_FORMAT = 1


class VerificationError(RuntimeError):
    """The output does not hold every input row exactly once."""


def verify_output(spec: JobSpec, plan: JobPlan, this_run: dict | None = None,
                  max_ids_in_memory: int = DEFAULT_MAX_IDS_IN_MEMORY) -> dict:
    """Verify the output against the plan and write ``manifest.json``; raises ``VerificationError``."""
    chunks = _check_chunks(spec, plan)
    ids = _check_ids(spec, plan, max_ids_in_memory) if spec.id_column else {"column": None}
    statuses: Counter[str] = Counter()
    for chunk in chunks:
        statuses.update(chunk["statuses"])
    seconds = _seconds(chunks)
    rows, target_tokens = plan.corpus.rows, sum(c["target_tokens"] for c in chunks)
    model_seconds = seconds["translate"] or 1e-9
    manifest = {
        "format": MANIFEST_FORMAT, "input": spec.input.url, "output": spec.output.url,
        "plan": plan.fingerprint, "model": plan.record["model"], "decode": plan.record["decode"],
        "columns": {"text": spec.text_column, "id": spec.id_column, "added": list(OUTPUT_COLUMNS)},
        "chunk_rows": spec.chunk_rows, "files": len(plan.corpus.files),
        "rows_in": rows, "rows_out": sum(c["rows_out"] for c in chunks),
        "statuses": dict(sorted(statuses.items())), "ids": ids,
        "source_tokens": sum(c["source_tokens"] for c in chunks), "target_tokens": target_tokens,
        "seconds": seconds,
        # Model-time throughput of one worker (sum over chunks): independent of worker count and
        # of time outside the model; this_run has the wall-clock view.
        "throughput": {"sentences_per_model_second": round(rows / model_seconds, 2),
                       "target_tokens_per_model_second": round(target_tokens / model_seconds, 2)},
        "this_run": this_run or {},
        "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "chunks": chunks,
    }
    if manifest["rows_out"] != manifest["rows_in"]:  # implied by the per-chunk checks; kept explicit
        raise VerificationError(f"{manifest['rows_in']} rows in, {manifest['rows_out']} rows out")
    spec.output.write_json(MANIFEST, manifest)
    return manifest


def first_difference(left: Iterator[pa.Array], right: Iterator[pa.Array]) -> int | None:
    """Position of the first element where two streams of arrays differ (None if identical)."""
    pos = 0
    x: pa.Array | None = pa.array([])
    y: pa.Array | None = pa.array([])
    while True:
        while x is not None and len(x) == 0:
            x = next(left, None)
        while y is not None and len(y) == 0:
            y = next(right, None)
        if x is None or y is None:
            return None if x is None and y is None else pos
        n = min(len(x), len(y))
        a, b = x.slice(0, n), y.slice(0, n)
        if not a.equals(b):
            return pos + next(i for i, (u, v) in enumerate(zip(a.to_pylist(), b.to_pylist(), strict=True))
                              if u != v)
        x, y, pos = x.slice(n), y.slice(n), pos + n


def _check_chunks(spec: JobSpec, plan: JobPlan) -> list[dict]:
    """Commit markers and part row counts against the plan; returns one summary per chunk."""
    planned = [c.id for c in plan.chunks]
    committed = commit.committed_ids(spec.output)
    missing = [c for c in planned if c not in committed]
    if missing:
        raise VerificationError(f"{len(missing)} of {len(planned)} chunks are not committed "
                                f"(first {missing[0]}); run the same command again to finish them")
    unplanned = sorted(committed - set(planned))
    if unplanned:
        raise VerificationError(f"{spec.output.url_of(commit.DONE_DIR)} holds markers of chunks outside "
                                f"the plan ({unplanned[:3]}); the output mixes two jobs")
    markers = commit.read_markers(spec.output, planned)
    summaries, problems = [], []
    for chunk in plan.chunks:
        marker = markers[chunk.id]
        rows_out = commit.part_rows(spec.output, chunk.id)
        if marker.get("plan") != plan.fingerprint:
            problems.append(f"chunk {chunk.id} was committed under another plan")
        if not rows_out == marker["rows_out"] == chunk.rows:
            problems.append(f"chunk {chunk.id}: {chunk.rows} rows in, part holds {rows_out}, "
                            f"marker says {marker['rows_out']}")
        summaries.append({"chunk": chunk.id, "part": marker["part"], "file": chunk.file_index,
                          "rows_in": chunk.rows, "rows_out": rows_out, "statuses": marker["statuses"],
                          "source_tokens": marker["source_tokens"], "target_tokens": marker["target_tokens"],
                          "seconds": marker["seconds"], "pid": marker.get("pid"), "host": marker.get("host")})
    if problems:
        raise VerificationError(f"{len(problems)} problem(s) in {spec.output.url}: "
                                + "; ".join(problems[:5]))
    return summaries


def _check_ids(spec: JobSpec, plan: JobPlan, max_ids_in_memory: int) -> dict:
    """Output ids equal the input ids in order, and are unique."""
    column = spec.id_column

    def output_ids() -> Iterator[pa.Array]:
        return (commit.read_part_column(spec.output, c.id, column) for c in plan.chunks)

    where = first_difference(iter_column(spec.input, plan.corpus, column), output_ids())
    if where is not None:
        raise VerificationError(f"output row {where} does not carry input row {where}'s id: "
                                f"rows are misaligned")
    try:
        summary = check_ids(output_ids, plan.corpus.rows, f"output {spec.output.url}", max_ids_in_memory)
    except ValueError as err:
        raise VerificationError(str(err)) from None
    return {"column": column, "aligned_with_input": True, **summary}


def _seconds(chunks: list[dict]) -> dict:
    keys = ("read", "load", "translate", "write", "total")
    return {k: round(sum(c["seconds"][k] for c in chunks), 3) for k in keys}
