"""Evaluation reports: scores with bootstrap confidence intervals, PNG figures (training curve,
attention heatmap) and markdown summaries of an evaluation or of a retrain decision.
"""

from __future__ import annotations

import io
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from sacrebleu.metrics import CHRF

from s2s_core.evaluation.metrics import corpus_score_ci

EOS_PIECE = "</s>"
MAX_EXAMPLES = 5  # examples shown per test set in the markdown report


# ---------------------------------------------------------------- scores
def score_with_ci(hypotheses: Sequence[str], references: Sequence[str],
                  names: Sequence[str] = ("bleu", "chrf", "ter"),
                  n_bootstrap: int = 1000) -> dict[str, dict]:
    """Corpus score, bootstrap 95% interval and signature for each metric; per metric name::

        {"bleu": {"score": 23.1,                  # corpus score on the whole test set
                  "ci95": [21.9, 24.3] | None,    # bootstrap 95% interval, None when n_bootstrap <= 1
                  "mean": 23.0 | None,            # mean of the bootstrap resample scores
                  "ci_halfwidth": 1.2 | None,     # sacrebleu's "± ci"
                  "signature": "nrefs:1|bs:1000|seed:12345|case:mixed|..."}}

    Resampling is ``corpus_score_ci``'s: seeded, so two calls on the same input agree.
    """
    out = {}
    for name in names:
        s = corpus_score_ci(name, hypotheses, references, n_bootstrap=n_bootstrap)
        out[name] = {"score": s.score, "ci95": list(s.ci95) if s.ci95 is not None else None,
                     "mean": s.mean, "ci_halfwidth": s.ci_halfwidth, "signature": s.signature}
    return out


def _mean(values: Sequence[float]) -> float | None:
    return round(sum(values) / len(values), 2) if values else None


def flag_quality(flags: Sequence[Sequence[str]], hypotheses: Sequence[str], references: Sequence[str],
                 names: Sequence[str] = ()) -> dict[str, dict]:
    """Per quality flag (``names`` first, then any other seen, then ``any``): how many rows carry it and
    the mean sentence chrF of those rows and of the others::

        {"repetition": {"rows": 12, "chrf": 21.4, "others_chrf": 47.9}, ...,
         "any": {"rows": 80, "chrf": 30.2, "others_chrf": 49.0}}

    A mean over no rows is None. ``any`` compares rows with at least one flag to rows with none.
    """
    chrf = CHRF()
    sentence = [chrf.sentence_score(h, [r]).score for h, r in zip(hypotheses, references, strict=True)]
    seen = [f for f in dict.fromkeys(f for row in flags for f in row) if f not in names]
    out = {}
    for name in [*names, *seen, "any"]:
        hit = [bool(row) if name == "any" else name in row for row in flags]
        out[name] = {"rows": sum(hit),
                     "chrf": _mean([s for s, h in zip(sentence, hit, strict=True) if h]),
                     "others_chrf": _mean([s for s, h in zip(sentence, hit, strict=True) if not h])}
    return out


# ---------------------------------------------------------------- figures
def _png(fig: Figure, dpi: int = 100) -> bytes:
    """Render a figure to PNG bytes with the Agg canvas (no pyplot, no global backend switch)."""
    FigureCanvasAgg(fig)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")
    return buffer.getvalue()


def _literal(text: str) -> str:
    """Text as matplotlib should print it: a pair of ``$`` would otherwise start mathtext."""
    return str(text).replace("$", r"\$")


def _placeholder(ax: Any, message: str) -> None:
    """Mark an empty panel instead of drawing empty axes."""
    ax.text(0.5, 0.5, message, ha="center", va="center", transform=ax.transAxes, color="gray")
    # Hide ticks rather than clear them: set_xticks([]) would also clear the shared x axis.
    ax.tick_params(left=False, bottom=False, labelleft=False, labelbottom=False)


def _series(history: Iterable[Mapping], key: str) -> tuple[list[float], list[float]]:
    """(steps, values) of the records that carry a finite ``key``."""
    steps, values = [], []
    for record in history:
        value = record.get(key)
        if value is not None and "step" in record and math.isfinite(value):
            steps.append(record["step"])
            values.append(value)
    return steps, values


def training_curve_png(history: Sequence[Mapping], title: str = "Training curve") -> bytes:
    """PNG of training loss (top) and dev BLEU/chrF (bottom) against the training step."""
    fig = Figure(figsize=(8, 6), layout="constrained")
    ax_loss, ax_dev = fig.subplots(2, 1, sharex=True)
    bleu_steps, bleu = _series(history, "dev_bleu")
    if bleu:
        best = max(range(len(bleu)), key=bleu.__getitem__)
        title = f"{title} (best dev BLEU {bleu[best]:.2f} at step {bleu_steps[best]})"
    fig.suptitle(_literal(title))

    steps, loss = _series(history, "loss")
    if steps:
        ax_loss.plot(steps, loss, color="tab:blue", linewidth=1.2)
        ax_loss.set_ylabel("loss (per target token)")
        ax_loss.grid(alpha=0.3)
    else:
        _placeholder(ax_loss, "no training loss records")

    drawn = False
    for key, label, color in (("dev_bleu", "dev BLEU", "tab:green"), ("dev_chrf", "dev chrF", "tab:orange")):
        s, v = _series(history, key)
        if s:
            ax_dev.plot(s, v, marker="o", markersize=3, color=color, label=label)
            drawn = True
    if drawn:
        ax_dev.set_ylabel("score")
        ax_dev.legend(loc="best")
        ax_dev.grid(alpha=0.3)
    else:
        _placeholder(ax_dev, "no dev evaluations")
    # Shared x: an empty panel must not hide the step labels of the other one.
    if steps or drawn:
        ax_dev.set_xlabel("step")
        ax_dev.xaxis.set_major_locator(MaxNLocator(integer=True))  # steps are whole numbers
        ax_dev.tick_params(axis="x", labelbottom=True)
    return _png(fig)


def _as_matrix(weights: Any) -> np.ndarray:
    """A float numpy matrix from a torch tensor, numpy array or nested lists."""
    if hasattr(weights, "detach"):  # torch.Tensor, without importing torch here
        weights = weights.detach().float().cpu().numpy()
    return np.asarray(weights, dtype=float)


def attention_heatmap_png(src_pieces: Sequence[str], tgt_pieces: Sequence[str], weights: Any,
                          title: str = "Attention") -> bytes:
    """PNG heatmap of attention weights: rows = target pieces + </s>, columns = source pieces + </s>.

    A hypothesis cut at the maximum length has no </s> row: ``len(tgt_pieces)`` rows are accepted too.
    """
    matrix = _as_matrix(weights)
    row_labels = [*tgt_pieces, EOS_PIECE] if matrix.shape[0] != len(tgt_pieces) else list(tgt_pieces)
    rows, cols = len(row_labels), len(src_pieces) + 1
    if matrix.shape != (rows, cols):
        raise ValueError(f"attention has shape {matrix.shape}, expected {(rows, cols)} "
                         f"for {len(tgt_pieces)} target and {len(src_pieces)} source pieces (+ </s>)")
    # About a third of an inch per piece keeps labels legible; capped so a 250-piece sentence
    # gives a large but bounded image (fonts shrink to fit instead).
    cell = min(0.35, 30 / max(rows, cols))
    fontsize = max(4.0, min(9.0, cell * 26))
    fig = Figure(figsize=(max(4.0, cell * cols + 2.5), max(3.0, cell * rows + 1.5)), layout="constrained")
    ax = fig.subplots()
    image = ax.imshow(matrix, aspect="auto", cmap="viridis", vmin=0.0, interpolation="nearest")
    ax.set_xticks(range(cols), [_literal(p) for p in [*src_pieces, EOS_PIECE]],
                  rotation=60, ha="right", rotation_mode="anchor", fontsize=fontsize)
    ax.set_yticks(range(rows), [_literal(p) for p in row_labels], fontsize=fontsize)
    ax.set_xlabel("source")
    ax.set_ylabel("target")
    ax.set_title(_literal(title))
    fig.colorbar(image, ax=ax, label="attention weight")
    return _png(fig)


# ---------------------------------------------------------------- markdown
_MD_SPECIAL = str.maketrans({c: "\\" + c for c in "\\`*_[]<>|#"})


def _md(text: Any) -> str:
    """Free text on one markdown line, with characters that would format or break a table escaped."""
    return " ".join(str(text).split()).translate(_MD_SPECIAL)


def _fmt_number(value: Any) -> str:
    """Two decimals for floats, as-is otherwise."""
    return f"{value:.2f}" if isinstance(value, float) else str(value)


def _fmt_mapping(values: Mapping) -> str:
    """``key=value, ...`` for decode settings and status counts, values as given."""
    return ", ".join(f"{_md(k)}={_md(v)}" for k, v in values.items())


def _score_table(scores: Mapping[str, Mapping]) -> list[str]:
    """Markdown table: metric | score | 95% CI | signature."""
    lines = ["| metric | score | 95% CI | signature |", "|---|---:|---|---|"]
    for name, s in scores.items():
        ci = s.get("ci95")
        ci_text = f"[{ci[0]:.2f}, {ci[1]:.2f}]" if ci else "–"
        # GFM splits cells on "|" even inside code spans; "\|" renders as a literal pipe there.
        signature = str(s.get("signature", "")).replace("|", "\\|")
        lines.append(f"| {_md(name)} | {s['score']:.2f} | {ci_text} | `{signature}` |")
    return lines


def _placeholder_line(agreement: Mapping[str, Any]) -> str:
    """The placeholder exact-match rate: rows whose translation kept exactly their source's spans."""
    if not agreement.get("rows_with_spans"):
        invented = agreement.get("invented", 0)
        return f"Placeholders: no source row holds one; {invented} translation(s) invent one"
    return (f"Placeholder exact match: {100 * agreement['rate']:.1f}% ({agreement['exact']} of "
            f"{agreement['rows_with_spans']} rows with placeholders or markup); "
            f"{agreement.get('invented', 0)} other row(s) got one invented")


def _flag_table(flags: Mapping[str, Mapping]) -> list[str]:
    """Markdown table: quality flag | rows | mean sentence chrF of those rows | of the other rows."""
    lines = ["| quality flag | rows | sentence chrF, flagged | sentence chrF, others |",
             "|---|---:|---:|---:|"]
    for name, f in flags.items():
        cells = ["–" if f[key] is None else f"{f[key]:.2f}" for key in ("chrf", "others_chrf")]
        lines.append(f"| {_md(name)} | {f['rows']} | {cells[0]} | {cells[1]} |")
    return lines


def _figures(figures: Mapping[str, str] | Sequence[str], folder: str | None = None) -> list[str]:
    """Image links, captioned by name (dict) or by file name (list), relative to the report.

    With ``folder`` (where the report and its PNGs are stored) the links are absolute: images where
    a browser can fetch them (http/https), otherwise a list of where each PNG is (a viewer such as
    the Prefect UI cannot load ``file://`` or ``s3://`` images, and a relative link would be broken).
    """
    items = figures.items() if isinstance(figures, Mapping) else ((p.rsplit("/", 1)[-1], p) for p in figures)
    lines = []
    if folder is not None and not folder.startswith(("http://", "https://")):
        lines = ["PNG files stored with the report:", ""]
        return lines + [f"- {_md(caption)}: `{folder.rstrip('/')}/{path}`" for caption, path in items]
    for caption, path in items:
        url = f"{folder.rstrip('/')}/{path}" if folder else str(path)
        lines += [f"![{_md(caption)}]({url.replace(' ', '%20')})", ""]
    return lines


def render_markdown(report: Mapping[str, Any], max_examples: int = MAX_EXAMPLES,
                    figures_at: str | None = None) -> str:
    """Markdown report from a JSON-ready report dict (every key but ``test_sets`` optional)::

        {"title": "Evaluation report",
         "model": "s3://bucket/models/run-1/model.s2s",   # URL of the evaluated model package
         "test_sets": {
             "newstest": {
                 "rows": 3000,                                  # sentences translated
                 "scores": <score_with_ci output>,
                 "decode": {"beam_size": 4, "alpha": 0.6, ...},  # how the hypotheses were produced
                 "precision": "bf16",                            # optional: fp32, bf16 or int8
                 "statuses": {"ok": 2990, "truncated": 10},      # optional, per test set
                 "flags": <flag_quality output>,                 # optional, per test set
                 "placeholders": <corpus.chunk.placeholder_rate output>,  # optional, per test set
                 "examples": [{"src": "...", "ref": "...", "hyp": "..."}, ...]}},
         "statuses": {"ok": 5990, "truncated": 10, "empty": 0, "failed": 0},
         "figures": {"Training curve": "training_curve.png"}     # or a list of paths
        }

    Figures are linked relative to the report, or as stored under ``figures_at`` (see ``_figures``).
    """
    lines = [f"# {_md(report.get('title', 'Evaluation report'))}", ""]
    if report.get("model"):
        lines += [f"Model: `{report['model']}`", ""]
    for name, test_set in report.get("test_sets", {}).items():
        lines += [f"## {_md(name)}", ""]
        if "rows" in test_set:
            lines += [f"Sentences: {test_set['rows']}", ""]
        if test_set.get("decode"):
            lines += [f"Decoding: {_fmt_mapping(test_set['decode'])}", ""]
        if test_set.get("precision"):
            lines += [f"Precision: {test_set['precision']}", ""]
        if test_set.get("statuses"):
            lines += [f"Statuses: {_fmt_mapping(test_set['statuses'])}", ""]
        if test_set.get("scores"):
            lines += [*_score_table(test_set["scores"]), ""]
        if test_set.get("placeholders"):
            lines += [_placeholder_line(test_set["placeholders"]), ""]
        if test_set.get("flags"):
            lines += [*_flag_table(test_set["flags"]), ""]
        examples = test_set.get("examples") or []
        if examples:
            lines += ["### Examples", ""]
            for i, ex in enumerate(examples[:max_examples], 1):
                lines += [f"**Example {i}**", ""]
                lines += [f"- **{key}:** {_md(ex.get(key, ''))}" for key in ("src", "ref", "hyp")]
                lines.append("")
    if report.get("statuses"):
        lines += ["## Statuses", "", "| status | count |", "|---|---:|"]
        lines += [f"| {_md(k)} | {_md(_fmt_number(v))} |" for k, v in report["statuses"].items()]
        lines.append("")
    if report.get("figures"):
        lines += ["## Figures", "", *_figures(report["figures"], figures_at)]
    return "\n".join(lines).rstrip() + "\n"


# ---------------------------------------------------------------- champion/challenger comparison
def _comparison_table(paired: Mapping[str, Mapping]) -> list[str]:
    """Markdown table: metric | champion | challenger | delta | p-value | challenger 95% CI."""
    lines = ["| metric | champion | challenger | Δ | p-value | challenger 95% CI |",
             "|---|---:|---:|---:|---:|---|"]
    for name, r in paired.items():
        ci = r.get("system_ci95")
        ci_text = f"[{ci[0]:.2f}, {ci[1]:.2f}]" if ci else "–"
        lines.append(f"| {_md(name)} | {r['baseline']:.2f} | {r['system']:.2f} | {r['delta']:+.2f} | "
                     f"{r['p_value']:.4f} | {ci_text} |")
    return lines


def render_comparison_markdown(report: Mapping[str, Any]) -> str:
    """Markdown for a retrain decision: outcome, reason, models and per-test-set paired scores.

    ``report`` keys: ``name``, ``decision`` ("promoted"/"rejected"), ``reason``, ``challenger`` and
    ``champion`` (``{"version", "model", "scores": {test: {metric: score}}}``; champion may be None),
    ``comparison`` (``{test: paired_bootstrap output}`` or None) and ``promotion`` (the settings).
    """
    challenger, champion = report["challenger"], report.get("champion")
    lines = [f"# Retrain {_md(report.get('name', ''))}: challenger {report['decision']}".rstrip(), "",
             f"**Decision: {_md(report['decision'])}.** {_md(report['reason'])}", "",
             "| role | version | model |", "|---|---|---|",
             f"| challenger | {_md(challenger['version'])} | `{challenger['model']}` |"]
    if champion:
        lines.append(f"| champion | {_md(champion['version'])} | `{champion['model']}` |")
    lines.append("")
    if champion and report.get("comparison"):
        lines += ["The champion was re-evaluated on the same sentences with the same decoding settings: "
                  "[champion/report.md](champion/report.md).", ""]
    comparison = report.get("comparison") or {}
    for test, scores in challenger.get("scores", {}).items():
        lines += [f"## {_md(test)}", ""]
        if test in comparison:
            lines += [*_comparison_table(comparison[test]), ""]
            lines += [f"- {_md(m)}: `{r['signature']}`" for m, r in comparison[test].items()] + [""]
        else:
            lines += ["| metric | challenger |", "|---|---:|"]
            lines += [f"| {_md(m)} | {v:.2f} |" for m, v in scores.items()] + [""]
    if report.get("promotion"):
        lines += ["## Settings", "", f"Promotion: {_fmt_mapping(report['promotion'])}", ""]
    return "\n".join(lines).rstrip() + "\n"
