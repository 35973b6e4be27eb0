"""Does a precision keep hypotheses independent of batching? Translate the Bible test set twice per
precision through the Python API, with two token budgets per batch (so every sentence is batched with
other sentences), and count the sentences whose tokens differ. Prints JSON; run on an idle machine
(the timings are a by-product).

    python bench/batching.py --model store/models/bible-es-en/<version> --beam 5 --max-tokens 6000 1500
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import polars as pl
import torch
from common import emit

from s2s_core.evaluation.metrics import corpus_scores
from s2s_core.inference.package import load_package
from s2s_core.inference.precision import PRECISIONS
from s2s_core.inference.translator import DecodeConfig

DEFAULT_TEST = Path(__file__).resolve().parents[2] / "shared" / "data" / "bible-es-en" / "test.parquet"


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--model", required=True, help="model package URL")
    parser.add_argument("--test", type=Path, default=DEFAULT_TEST)
    parser.add_argument("--precisions", nargs="+", default=list(PRECISIONS), choices=PRECISIONS)
    parser.add_argument("--beam", type=int, default=1)
    parser.add_argument("--max-tokens", type=int, nargs=2, default=[6000, 700], metavar="N",
                        help="the two token budgets compared")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)

    test = pl.read_parquet(args.test)
    src, refs = test["src"].to_list(), test["tgt"].to_list()
    package = load_package(args.model)
    result: dict = {"benchmark": "batching", "model": args.model, "beam": args.beam, "sentences": len(src),
                    "max_tokens": args.max_tokens, "torch_threads": torch.get_num_threads(),
                    "cpu_capability": torch.backends.cpu.get_cpu_capability(), "precisions": {}}
    for precision in args.precisions:
        translator = package.translator(device="cpu", precision=precision)
        translator.translate(src[:32], DecodeConfig(beam_size=args.beam))  # warm-up
        runs = []
        for budget in args.max_tokens:
            start = time.perf_counter()
            out = translator.translate(src, DecodeConfig(beam_size=args.beam, max_tokens=budget))
            seconds = time.perf_counter() - start
            tokens = sum(len(t.tokens) + 1 for t in out)
            runs.append({"max_tokens": budget, "seconds": round(seconds, 2),
                         "target_tokens_per_second": round(tokens / seconds, 1),
                         "bleu": round(corpus_scores([t.text for t in out], refs)["bleu"].score, 2),
                         "out": out})
        first, second = runs[0].pop("out"), runs[1].pop("out")
        same = [(a, b) for a, b in zip(first, second, strict=True) if a.tokens == b.tokens]
        result["precisions"][precision] = {
            "runs": runs, "sentences_changed_by_batching": len(src) - len(same),
            "max_score_gap_same_tokens": max(abs(a.score - b.score) for a, b in same)}
    return emit(result, args.out)


if __name__ == "__main__":
    main()
