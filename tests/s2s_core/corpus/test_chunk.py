"""Translating chunk by chunk: a resumed job translates only what is not committed yet."""

from __future__ import annotations

import dataclasses

import pytest

from s2s_core.corpus.plan import PlanMismatchError, plan_job
from s2s_core.corpus.verify import VerificationError, read_chunk_index, verify_output
from s2s_core.inference.translator import DecodeConfig
from tests.s2s_core.corpus.helpers import (
    DECODE,
    MODEL,
    NUMERICS,
    job,
    read_output,
    reverse_corpus,
    run_job,
    write_corpus,
)


def test_resumed_job_translates_only_uncommitted_chunks_and_verifies(tmp_path, translator):
    spec = job(reverse_corpus(tmp_path), tmp_path / "out", chunk_rows=20)
    plan, first = run_job(translator, spec, only={0, 2})
    with pytest.raises(VerificationError, match="3 of 5 chunks are not committed"):
        verify_output(spec, plan)
    before = {r["chunk"]: (tmp_path / "out/_done" / f"{r['chunk']}.json").read_bytes() for r in first}
    loads: list[int] = []
    plan, second = run_job(translator, spec, loads=loads)
    assert [r["skipped"] for r in second] == [True, False, True, False, False] and len(loads) == 3
    for chunk, marker in before.items():
        assert (tmp_path / "out/_done" / f"{chunk}.json").read_bytes() == marker
    manifest = verify_output(spec, plan, max_ids_in_memory=30)
    assert manifest["rows_in"] == manifest["rows_out"] == 87
    assert manifest["ids"] == {"column": "id", "aligned_with_input": True, "rows": 87, "unique": True,
                               "passes": 3}
    assert manifest["chunks"] == {"count": 5, "index": "_chunks.parquet"}  # totals only, not every chunk
    index = read_chunk_index(spec.output)
    assert [c["rows_out"] for c in index] == [20, 20, 10, 20, 17]
    assert sum(sum(c["statuses"].values()) for c in index) == 87 == sum(manifest["statuses"].values())
    out = read_output(tmp_path / "out")
    assert out.columns == ["id", "src", "n", "translation", "score", "status", "segments", "flags"]
    assert out["id"].to_list() == [f"r{i}" for i in range(87)]
    # A different chunk size (or model, or search) would mix two plans in one output.
    with pytest.raises(PlanMismatchError, match="different chunk_rows"):
        plan_job(dataclasses.replace(spec, chunk_rows=30), MODEL, DECODE, NUMERICS)
    # Batch size does not change hypotheses, so it may change between runs.
    plan_job(spec, MODEL, DecodeConfig(beam_size=1, max_len_extra=2, max_tokens=50), NUMERICS)


def test_parts_record_segments_and_with_n_best_a_list_of_alternatives(tmp_path, translator):
    texts = ["a b c", "d e\nf g h", None, "", "l k j"]
    write_corpus(tmp_path / "in/0.parquet", [f"r{i}" for i in range(len(texts))], texts, row_group_size=10)
    decode = DecodeConfig(beam_size=3, n_best=2, max_len_extra=2)
    spec = job(tmp_path / "in", tmp_path / "out", chunk_rows=3)
    verify_output(spec, run_job(translator, spec, decode)[0])
    out = read_output(tmp_path / "out")
    assert out["segments"].to_list() == [1, 2, 0, 0, 1]
    assert out["translation"][1].count("\n") == 1  # the row's line break kept between its lines
    nbest = out["nbest"].to_list()  # every row has its list (empty for empty input)
    assert [len(alternatives) for alternatives in nbest] == [2, 2, 0, 0, 2]
    assert [alternatives[0]["text"] for alternatives in nbest if alternatives] == (
        [t for t, s in zip(out["translation"], out["status"], strict=True) if s == "ok"])


def test_placeholder_counts_follow_the_row_flags_and_a_failed_row_is_not_exact():
    from s2s_core.corpus.chunk import placeholder_counts, placeholder_rate
    from s2s_core.text.spans import has_spans

    texts = ["Open %s", "Save <b>%d</b> files", "Plain", "Plain too", "{0} left", "%s failed", None, ""]
    statuses = ["ok", "ok", "ok", "ok", "truncated", "failed", "empty", "empty"]
    flags = [[], ["placeholder"], ["placeholder"], ["repetition"], [], [], [], None]
    counts = placeholder_counts(texts, statuses, flags, has_spans)
    assert counts == {"rows": 4, "exact": 2, "invented": 1}
    assert placeholder_rate(counts) == {"rows_with_spans": 4, "exact": 2, "rate": 0.5, "invented": 1}
    assert placeholder_rate({})["rate"] is None
