"""evaluate: translate test sets, score with sacrebleu (+ bootstrap CIs), write and publish reports."""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, replace
from typing import Any

import polars as pl
from prefect import task
from prefect.artifacts import create_markdown_artifact, create_table_artifact

from s2s_core.evaluation.report import (
    attention_heatmap_png,
    render_markdown,
    score_with_ci,
    training_curve_png,
)
from s2s_core.inference.package import load_package
from s2s_core.storage import Store
from s2s_core.text.prepare import PrepareConfig, read_parallel, write_parquet
from s2s_core.text.tokenizer import EOS_ID
from tasks.common import IO_RETRIES, artifact_key, run_logger
from tasks.config import EvaluateSection


@task(name="evaluate", **IO_RETRIES)
def evaluate_model(model_url: str, tests: dict[str, str], report_url: str, settings: EvaluateSection,
                   storage_options: dict[str, Any] | None = None, src_column: str = "src",
                   ref_column: str = "tgt") -> dict:
    """Writes ``report.json``, ``report.md``, PNG figures and per-test hypotheses under ``report_url``."""
    logger = run_logger()
    opts = storage_options or {}
    reports = Store(report_url, opts)
    package = load_package(model_url, storage_options=opts)
    translator = package.translator(device="auto")
    columns = PrepareConfig(src_column=src_column, tgt_column=ref_column)
    title = f"{package.config.get('name', 'model')} {package.config.get('version', '')}".strip()
    report: dict = {"title": f"Evaluation: {title}", "model": model_url, "test_sets": {}, "figures": {}}
    statuses: Counter[str] = Counter()
    first_sources: list[str] = []
    for name, url in tests.items():
        frame = read_parallel(url, columns, opts).with_columns(pl.col("src").fill_null(""),
                                                              pl.col("tgt").fill_null(""))
        sources, refs = frame["src"].to_list(), frame["tgt"].to_list()
        out = translator.translate(sources, settings.decode)
        hyps = [t.text for t in out]
        scores = score_with_ci(hyps, refs, n_bootstrap=settings.n_bootstrap)
        counts = Counter(t.status for t in out)
        statuses.update(counts)
        report["test_sets"][name] = {
            "source": url, "rows": len(out), "scores": scores, "decode": asdict(settings.decode),
            "statuses": dict(counts),
            "examples": [{"src": s, "ref": r, "hyp": h} for s, r, h in
                         list(zip(sources, refs, hyps, strict=True))[: settings.examples]],
        }
        write_parquet(frame.with_columns(pl.Series("hyp", hyps), pl.Series("score", [t.score for t in out]),
                                         pl.Series("status", [t.status for t in out])),
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

    markdown = render_markdown(report, max_examples=settings.examples)
    reports.write_json("report.json", report, indent=2)
    reports.write_text("report.md", markdown)
    key = artifact_key(str(package.config.get("run_id") or title), "evaluation")
    create_markdown_artifact(markdown, key=key, description=f"evaluation report ({report_url})")
    create_table_artifact(
        [{"test_set": name, "rows": ts["rows"], **{m: round(s["score"], 2) for m, s in ts["scores"].items()},
          **{f"{m}_ci95": s["ci95"] for m, s in ts["scores"].items()}}
         for name, ts in report["test_sets"].items()],
        key=f"{key}-table", description="test scores with bootstrap 95% confidence intervals")
    logger.info("report written to %s", reports.url_of("report.md"))
    return {"report": reports.url_of("report.json"), "markdown": reports.url_of("report.md"),
            "scores": {name: {m: s["score"] for m, s in ts["scores"].items()}
                       for name, ts in report["test_sets"].items()}}


def _write_figure(report: dict, caption: str, name: str, png: bytes, reports: Store) -> None:
    reports.write_bytes(name, png)
    report["figures"][caption] = name
