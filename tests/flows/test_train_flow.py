import json
import logging
from collections import deque
from pathlib import Path

import polars as pl
import pytest
import s3fs

from flows.train import train_flow
from s2s_core import storage
from s2s_core.inference.package import load_package
from s2s_core.training.checkpoint import load_checkpoint
from tests.flows.conftest import FAST, ROOT, TINY, run_flow_until_killed, tiny_config


def assert_complete_run(result: dict, opts: dict | None = None) -> None:
    opts = opts or {}
    package = load_package(result["model"], storage_options=opts)
    (t,) = package.translator(device="cpu").translate(["Y dijo Dios: Sea la luz"])
    assert t.status == "ok" and t.text
    report = json.loads(storage.read_text(result["report"].replace("report.md", "report.json"), **opts))
    scores = report["test_sets"]["test"]["scores"]
    for metric in ("bleu", "chrf", "ter"):
        assert isinstance(scores[metric]["score"], float)
        assert scores[metric]["signature"].startswith("nrefs:1|bs:50|")
        low, high = scores[metric]["ci95"]
        assert low <= high
    assert report["test_sets"]["test"]["rows"] == 40
    markdown = storage.read_text(result["report"], **opts)
    assert "| bleu |" in markdown and "![Training curve](training_curve.png)" in markdown
    reports = result["report"].rsplit("/", 1)[0]
    for name in ("training_curve.png", "attention-1.png"):
        assert storage.read_bytes(storage.join(reports, name), **opts)[:8] == b"\x89PNG\r\n\x1a\n"
    prepare = json.loads(storage.read_text(storage.join(result["run"], "data/prepare_report.json"), **opts))
    assert prepare["input_rows"] == 600 and prepare["splits"]["train"] == prepare["output_rows"] - 80


def test_tiny_config_trains_end_to_end_on_a_local_store(tiny_run):
    config, result = tiny_run
    assert result["model"] == f"{config.store}/models/tiny/{config.resolved_run_id}"
    assert result["training"]["steps"] == 30 and result["training"]["resumed_from_step"] is None
    assert_complete_run(result)
    history = [json.loads(line) for line in
               Path(result["run"], "logs/train.jsonl").read_text().splitlines()]
    assert [r["step"] for r in history if "dev_bleu" in r] == [15, 30]
    package = json.loads(Path(result["model"], "config.json").read_text())
    assert package["source_language"] == config.data.source_language == "en"  # the package's default


def test_the_package_flags_its_least_confident_tenth_of_the_dev_set(tiny_run):
    """low_confidence is calibrated per model at training: its package's threshold flags a tenth of
    the dev translations (decoded as evaluation decodes), whatever the scale of this model's scores."""
    config, result = tiny_run
    package = load_package(result["model"])
    record = package.config["flag_thresholds"]
    assert record["calibration"] == {"rows": record["calibration"]["rows"], "share": 0.1, "beam_size": 2}
    dev = pl.read_parquet(Path(result["run"], "data/dev.parquet"))["src"].to_list()
    out = package.translator("cpu").translate(dev, config.evaluate.decode)
    ok = [t for t in out if t.status == "ok"]
    assert len(ok) == record["calibration"]["rows"] >= 20
    assert package.flag_thresholds.min_mean_log_prob == record["min_mean_log_prob"]
    assert sum("low_confidence" in t.flags for t in ok) == round(0.1 * len(ok))


def test_tiny_config_trains_end_to_end_on_s3(prefect_harness, s3_server, tmp_path):
    opts = s3_server["storage_options"]
    fs = s3fs.S3FileSystem(**opts)
    fs.mkdir("s2s-flow")
    fs.put(str(ROOT / "examples/tiny/pairs.tsv"), "s2s-flow/corpus/pairs.tsv")
    config = tiny_config("s3://s2s-flow/store", ["data.train=s3://s2s-flow/corpus/pairs.tsv"],
                         storage_options=opts)
    result = train_flow(config)
    assert result["model"].startswith("s3://s2s-flow/store/models/tiny/")
    assert_complete_run(result, opts)
    fs.invalidate_cache()
    assert fs.exists(f"s2s-flow/store/runs/{config.resolved_run_id}/checkpoints/last.pt")


def test_rerunning_a_killed_train_flow_resumes_from_its_checkpoint(prefect_harness, tmp_path):
    """SIGKILL the flow's process mid-training, run the same command again: it resumes."""
    store = tmp_path / "store"
    overrides = ["train.max_steps=90", "train.checkpoint_every=10", "train.eval_every=0"]
    args = [arg for o in [*FAST, *overrides] for arg in ("--set", o)]
    run_flow_until_killed(
        ["flows.train", str(TINY), "--store", str(store), "--set",
         f"data.train={ROOT / 'examples/tiny/pairs.tsv'}", *args],
        ready=lambda: bool(list(store.glob("runs/*/checkpoints/last.pt"))), what="writing a checkpoint",
        poll=0.2)
    (checkpoint,) = store.glob("runs/*/checkpoints/last.pt")
    killed_at = load_checkpoint(str(checkpoint))["state"]["step"]
    assert 0 < killed_at < 90
    assert not list(store.glob("models/*/*/config.json"))  # no package: the run did not finish

    config = tiny_config(str(store), [*overrides, f"data.train={ROOT / 'examples/tiny/pairs.tsv'}"])
    result = train_flow(config)
    assert result["training"]["resumed_from_step"] == killed_at
    assert result["training"]["steps"] == 90
    metrics = load_package(result["model"]).metrics
    logged = [r["step"] for r in metrics["history"] if "loss" in r]
    assert logged == sorted(set(logged))  # no step trained twice in the history


def test_prepare_counts_are_recorded_for_a_crafted_corpus(prefect_harness, tmp_path):
    from tasks.data import prepare_data
    from tasks.layout import RunLayout

    rows = [("a", "uno dos", "one two")] * 3 + [("b", "", "x"), ("c", "tres", None),
                                                   ("d", "x" * 2000, "long"), ("e", "cuatro", "four")]
    rows += [(f"f{i}", f"frase número {i}", f"sentence number {i}") for i in range(40)]
    corpus = tmp_path / "crafted.parquet"
    pl.DataFrame(rows, schema=["id", "src", "tgt"], orient="row").write_parquet(corpus)
    config = tiny_config(str(tmp_path / "store"), [f"data.train={corpus}", "data.prepare.dev_size=2",
                                                   "data.prepare.test_size=2", "data.prepare.max_chars=500"])
    layout = RunLayout(config.store, "crafted")
    out = prepare_data.fn(config, layout)
    report = out["report"]
    assert {k: report[k] for k in ("input_rows", "empty", "too_long", "duplicate", "output_rows")} == \
        {"input_rows": 47, "empty": 2, "too_long": 1, "duplicate": 2, "output_rows": 42}
    assert report["splits"] == {"train": 38, "dev": 2, "test:test": 2}
    assert pl.read_parquet(out["train"]).height == 38


@pytest.mark.parametrize(("content", "message"), [
    (b"id\tsrc\ttgt\n", "no rows"),
    (b"id\tsrc\ttgt\n1\thola \xff\xfe mundo\thello\n", "not valid UTF-8"),
    (b"id\tsource\ttgt\n1\thola\thello\n", "missing column 'src'"),
])
def test_prepare_rejects_bad_input_with_a_specific_message(tmp_path, content, message):
    from tasks.data import prepare_data
    from tasks.layout import RunLayout

    corpus = tmp_path / "bad.tsv"
    corpus.write_bytes(content)
    config = tiny_config(str(tmp_path / "store"), [f"data.train={corpus}"])
    with pytest.raises(ValueError, match=message):
        prepare_data.fn(config, RunLayout(config.store, "bad"))


def test_data_parallel_training_with_two_gloo_processes(prefect_harness, tmp_path, caplog):
    """torchrun launches 2 CPU ranks (gloo); rank 0 checkpoints; a re-run resumes the same way."""
    caplog.set_level(logging.INFO)
    store = str(tmp_path / "store")
    first = train_flow(tiny_config(store, ["distributed.processes=2", "train.max_steps=10",
                                           "train.max_tokens=500"], run_id="ddp"))
    assert first["training"]["steps"] == 10 and first["training"]["resumed_from_step"] is None
    task_log = [r.getMessage() for r in caplog.records if r.name == "prefect.task_runs"]
    assert any(m.startswith("[rank 1] process 1 of 2 started") for m in task_log)  # rank 1's output
    checkpoint = load_checkpoint(f"{store}/runs/ddp/checkpoints/last.pt")
    assert checkpoint["world_size"] == 2 and len(checkpoint["rng"]) == 2
    assert checkpoint["state"]["batch_in_epoch"] % 2 == 0  # each step consumed one batch per rank
    assert_complete_run(first)

    longer = train_flow(tiny_config(store, ["distributed.processes=2", "train.max_steps=14",
                                            "train.max_tokens=500"], run_id="ddp"))
    assert longer["training"]["resumed_from_step"] == 10 and longer["training"]["steps"] == 14
    (t,) = load_package(longer["model"]).translator(device="cpu").translate(["Y dijo Dios"])
    assert t.status == "ok"


def test_torchrun_output_is_relayed_line_by_line_with_its_rank(caplog):
    from tasks.train import relay_output

    lines = ["[default1]:process 1 of 2 started\n",
             '[default0]:S2S_EVENT {"kind": "log", "record": {"step": 5}}\n',
             "W1124 12:00:00 torchrun's own warning\n",
             "[default0]:\n",
             "[default1]:[rank1]: Traceback (most recent call last):\n"]
    events: list = []
    tail: deque[str] = deque(maxlen=2)
    with caplog.at_level(logging.INFO, logger="test.relay"):
        relay_output(lines, lambda kind, record: events.append((kind, record)),
                     logging.getLogger("test.relay"), tail)
    assert events == [("log", {"step": 5})]
    logged = [r.getMessage() for r in caplog.records]
    assert logged == ["[rank 1] process 1 of 2 started", "[torchrun] W1124 12:00:00 torchrun's own warning",
                      "[rank 1] [rank1]: Traceback (most recent call last):"]
    assert list(tail) == logged[-2:]  # what a failed launch's error message ends with
