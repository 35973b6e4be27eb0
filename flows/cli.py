"""The ``s2s`` command line: ``s2s train``, ``s2s retrain``, ``s2s evaluate`` and ``s2s translate``.

stdout carries results only (JSON, or translations on the text path), so ``| jq`` works; log lines
and progress go to stderr. Torch, Prefect and the config models are imported by the command that
needs them, never at module import: ``s2s --help`` and ``s2s --version`` answer at once.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from s2s_core import __version__

EXIT_OK = 0
EXIT_INTERNAL_ERROR = 1  # a bug or an unexpected failure: Python's traceback is printed
EXIT_USER_ERROR = 2  # bad input, config or command line: one line on stderr
EXIT_FAILED_ROWS = 3  # translate finished, every row is in the output, but some have status "failed"
EXIT_REJECTED = 4  # retrain finished and the challenger was not promoted (the champion keeps serving)
EXIT_INTERRUPTED = 130  # Ctrl-C (128 + SIGINT), as shells report it

# The project's Prefect settings (prefect.toml holds the same for processes started in the repository;
# tests/flows/test_cli.py checks the two agree). Set only where the environment does not set them.
PREFECT_DEFAULTS = {
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",  # offline: "Failed to send telemetry" errors otherwise
    "PREFECT_LOGGING_EXTRA_LOGGERS": "s2s_core",  # the core's warnings reach the run's log in the UI
    # The client's side of the same opt-out (not a Prefect setting, so not in prefect.toml): without
    # it the first run on a terminal prints a telemetry notice.
    "DO_NOT_TRACK": "1",
}

EPILOG = """\
exit codes:
  0    success
  1    internal error (a bug or an unexpected failure; the traceback is printed)
  2    bad input, config or command line (one line on stderr; S2S_DEBUG=1 adds the traceback)
  3    translate: finished, every row written, but some rows have status "failed"
  4    retrain: finished, the challenger was rejected (the champion keeps serving)
  130  interrupted

environment:
  PREFECT_API_URL        run against this Prefect server (default: a temporary one per command)
  PREFECT_HOME           Prefect's local state (default: ~/.prefect)
  AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_DEFAULT_REGION
                         S3 endpoint and credentials for s3:// URLs
  CUDA_VISIBLE_DEVICES   the GPUs that --device auto may use
  S2S_DEBUG=1            print the traceback of user errors too
  S2S_RETRY_BASE_SECONDS first retry delay of storage I/O in tasks (default 2, doubling)

stdout is JSON (or translations); logs and progress go to stderr. Run `s2s COMMAND --help` for
examples."""


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Shows defaults (except empty ones) and keeps the epilog's line breaks."""

    def _get_help_string(self, action: argparse.Action) -> str:
        help_text = action.help or ""
        if ("%(default)" not in help_text and action.option_strings
                and action.default not in (None, False, [], argparse.SUPPRESS)):
            help_text += " (default: %(default)s)"
        return help_text


# ------------------------------------------------------------------------------------------- errors


def user_errors() -> tuple[type[BaseException], ...]:
    """The errors a user fixes by changing input, config or command line (one line, exit 2).

    Everything else is a bug or an unexpected failure and keeps its traceback. Imported here, on
    the error path, so that ``--help`` stays free of torch and Prefect.
    """
    from s2s_core.corpus.memory import MemoryMismatchError
    from s2s_core.corpus.plan import PlanMismatchError
    from s2s_core.errors import InputDataError
    from s2s_core.inference.package import PackageError
    from s2s_core.storage import ExclusiveCreateUnsupported
    from s2s_core.training.checkpoint import ResumeMismatchError
    from s2s_core.training.warm_start import WarmStartError
    from tasks.config import ConfigError

    return (ConfigError, PackageError, PlanMismatchError, InputDataError, ExclusiveCreateUnsupported,
            ResumeMismatchError, MemoryMismatchError, WarmStartError,
            FileNotFoundError, IsADirectoryError, NotADirectoryError, PermissionError)


def _check_url(url: str, what: str, must_exist: bool = False, **options: Any) -> None:
    import fsspec

    from s2s_core.storage import reveal
    from tasks.config import ConfigError

    try:
        fs, path = fsspec.core.url_to_fs(url, **reveal(options))
    except (ValueError, ImportError) as err:
        raise ConfigError(f"{what} {url!r} is not a usable URL: {err}") from None
    if must_exist and not fs.exists(path):
        raise FileNotFoundError(f"{what} not found: {url}")


def _storage_options(pairs: Sequence[str]) -> dict:
    """``--storage-option key=value`` pairs, values parsed like ``--set`` values (YAML), credentials
    (``tasks.secrets``) taken as typed and wrapped as secrets before anything can log or store them."""
    from pydantic import ValidationError

    from tasks.config import ConfigError, apply_override, describe_validation_error
    from tasks.secrets import storage_option_is_secret, validate_storage_options

    options: dict = {}
    for pair in pairs:
        key, sep, _ = pair.partition("=")
        if not sep or not key.strip():  # what was typed is not echoed: it may be a credential
            raise ConfigError("--storage-option expects key=value")
        apply_override(options, pair, option="--storage-option",
                       literal=storage_option_is_secret(key.strip()))
    try:
        return validate_storage_options(options)
    except ValidationError as err:
        raise ConfigError(f"invalid --storage-option: {describe_validation_error(err)}") from None


def _print_json(result: dict) -> None:
    print(json.dumps(result, indent=2, default=str))


def _say(args: argparse.Namespace, message: str) -> None:
    """A line for the person at the terminal (stderr: stdout is for results); -q silences it."""
    if not args.quiet:
        print(message, file=sys.stderr)


# ------------------------------------------------------------------------------------------ commands


def _pipeline_config(args: argparse.Namespace) -> Any:
    """The validated config of ``train``/``retrain``: YAML + --set + --store + --run-id, URLs checked."""
    from tasks.config import load_config

    config = load_config(args.config, args.set, store=args.store)
    if args.run_id:
        config = config.model_copy(update={"run_id": args.run_id})
    _check_url(config.store, "store", **config.storage_options)
    _check_url(config.data.train, "training data", must_exist=True, **config.storage_options)
    return config


def cmd_train(args: argparse.Namespace) -> int:
    config = _pipeline_config(args)
    from flows.train import train_flow

    result = train_flow(config)
    _print_json({k: result[k] for k in ("run", "model", "report", "scores")})
    _say(args, f"report: {result['report']}\nmodel:  {result['model']}")
    return EXIT_OK


def cmd_retrain(args: argparse.Namespace) -> int:
    config = _pipeline_config(args)
    from flows.retrain import retrain_flow

    result = retrain_flow(config)
    _print_json({k: result.get(k) for k in ("run", "model", "decision", "reason", "champion", "report")})
    _say(args, f"{result['decision']}: {result['model']}\nreport: {result['report']}")
    return EXIT_OK if result["decision"] == "promoted" else EXIT_REJECTED


def cmd_evaluate(args: argparse.Namespace) -> int:
    from tasks.config import EvaluateSection, validate_section

    options = _storage_options(args.storage_option)
    _check_url(args.model, "model", **options)
    _check_url(args.test, "test set", must_exist=True, **options)
    report = args.report or str(Path("reports") / Path(args.test.rstrip("/")).stem)
    _check_url(report, "report", **options)
    settings = validate_section(EvaluateSection, {
        "decode": {"beam_size": args.beam, "max_tokens": args.max_tokens}, "n_bootstrap": args.bootstrap,
        "precision": args.precision})
    from flows.evaluate import evaluate_flow

    result = evaluate_flow(args.model, args.test, report, settings, args.src_column, args.ref_column, options)
    _print_json({"scores": result["scores"], "report": result["report"], "markdown": result["markdown"]})
    _say(args, f"report: {result['markdown']}")
    return EXIT_OK


def cmd_translate(args: argparse.Namespace) -> int:
    options = _storage_options(args.storage_option)
    if _is_text(args, options):
        return _translate_text(args, options)
    return _translate_parquet(args, options)


def _is_text(args: argparse.Namespace, options: dict) -> bool:
    """Plain text for ``-`` (stdin) and ``*.txt`` files (or ``--format text``); a corpus (Parquet,
    CSV, TSV, JSON Lines) for the rest. A single file whose name says neither is refused: guessing
    would translate a CSV's header and ids as sentences, or a text file's lines as CSV rows."""
    if args.format != "auto":
        return args.format == "text"
    if args.input == "-":
        return True
    import fsspec

    from s2s_core.corpus.formats import format_of, unknown_format_hint
    from s2s_core.storage import reveal
    from tasks.config import ConfigError

    try:
        fs, path = fsspec.core.url_to_fs(args.input, **reveal(options))
    except (ValueError, ImportError) as err:
        raise ConfigError(f"input {args.input!r} is not a usable URL: {err}") from None
    if not fs.isfile(path):
        return False  # a directory, prefix or glob of corpus files (or missing: said later)
    name = path.lower()
    for suffix in (".gz", ".bz2", ".zst", ".xz"):
        name = name.removesuffix(suffix)
    if name.endswith(".txt"):
        return True
    if format_of(path) is None:
        raise ConfigError(f"cannot tell the format of {args.input} from its name: "
                          f"{unknown_format_hint(path, text=True)}")
    return False


def _decode_settings(args: argparse.Namespace) -> dict:
    return {"beam_size": args.beam, "n_best": args.n_best, "max_tokens": args.max_tokens}


def _translate_text(args: argparse.Namespace, options: dict) -> int:
    from flows.translate_text import TextJob, translate_text
    from tasks.config import DecodeConfig, validate_section

    job = TextJob(model=args.model, input=args.input, output=args.output or "-",
                  decode=validate_section(DecodeConfig, _decode_settings(args)), device=args.device,
                  precision=args.precision, language=args.src_lang, window=args.window,
                  protect=args.protect, storage_options=options)
    _check_url(job.model, "model", **options)
    if job.input != "-":
        _check_url(job.input, "input", must_exist=True, **options)
    if job.output != "-":
        _check_url(job.output, "output", **options)
    summary = translate_text(job)
    if job.output == "-":  # stdout holds the translations: the summary goes with the logs
        logging.getLogger("s2s.translate").info("%s", json.dumps(summary))
    else:
        _print_json(summary)
    return EXIT_FAILED_ROWS if summary["failed_rows"] else EXIT_OK


def _translate_parquet(args: argparse.Namespace, options: dict) -> int:
    from tasks.config import ConfigError, validate_translate_config

    if args.input == "-" or not args.output or args.output == "-":
        _check_url(args.input, "input", must_exist=args.input != "-", **options)  # a typo: say so first
        raise ConfigError("corpus input (Parquet, CSV, TSV, JSON Lines) needs --input and --output "
                          "(a directory URL); text goes through stdin/stdout or --format text")
    config = validate_translate_config({
        "model": args.model, "input": args.input, "output": args.output, "text_column": args.text_column,
        "input_format": "auto" if args.format == "auto" else args.format, "text_encoding": args.text_encoding,
        "output_format": args.output_format,
        "id_column": args.id_column, "chunk_rows": args.chunk_rows, "device": args.device,
        "precision": args.precision,
        "decode": _decode_settings(args), "workers": args.workers, "dask_address": args.dask,
        "retry_failed": args.retry_failed, "source_language": args.src_lang, "storage_options": options,
        "protect": args.protect,
        "use_memory": not args.no_memory, "memory": args.memory})
    for url, what in ((config.model, "model"), (config.input, "input"), (config.output, "output"),
                      *(((config.memory_url, "memory"),) if config.memory_url else ())):
        _check_url(url, what, **options)
    from tasks.translate import preflight

    preflight(config)
    from flows.translate import run_translation

    result = run_translation(config)
    keys = ("rows_in", "rows_out", "statuses", "failed_rows", "this_run", "verify_seconds", "manifest")
    rate = {"placeholders": result["placeholders"]} if "placeholders" in result else {}
    _print_json({k: result.get(k) for k in keys} | rate)
    return EXIT_FAILED_ROWS if result.get("statuses", {}).get("failed") else EXIT_OK


# -------------------------------------------------------------------------------------------- parser


def _add_pipeline_options(parser: argparse.ArgumentParser, example_set: str, run_id_default: str) -> None:
    """The options of the commands that run the pipeline from a YAML config (train, retrain)."""
    parser.add_argument("config", help="YAML config (see configs/)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help=f"override a config value (parsed as YAML), e.g. --set {example_set}")
    parser.add_argument("--store", help="store URL for runs/ and models/ (default: the config's `store`)")
    parser.add_argument("--run-id", help=f"run id (default: {run_id_default})")


def _add_storage_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--storage-option", action="append", default=[], metavar="KEY=VALUE",
                        help="fsspec option for every URL, value parsed as YAML, e.g. "
                             "endpoint_url=http://127.0.0.1:9000 or anon=true (repeatable)")


# s2s_core.inference.precision.PRECISIONS, spelled out: importing it would import torch (tests check
# that the two agree).
PRECISIONS = ("fp32", "bf16", "int8")


def _add_precision(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--precision", choices=PRECISIONS, default="fp32",
                        help="how the model computes: fp32 (float32, as trained); bf16 (bfloat16 "
                             "autocast, AMP on CUDA: faster beam search on CPUs with AMX, but a few %% "
                             "of sentences change with batching); int8 (int8 weights via torchao, "
                             "float activations: slower than fp32 on CPU). A corpus output pins it. "
                             "See README, Precision")


def _add_logging_options(parser: argparse.ArgumentParser, default: Any) -> None:
    # The subcommands' copies default to SUPPRESS so they do not overwrite `s2s -v COMMAND`.
    parser.add_argument("-v", "--verbose", action="count", default=default,
                        help="more log lines on stderr (-vv: debug)")
    parser.add_argument("-q", "--quiet", action="count", default=default,
                        help="warnings and errors only (-qq: errors only)")


def _subcommand(sub: Any, name: str, help_text: str, examples: str) -> argparse.ArgumentParser:
    parser = sub.add_parser(name, help=help_text, description=textwrap.fill(help_text, 100),
                            formatter_class=HelpFormatter, epilog=f"examples:\n{examples}")
    _add_logging_options(parser, argparse.SUPPRESS)
    return parser


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="s2s", description="Attention seq2seq translation: train, "
                                     "evaluate, retrain and translate.", epilog=EPILOG,
                                     formatter_class=HelpFormatter)
    parser.add_argument("--version", action="version", version=f"s2s {__version__}")
    _add_logging_options(parser, 0)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    train = _subcommand(sub, "train", "prepare → tokenize → train → evaluate from a YAML config; "
                        "re-running the same command resumes", """\
  s2s train configs/tiny.yaml
  s2s train configs/bible-es-en.yaml --set train.max_minutes=60 --set model.attention=general
  s2s train configs/tiny.yaml --store s3://bucket/s2s | jq -r .model""")
    _add_pipeline_options(train, example_set="train.max_steps=100",
                          run_id_default="name + config hash, so re-running resumes")
    train.set_defaults(func=cmd_train)

    retrain = _subcommand(sub, "retrain", "train a challenger and promote it only if it significantly "
                          "beats the serving model (exit 4 when rejected)", """\
  s2s retrain configs/bible-es-en.yaml
  s2s retrain configs/tiny.yaml --set promotion.alpha=0.01 --set promotion.min_bleu_gain=0.5
  s2s retrain configs/bible-es-en.yaml --set train.init_from=champion   # warm start""")
    _add_pipeline_options(retrain, example_set="promotion.alpha=0.01",
                          run_id_default="name + config hash + date, so re-running the same day resumes")
    retrain.set_defaults(func=cmd_retrain)

    ev = _subcommand(sub, "evaluate", "score a model package on a test set and write a report", """\
  s2s evaluate --model store/models/tiny/<version> --test data/test.parquet --report reports/test
  s2s evaluate --model s3://bucket/models/m/v1 --test s3://bucket/test.tsv \\
      --storage-option endpoint_url=http://127.0.0.1:9000""")
    ev.add_argument("--model", required=True, help="model package URL (models/<name>/<version>)")
    ev.add_argument("--test", required=True, help="test set: Parquet or TSV URL")
    ev.add_argument("--src-column", default="src", help="source column")
    ev.add_argument("--ref-column", default="tgt", help="reference column")
    ev.add_argument("--report", help="report directory URL (default: ./reports/<test name>)")
    ev.add_argument("--beam", type=int, default=5, help="beam size (1 = greedy)")
    ev.add_argument("--max-tokens", type=int, default=6000, help="source tokens per batch")
    ev.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples for CIs")
    _add_precision(ev)
    _add_storage_option(ev)
    ev.set_defaults(func=cmd_evaluate)

    tr = _subcommand(sub, "translate", "translate text (stdin/stdout or a text file, one line per line) "
                     "or a corpus of Parquet, CSV, TSV or JSON Lines files (chunk by chunk; re-running "
                     "resumes)", """\
  s2s translate --model store/models/tiny/<version> < src.txt > hyp.txt
  s2s translate --model store/models/tiny --input src.txt.gz --output hyp.txt --beam 5
  s2s translate --model M --n-best 3 --beam 5 < src.txt      # lines: i ||| hypothesis ||| score
  s2s translate --model store/models/bible-es-en --input data/corpus/ --output out/corpus-en \\
      --workers 2 | jq .statuses
  s2s translate --model M --input export.csv.gz --output out/export-en --output-format csv

Text (stdin, *.txt): one output line per input line, empty lines kept, streamed a window of lines
at a time, no Prefect server involved. Corpus (Parquet, CSV, TSV, JSON Lines files; they may differ
in their other columns): every row becomes one output row (its own columns plus translation, score,
status, segments, flags; nbest with --n-best > 1) in <output>/part-*.parquet (--output-format: csv,
tsv, jsonl), verified by manifest.json and listed in input order by <output>/_chunks.parquet; a
re-run translates only new or changed files.
Rows of several lines and lines over the model's length limit are translated sentence by sentence
and joined back with their own whitespace.""")
    tr.add_argument("--model", required=True,
                    help="model package URL (models/<name>/<version>) or registry URL (models/<name>: the "
                         "serving model)")
    tr.add_argument("--input", default="-",
                    help="text file (*.txt), corpus file (Parquet, CSV, TSV, JSON Lines), directory/prefix "
                         "of corpus files or glob; - for stdin")
    tr.add_argument("--output", help="text: file URL (default: stdout); corpus: output directory URL")
    tr.add_argument("--format", choices=("auto", "text", "parquet", "csv", "tsv", "jsonl"), default="auto",
                    help="input format; auto: text for stdin and *.txt, else by file name (*.parquet, "
                         "*.csv, *.tsv, *.jsonl/*.ndjson, each optionally .gz/.bz2/.zst/.xz)")
    tr.add_argument("--output-format", choices=("parquet", "csv", "tsv", "jsonl"), default="parquet",
                    help="corpus: format of the output parts (CSV/TSV: lists such as flags as JSON text)")
    tr.add_argument("--text-encoding", metavar="CODEC",
                    help="corpus: encoding of a binary text column, and of CSV/TSV files (default: UTF-8, "
                         "and a binary column is refused)")
    tr.add_argument("--beam", type=int, default=5, metavar="N", help="beam size (1 = greedy)")
    tr.add_argument("--n-best", type=int, default=1, metavar="N", help="hypotheses per input (≤ --beam)")
    tr.add_argument("--max-tokens", type=int, default=6000, metavar="N", help="source tokens per batch")
    tr.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    _add_precision(tr)
    tr.add_argument("--src-lang", metavar="CODE",
                    help="source language (ISO 639 code) for sentence splitting of over-long lines "
                         "(default: the one the model package records)")
    tr.add_argument("--protect", action=argparse.BooleanOptionalAction, default=None,
                    help="keep placeholders and markup (%%s, {0}, <b>, &amp;, URLs, paths, --options, line "
                         "breaks) byte-exact: each becomes a placeholder the model must copy (default: on "
                         "for a model trained with protected spans; --protect with another is refused)")
    tr.add_argument("--window", type=int, default=2000, metavar="LINES",
                    help="text: lines translated together")
    tr.add_argument("--text-column", default="src", help="corpus: column to translate")
    tr.add_argument("--id-column", default="id",
                    help="corpus: unique row id, checked in and out ('' for none)")
    tr.add_argument("--chunk-rows", type=int, default=2000, metavar="N",
                    help="corpus: rows per chunk (unit of resume)")
    tr.add_argument("--retry-failed", action="store_true",
                    help="Parquet: translate again the rows of committed chunks whose status is failed "
                         "(out of memory even alone), e.g. on a bigger GPU; exit code 3 while any remain")
    memory = tr.add_mutually_exclusive_group()
    memory.add_argument("--memory", metavar="URL",
                        help="Parquet: translation memory (sentences a model translated before are not "
                             "translated again; shared by all outputs, namespaced by model and settings); "
                             "default: _memory next to --output")
    memory.add_argument("--no-memory", action="store_true",
                        help="Parquet: neither read nor write the translation memory")
    runner = tr.add_mutually_exclusive_group()
    runner.add_argument("--workers", type=int, metavar="N",
                        help="Parquet: thread-pool workers (default: one per GPU, else few)")
    runner.add_argument("--dask", metavar="ADDRESS",
                        help="Parquet: run chunks on this Dask scheduler (tcp://host:8786)")
    _add_storage_option(tr)
    tr.set_defaults(func=cmd_translate)
    return parser


# ---------------------------------------------------------------------------------------------- main


def configure_logging(verbose: int, quiet: int) -> None:
    """-v/-q set the level of Prefect's and s2s's loggers (Prefect reads its level when imported)."""
    level = min(logging.ERROR, max(logging.DEBUG, logging.INFO - 10 * (verbose - quiet)))
    if verbose or quiet:
        os.environ["PREFECT_LOGGING_LEVEL"] = logging.getLevelName(level)
    for name, value in PREFECT_DEFAULTS.items():
        os.environ.setdefault(name, value)
    logging.basicConfig(level=logging.WARNING, format="%(message)s", stream=sys.stderr)
    logging.getLogger("s2s").setLevel(level)
    # The core logs at INFO what the tasks report already; it joins in from -v on.
    logging.getLogger("s2s_core").setLevel(level if verbose else max(level, logging.WARNING))


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    configure_logging(args.verbose, args.quiet)
    try:
        return args.func(args)
    except KeyboardInterrupt:
        print("s2s: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as err:
        if not isinstance(err, user_errors()) or os.environ.get("S2S_DEBUG"):
            raise
        print(f"s2s: error: {err}", file=sys.stderr)
        return EXIT_USER_ERROR


if __name__ == "__main__":
    sys.exit(main())
