"""Flows on a flaky S3 endpoint (``FaultProxy`` in front of a loopback moto server), compared with clean runs.

Used by ``bench/faults.py``; the tests run single cases of the same kind inline. Each case returns
what the proxy did (``faults``), how long it took and ``mismatches`` (must be 0): differences from the
clean run, a half-written output, or a decision recorded more than once.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import polars as pl
import pyarrow.parquet as pq
import s3fs

from tests.faults.proxy import FaultProxy, Faults
from tests.faults.trials import PAIRS, read_parts, tiny_corpus

# s3fs's own five attempts only (botocore's off): outages outlast them in seconds, not minutes.
FEW_RETRIES = {"config_kwargs": {"retries": {"max_attempts": 1}}}
FLAKY = {"slowdown": 0.2, "drop": 0.1}


@contextmanager
def moto_endpoint() -> Iterator[str]:
    """A loopback S3 API server (moto) with dummy credentials in the environment."""
    from moto.server import ThreadedMotoServer

    os.environ.update({"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                       "AWS_SESSION_TOKEN": "testing", "AWS_DEFAULT_REGION": "us-east-1"})
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        yield f"http://{host}:{port}"
    finally:
        server.stop()


def _parts(fs: s3fs.S3FileSystem, prefix: str) -> pl.DataFrame:
    fs.invalidate_cache()
    return read_parts(prefix, fs)


def _half_written(fs: s3fs.S3FileSystem, prefix: str) -> int:
    """Committed chunks whose part is missing or has other rows than its marker says."""
    import json

    bad = 0
    fs.invalidate_cache()
    for marker in fs.glob(f"{prefix}/_done/*.json"):
        chunk = marker.rsplit("/", 1)[-1][: -len(".json")]
        try:
            rows = pq.ParquetFile(fs.open(f"{prefix}/part-{chunk}.parquet")).metadata.num_rows
            bad += rows != json.loads(fs.cat_file(marker))["rows_out"]
        except Exception:  # noqa: BLE001 - a missing or unreadable part is half-written
            bad += 1
    return bad


def _case(faults: Faults, started: float, mismatches: int, **extra) -> dict:
    return {"faults": dict(faults.counts), "seconds": round(time.perf_counter() - started, 1),
            "mismatches": int(mismatches), **extra}


def translation_cases(endpoint: str, model: str, workdir: Path, seed: int) -> dict[str, dict]:
    """Corpus translation: 20%/10% faults, an outage past s3fs's retries, one past every retry."""
    from flows.translate import run_translation
    from tasks.config import TranslateConfig

    fs = s3fs.S3FileSystem(endpoint_url=endpoint)
    fs.mkdir("faults-translate")
    fs.put(str(tiny_corpus(workdir / "corpus")) + "/", "faults-translate/corpus/", recursive=True)
    fs.put(model + "/", "faults-translate/model/", recursive=True)

    def config(opts: dict, output: str) -> TranslateConfig:
        return TranslateConfig(model="s3://faults-translate/model", input="s3://faults-translate/corpus",
                               output=f"s3://faults-translate/{output}", chunk_rows=40, workers=2,
                               decode={"beam_size": 1}, storage_options=opts)

    run_translation(config({"endpoint_url": endpoint}, "clean"))
    clean = _parts(fs, "faults-translate/clean")
    cases = {}
    plans = {"flaky-20pct-503-10pct-dropped": (Faults(**FLAKY, seed=seed), {}),
             "outage-past-s3fs-retries": (Faults(outage_after=40, outage_requests=40, seed=seed), {}),
             "outage-past-every-retry": (Faults(outage_after=40, outage_requests=10**9, seed=seed),
                                         FEW_RETRIES)}
    for name, (faults, extra) in plans.items():
        started = time.perf_counter()
        with FaultProxy(endpoint, faults) as url:
            cfg = config({"endpoint_url": url, **extra}, name)
            failed = None
            try:
                run_translation(cfg)
            except OSError as err:  # the store never came back: the job must fail cleanly
                failed = f"{type(err).__name__}: {str(err)[:80]}"
            half = _half_written(fs, f"faults-translate/{name}")
            manifest_after_failure = bool(failed) and fs.exists(f"faults-translate/{name}/manifest.json")
            if failed:
                faults.outage_requests = 0  # the store is back; the same command finishes the job
                run_translation(cfg)
        out = _parts(fs, f"faults-translate/{name}")
        cases[name] = _case(faults, started, (not out.equals(clean)) + half + manifest_after_failure,
                            failed_first=failed, half_written_chunks=half)
    return cases


def training_cases(endpoint: str, clean_weights: str, seed: int) -> dict[str, dict]:
    """The tiny train flow and the retrain flow (promotion) on a flaky store, and through an outage."""
    from flows.retrain import retrain_flow
    from flows.train import train_flow
    from s2s_core.registry.registry import Registry
    from tests.flows.conftest import tiny_config

    fs = s3fs.S3FileSystem(endpoint_url=endpoint)
    fs.mkdir("faults-train")
    fs.put(str(PAIRS), "faults-train/corpus/pairs.tsv")
    data = ["data.train=s3://faults-train/corpus/pairs.tsv"]

    def weights(model_url: str) -> str:
        return hashlib.sha256(fs.cat_file(model_url.removeprefix("s3://") + "/model.safetensors")).hexdigest()

    cases = {}
    for name, faults, extra in (("train-flaky-20pct-503-10pct-dropped", Faults(**FLAKY, seed=seed), {}),
                                ("train-outage-past-s3fs-retries",
                                 Faults(outage_after=30, outage_requests=12, seed=seed), FEW_RETRIES)):
        started = time.perf_counter()
        with FaultProxy(endpoint, faults) as url:
            result = train_flow(tiny_config(f"s3://faults-train/{name}", data,
                                            storage_options={"endpoint_url": url, **extra}))
        cases[name] = _case(faults, started, weights(result["model"]) != clean_weights)

    name, faults, started = "retrain-promotion-flaky", Faults(**FLAKY, seed=seed), time.perf_counter()
    store = f"s3://faults-train/{name}"
    with FaultProxy(endpoint, faults) as url:
        config = tiny_config(store, [*data, "promotion.min_bleu=0", "promotion.min_chrf=0"],
                             storage_options={"endpoint_url": url})
        first = retrain_flow(config)
        again = retrain_flow(config)  # a re-run (after a crash, say) repeats the decision, records nothing
    history = Registry(store, "tiny", {"endpoint_url": endpoint}).history()
    wrong = (first["decision"] != "promoted") + (again["decision"] != "promoted") + (len(history) != 1) \
        + (weights(first["model"]) != clean_weights)
    cases[name] = _case(faults, started, wrong, decisions_recorded=len(history))
    return cases
