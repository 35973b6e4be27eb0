"""Synthetic corpora, job specs and a model stand-in shared by the corpus tests."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from s2s_core.corpus.chunk import Translate, translate_chunk
from s2s_core.corpus.plan import JobPlan, JobSpec, ModelIdentity, Numerics, plan_job
from s2s_core.corpus.verify import output_parts
from s2s_core.inference.translator import DecodeConfig, Translator
from s2s_core.storage import Store
from tests.s2s_core.synthetic import reverse_pairs

MODEL = ModelIdentity("memory://reverse", "reverse", "0", "abc")
DECODE = DecodeConfig(beam_size=1, max_len_extra=2)
NUMERICS = Numerics(device="cpu", amp="none")


def write_corpus(path: Path, ids: list[str | None], texts: list[str | None], row_group_size: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    table = pa.table({"id": pa.array(ids, pa.string()), "src": pa.array(texts, pa.string()),
                      "n": pa.array(range(len(ids)), pa.int64())})
    pq.write_table(table, path, row_group_size=row_group_size)


def reverse_corpus(tmp_path: Path, sizes=(50, 37), row_group_size=10, name="in") -> str:
    """Files ``0.parquet``, ``1.parquet``, ... of synthetic sentences with globally unique ids."""
    src, _ = reverse_pairs(sum(sizes), seed=3)
    start = 0
    for i, n in enumerate(sizes):
        write_corpus(tmp_path / name / f"{i}.parquet", [f"r{j}" for j in range(start, start + n)],
                     src[start:start + n], row_group_size)
        start += n
    return str(tmp_path / name)


def job(input: str | Path, output: str | Path, **settings) -> JobSpec:
    """A job on local paths (storage options are for object stores)."""
    return JobSpec(Store(str(input)), Store(str(output)), **settings)


def loader(translator: Translator, decode: DecodeConfig = DECODE, loads: list | None = None
           ) -> Callable[[], Translate]:
    """What the task layer hands ``translate_chunk``: "load the model", counted in ``loads``."""
    def load() -> Translate:
        if loads is not None:
            loads.append(1)
        return lambda texts: translator.translate(texts, decode)

    return load


def run_job(translator: Translator, spec: JobSpec, decode: DecodeConfig = DECODE, only=None,
            loads: list | None = None) -> tuple[JobPlan, list[dict]]:
    """Plan the job and translate its chunks (those numbered in ``only``, or all) in this process."""
    plan = plan_job(spec, MODEL, decode, NUMERICS)
    records = [translate_chunk(spec, plan.fingerprint, c, loader(translator, decode, loads))
               for i, c in enumerate(plan.chunks) if only is None or i in only]
    return plan, records


def read_output(output: str | Path) -> pl.DataFrame:
    """A verified output's rows in corpus order (its parts in chunk-index order)."""
    return pl.concat([pl.read_parquet(p) for p in output_parts(Store(str(output)))])
