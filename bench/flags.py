"""Quality flags, measured: do flagged rows translate worse? Prints JSON.

Translates a test set (``src``/``tgt`` Parquet) with a model package and reports, per flag and for
"any flag", how many rows carry it and the mean sentence chrF of those rows vs the others.
``--calibrate`` prints instead the distributions the default thresholds were chosen from (run it on
the dev set): target/source token ratios and trigram similarity of the references (human text: what
the rules must not flag), n-gram loops in the references, and each hypothesis's least word coverage.

    python bench/flags.py --model /tmp/benchstore/models/bench-bible/<version> --beam 1 5
    python bench/flags.py --model ... --data ../shared/data/bible-es-en/dev.parquet --calibrate
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.common import emit  # noqa: E402
from s2s_core.evaluation.report import flag_quality  # noqa: E402
from s2s_core.inference import flags as qf  # noqa: E402
from s2s_core.inference.package import load_package  # noqa: E402
from s2s_core.inference.translator import DecodeConfig  # noqa: E402
from s2s_core.text.tokenizer import EOS_ID  # noqa: E402

DEFAULT_DATA = ROOT.parent / "shared" / "data" / "bible-es-en" / "test.parquet"
QUANTILES = (0.005, 0.01, 0.02, 0.05, 0.5, 0.95, 0.98, 0.99, 0.995)


def quantiles(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    return {f"q{q:g}": round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 3) for q in QUANTILES}


def calibrate(package, translator, src: list[str], ref: list[str], beam: int) -> dict:
    """Distributions behind the default thresholds (see the module docstring)."""
    tok = package.tokenizers
    src_ids, ref_ids = tok.src.encode(src), tok.tgt.encode(ref)
    th = qf.DEFAULT_THRESHOLDS
    ratios = [len(r) / len(s) for s, r in zip(src_ids, ref_ids, strict=True) if len(s) >= th.ratio_min_tokens]
    long_src = [(s, r) for s, r in zip(src, ref, strict=True) if len(qf._normal(s)) >= th.copy_min_chars]
    loops = {f"n<={n},x{k}": sum(qf.has_loop(r, n, k) for r in ref_ids) for n in (1, 2, 4) for k in (2, 3, 4)}
    config = DecodeConfig(beam_size=beam)
    out = translator.translate(src, config)
    least = []  # the search's own coverage, searched again in batches of 64 (all rows are one piece)
    for start in range(0, len(out), 64):
        rows = [t.src_tokens for t in out[start:start + 64] if t.src_tokens]
        searched = translator._search([r + [EOS_ID] for r in rows], config)
        for ids, (hyp, *_) in zip(rows, searched, strict=True):
            value = qf.min_word_coverage(tok.src.pieces(ids), hyp.coverage.tolist())
            if value is not None:
                least.append(value)
    hyp_sim = [qf.similarity(s, t.text) for s, t in zip(src, out, strict=True)
               if len(qf._normal(s)) >= qf.DEFAULT_THRESHOLDS.copy_min_chars]
    return {"rows": len(src), "ref_ratio": quantiles(ratios),
            "hyp_ratio": quantiles([len(t.tokens) / len(t.src_tokens) for t in out
                                    if len(t.src_tokens) >= qf.DEFAULT_THRESHOLDS.ratio_min_tokens]),
            "ref_loops": loops, "ref_similarity": quantiles([qf.similarity(s, r) for s, r in long_src]),
            "hyp_similarity": quantiles(hyp_sim), "hyp_min_word_coverage": quantiles(least),
            "hyp_min_word_coverage_below": {str(x): sum(v < x for v in least)
                                            for x in (0.05, 0.1, 0.15, 0.2, 0.3, 0.5)}}


SHARES = (0.02, 0.05, 0.1, 0.15, 0.2, 0.3)  # flagged shares at which each signal's threshold is tried


def row_signals(package, translator, src: list[str], ref: list[str], beam: int) -> list[dict]:
    """Per translated row: sentence chrF against the reference and each candidate signal."""
    from sacrebleu.metrics import CHRF

    tok, chrf, config = package.tokenizers, CHRF(), DecodeConfig(beam_size=beam)
    out = translator.translate(src, config)
    rows = [(t, r) for t, r in zip(out, ref, strict=True) if t.src_tokens]
    signals = []
    for start in range(0, len(rows), 64):  # the search's own coverage, searched again in batches of 64
        batch = rows[start:start + 64]
        searched = translator._search([t.src_tokens + [EOS_ID] for t, _ in batch], config)
        for (t, r), (hyp, *_) in zip(batch, searched, strict=True):
            cover = qf.min_word_coverage(tok.src.pieces(t.src_tokens), hyp.coverage.tolist())
            signals.append({"chrf": chrf.sentence_score(t.text, [r]).score, "mean_log_prob": t.score,
                            "min_word_coverage": cover if cover is not None else float("inf"),
                            "ratio": len(t.tokens) / max(1, len(t.src_tokens))})
    return signals


def separation(signals: list[dict], name: str, low_is_bad: bool = True) -> list[dict]:
    """For each share in ``SHARES``: the threshold that flags that share of rows by ``name``, the mean
    chrF of the flagged rows and of the others, and the precision: the share of flagged rows that are
    among the set's worst quarter by sentence chrF (a random flag's precision is 0.25)."""
    ordered = sorted(signals, key=lambda row: row[name], reverse=not low_is_bad)
    worst = {id(row) for row in sorted(signals, key=lambda row: row["chrf"])[:len(signals) // 4]}
    out = []
    for share in SHARES:
        k = max(1, round(share * len(ordered)))
        flagged, others = ordered[:k], ordered[k:]
        out.append({"share": share, "threshold": round(ordered[k - 1][name], 4), "rows": k,
                    "chrf": round(sum(r["chrf"] for r in flagged) / k, 2),
                    "others_chrf": round(sum(r["chrf"] for r in others) / max(1, len(others)), 2),
                    "precision": round(sum(id(r) in worst for r in flagged) / k, 3)})
    return out


def measure(translator, src: list[str], ref: list[str], beam: int) -> dict:
    started = time.perf_counter()
    out = translator.translate(src, DecodeConfig(beam_size=beam))
    seconds = time.perf_counter() - started
    from sacrebleu.metrics import CHRF

    chrf = CHRF()
    sentence = [chrf.sentence_score(t.text, [r]).score for t, r in zip(out, ref, strict=True)]
    worst = set(sorted(range(len(out)), key=sentence.__getitem__)[:len(out) // 4])
    quality = flag_quality([t.flags for t in out], [t.text for t in out], ref, qf.FLAGS)
    for name, entry in quality.items():  # the share of flagged rows among the worst quarter by chrF
        hit = [i for i, t in enumerate(out) if (bool(t.flags) if name == "any" else name in t.flags)]
        entry["precision"] = round(sum(i in worst for i in hit) / len(hit), 3) if hit else None
        entry["share"] = round(len(hit) / len(out), 4)
    return {"beam": beam, "rows": len(out), "seconds": round(seconds, 2), "flags": quality}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--model", required=True, help="model package URL or folder")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="Parquet with src and tgt columns")
    parser.add_argument("--beam", type=int, nargs="+", default=[1, 5], help="beam sizes (1 = greedy)")
    parser.add_argument("--calibrate", action="store_true", help="print threshold distributions instead")
    parser.add_argument("--separation", action="store_true",
                        help="per candidate signal (mean token log-prob, least word coverage, length "
                             "ratio): thresholds at several flagged shares, chrF flagged vs others, "
                             "precision")
    parser.add_argument("--out", type=Path, help="also write the JSON here")
    args = parser.parse_args()
    table = pq.read_table(args.data, columns=["src", "tgt"])
    src = [s or "" for s in table.column("src").to_pylist()]
    ref = [r or "" for r in table.column("tgt").to_pylist()]
    package = load_package(args.model, device="cpu")
    translator = package.translator("cpu", amp="none")
    result: dict = {"model": args.model, "data": str(args.data), "thresholds": vars(qf.DEFAULT_THRESHOLDS),
                    "machine": {"cores": os.cpu_count(), "load_before": os.getloadavg()}}
    if args.calibrate:
        result["calibration"] = calibrate(package, translator, src, ref, args.beam[0])
    elif args.separation:
        signals = row_signals(package, translator, src, ref, args.beam[0])
        result["separation"] = {
            "mean_log_prob": separation(signals, "mean_log_prob"),
            "min_word_coverage": separation(signals, "min_word_coverage"),
            "ratio_low": separation(signals, "ratio"), "ratio_high": separation(signals, "ratio", False)}
    else:
        result["runs"] = [measure(translator, src, ref, beam) for beam in args.beam]
    result["machine"]["load_after"] = os.getloadavg()
    emit(result, args.out)


if __name__ == "__main__":
    main()
