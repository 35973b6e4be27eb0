"""Benchmark, side by side in one run: decoding speed and BLEU in every precision (Python API and the
``s2s translate`` command a user runs, text and Parquet), and training throughput. Prints JSON with
the machine's core count and load average; run it on an otherwise idle machine.

    python bench/speed.py --model store/models/bible-es-en/<version> --out bench/results/speed-cpu.json

Decoding: the 926 test sentences of the Bible corpus, greedy and beam 5, each precision. The command
runs each get a fresh output (translation memory off), so nothing is reused between runs; their
outputs must equal the Python API's (hypotheses do not depend on batching), which the JSON records.
Each command's fixed cost (interpreter, imports, model load, for Parquet the temporary Prefect
server) is measured by the same command on one sentence, and reported beside the whole-run figure.
Training: the benchmark architecture (``train_bench.py``) on the Bible training set for a few minutes.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import polars as pl
import torch
from common import emit, load_average, peak_rss_mb
from train_bench import DEFAULT_DATA, reference_setup

from s2s_core.evaluation.metrics import corpus_scores
from s2s_core.inference.package import load_package
from s2s_core.inference.precision import PRECISIONS
from s2s_core.inference.translator import DecodeConfig
from s2s_core.model.seq2seq import build_model
from s2s_core.training.config import TrainConfig
from s2s_core.training.trainer import Trainer

ROOT = Path(__file__).resolve().parents[1]
S2S = [sys.executable, "-m", "flows.cli"]


def api_run(package, precision: str, beam: int, src: list[str], refs: list[str], max_tokens: int,
            repeats: int) -> dict:
    """Decode through the Python API, ``repeats`` times (the median counts); a short warm-up first
    (first-call allocations, kernel choice)."""
    translator = package.translator(device="cpu", precision=precision)
    config = DecodeConfig(beam_size=beam, max_tokens=max_tokens)
    translator.translate(src[:32], config)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        out = translator.translate(src, config)
        times.append(time.perf_counter() - start)
    seconds = statistics.median(times)
    hyps = [t.text for t in out]
    scores = corpus_scores(hyps, refs)
    tokens = sum(len(t.tokens) + 1 for t in out)  # EOS counts: the decoder computed it
    return {"seconds": round(seconds, 2), "sentences_per_second": round(len(src) / seconds, 1),
            "target_tokens": tokens, "target_tokens_per_second": round(tokens / seconds, 1),
            "bleu": round(scores["bleu"].score, 2), "chrf": round(scores["chrf"].score, 2),
            "runs_seconds": [round(t, 2) for t in times], "hypotheses": hyps}


def cli_run(model: str, precision: str, beam: int, source: Path, workdir: Path, max_tokens: int,
            parquet: bool) -> tuple[float, list[str]]:
    """``s2s translate`` as a user runs it; wall seconds of the whole command and its output lines."""
    workdir.mkdir(parents=True, exist_ok=True)
    output = workdir / f"{'parquet' if parquet else 'text'}-{precision}-beam{beam}"
    command = [*S2S, "translate", "--model", model, "--input", str(source), "--output", str(output),
               "--beam", str(beam), "--precision", precision, "--max-tokens", str(max_tokens), "-q"]
    if parquet:
        command += ["--no-memory", "--id-column", "id"]
    start = time.perf_counter()
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed ({done.returncode}): {done.stderr[-2000:]}")
    if not parquet:
        return seconds, output.read_text(encoding="utf-8").splitlines()
    rows = pl.read_parquet(sorted(output.glob("**/part-*.parquet")))
    by_id = dict(zip(rows["id"].to_list(), rows["translation"].to_list(), strict=True))
    return seconds, [by_id.get(row_id) for row_id in pl.read_parquet(source)["id"].to_list()]


def training_throughput(data: Path, seconds: float, amp: str) -> dict:
    """Target tokens/s of the benchmark model on the Bible training set over ``seconds`` of training."""
    tokenizers, config, examples, _ = reference_setup(pl.read_parquet(data / "train.parquet"))
    torch.manual_seed(0)
    trainer = Trainer(build_model(config), tokenizers,
                      TrainConfig(max_minutes=seconds / 60, max_tokens=2500, lr=2e-3, warmup_steps=200,
                                  eval_every=0, log_every=0, checkpoint_every=0, amp=amp, device="cpu"),
                      examples)
    state = trainer.fit(resume=False)
    return {"amp": amp, "seconds": round(state.elapsed_seconds, 1), "steps": state.step,
            "target_tokens_per_second": round(state.target_tokens / state.elapsed_seconds, 1)}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--model", required=True, help="model package URL")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--precisions", nargs="+", default=list(PRECISIONS), choices=PRECISIONS)
    parser.add_argument("--beams", type=int, nargs="+", default=[1, 5])
    parser.add_argument("--max-tokens", type=int, default=6000, help="source tokens per batch (the CLI's)")
    parser.add_argument("--no-cli", action="store_true", help="skip the s2s translate runs")
    parser.add_argument("--repeats", type=int, default=1,
                        help="timed runs of each measurement; the median is reported (this VM's speed "
                             "varies ±10%% between runs)")
    parser.add_argument("--train-seconds", type=float, default=180, help="0: skip training")
    parser.add_argument("--train-amp", nargs="+", default=["none"], help="none (fp32) and/or bf16")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)

    test = pl.read_parquet(args.data / "test.parquet")
    src, refs = test["src"].to_list(), test["tgt"].to_list()
    package = load_package(args.model)
    result: dict = {
        "benchmark": "speed", "date": time.strftime("%Y-%m-%d"), "model": args.model,
        "machine": {"platform": platform.platform(), "cores": os.cpu_count(),
                    "torch_threads": torch.get_num_threads(), "torch": torch.__version__,
                    "cpu_capability": torch.backends.cpu.get_cpu_capability(),
                    "load_average_at_start": load_average()},
        "decode": {}, "training": [],
    }
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        text_source = workdir / "test.src.txt"
        text_source.write_text("\n".join(src) + "\n", encoding="utf-8")
        parquet_source = workdir / "test.parquet"
        test.select("id", "src").write_parquet(parquet_source)
        one_row = {"text": workdir / "one.src.txt", "parquet": workdir / "one.parquet"}
        one_row["text"].write_text(src[0] + "\n", encoding="utf-8")
        test.select("id", "src").head(1).write_parquet(one_row["parquet"])
        startup: dict[tuple[str, str], float] = {}
        for precision in args.precisions:
            for beam in args.beams:
                key = f"{precision}-beam{beam}"
                run = api_run(package, precision, beam, src, refs, args.max_tokens, args.repeats)
                hyps = run.pop("hypotheses")
                entry = {"api": run}
                if not args.no_cli:
                    for parquet in (False, True):
                        mode = "parquet" if parquet else "text"
                        if (precision, mode) not in startup:  # the command's fixed cost: one sentence
                            startup[precision, mode] = statistics.median(
                                cli_run(args.model, precision, 1, one_row[mode],
                                        workdir / f"one-{precision}-{i}", args.max_tokens, parquet)[0]
                                for i in range(args.repeats))
                        runs = [cli_run(args.model, precision, beam,
                                        parquet_source if parquet else text_source, workdir / f"run-{i}",
                                        args.max_tokens, parquet) for i in range(args.repeats)]
                        seconds = statistics.median(t for t, _ in runs)
                        translating = seconds - startup[precision, mode]
                        entry[f"cli_{mode}"] = {
                            "seconds": round(seconds, 2),
                            "target_tokens_per_second": round(run["target_tokens"] / seconds, 1),
                            "one_sentence_seconds": round(startup[precision, mode], 2),
                            "target_tokens_per_second_after_startup": round(
                                run["target_tokens"] / translating, 1),
                            "runs_seconds": [round(t, 2) for t, _ in runs],
                            "same_output_as_api": all(out == hyps for _, out in runs)}
                result["decode"][key] = entry
                print(key, entry, file=sys.stderr, flush=True)
        fp32 = {beam: result["decode"].get(f"fp32-beam{beam}") for beam in args.beams}
        for key, entry in result["decode"].items():
            beam = int(key.rsplit("beam", 1)[1])
            if fp32[beam]:
                entry["api"]["bleu_minus_fp32"] = round(entry["api"]["bleu"] - fp32[beam]["api"]["bleu"], 2)
    if args.train_seconds:
        for amp in args.train_amp:
            result["training"].append(training_throughput(args.data, args.train_seconds, amp))
            print(result["training"][-1], file=sys.stderr, flush=True)
    result["machine"]["load_average_at_end"] = load_average()
    result["peak_rss_mb"] = peak_rss_mb()
    return emit(result, args.out)


if __name__ == "__main__":
    main()
