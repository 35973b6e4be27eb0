"""The ``s2s`` command line: ``s2s train``, ``s2s retrain``, ``s2s evaluate`` and ``s2s translate``.

Errors a user can fix (missing files, bad columns, bad URLs, bad config) print one line and exit 2
(set ``S2S_DEBUG=1`` for the traceback).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import fsspec

from s2s_core.inference.package import PackageError
from tasks.config import ConfigError, EvaluateSection, PipelineConfig, load_config, validate_translate_config

USER_ERRORS = (ConfigError, PackageError, FileNotFoundError, ValueError, KeyError)


def _check_url(url: str, what: str, must_exist: bool = False, **options) -> None:
    try:
        fs, path = fsspec.core.url_to_fs(url, **options)
    except (ValueError, ImportError) as err:
        raise ConfigError(f"{what} {url!r} is not a usable URL: {err}") from None
    if must_exist and not fs.exists(path):
        raise FileNotFoundError(f"{what} not found: {url}")


def _parse_options(pairs: Sequence[str]) -> dict:
    options = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise ConfigError(f"--storage-option expects key=value, got {pair!r}")
        options[key] = value
    return options


def _pipeline_config(args: argparse.Namespace) -> PipelineConfig:
    """The validated config of ``train``/``retrain``: YAML + --set + --store + --run-id, URLs checked."""
    config = load_config(args.config, args.set, store=args.store)
    if args.run_id:
        config = config.model_copy(update={"run_id": args.run_id})
    _check_url(config.store, "store", **config.storage_options)
    _check_url(config.data.train, "training data", must_exist=True, **config.storage_options)
    return config


def cmd_train(args: argparse.Namespace) -> int:
    config = _pipeline_config(args)
    from flows.train import train_flow  # imported late: Prefect start-up is slow, --help is not

    result = train_flow(config)
    print(json.dumps({k: result[k] for k in ("run", "model", "report", "scores")}, indent=2))
    print(f"\nreport: {result['report']}\nmodel:  {result['model']}")
    return 0


def cmd_retrain(args: argparse.Namespace) -> int:
    config = _pipeline_config(args)
    from flows.retrain import retrain_flow

    result = retrain_flow(config)
    print(json.dumps({k: result[k] for k in ("run", "model", "decision", "reason", "champion")}, indent=2))
    print(f"\n{result['decision']}: {result['model']}\nreport: {result['report']}")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    options = _parse_options(args.storage_option)
    _check_url(args.model, "model", **options)
    _check_url(args.test, "test set", must_exist=True, **options)
    report = args.report or str(Path("reports") / Path(args.test.rstrip("/")).stem)
    _check_url(report, "report", **options)
    settings = EvaluateSection.model_validate(
        {"decode": {"beam_size": args.beam, "max_tokens": args.max_tokens}, "n_bootstrap": args.bootstrap})
    from flows.evaluate import evaluate_flow

    result = evaluate_flow(args.model, args.test, report, settings, args.src_column, args.ref_column, options)
    print(json.dumps(result["scores"], indent=2))
    print(f"\nreport: {result['markdown']}")
    return 0


def cmd_translate(args: argparse.Namespace) -> int:
    options = _parse_options(args.storage_option)
    config = validate_translate_config({
        "model": args.model, "input": args.input, "output": args.output, "text_column": args.text_column,
        "id_column": args.id_column, "chunk_rows": args.chunk_rows, "device": args.device,
        "decode": {"beam_size": args.beam, "max_tokens": args.max_tokens}, "workers": args.workers,
        "dask_address": args.dask, "storage_options": options})
    for url, what in ((config.model, "model"), (config.input, "input"), (config.output, "output")):
        _check_url(url, what, **options)
    from tasks.translate import preflight

    preflight(config)
    from flows.translate import run_translation

    result = run_translation(config)
    keys = ("rows_in", "rows_out", "statuses", "this_run", "manifest")
    print(json.dumps({k: result[k] for k in keys}, indent=2))
    return 0


def _add_pipeline_options(parser: argparse.ArgumentParser, example_set: str, run_id_default: str) -> None:
    """The options of the commands that run the pipeline from a YAML config (train, retrain)."""
    parser.add_argument("config", help="YAML config (see configs/)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help=f"override a config value, e.g. --set {example_set} (repeatable)")
    parser.add_argument("--store", help="store URL for runs/ and models/ (overrides the config)")
    parser.add_argument("--run-id", help=f"run id (default: {run_id_default})")


def _add_storage_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--storage-option", action="append", default=[], metavar="KEY=VALUE",
                        help="fsspec option for all URLs, e.g. endpoint_url=http://127.0.0.1:9000")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="s2s", description="Attention seq2seq translation pipeline.")
    sub = parser.add_subparsers(dest="command", required=True)

    train = sub.add_parser("train", help="prepare → tokenize → train → evaluate from a YAML config")
    _add_pipeline_options(train, example_set="train.max_steps=100",
                          run_id_default="name + config hash, so re-running resumes")
    train.set_defaults(func=cmd_train)

    retrain = sub.add_parser("retrain", help="train a challenger; promote it if it significantly beats "
                                             "the current model (models/<name>/current)")
    _add_pipeline_options(retrain, example_set="promotion.alpha=0.01",
                          run_id_default="name + config hash + date, so re-running the same day resumes")
    retrain.set_defaults(func=cmd_retrain)

    ev = sub.add_parser("evaluate", help="score a model package on a test set and write a report")
    ev.add_argument("--model", required=True, help="model package URL (models/<name>/<version>)")
    ev.add_argument("--test", required=True, help="test set: Parquet or TSV URL")
    ev.add_argument("--src-column", default="src")
    ev.add_argument("--ref-column", default="tgt")
    ev.add_argument("--report", help="report directory URL (default: ./reports/<test name>)")
    ev.add_argument("--beam", type=int, default=5, help="beam size (1 = greedy)")
    ev.add_argument("--max-tokens", type=int, default=6000, help="source tokens per batch")
    ev.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples for CIs")
    _add_storage_option(ev)
    ev.set_defaults(func=cmd_evaluate)

    tr = sub.add_parser("translate", help="translate a Parquet corpus chunk by chunk (re-running resumes)")
    tr.add_argument("--model", required=True, help="model package URL (models/<name>/<version>)")
    tr.add_argument("--input", required=True, help="Parquet file, directory/prefix of Parquet files, or glob")
    tr.add_argument("--output", required=True, help="output directory URL (parts, _done/, manifest.json)")
    tr.add_argument("--text-column", default="src")
    tr.add_argument("--id-column", default="id", help="unique row id, checked in and out ('' for none)")
    tr.add_argument("--beam", type=int, default=5, help="beam size (1 = greedy)")
    tr.add_argument("--chunk-rows", type=int, default=2000, help="target rows per chunk (unit of resume)")
    tr.add_argument("--max-tokens", type=int, default=6000, help="source tokens per batch")
    tr.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    runner = tr.add_mutually_exclusive_group()
    runner.add_argument("--workers", type=int, help="thread-pool workers (default: one per GPU, else few)")
    runner.add_argument("--dask", metavar="ADDRESS", help="run chunks on this Dask scheduler (tcp://host:8786)")
    _add_storage_option(tr)
    tr.set_defaults(func=cmd_translate)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")  # Prefect logs progress
    try:
        return args.func(args)
    except USER_ERRORS as err:
        if os.environ.get("S2S_DEBUG"):
            raise
        message = str(err) if not isinstance(err, KeyError) else f"missing key {err}"
        print(f"s2s: error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
