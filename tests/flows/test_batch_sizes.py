"""How a corpus's chunks are cut into task runs (guided self-scheduling with a least batch size)."""

import pytest

from flows.translate import MIN_BATCH_ROWS, batch_sizes, min_batch_chunks
from s2s_core.corpus.files import Chunk


@pytest.mark.parametrize(("chunks", "slots"), [(1, 1), (7, 3), (50_000, 1), (50_000, 8), (10_000, 64)])
def test_every_chunk_is_in_exactly_one_batch_and_batches_shrink(chunks, slots):
    sizes = batch_sizes(chunks, slots)
    assert sum(sizes) == chunks and min(sizes) >= 1
    assert sizes == sorted(sizes, reverse=True)
    assert sizes[-1] == 1  # single chunks at the end: the workers finish together


def test_task_runs_grow_with_the_log_of_the_chunks():
    assert len(batch_sizes(50_000, 1)) == 36
    assert len(batch_sizes(50_000, 8)) == 250


def test_a_least_batch_size_ends_the_tail_of_tiny_task_runs():
    sizes = batch_sizes(10_000, 1, min_size=100)  # 20-row chunks: 2,000 rows a batch at least
    assert sum(sizes) == 10_000 and all(s >= 100 for s in sizes[:-1])
    assert (len(sizes), len(batch_sizes(10_000, 1))) == (16, 30)  # task runs, with and without
    # ... but never above the first batch, so a small corpus is still shared among the slots
    assert batch_sizes(3_000, 2, min_size=2_000) == [375] * 8


def test_the_least_batch_is_a_default_chunks_rows():
    tiny = [Chunk(f"c{i}", 0, "f", i * 20, (i + 1) * 20) for i in range(100)]
    assert min_batch_chunks(tiny) == MIN_BATCH_ROWS // 20
    default = [Chunk(f"c{i}", 0, "f", i * 2000, (i + 1) * 2000) for i in range(10)]
    assert min_batch_chunks(default) == 1
    assert min_batch_chunks([Chunk("c", 0, "f", 0, 0)]) >= 1  # empty chunks do not divide by zero
