"""Faults injected into real runs: SIGKILL at exact moments, a flaky S3 endpoint, outages past every retry.

The many-trial versions of these live in ``bench/faults.py`` (figures in ``bench/RESULTS.md``).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import polars as pl
import pyarrow.parquet as pq
import pytest
import s3fs

from flows.translate import run_translation
from s2s_core.registry.registry import Registry
from tasks.config import TranslateConfig
from tests.faults import trials
from tests.faults.proxy import Faults
from tests.flows.conftest import tiny_config

FLAKY = {"slowdown": 0.2, "drop": 0.1}  # 20% answered 503 SlowDown, 10% dropped without an answer


def test_translation_killed_during_commits_resumes_to_the_clean_output(tiny_run, tmp_path):
    _, trained = tiny_run
    moments = tuple(m for m in trials.TRANSLATE_MOMENTS if m.name in ("commit-link", "part-rename"))
    tally = trials.translate_trials(trained["model"], tmp_path, trials=2, seed=5, moments=moments)
    assert tally.kills >= 2 and tally.faults_by_kind["commit-link"] >= 1
    assert tally.clean, tally.as_dict()


def test_training_killed_during_a_checkpoint_write_resumes_to_the_same_model(tiny_run, tmp_path):
    config, _ = tiny_run
    moments = tuple(m for m in trials.TRAIN_MOMENTS if m.name == "checkpoint-rename")
    tally = trials.train_trials(tmp_path, trials=1, seed=3, moments=moments, clean_store=Path(config.store))
    assert tally.kills >= 1 and tally.clean, tally.as_dict()


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_training_evaluation_and_promotion_survive_a_flaky_store(tiny_run, s3_server, fault_proxy):
    """The retrain flow on a flaky endpoint: the same model and scores as a clean run, promoted once."""
    from flows.retrain import retrain_flow

    _, clean = tiny_run
    fs = s3fs.S3FileSystem(**s3_server["storage_options"])
    fs.mkdir("s2s-flaky-retrain")
    fs.put(str(trials.PAIRS), "s2s-flaky-retrain/corpus/pairs.tsv")
    faults = Faults(**FLAKY, seed=7)
    opts = fault_proxy(faults)
    config = tiny_config("s3://s2s-flaky-retrain/store", ["data.train=s3://s2s-flaky-retrain/corpus/pairs.tsv",
                                                           "promotion.min_bleu=0", "promotion.min_chrf=0"],
                         storage_options=opts)

    result = retrain_flow(config)

    assert faults.counts["slowdown_503"] >= 5 and faults.counts["dropped_after"] >= 1
    assert result["decision"] == "promoted" and result["scores"] == clean["scores"]
    weights = fs.cat_file(result["model"].removeprefix("s3://") + "/model.safetensors")
    assert sha256(weights) == sha256((Path(clean["model"]) / "model.safetensors").read_bytes())
    registry = Registry(config.store, "tiny", s3_server["storage_options"])
    assert [r["decision"] for r in registry.history()] == ["promoted"]  # decided exactly once
    assert registry.folder.read_json("current")["version"] == registry.champion().version
    # The evaluation report (scores with bootstrap CIs) is the clean run's.
    clean_report = json.loads(Path(clean["report"]).with_suffix(".json").read_text())
    report = json.loads(fs.cat_file(result["run"].removeprefix("s3://") + "/reports/report.json"))
    assert report["test_sets"]["test"]["scores"] == clean_report["test_sets"]["test"]["scores"]


@pytest.fixture
def s3_job(tiny_run, s3_server, tmp_path, request):
    """A corpus and the tiny model on S3, and the clean output to compare with."""
    _, trained = tiny_run
    bucket = f"s2s-outage-{request.node.name[-8:].lower().replace('_', '-')}"
    fs = s3fs.S3FileSystem(**s3_server["storage_options"])
    fs.mkdir(bucket)
    fs.put(str(trials.tiny_corpus(tmp_path / "corpus", rows=120)) + "/", f"{bucket}/corpus/", recursive=True)
    fs.put(trained["model"] + "/", f"{bucket}/model/", recursive=True)

    def config(opts: dict, output: str = "out") -> TranslateConfig:
        return TranslateConfig(model=f"s3://{bucket}/model", input=f"s3://{bucket}/corpus",
                               output=f"s3://{bucket}/{output}", chunk_rows=20, workers=2,
                               decode={"beam_size": 1, "max_len_extra": 3}, storage_options=opts)

    run_translation(config(s3_server["storage_options"], "clean"))
    return fs, bucket, config


def read_s3_parts(fs, prefix: str) -> pl.DataFrame:
    return trials.read_parts(prefix, fs)


# s3fs's own retries only (botocore's off), so an outage of a few requests outlasts them quickly.
FEW_RETRIES = {"config_kwargs": {"retries": {"max_attempts": 1}}}


def test_prefect_retries_finish_a_job_through_an_outage_longer_than_s3fs_retries(s3_job, fault_proxy):
    fs, bucket, config = s3_job
    faults = Faults(outage_after=25, outage_requests=14)  # > the 5 attempts s3fs makes per request
    opts = {**fault_proxy(faults), **FEW_RETRIES}

    result = run_translation(config(opts))

    assert faults.counts["outage_503"] == 14 and result["rows_out"] == 120
    assert read_s3_parts(fs, f"{bucket}/out").equals(read_s3_parts(fs, f"{bucket}/clean"))


def test_an_outage_past_every_retry_fails_the_job_cleanly_and_a_rerun_finishes_it(s3_job, fault_proxy):
    fs, bucket, config = s3_job
    faults = Faults(outage_after=40, outage_requests=10**9)  # the store never comes back
    opts = {**fault_proxy(faults), **FEW_RETRIES}

    with pytest.raises(OSError):
        run_translation(config(opts))

    fs.invalidate_cache()
    assert not fs.exists(f"{bucket}/out/manifest.json")
    for marker in fs.glob(f"{bucket}/out/_done/*.json"):  # whatever was committed is complete
        chunk = marker.rsplit("/", 1)[-1][: -len(".json")]
        rows = json.loads(fs.cat_file(marker))["rows_out"]
        assert pq.ParquetFile(fs.open(f"{bucket}/out/part-{chunk}.parquet")).metadata.num_rows == rows
    faults.outage_requests = 0  # the store is back
    result = run_translation(config(opts))
    assert result["rows_out"] == 120
    assert read_s3_parts(fs, f"{bucket}/out").equals(read_s3_parts(fs, f"{bucket}/clean"))


def test_an_incremental_run_killed_midway_resumes_to_the_output_of_a_run_from_scratch(tiny_run, tmp_path):
    """Yesterday's output, today's changed input (a file rewritten, one removed, one added): the
    re-run is killed while committing new chunks, while replacing the manifest, or while removing
    stale chunks; the same command then ends with exactly a from-scratch run's output."""
    import random
    import shutil

    _, trained = tiny_run
    verses = pl.read_csv(trials.PAIRS, separator="\t", quote_char=None).select("id", "src")
    corpus = trials.write_corpus(verses.head(240), tmp_path / "corpus", files=4)
    yesterday = tmp_path / "yesterday"
    assert trials.cli(trials.translate_args(trained["model"], corpus, yesterday)) == 0
    rewritten = pl.read_parquet(corpus / "part1.parquet")
    first_rows = pl.int_range(pl.len()) < 5
    rewritten = rewritten.with_columns(pl.when(first_rows).then(pl.col("src").str.to_uppercase())
                                       .otherwise(pl.col("src")).alias("src"))
    pq.write_table(rewritten.to_arrow(), corpus / "part1.parquet", row_group_size=16)
    (corpus / "part2.parquet").unlink()
    pq.write_table(verses.slice(240, 50).to_arrow(), corpus / "part4.parquet", row_group_size=16)
    scratch = tmp_path / "scratch"
    assert trials.cli(trials.translate_args(trained["model"], corpus, scratch)) == 0
    reference = trials.read_parts(scratch)
    markers = {p.name for p in scratch.glob("_done/[!.]*.json")}
    stale = sorted({p.name for p in yesterday.glob("_done/[!.]*.json")} - markers)
    moments = (trials.Moment("commit-link", "os.link", "/_done/", 2),
               trials.Moment("manifest", "os.rename", "manifest.json"),
               trials.Moment("stale-removal", "os.remove", f"/_done/{stale[1]}"))
    for moment in moments:
        output = tmp_path / f"trial-{moment.name}"
        shutil.copytree(yesterday, output)
        args = trials.translate_args(trained["model"], corpus, output)
        assert trials.run_killed(args, moment, random.Random(0), time_window=60), moment
        assert trials.cli(args) == 0
        tally = trials.Tally()
        trials.check_translation(tally, output, reference)
        assert tally.clean, (moment, tally.as_dict())
        assert {p.name for p in output.glob("part-*")} == {p.name for p in scratch.glob("part-*")}
        assert {p.name for p in output.glob("_done/[!.]*.json")} == markers  # a kill may leave a .tmp-
        changes = json.loads((output / "manifest.json").read_text())["changes"]
        if moment.name == "commit-link":  # compared with yesterday's verified output
            assert changes["files"]["rewritten"] == ["part1.parquet"] and changes["rows"]["removed"] == 120
