"""Incremental runs: a re-run over a changed input translates only new or changed files and ends with
exactly the output of a run from scratch; stale chunks go only after the new manifest is written."""

from __future__ import annotations

import json
import os
import shutil
import time
from collections import defaultdict
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from fsspec.implementations.local import LocalFileOpener, LocalFileSystem

from s2s_core.corpus import commit
from s2s_core.corpus.plan import PLAN, JobSpec, PlanMismatchError, plan_job
from s2s_core.corpus.verify import VerificationError, remove_stale, verify_output
from s2s_core.storage import Store
from tests.s2s_core.corpus.helpers import DECODE, MODEL, NUMERICS, job, read_output, reverse_corpus, run_job

HOUR = 3600


class CountingFileSystem(LocalFileSystem):
    """The real local filesystem, recording the byte ranges read from each file."""

    cachable = False  # fsspec would otherwise hand every test the same instance

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.reads: dict[str, list[tuple[int, int]]] = defaultdict(list)

    def _open(self, path, mode="rb", block_size=None, **kwargs):
        return _CountingOpener(self._strip_protocol(path), mode, fs=self, **kwargs)


class _CountingOpener(LocalFileOpener):
    def read(self, *args, **kwargs):
        start = self.f.tell()
        data = self.f.read(*args, **kwargs)
        self.fs.reads[self.path].append((start, start + len(data)))
        return data

    def readinto(self, buffer):
        start = self.f.tell()
        n = self.f.readinto(buffer)
        self.fs.reads[self.path].append((start, start + (n or 0)))
        return n


def counted_job(input: Path, output: Path, **settings) -> tuple[JobSpec, CountingFileSystem]:
    fs = CountingFileSystem()
    return JobSpec(Store(str(input), _fs=fs, _root=str(input)), Store(str(output)), **settings), fs


def run_all(translator, spec: JobSpec) -> tuple[list[dict], dict]:
    """One whole run as the flow does it: plan, translate what is pending, verify, clean up."""
    plan, records = run_job(translator, spec)
    manifest = verify_output(spec, plan)
    remove_stale(spec, plan, manifest)
    return records, manifest


def age(*paths: Path, seconds: float = HOUR) -> None:
    """Files written a while ago (their hashes are then trusted by the quick check)."""
    past = time.time() - seconds
    for path in paths:
        os.utime(path, (past, past))


def assert_same_output(left: pl.DataFrame, right: pl.DataFrame) -> None:
    assert left.drop("score").equals(right.drop("score"))
    assert left["score"].to_list() == pytest.approx(right["score"].to_list(), abs=1e-5)


def rewrite_same_size(path: Path) -> None:
    """Change one row's text to another of the same length: same file size, other content."""
    table = pq.read_table(path)
    texts = table.column("src").to_pylist()
    texts[3] = texts[3][::-1] if texts[3][::-1] != texts[3] else texts[3].replace(texts[3][0], "z", 1)
    pq.write_table(table.set_column(1, "src", pa.array(texts, pa.string())), path, row_group_size=10,
                   compression="none", write_statistics=False)


def uncompressed_corpus(tmp_path: Path, sizes: tuple[int, ...]) -> Path:
    """``reverse_corpus`` rewritten without compression or statistics: a same-length edit keeps the size."""
    root = Path(reverse_corpus(tmp_path, sizes=sizes, row_group_size=10))
    for path in root.glob("*.parquet"):
        pq.write_table(pq.read_table(path), path, row_group_size=10, compression="none",
                       write_statistics=False)
    return root


def test_an_incremental_run_translates_only_new_and_changed_files_and_equals_a_run_from_scratch(
        tmp_path, translator):
    corpus = uncompressed_corpus(tmp_path, (30, 25, 20, 15))
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "notes.txt").write_text("not ours")  # nothing but stale parts/markers is removed
    age(*corpus.glob("*.parquet"))
    spec = job(corpus, tmp_path / "out", chunk_rows=10)
    first, manifest = run_all(translator, spec)
    assert manifest["changes"]["files"]["reused"] == 0 and len(manifest["changes"]["files"]["added"]) == 4
    assert manifest["changes"]["rows"] == {"added": 90, "reused": 0, "removed": 0}
    assert {f["fingerprint"].split(":")[1] for f in manifest["inputs"]} == {"sha256"}
    old_chunks = {r["chunk"] for r in first}

    # A day later: one file rewritten (same size), one removed, one renamed, one added.
    size = (corpus / "2.parquet").stat().st_size
    rewrite_same_size(corpus / "2.parquet")
    assert (corpus / "2.parquet").stat().st_size == size
    (corpus / "1.parquet").unlink()
    (corpus / "3.parquet").rename(corpus / "3b.parquet")
    reverse_corpus(tmp_path, sizes=(90, 12), row_group_size=10, name="more")
    shutil.move(tmp_path / "more" / "1.parquet", corpus / "4.parquet")  # ids r90..r101: new rows
    spec, fs = counted_job(corpus, tmp_path / "out", chunk_rows=10)

    plan, records = run_job(translator, spec)
    translated = {r["chunk"] for r in records if not r["skipped"]}
    reused = {r["chunk"] for r in records if r["skipped"]}
    assert {c.path.rsplit("/", 1)[1] for c in plan.chunks if c.id in translated} == {
        "2.parquet", "3b.parquet", "4.parquet"}
    assert reused == {c.id for c in plan.chunks if c.path.endswith("/0.parquet")} and reused <= old_chunks
    # The untouched file was neither hashed again (size and old mtime unchanged) nor opened at all.
    assert fs.reads[str(corpus / "0.parquet")] == []
    assert fs.reads[str(corpus / "2.parquet")]  # its new mtime made it hashed again, and it changed

    manifest = verify_output(spec, plan)
    stale = old_chunks - {c.id for c in plan.chunks}
    assert stale and stale <= commit.committed_ids(spec.output)  # kept until the manifest is written
    changes = manifest["changes"]
    assert [f["path"] for f in changes["files"]["added"]] == ["2.parquet", "3b.parquet", "4.parquet"]
    assert [f["path"] for f in changes["files"]["removed"]] == ["1.parquet", "2.parquet", "3.parquet"]
    assert changes["files"]["reused"] == 1 and changes["files"]["rewritten"] == ["2.parquet"]
    assert changes["files"]["renamed"] == [{"from": "3.parquet", "to": "3b.parquet"}]
    assert changes["rows"] == {"added": 20 + 15 + 12, "reused": 30, "removed": 25 + 20 + 15}
    assert changes["chunks"] == {"added": 2 + 2 + 2, "reused": 3, "removed": 3 + 2 + 2}
    assert manifest["rows_in"] == manifest["rows_out"] == 77 and manifest["files"] == 4
    assert [f["path"] for f in manifest["inputs"]] == ["0.parquet", "2.parquet", "3b.parquet", "4.parquet"]

    assert remove_stale(spec, plan, manifest) == {"markers": len(stale), "parts": len(stale)}
    planned = {c.id for c in plan.chunks}
    assert commit.committed_ids(spec.output) == planned
    assert {p.name for p in (tmp_path / "out").glob("part-*")} == {commit.part_name(c) for c in planned}
    assert (tmp_path / "out" / "notes.txt").exists()

    # A run from scratch over today's input names the same chunks and holds the same rows.
    scratch = job(corpus, tmp_path / "scratch", chunk_rows=10)
    run_all(translator, scratch)
    assert {p.name for p in (tmp_path / "scratch").glob("part-*")} == {commit.part_name(c) for c in planned}
    out = read_output(tmp_path / "out")
    assert out["id"].to_list() == [f"r{i}" for i in [*range(30), *range(55, 90), *range(90, 102)]]
    assert_same_output(out, read_output(tmp_path / "scratch"))


def test_stale_chunks_left_by_a_crash_before_clean_up_are_removed_by_the_next_run(tmp_path, translator):
    corpus = Path(reverse_corpus(tmp_path, sizes=(20, 20), row_group_size=10))
    spec = job(corpus, tmp_path / "out", chunk_rows=10)
    run_all(translator, spec)
    (corpus / "1.parquet").unlink()
    plan, _ = run_job(translator, spec)
    verify_output(spec, plan)  # the manifest is written; the process dies before remove_stale
    assert len(commit.committed_ids(spec.output)) == 4

    # The next run's verification does not call the stale markers a mix of two jobs; it removes them.
    records, manifest = run_all(translator, spec)
    assert all(r["skipped"] for r in records) and manifest["changes"]["files"]["removed"] == []
    assert commit.committed_ids(spec.output) == {c.id for c in plan.chunks}
    assert len(list((tmp_path / "out").glob("part-*.parquet"))) == 2

    # A marker committed under other settings is still refused, and nothing is removed.
    foreign = "0123456789abcdef-0000000000-0000000010"
    commit.commit(spec.output, foreign, {"plan": "another-plan", "rows_out": 10})
    with pytest.raises(VerificationError, match="other settings.*mixes two jobs"):
        verify_output(spec, plan)
    assert foreign in commit.committed_ids(spec.output)


def test_chunks_committed_after_this_run_listed_its_input_are_not_removed_as_stale(tmp_path, translator):
    corpus = Path(reverse_corpus(tmp_path, sizes=(20,), row_group_size=10))
    spec = job(corpus, tmp_path / "out", chunk_rows=10)
    plan, _ = run_job(translator, spec)  # this run listed one file
    reverse_corpus(tmp_path, sizes=(20, 10), row_group_size=10, name="more")
    shutil.move(tmp_path / "more" / "1.parquet", corpus / "1.parquet")
    newer, _ = run_job(translator, spec)  # a concurrent run listed a new file and committed its chunk
    manifest = verify_output(spec, plan)
    assert remove_stale(spec, plan, manifest) == {"markers": 0, "parts": 0}
    assert commit.committed_ids(spec.output) == {c.id for c in newer.chunks}
    _, manifest = run_all(translator, spec)  # the next run lists it too, and finds it committed
    assert manifest["rows_out"] == 30 and len(list((tmp_path / "out").glob("part-*"))) == 3


def test_a_recently_modified_file_is_hashed_again_and_kept_if_its_content_is_the_same(tmp_path, translator):
    corpus = Path(reverse_corpus(tmp_path, sizes=(20, 20), row_group_size=10))
    age(*corpus.glob("*.parquet"))
    run_all(translator, job(corpus, tmp_path / "out", chunk_rows=10))
    os.utime(corpus / "1.parquet")  # touched (mtime now): its recorded hash is not trusted
    spec, fs = counted_job(corpus, tmp_path / "out", chunk_rows=10)
    records, manifest = run_all(translator, spec)
    assert all(r["skipped"] for r in records)  # same content, same chunk ids: nothing translated
    assert fs.reads[str(corpus / "0.parquet")] == [] and fs.reads[str(corpus / "1.parquet")]
    assert manifest["changes"]["files"]["reused"] == 2 and manifest["changes"]["files"]["added"] == []
    hashed = {f["path"]: f["hashed_at"] for f in manifest["inputs"]}
    assert hashed["1.parquet"] > hashed["0.parquet"]


def test_on_s3_fingerprints_come_from_the_listing_and_a_rewrite_is_translated_again(tmp_path, translator,
                                                                                    s3_server):
    import s3fs

    opts = s3_server["storage_options"]
    fs = s3fs.S3FileSystem(**opts)
    fs.mkdir("s2s-incremental")
    corpus = Path(reverse_corpus(tmp_path, sizes=(20, 20, 20), row_group_size=10))
    fs.put(str(corpus) + "/", "s2s-incremental/in/", recursive=True)

    def s3_job(output: str) -> JobSpec:
        return JobSpec(Store("s3://s2s-incremental/in", opts), Store(f"s3://s2s-incremental/{output}", opts),
                       chunk_rows=10)

    _, manifest = run_all(translator, s3_job("out"))
    assert {f["fingerprint"].split(":")[1] for f in manifest["inputs"]} == {"etag"}
    rewrite_same_size(corpus / "1.parquet")
    fs.put(str(corpus / "1.parquet"), "s2s-incremental/in/1.parquet")
    fs.rm("s2s-incremental/in/2.parquet")
    # S3 times are whole seconds: a chunk counts as stale once it is surely older than the next plan.
    time.sleep(1.1)

    records, manifest = run_all(translator, s3_job("out"))
    assert sum(not r["skipped"] for r in records) == 2 and sum(r["skipped"] for r in records) == 2
    assert manifest["changes"]["files"]["rewritten"] == ["1.parquet"]
    assert [f["path"] for f in manifest["changes"]["files"]["removed"]] == ["1.parquet", "2.parquet"]
    run_all(translator, s3_job("scratch"))
    fs.invalidate_cache()
    parts = {p.rsplit("/", 1)[1] for p in fs.glob("s2s-incremental/out/part-*")}
    assert parts == {p.rsplit("/", 1)[1] for p in fs.glob("s2s-incremental/scratch/part-*")}
    assert len(fs.ls("s2s-incremental/out/_done", refresh=True)) == 4
    from tests.faults.trials import read_parts

    assert_same_output(read_parts("s2s-incremental/out", fs), read_parts("s2s-incremental/scratch", fs))


def test_settings_stay_pinned_and_an_older_output_format_is_refused(tmp_path, translator):
    corpus = reverse_corpus(tmp_path, sizes=(20,), row_group_size=10)
    spec = job(corpus, tmp_path / "out", chunk_rows=10)
    plan_job(spec, MODEL, DECODE, NUMERICS)
    other_input = reverse_corpus(tmp_path, sizes=(20,), row_group_size=10, name="elsewhere")
    with pytest.raises(PlanMismatchError, match="different input"):
        plan_job(job(other_input, tmp_path / "out", chunk_rows=10), MODEL, DECODE, NUMERICS)
    pinned = json.loads((tmp_path / "out" / PLAN).read_text())
    (tmp_path / "out" / PLAN).write_text(json.dumps({**pinned, "format": 2}))
    with pytest.raises(PlanMismatchError, match=r"older s2s \(plan format 2, now 3"):
        plan_job(spec, MODEL, DECODE, NUMERICS)


def test_memory_and_flag_counts_in_markers_are_summed_into_the_manifest(tmp_path, translator):
    spec = job(reverse_corpus(tmp_path, sizes=(30,), row_group_size=10), tmp_path / "out", chunk_rows=10)
    plan, records = run_job(translator, spec)
    markers = commit.read_markers(spec.output, [r["chunk"] for r in records])
    for chunk, marker in markers.items():  # markers of a version that records neither
        commit.recommit(spec.output, chunk, {k: v for k, v in marker.items() if k not in ("memory", "flags")})
    manifest = verify_output(spec, plan)
    assert "memory" not in manifest and "flags" not in manifest
    for i, (chunk, marker) in enumerate(markers.items()):  # what the memory and the quality flags record
        commit.recommit(spec.output, chunk, {**marker, "memory": {"hits": i, "misses": 10 - i},
                                             "flags": {"copy": 1, **({"long": 2} if i else {})}})
    manifest = verify_output(spec, plan)
    assert manifest["memory"] == {"hits": 3, "misses": 27} and manifest["flags"] == {"copy": 3, "long": 4}
    assert json.loads((tmp_path / "out" / "manifest.json").read_text())["memory"] == manifest["memory"]
