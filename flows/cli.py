"""The ``s2s`` command line: ``s2s train`` and ``s2s evaluate``.

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

from s2s_core.package import PackageError
from tasks.config import ConfigError, EvaluateSection, load_config

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


def cmd_train(args: argparse.Namespace) -> int:
    config = load_config(args.config, args.set, store=args.store)
    if args.run_id:
        config = config.model_copy(update={"run_id": args.run_id})
    _check_url(config.store, "store", **config.storage_options)
    _check_url(config.data.train, "training data", must_exist=True, **config.storage_options)
    from flows.train import train_flow  # imported late: Prefect start-up is slow, --help is not

    result = train_flow(config)
    print(json.dumps({k: result[k] for k in ("run", "model", "report", "scores")}, indent=2))
    print(f"\nreport: {result['report']}\nmodel:  {result['model']}")
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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="s2s", description="Attention seq2seq translation pipeline.")
    sub = parser.add_subparsers(dest="command", required=True)

    train = sub.add_parser("train", help="prepare → tokenize → train → evaluate from a YAML config")
    train.add_argument("config", help="YAML config (see configs/)")
    train.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                       help="override a config value, e.g. --set train.max_steps=100 (repeatable)")
    train.add_argument("--store", help="store URL for runs/ and models/ (overrides the config)")
    train.add_argument("--run-id", help="run id (default: name + config hash, so re-running resumes)")
    train.set_defaults(func=cmd_train)

    ev = sub.add_parser("evaluate", help="score a model package on a test set and write a report")
    ev.add_argument("--model", required=True, help="model package URL (models/<name>/<version>)")
    ev.add_argument("--test", required=True, help="test set: Parquet or TSV URL")
    ev.add_argument("--src-column", default="src")
    ev.add_argument("--ref-column", default="tgt")
    ev.add_argument("--report", help="report directory URL (default: ./reports/<test name>)")
    ev.add_argument("--beam", type=int, default=5, help="beam size (1 = greedy)")
    ev.add_argument("--max-tokens", type=int, default=6000, help="source tokens per batch")
    ev.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples for CIs")
    ev.add_argument("--storage-option", action="append", default=[], metavar="KEY=VALUE",
                    help="fsspec option for all URLs, e.g. endpoint_url=http://127.0.0.1:9000")
    ev.set_defaults(func=cmd_evaluate)
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
