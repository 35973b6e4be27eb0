"""The corpus translation flow end to end: crafted rows, SIGKILL + resume, S3, Dask, CLI errors."""

from __future__ import annotations

import json
import os
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import s3fs
import torch

from flows.cli import main
from flows.translate import forget_result, run_translation
from s2s_core.corpus.verify import read_chunk_index
from s2s_core.inference.translator import Translator
from s2s_core.storage import Store
from tasks.config import TranslateConfig
from tests.faults.proxy import Faults
from tests.faults.trials import read_parts, write_corpus
from tests.flows.conftest import ROOT, run_flow_until_killed

PAIRS = ROOT / "examples/tiny/pairs.tsv"
FAST_DECODE = {"beam_size": 1, "max_len_extra": 3}


def verses(rows: int) -> pl.DataFrame:
    return pl.read_csv(PAIRS, separator="\t", quote_char=None).select("id", "src").head(rows)


def bible_corpus(directory: Path, rows: int, files: int = 2, row_group_size: int = 16) -> Path:
    """``rows`` Bible verses (unique ids) split over ``files`` Parquet files with small row groups."""
    return write_corpus(verses(rows), directory, files, row_group_size)


def read_output(output: str | Path, fs=None) -> pl.DataFrame:
    """The output's parts, concatenated in chunk-index order (which is input order)."""
    return read_parts(output, fs)


def assert_same_rows(left: pl.DataFrame, right: pl.DataFrame) -> None:
    """Equal row for row; scores up to float32 rounding (torch in Dask workers runs single-threaded,
    and a different thread count may sum in a different order)."""
    assert left.drop("score").equals(right.drop("score"))
    assert left["score"].to_list() == pytest.approx(right["score"].to_list(), abs=1e-5)


def config_for(model: str, input: str | Path, output: str | Path, **fields) -> TranslateConfig:
    return TranslateConfig(**{"model": model, "input": str(input), "output": str(output), "chunk_rows": 20,
                              "decode": FAST_DECODE, **fields})


@pytest.fixture(scope="module")
def reference(tiny_run, tmp_path_factory) -> dict:
    """An uninterrupted run over 240 verses: what every other way of running must reproduce."""
    _, result = tiny_run
    root = tmp_path_factory.mktemp("reference")
    corpus = bible_corpus(root / "in", 240)
    run_translation(config_for(result["model"], corpus, root / "out", workers=2))
    return {"model": result["model"], "corpus": corpus, "rows": read_output(root / "out"),
            "output": root / "out"}


def test_crafted_corpus_round_trip_keeps_every_row_in_order(tiny_run, tmp_path):
    _, trained = tiny_run
    sources = verses(150)["src"].to_list()
    texts = [*sources, None, "", "   ", "x" * 5000, "Hola 😀 mundo 👨‍👩‍👧", "שלום עולם", "مرحبا بالعالم",
             "a\x00b\x1b[31mc\u200fd\r\ne\tf", "Ω≈ç√∫ ﬁ ǅ", *sources[:40]]  # the last 40 repeat earlier rows
    ids = [f"row-{i:04d}" for i in range(len(texts))]
    corpus = tmp_path / "crafted"
    corpus.mkdir()
    table = pa.table({"id": ids, "src": pa.array(texts, pa.string()), "n": list(range(len(texts)))})
    pq.write_table(table.slice(0, 100), corpus / "a.parquet", row_group_size=16)
    pq.write_table(table.slice(100), corpus / "b.parquet", row_group_size=16)

    config = config_for(trained["model"], corpus, tmp_path / "out", chunk_rows=40, workers=2)
    result = run_translation(config)

    out = read_output(tmp_path / "out")
    assert out["id"].to_list() == ids and out["n"].to_list() == list(range(len(texts)))
    assert out["src"].to_list() == texts  # nulls, control characters and emoji intact
    status = dict(zip(texts[150:159], out["status"].to_list()[150:159], strict=True))
    assert [status[t] for t in (None, "", "   ")] == ["empty"] * 3
    assert status["x" * 5000] == "truncated"
    assert set(out["status"].to_list()[:150]) | {status[t] for t in texts[154:159]} == {"ok"}
    assert out.filter(pl.col("status") == "empty")["translation"].to_list() == [""] * 3
    # Repeated sources (in other chunks, so other batches) get the same translation and score, up to
    # float32 rounding in differently shaped batches.
    assert out.slice(159)["translation"].to_list() == out.slice(0, 40)["translation"].to_list()
    assert out.slice(159)["score"].to_list() == pytest.approx(out.slice(0, 40)["score"].to_list(), abs=1e-5)

    manifest = json.loads((tmp_path / "out/manifest.json").read_text())
    assert manifest["rows_in"] == manifest["rows_out"] == len(texts) == result["rows_out"]
    assert manifest["statuses"] == {"empty": 3, "ok": len(texts) - 4, "truncated": 1}
    assert manifest["model"]["name"] == "tiny" and manifest["decode"]["beam_size"] == 1
    assert manifest["ids"]["unique"] and manifest["ids"]["aligned_with_input"]
    # Row groups of 16 rows packed into chunks of at most 40 rows, per file.
    index = read_chunk_index(Store(str(tmp_path / "out")))
    assert [c["rows_in"] for c in index] == [32, 32, 36, 32, 32, 35] and manifest["chunks"]["count"] == 6
    assert result["this_run"]["chunks_translated"] == 6 and result["this_run"]["chunks_skipped"] == 0
    assert progress_artifact(config.output) == 100.0

    again = run_translation(config)  # a re-run of a finished job only re-verifies it
    assert again["this_run"]["chunks_translated"] == 0 and again["this_run"]["chunks_skipped"] == 6
    assert read_output(tmp_path / "out").equals(out)


def progress_artifact(output: str) -> float:
    """The latest value of the run's progress artifact, read back from the Prefect API."""
    import httpx
    from prefect.settings import PREFECT_API_URL

    from tasks.translate import output_artifact_key

    key = output_artifact_key(output, "progress")
    response = httpx.get(f"{PREFECT_API_URL.value()}/artifacts/{key}/latest")
    response.raise_for_status()
    return response.json()["data"]


def test_a_consumed_chunk_result_is_no_longer_linked_to_its_task_run(prefect_harness):
    """Prefect links task results to their runs for the whole flow run; the flow drops the links of
    the chunk results it has consumed, or they would grow with the number of chunks."""
    from prefect import flow, task
    from prefect.context import FlowRunContext

    @task
    def chunk_result(i: int) -> dict:
        return {"chunk": f"c{i}", "statuses": {"ok": 1000 + i}, "seconds": {"translate": 0.5}}

    @flow
    def consume() -> tuple[int, int]:
        links = FlowRunContext.get().run_results
        result = chunk_result.submit(7).result()
        linked = sum(id(obj) in links for obj in (result, *result.values()))
        forget_result(result)
        return linked, sum(id(obj) in links for obj in (result, *result.values()))

    assert consume() == (4, 0)


def test_killed_flow_resumes_without_redoing_committed_chunks(prefect_harness, reference, tmp_path):
    """SIGKILL the flow's process after some chunks commit; the same command finishes the rest."""
    output = tmp_path / "out"
    # "[!.]": pathlib globs match dotfiles, and a kill can leave a marker's temporary sibling (.tmp-…)
    run_flow_until_killed(
        ["flows.translate", "--model", reference["model"], "--input", str(reference["corpus"]),
         "--output", str(output), "--beam", "1", "--chunk-rows", "10", "--workers", "1"],
        ready=lambda: len(list(output.glob("_done/[!.]*.json"))) >= 3, what="committing 3 chunks", poll=0.02)
    markers = {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in output.glob("_done/[!.]*.json")}
    committed_parts = {f"part-{name[:-5]}.parquet" for name in markers}
    part_mtimes = {p.name: p.stat().st_mtime_ns for p in output.glob("part-*.parquet")
                   if p.name in committed_parts}
    assert len(markers) >= 3 and not (output / "manifest.json").exists()

    config = config_for(reference["model"], reference["corpus"], output, chunk_rows=10, workers=1,
                        decode={"beam_size": 1})
    result = run_translation(config)

    total = json.loads((output / "manifest.json").read_text())["chunks"]["count"]
    assert len(markers) < total
    assert result["this_run"]["chunks_skipped"] == len(markers)
    assert result["this_run"]["chunks_translated"] == total - len(markers)
    for name, (data, mtime) in markers.items():  # committed chunks were neither redone nor rewritten
        assert (output / "_done" / name).read_bytes() == data
        assert (output / "_done" / name).stat().st_mtime_ns == mtime
    assert {n: (output / n).stat().st_mtime_ns for n in part_mtimes} == part_mtimes
    # The CLI translated with the default max_len_extra; so does this reference for the comparison.
    uninterrupted = tmp_path / "uninterrupted"
    run_translation(config.model_copy(update={"output": str(uninterrupted)}))
    assert read_output(output).equals(read_output(uninterrupted))
    assert read_output(output)["id"].to_list() == reference["rows"]["id"].to_list()


def test_translate_flow_reads_and_writes_s3(prefect_harness, reference, s3_server):
    opts = s3_server["storage_options"]
    fs = s3fs.S3FileSystem(**opts)
    fs.mkdir("s2s-translate")
    fs.put(str(reference["corpus"]) + "/", "s2s-translate/corpus/", recursive=True)
    fs.put(reference["model"] + "/", "s2s-translate/model/", recursive=True)
    config = config_for("s3://s2s-translate/model", "s3://s2s-translate/corpus",
                        "s3://s2s-translate/out", workers=2, storage_options=opts)

    result = run_translation(config)

    assert result["rows_in"] == result["rows_out"] == 240
    assert result["manifest"] == "s3://s2s-translate/out/manifest.json"
    assert len(fs.ls("s2s-translate/out/_done", refresh=True)) == result["this_run"]["chunks_translated"]
    assert read_output("s2s-translate/out", fs).equals(reference["rows"])
    again = run_translation(config)
    assert again["this_run"]["chunks_translated"] == 0


def test_translation_over_a_flaky_s3_endpoint_gives_identical_output(prefect_harness, reference, s3_server,
                                                                     fault_proxy):
    """20% of requests answered 503 SlowDown, 10% dropped without an answer: s3fs's retries absorb them."""
    fs = s3fs.S3FileSystem(**s3_server["storage_options"])
    fs.mkdir("s2s-flaky")
    fs.put(str(reference["corpus"]) + "/", "s2s-flaky/corpus/", recursive=True)
    fs.put(reference["model"] + "/", "s2s-flaky/model/", recursive=True)
    faults = Faults(slowdown=0.2, drop=0.1, seed=11)
    opts = fault_proxy(faults)
    config = config_for("s3://s2s-flaky/model", "s3://s2s-flaky/corpus", "s3://s2s-flaky/out", chunk_rows=80,
                        workers=2, storage_options=opts)

    result = run_translation(config)

    assert result["rows_in"] == result["rows_out"] == 240
    assert faults.counts["slowdown_503"] >= 5
    assert faults.counts["dropped_before"] + faults.counts["dropped_after"] >= 3
    assert_same_rows(read_output("s2s-flaky/out", fs), reference["rows"])
    assert not [p for p in fs.find("s2s-flaky/out") if "/." in p]  # no probe or temporary left behind


def test_a_part_torn_after_commit_is_translated_again_by_the_next_run(prefect_harness, reference, tmp_path):
    import shutil

    output = tmp_path / "out"
    shutil.copytree(reference["output"], output)
    (output / "manifest.json").unlink()
    torn = sorted(output.glob("part-*.parquet"))[4]
    torn.write_bytes(torn.read_bytes()[:200])  # e.g. a copy cut short after the job committed it

    result = run_translation(config_for(reference["model"], reference["corpus"], output, workers=2))

    assert result["this_run"]["chunks_translated"] == 1 and result["this_run"]["chunks_skipped"] == 15
    assert read_output(output).equals(reference["rows"]) and result["rows_out"] == 240


def test_translate_flow_on_a_dask_cluster_loads_the_model_once_per_worker(
        prefect_harness, reference, tmp_path, monkeypatch):
    from distributed import LocalCluster
    from prefect.settings import PREFECT_API_URL

    # Worker processes inherit the environment: this is how their task runs reach the test API.
    monkeypatch.setenv("PREFECT_API_URL", PREFECT_API_URL.value())
    with LocalCluster(n_workers=2, processes=True, threads_per_worker=1, dashboard_address=None) as cluster:
        config = config_for(reference["model"], reference["corpus"], tmp_path / "out",
                            dask_address=cluster.scheduler_address)
        result = run_translation(config)

    workers = result["this_run"]["workers"]
    assert len(workers) == 2 and str(os.getpid()) not in workers
    assert {w["model_loads"] for w in workers.values()} == {1}
    manifest = json.loads((tmp_path / "out/manifest.json").read_text())
    assert sum(w["chunks"] for w in workers.values()) == manifest["chunks"]["count"]
    assert_same_rows(read_output(tmp_path / "out"), reference["rows"])


def test_a_registry_url_translates_with_the_serving_model(tiny_run, tmp_path):
    import shutil

    from s2s_core.registry.registry import Registry

    _, trained = tiny_run
    version = Path(trained["model"]).name
    registry = Registry(str(tmp_path / "store"), "tiny")
    shutil.copytree(trained["model"], registry.package_url(version))
    registry.promote(version, None, "first model")
    corpus = bible_corpus(tmp_path / "in", 20, files=1)

    result = run_translation(config_for(registry.url, corpus, tmp_path / "out", workers=1,
                                        output_per_version=True))

    assert result["model"]["url"] == registry.package_url(version) and result["model"]["version"] == version
    assert result["rows_out"] == 20
    # Following the serving model, each version gets its own output (no plan clash after a promotion).
    assert result["manifest"] == f"{tmp_path}/out/{version}/manifest.json"
    assert (tmp_path / "out" / version / "manifest.json").exists()


@pytest.mark.parametrize(("case", "message"), [
    ("missing input", "input not found: "),
    ("missing column", "has no text column 'text' (columns: id, src)"),
    ("bad model", "no model package at "),
])
def test_cli_reports_unusable_inputs_in_one_line(tiny_run, tmp_path, capsys, case, message):
    _, trained = tiny_run
    corpus = bible_corpus(tmp_path / "in", 20, files=1)
    args = {"--model": trained["model"], "--input": str(corpus), "--output": str(tmp_path / "out")}
    if case == "missing input":
        args["--input"] = str(tmp_path / "nothing-here.parquet")
    elif case == "missing column":
        args["--text-column"] = "text"
    else:
        args["--model"] = str(tmp_path)
    code = main(["translate", *[x for kv in args.items() for x in kv]])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.startswith("s2s: error: ") and message in err and "\n" not in err
    assert not (tmp_path / "out").exists()


class OutOfMemoryTranslator(Translator):
    """Runs out of memory on any source longer than ``limit`` tokens, even alone (a small GPU)."""

    limit: int | None = 12

    def _search(self, sources, config):
        if self.limit is not None and max(len(s) for s in sources) > self.limit:
            raise torch.OutOfMemoryError("CUDA out of memory (simulated small GPU)")
        return super()._search(sources, config)


def test_rows_out_of_memory_alone_are_counted_exit_3_and_retried_with_retry_failed(
        tiny_run, tmp_path, monkeypatch, capsys):
    import tasks.translate
    from s2s_core.inference.package import load_package
    from tests.faults.trials import tiny_corpus

    _, trained = tiny_run
    corpus = tiny_corpus(tmp_path / "in", rows=60, files=1)
    args = ["translate", "--model", trained["model"], "--input", str(corpus), "--beam", "1",
            "--chunk-rows", "20", "--workers", "1"]
    # Without the memory: the clean run's translations would otherwise spare the small GPU every row.
    monkeypatch.setattr(tasks.translate, "_TRANSLATORS", {})  # so the one cached below is this command's
    assert main([*args, "--output", str(tmp_path / "clean"), "--no-memory"]) == 0
    package = load_package(trained["model"])
    small_gpu = OutOfMemoryTranslator(package.model, package.tokenizers, torch.device("cpu"),
                                      thresholds=package.flag_thresholds)  # as the package translates
    [key] = tasks.translate._TRANSLATORS  # the clean run's (its shape is the cache's business)
    assert key[0] == trained["model"], key
    monkeypatch.setitem(tasks.translate._TRANSLATORS, key, small_gpu)
    out = tmp_path / "out"

    # Finished, every row out, some failed: the exit code tells a scheduler.
    assert main([*args, "--output", str(out)]) == 3
    manifest = json.loads((out / "manifest.json").read_text())
    failed = read_parts(out).filter(pl.col("status") == "failed")
    assert manifest["failed_rows"] == manifest["statuses"]["failed"] == len(failed) > 0
    assert main([*args, "--output", str(out)]) == 3  # a plain re-run does not touch committed chunks

    small_gpu.limit = None  # e.g. re-run on a bigger GPU
    capsys.readouterr()
    assert main([*args, "--output", str(out), "--retry-failed"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["failed_rows"] == 0 and summary["this_run"]["rows_retried"] == len(failed)
    assert read_parts(out).equals(read_parts(tmp_path / "clean"))  # exactly those rows, as a clean run
    retried = json.loads((out / "manifest.json").read_text())
    assert retried["statuses"].get("failed", 0) == 0
    assert retried["flags"] == json.loads((tmp_path / "clean/manifest.json").read_text())["flags"]
