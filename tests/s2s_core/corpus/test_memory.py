"""The translation memory: a sentence a model translated once is never translated again by it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import unicodedata
from collections import Counter
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from s2s_core.corpus import commit
from s2s_core.corpus.chunk import Translate, translate_chunk
from s2s_core.corpus.memory import (
    KEY,
    NAMESPACE_FILE,
    MemoryMismatchError,
    ShardCache,
    TranslationMemory,
    is_remembered,
    namespace_of,
    open_memory,
    text_key,
)
from s2s_core.corpus.plan import plan_job
from s2s_core.inference.translator import DecodeConfig, Translation, Translator
from s2s_core.storage import Store
from tests.s2s_core.corpus import memory_writer
from tests.s2s_core.corpus.helpers import DECODE, MODEL, NUMERICS, job, write_corpus

ROOT = Path(__file__).resolve().parents[3]
KEYED_BY = {"model": "abc", "numerics": {"device": "cpu"}, "decode": {"beam_size": 1}}


def counting(translator: Translator, calls: list[str], loads: list[int] | None = None,
             decode: DecodeConfig = DECODE):
    """A model loader whose translations are counted: every remembered text it is asked for."""
    def load() -> Translate:
        if loads is not None:
            loads.append(1)

        def translate(texts):
            calls.extend(t for t in texts if is_remembered(t))
            return translator.translate(texts, decode)
        return translate

    return load


def translate_job(spec, load, memory=None, decode: DecodeConfig = DECODE) -> tuple[list[dict], pa.Table]:
    """Translate every chunk of the job in this process; its markers and its rows in corpus order."""
    plan = plan_job(spec, MODEL, decode, NUMERICS)
    records = [translate_chunk(spec, plan.fingerprint, c, load, memory=memory) for c in plan.chunks]
    rows = pa.concat_tables([commit.read_part(spec.output, c.id) for c in plan.chunks])
    return records, rows


def entries(texts: list[str]) -> pa.Table:
    return memory_writer.entries(texts)


def assert_same_rows(left: pa.Table, right: pa.Table) -> None:
    """Equal row for row, scores to float32 precision (padding in other batches moves the last digits)."""
    exact = [n for n in left.column_names if n not in ("score", "nbest")]
    assert left.schema == right.schema and left.select(exact).equals(right.select(exact))
    assert left.column("score").to_pylist() == pytest.approx(right.column("score").to_pylist(), abs=1e-5)
    if "nbest" in left.column_names:
        pairs = zip(left.column("nbest").to_pylist(), right.column("nbest").to_pylist(), strict=True)
        for mine, theirs in pairs:
            assert [x["text"] for x in mine] == [x["text"] for x in theirs]
            assert [x["score"] for x in mine] == pytest.approx([x["score"] for x in theirs], abs=1e-5)


def lookup_values(memory: TranslationMemory, texts: list[str]) -> dict[str, str]:
    """Text → remembered translation, for the texts the memory holds."""
    found = memory.lookup(text_key(t) for t in texts)
    if found is None:
        return {}
    by_key = dict(zip(found.column(KEY).to_pylist(), found.column("translation").to_pylist(), strict=True))
    return {t: by_key[text_key(t)] for t in texts if text_key(t) in by_key}


# ------------------------------------------------------------------------------ keys and namespaces


def test_keys_never_merge_texts_the_translator_translates_differently(translator):
    # Variants a normalization might merge: Unicode forms, and the whitespace a multi-line row keeps.
    texts = ["a b c\n\u2000d e", "a b c\n\u2002d e", "  a b c\nd e  ", "a b c\nd e", "a b c\n\nd e",
             "a b c", " a b c ", "a  b c", "e\u0301 a", "\u00e9 a", "a b c\r\nd e", "a b c"]
    rows = {t: (o.text, o.score, o.status, o.segments) for t, o in
            zip(texts, translator.translate(texts, DECODE), strict=True)}
    groups: dict[bytes, set[str]] = {}
    for text in texts:
        groups.setdefault(text_key(text), set()).add(text)
    for same_key in groups.values():
        assert len({rows[t] for t in same_key}) == 1, f"one key for texts translated differently: {same_key}"
    # Why keys take the text exactly: each tempting normalization merges texts translated differently
    # (NFC turns U+2000 EN QUAD into U+2002 EN SPACE, which the row keeps between its lines).
    for normalize in (lambda t: unicodedata.normalize("NFC", t), lambda t: unicodedata.normalize("NFKC", t),
                      str.strip, lambda t: " ".join(t.split())):
        assert any(normalize(a) == normalize(b) and rows[a] != rows[b] for a in texts for b in texts)


def test_null_and_blank_rows_are_not_remembered():
    assert [is_remembered(t) for t in (None, "", " ", "\n\t", "a", " a ")] == [False] * 4 + [True] * 2


def test_namespaces_separate_models_settings_and_numerics(tmp_path):
    store = Store(str(tmp_path / "mem"))
    first = open_memory(store, KEYED_BY)
    first.write(entries(["hello"]))
    for change in ({"model": "abd"}, {"decode": {"beam_size": 5}}, {"numerics": {"device": "cuda"}}):
        other = open_memory(store, {**KEYED_BY, **change})
        assert other.store.url != first.store.url and lookup_values(other, ["hello"]) == {}
    same = open_memory(store, dict(reversed(KEYED_BY.items())))  # key order does not matter
    assert lookup_values(same, ["hello"]) == {"hello": "HELLO"}
    record = json.loads((tmp_path / "mem" / namespace_of(KEYED_BY) / NAMESPACE_FILE).read_text())
    assert record["keyed_by"] == KEYED_BY and record["partitions"] == first.partitions
    # A namespace directory that records other settings (edited, copied, a hash collision) is refused.
    (tmp_path / "mem" / namespace_of(KEYED_BY) / NAMESPACE_FILE).write_text(
        json.dumps({**record, "keyed_by": {**KEYED_BY, "model": "zzz"}}))
    with pytest.raises(MemoryMismatchError, match="keyed by other settings"):
        open_memory(store, KEYED_BY)


def test_the_recorded_partition_count_wins_over_a_new_default(tmp_path):
    store = Store(str(tmp_path / "mem"))
    open_memory(store, KEYED_BY, partitions=4).write(entries([f"t{i}" for i in range(40)]))
    reopened = open_memory(store, KEYED_BY, partitions=16)
    assert reopened.partitions == 4
    assert len(lookup_values(reopened, [f"t{i}" for i in range(40)])) == 40


# ------------------------------------------------------------------------------ lookups and writes


def test_lookup_finds_exactly_what_was_written(tmp_path):
    memory = TranslationMemory(Store(str(tmp_path / "mem")), partitions=4)
    assert memory.lookup([]) is None and memory.lookup([text_key("x")]) is None
    assert memory.write(entries(["a", "b", "a", "c"])) == 3  # duplicates within a write: one entry
    found = memory.lookup(text_key(t) for t in ("a", "b", "nope", "b"))
    assert found.num_rows == 2
    expected = entries(["a", "b"])
    assert found.sort_by(KEY).equals(expected.sort_by(KEY))


def test_compaction_merges_levels_keeps_every_entry_once_and_bounds_files(tmp_path):
    memory = TranslationMemory(Store(str(tmp_path / "mem")), partitions=1, fanout=3, max_shard_rows=90)
    texts = []
    for batch in range(40):
        batch_texts = [f"{batch}-{i}" for i in range(10)] + ["always"]  # "always" is rewritten every time
        memory.write(entries(batch_texts))
        texts += batch_texts
        assert len(memory.shard_names(0)) <= 2 * (3 - 1) + 1 + batch // 8  # levels below the cap + full
    shards = [pq.read_table(tmp_path / "mem" / "p000" / n) for n in memory.shard_names(0)]
    assert all(s.num_rows <= 90 for s in shards)  # merges never exceed the cap
    keys = [k for s in shards for k in s.column(KEY).to_pylist()]
    assert all(len(set(s.column(KEY).to_pylist())) == s.num_rows for s in shards)  # deduplicated
    assert set(keys) == {text_key(t) for t in texts}
    assert all(s.column(KEY).to_pylist() == sorted(s.column(KEY).to_pylist()) for s in shards)
    assert lookup_values(memory, texts) == {t: t.upper() for t in texts}
    assert not [n for n in os.listdir(tmp_path / "mem" / "p000") if not n.endswith(".parquet")]


def test_a_compaction_that_finds_a_shard_gone_writes_and_deletes_nothing(tmp_path):
    memory = TranslationMemory(Store(str(tmp_path / "mem")), partitions=1, fanout=100)
    for batch in range(3):
        memory.write(entries([f"{batch}-{i}" for i in range(5)]))
    names = memory.shard_names(0)
    (tmp_path / "mem" / "p000" / names[0]).unlink()  # another compactor merged and removed it
    assert not memory._merge("p000", names, 1)
    assert memory.shard_names(0) == names[1:]


def test_a_lookup_whose_listing_is_stale_lists_again(tmp_path, monkeypatch):
    memory = TranslationMemory(Store(str(tmp_path / "mem")), partitions=1, fanout=100)
    for batch in range(3):
        memory.write(entries([f"{batch}-{i}" for i in range(5)]))
    stale = memory.store.list_names("p000")
    assert memory.compact(0) == 0
    memory.fanout = 2
    assert memory.compact(0) == 3  # merged: the listed shards are gone
    listings = iter([stale])
    fresh = memory.store.list_names
    monkeypatch.setattr(memory.store, "list_names", lambda name="": next(listings, None) or fresh(name))
    texts = [f"{b}-{i}" for b in range(3) for i in range(5)]
    assert lookup_values(memory, texts) == {t: t.upper() for t in texts}


def test_a_damaged_shard_is_skipped_not_fatal(tmp_path, caplog):
    memory = TranslationMemory(Store(str(tmp_path / "mem")), partitions=1, fanout=3)
    memory.write(entries(["a", "b"]))
    (first,) = memory.shard_names(0)  # the shard of "a" and "b" (names are random: pick it now)
    memory.write(entries(["c"]))
    damaged = tmp_path / "mem" / "p000" / first
    damaged.write_bytes(damaged.read_bytes()[:40])  # cut off by a bad copy
    found = lookup_values(memory, ["a", "b", "c"])
    assert len(found) == 1 and "unreadable" in caplog.text
    memory.write(entries(["d"]))  # the compaction leaves the damaged shard out, and the rest merged
    assert damaged.exists() and len(memory.shard_names(0)) == 2
    assert len(lookup_values(memory, ["a", "b", "c", "d"])) == 2


def test_the_shard_cache_stays_within_its_byte_budget(tmp_path):
    cache = ShardCache(budget_bytes=40_000)
    memory = TranslationMemory(Store(str(tmp_path / "mem")), partitions=2, fanout=1000, cache=cache)
    texts = [f"t{i}" for i in range(6000)]
    for start in range(0, len(texts), 500):
        memory.write(entries(texts[start:start + 500]))
    for start in range(0, len(texts), 1000):
        assert lookup_values(memory, texts[start:start + 1000]) == {t: t.upper() for t in
                                                                   texts[start:start + 1000]}
        assert cache.used <= cache.budget
    assert 0 < cache.used <= 40_000
    assert len(cache._items) < 2 * 12 * 2  # evicted: not every footer and key array is kept
    cache.clear()
    assert cache.used == 0


def test_concurrent_writers_and_compactors_lose_nothing(tmp_path):
    """Two processes and four threads write (and compact) the same two partitions at once, while a
    reader checks its own writes are readable; afterwards every entry is there, exactly."""
    directory = str(tmp_path / "mem")
    batches, rows = 12, 20
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    processes = [subprocess.Popen([sys.executable, "-m", "tests.s2s_core.corpus.memory_writer", directory,
                                   f"proc{i}", str(batches), str(rows)], cwd=ROOT, env=env)
                 for i in range(2)]
    errors: list[BaseException] = []

    def write(writer: str) -> None:
        try:
            handle = memory_writer.memory(directory)
            for batch in range(batches):
                texts = memory_writer.batch_texts(writer, batch, rows)
                handle.write(entries(texts))
                # read-your-writes while others compact these partitions
                assert lookup_values(handle, texts) == {t: t.upper() for t in texts}
        except BaseException as err:  # noqa: BLE001 - reported by the main thread
            errors.append(err)

    threads = [threading.Thread(target=write, args=(f"thread{i}",)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert [p.wait(timeout=300) for p in processes] == [0, 0]
    assert not errors, errors
    handle = memory_writer.memory(directory)
    writers = [f"proc{i}" for i in range(2)] + [f"thread{i}" for i in range(4)]
    texts = [t for w in writers for b in range(batches) for t in memory_writer.batch_texts(w, b, rows)]
    found = handle.lookup(text_key(t) for t in texts)
    expected = entries(sorted(set(texts)))
    assert found.sort_by(KEY).equals(expected.sort_by(KEY))
    for partition in range(handle.partitions):  # compacted: fewer than ``fanout`` shards per level
        handle.compact(partition)
        levels = Counter(name[:3] for name in handle.shard_names(partition))
        assert max(levels.values()) < memory_writer.FANOUT and len(levels) <= 6
    leftovers = [n for _, _, names in os.walk(directory) for n in names if n.startswith(".")]
    assert not leftovers


def test_the_memory_on_s3(s3_server):
    import s3fs

    options = s3_server["storage_options"]
    s3fs.S3FileSystem(client_kwargs=options).mkdir("memory-bucket")
    store = Store("s3://memory-bucket/mem", options)
    memory = open_memory(store, KEYED_BY, partitions=2, fanout=2)
    texts = [f"s{i}" for i in range(30)]
    for start in range(0, 30, 5):
        memory.write(entries(texts[start:start + 5]))
    assert lookup_values(memory, texts + ["nope"]) == {t: t.upper() for t in texts}
    assert all(len(memory.shard_names(p)) < 4 for p in range(2))  # compacted
    again = open_memory(Store("s3://memory-bucket/mem", options), KEYED_BY)
    assert again.partitions == 2 and lookup_values(again, texts[:3]) == {t: t.upper() for t in texts[:3]}


# ------------------------------------------------------------------------------ translating chunks


def repeating_corpus(tmp_path: Path, name: str = "in") -> str:
    """Two files whose rows repeat sentences across chunks and files (and nulls, blanks, multi-line)."""
    sentences = ["a b c", "d e f g", "h i j", "k l a b", "c\nd e", "f g h i j", "a b c d e f"]
    texts = [sentences[(i * 3) % len(sentences)] for i in range(40)] + [None, "", "  "]
    texts += [sentences[i % len(sentences)] + (" k" if i % 2 else "") for i in range(30)]
    write_corpus(tmp_path / name / "0.parquet", [f"r{i}" for i in range(43)], texts[:43], row_group_size=5)
    write_corpus(tmp_path / name / "1.parquet", [f"r{i}" for i in range(43, len(texts))], texts[43:],
                 row_group_size=5)
    return str(tmp_path / name)


def test_a_sentence_is_translated_once_across_chunks_files_runs_and_outputs(tmp_path, translator):
    corpus = repeating_corpus(tmp_path)
    memory = open_memory(Store(str(tmp_path / "mem")), KEYED_BY)
    calls: list[str] = []
    records, first = translate_job(job(corpus, tmp_path / "out1", chunk_rows=10), counting(translator, calls),
                                   memory)
    texts = first.column("src").to_pylist()
    distinct = {t for t in texts if is_remembered(t)}
    assert Counter(calls) == dict.fromkeys(distinct, 1)  # every sentence once, across chunks and files
    totals = Counter()
    for record in records:
        totals.update(record["memory"])
    remembered_rows = sum(is_remembered(t) for t in texts)
    assert totals["hits"] + totals["misses"] == remembered_rows and totals["written"] == len(distinct)
    assert totals["misses"] >= len(distinct) and totals["hits"] > 0  # a repeat within a chunk is a miss too

    # Another run into another output (other chunks): nothing translated again, nothing written.
    loads: list[int] = []
    records, second = translate_job(job(corpus, tmp_path / "out2", chunk_rows=7),
                                    counting(translator, calls, loads), memory)
    assert len(calls) == len(distinct)
    assert sum(r["memory"]["hits"] for r in records) == remembered_rows
    assert sum(r["memory"]["written"] for r in records) == 0
    assert len(loads) == 1  # only the chunk with the null and blank rows needed the model at all
    # The memory changes no row: a run without it gives the same part rows.
    _, fresh = translate_job(job(corpus, tmp_path / "out3", chunk_rows=10), counting(translator, []))
    assert_same_rows(first, fresh)
    assert second.equals(first)  # the second run's rows all came from the first run's translations
    assert sum(r["source_tokens"] for r in records) == sum(len(o.src_tokens) for o in
                                                          translator.translate(texts, DECODE))


def test_n_best_rows_come_back_from_the_memory_unchanged(tmp_path, translator):
    decode = DecodeConfig(beam_size=3, n_best=2, max_len_extra=2)
    corpus = repeating_corpus(tmp_path)
    memory = open_memory(Store(str(tmp_path / "mem")), {**KEYED_BY, "decode": {"beam_size": 3, "n_best": 2}})
    calls: list[str] = []
    _, first = translate_job(job(corpus, tmp_path / "out1", chunk_rows=10),
                             counting(translator, calls, decode=decode), memory, decode)
    _, second = translate_job(job(corpus, tmp_path / "out2", chunk_rows=43),
                              counting(translator, calls, decode=decode), memory, decode)
    _, fresh = translate_job(job(corpus, tmp_path / "out3", chunk_rows=10),
                             counting(translator, [], decode=decode), None, decode)
    assert "nbest" in fresh.column_names and second.equals(first)
    assert_same_rows(first, fresh)
    assert len(calls) == len(set(calls))


def test_failed_rows_are_not_remembered_and_retry_failed_translates_them(tmp_path, translator):
    texts = ["a b c", "d e f", "g h i", "a b c"]
    write_corpus(tmp_path / "in/0.parquet", [f"r{i}" for i in range(4)], texts, row_group_size=4)
    spec = job(tmp_path / "in", tmp_path / "out", chunk_rows=4)
    memory = open_memory(Store(str(tmp_path / "mem")), KEYED_BY)

    def out_of_memory_on_d() -> Translate:
        def translate(batch):
            return [Translation("", 0.0, "failed", [], [], error="OutOfMemoryError") if t == "d e f" else o
                    for t, o in zip(batch, translator.translate(batch, DECODE), strict=True)]
        return translate

    plan = plan_job(spec, MODEL, DECODE, NUMERICS)
    record = translate_chunk(spec, plan.fingerprint, plan.chunks[0], out_of_memory_on_d, memory=memory)
    assert record["statuses"] == {"ok": 3, "failed": 1}
    assert record["memory"] == {"hits": 0, "misses": 4, "written": 2}
    assert set(lookup_values(memory, texts)) == {"a b c", "g h i"}
    calls: list[str] = []
    retried = translate_chunk(spec, plan.fingerprint, plan.chunks[0], counting(translator, calls),
                              retry_failed=True, memory=memory)
    assert calls == ["d e f"] and retried["statuses"] == {"ok": 4}
    assert retried["retried"]["memory"] == {"hits": 0, "misses": 1, "written": 1}
    assert set(lookup_values(memory, texts)) == set(texts)
