"""evaluate: translate test sets, score with sacrebleu (+ bootstrap CIs), write and publish reports."""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, replace
from functools import partial
from typing import Any

import polars as pl
from prefect import task
from prefect.artifacts import create_markdown_artifact, create_table_artifact

from s2s_core.corpus.chunk import placeholder_counts, placeholder_rate
from s2s_core.evaluation.report import (
    attention_heatmap_png,
    flag_quality,
    render_markdown,
    score_with_ci,
    training_curve_png,
)
from s2s_core.inference.flags import FLAGS
from s2s_core.inference.package import WEIGHTS, load_package, read_package_config
from s2s_core.inference.textfile import translate_stream
from s2s_core.storage import Store
from s2s_core.text.prepare import PrepareConfig, read_parallel, write_parquet
from s2s_core.text.spans import has_spans
from s2s_core.text.tokenizer import EOS_ID
from tasks.common import IO_RETRIES, artifact_key, run_logger
from tasks.config import EvaluateSection
from tasks.progress import progress_bar

# Sentences per progress update; hypotheses do not depend on batch composition, so this changes nothing
# but how often the bar moves (each window still fills whole token-budget batches).
PROGRESS_WINDOW = 256


@task(name="evaluate", **IO_RETRIES)
def evaluate_model(model_url: str, tests: dict[str, str], report_url: str, settings: EvaluateSection,
                   storage_options: dict[str, Any] | None = None, src_column: str = "src",
                   ref_column: str = "tgt") -> dict:
    """Writes ``report.json``, ``report.md``, PNG figures and per-test hypotheses under ``report_url``.

    An evaluation that already finished there (same model weights, test sets and settings) is not
    recomputed: a re-run of the same retrain or train run reuses its report.
    """
    logger = run_logger()
    opts = storage_options or {}
    reports = Store(report_url, opts)
    inputs = _evaluation_inputs(model_url, tests, settings, src_column, ref_column, opts)
    finished = _finished_report(reports, inputs)
    if finished is not None:
        logger.info("evaluation of %s on %s already finished: reusing %s", model_url, ", ".join(tests),
                    reports.url_of("report.json"))
        return _publish(finished, reports, settings)

    package = load_package(model_url, storage_options=opts)
    translator = package.translator(device="auto", precision=settings.precision)
    columns = PrepareConfig(src_column=src_column, tgt_column=ref_column)
    title = f"{package.config.get('name', 'model')} {package.config.get('version', '')}".strip()
    key = artifact_key(str(package.config.get("run_id") or title), "evaluation")
    report: dict = {"title": f"Evaluation: {title}", "model": model_url, "test_sets": {}, "figures": {},
                    "inputs": inputs, "key": key}
    statuses: Counter[str] = Counter()
    spans_in = partial(has_spans, rules=translator.check_rules)  # as the per-row check finds spans

    first_sources: list[str] = []
    for name, url in tests.items():
        frame = read_parallel(url, columns, opts).with_columns(pl.col("src").fill_null(""),
                                                              pl.col("tgt").fill_null(""))
        sources, refs = frame["src"].to_list(), frame["tgt"].to_list()
        with progress_bar(f"translating {name}", len(sources), "sentences", logger) as bar:
            out = list(translate_stream(translator, sources, settings.decode, PROGRESS_WINDOW, bar.advance))
        hyps = [t.text for t in out]
        scores = score_with_ci(hyps, refs, n_bootstrap=settings.n_bootstrap)
        counts = Counter(t.status for t in out)
        statuses.update(counts)
        report["test_sets"][name] = {
            "source": url, "rows": len(out), "scores": scores, "decode": asdict(settings.decode),
            "precision": settings.precision,
            "statuses": dict(counts), "flags": flag_quality([t.flags for t in out], hyps, refs, FLAGS),
            "placeholders": placeholder_rate(placeholder_counts(sources, [t.status for t in out],
                                                                [t.flags for t in out], spans_in)),
            "examples": [{"src": s, "ref": r, "hyp": h} for s, r, h in
                         list(zip(sources, refs, hyps, strict=True))[: settings.examples]],
        }
        write_parquet(frame.with_columns(pl.Series("hyp", hyps), pl.Series("score", [t.score for t in out]),
                                         pl.Series("status", [t.status for t in out]),
                                         pl.Series("flags", [list(t.flags) for t in out],
                                                   pl.List(pl.String))),
                      reports.url_of(f"{name}.translations.parquet"), opts)
        logger.info("%s (%d sentences): %s", name, len(out),
                    ", ".join(f"{m.upper()} {s['score']:.2f}" for m, s in scores.items()))
        first_sources = first_sources or [s for s, t in zip(sources, out, strict=True) if t.status == "ok"]
    report["statuses"] = dict(statuses)

    history = package.metrics.get("history") or []
    if history:
        _write_figure(report, "Training curve", "training_curve.png",
                      training_curve_png(history, title=f"Training curve: {title}"), reports)
    for i, sentence in enumerate(first_sources[: settings.heatmaps], start=1):
        (t,) = translator.translate([sentence], replace(settings.decode, n_best=1, return_attention=True))
        src_pieces = package.tokenizers.src.pieces(t.src_tokens)
        tgt_pieces = package.tokenizers.tgt.pieces([tok for tok in t.tokens if tok != EOS_ID])
        _write_figure(report, f"Attention, sentence {i}", f"attention-{i}.png",
                      attention_heatmap_png(src_pieces, tgt_pieces, t.attention), reports)

    reports.write_text("report.md", render_markdown(report, max_examples=settings.examples))
    reports.write_json("report.json", report, indent=2)  # last: its presence marks a finished evaluation
    logger.info("report written to %s", reports.url_of("report.md"))
    return _publish(report, reports, settings)


def _evaluation_inputs(model_url: str, tests: dict[str, str], settings: EvaluateSection, src_column: str,
                       ref_column: str, opts: dict[str, Any]) -> dict:
    """Everything an evaluation's result depends on; the model by its weights' checksum (its config only)."""
    weights = read_package_config(model_url, opts)["files"].get(WEIGHTS, {})
    return {"model_sha256": weights.get("sha256"), "tests": tests, "columns": [src_column, ref_column],
            "settings": settings.identity()}


def _finished_report(reports: Store, inputs: dict) -> dict | None:
    """The report already written under ``reports`` for the same inputs, or None."""
    if not reports.exists("report.json"):
        return None
    report = reports.read_json("report.json")
    if report.get("inputs") != inputs:
        return None
    expected = ["report.md", *report.get("figures", {}).values(),
                *(f"{name}.translations.parquet" for name in inputs["tests"])]
    return report if all(reports.exists(name) for name in expected) else None


def _publish(report: dict, reports: Store, settings: EvaluateSection) -> dict:
    """Publish the report as Prefect artifacts; returns the task's result (URLs and scores).

    The artifact's figures point to where the PNGs are stored: the UI cannot show them from the store.
    """
    key = report["key"]
    markdown = render_markdown(report, max_examples=settings.examples, figures_at=reports.url)
    create_markdown_artifact(markdown, key=key, description=f"evaluation report ({reports.url})")
    create_table_artifact(
        [{"test_set": name, "rows": ts["rows"], **{m: round(s["score"], 2) for m, s in ts["scores"].items()},
          **{f"{m}_ci95": s["ci95"] for m, s in ts["scores"].items()}}
         for name, ts in report["test_sets"].items()],
        key=f"{key}-table", description="test scores with bootstrap 95% confidence intervals")
    return {"report": reports.url_of("report.json"), "markdown": reports.url_of("report.md"),
            "scores": {name: {m: s["score"] for m, s in ts["scores"].items()}
                       for name, ts in report["test_sets"].items()}}


def _write_figure(report: dict, caption: str, name: str, png: bytes, reports: Store) -> None:
    reports.write_bytes(name, png)
    report["figures"][caption] = name
