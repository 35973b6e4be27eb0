"""Benchmark: train the reference model on the Bible es→en corpus for a wall-clock budget, then
measure test BLEU/chrF and translation speed. Prints one JSON document (also written with --out).

    python bench/train_bench.py --minutes 30 --out bench/results/train-cpu.json
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import sys
import time
from pathlib import Path

import polars as pl
import torch
from common import emit, load_average, peak_rss_mb

from s2s_core.evaluation.metrics import corpus_scores
from s2s_core.inference.package import save_package
from s2s_core.inference.translator import DecodeConfig, Translator
from s2s_core.model.seq2seq import ModelConfig, build_model, count_parameters
from s2s_core.storage import Store
from s2s_core.text.tokenizer import TokenizerConfig, Tokenizers, train_tokenizers
from s2s_core.training.config import TrainConfig
from s2s_core.training.data import Example, make_examples
from s2s_core.training.trainer import Trainer

DEFAULT_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "bible-es-en"


def reference_setup(train: pl.DataFrame) -> tuple[Tokenizers, ModelConfig, list[Example], int]:
    """The benchmark's tokenizers (joint unigram, 8k), architecture and training examples for the
    ``src``/``tgt`` pairs of ``train``, and how many pairs were skipped as too long."""
    src, tgt = train["src"].to_list(), train["tgt"].to_list()
    tokenizers = train_tokenizers(src, tgt,
                                  TokenizerConfig(model_type="unigram", vocab_size=8000, joint=True))
    config = reference_model_config(tokenizers.src.vocab_size)
    examples, skipped = make_examples(tokenizers, src, tgt, config.max_src_len, config.max_tgt_len)
    return tokenizers, config, examples, skipped


def reference_model_config(vocab_size: int) -> ModelConfig:
    """The benchmark architecture named in the project's core issue."""
    return ModelConfig(src_vocab_size=vocab_size, tgt_vocab_size=vocab_size, rnn_type="lstm",
                       emb_dim=256, enc_hidden=256, enc_layers=1, bidirectional=True,
                       dec_hidden=512, dec_layers=1, attention="additive", dropout=0.2,
                       tie_embeddings=True, share_embeddings=True)


def best_is_average(history: list[dict]) -> bool:
    """Whether the averaged weights beat every evaluated checkpoint (they are then the package's)."""
    scores = [(r["dev_bleu"], r.get("weights") == "average") for r in history if "dev_bleu" in r]
    best = max((bleu for bleu, average in scores if not average), default=float("-inf"))
    return any(average and bleu > best for bleu, average in scores)


def tune_alpha(translator: Translator, src: list[str], refs: list[str], alphas: list[float]) -> dict:
    """Beam-5 dev BLEU for each length-penalty alpha; the test set is decoded with the best one."""
    bleu = {}
    for alpha in alphas:
        out = translator.translate(src, DecodeConfig(beam_size=5, alpha=alpha, max_tokens=8000))
        hyps = [t.text for t in out]
        bleu[alpha] = round(corpus_scores(hyps, refs)["bleu"].score, 2)
    return {"dev_bleu_by_alpha": bleu, "alpha": max(bleu, key=bleu.get)}


def decode_speed(translator: Translator, src: list[str], refs: list[str], beam: int, alpha: float = 0.6
                 ) -> dict:
    if translator.device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    out = translator.translate(src, DecodeConfig(beam_size=beam, alpha=alpha, max_tokens=8000))
    if translator.device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    hyps = [t.text for t in out]
    scores = corpus_scores(hyps, refs)
    tokens = sum(len(t.tokens) + 1 for t in out)
    return {"bleu": round(scores["bleu"].score, 2), "chrf": round(scores["chrf"].score, 2),
            "bleu_signature": scores["bleu"].signature, "chrf_signature": scores["chrf"].signature,
            "seconds": round(seconds, 2), "sentences_per_second": round(len(src) / seconds, 1),
            "target_tokens_per_second": round(tokens / seconds, 1), "sample": hyps[:3]}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="dir with train/dev/test.parquet")
    parser.add_argument("--minutes", type=float, default=30.0, help="training wall-clock budget")
    parser.add_argument("--max-tokens", type=int, default=2500, help="target tokens per batch")
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--eval-every", type=int, default=150)
    parser.add_argument("--eval-sentences", type=int, default=300, help="dev subset during training")
    parser.add_argument("--average-decay", type=float, default=0.995, help="weight averaging; 0: off")
    parser.add_argument("--alphas", type=float, nargs="*", default=[0.2, 0.6, 1.0, 1.4],
                        help="length penalties tried on the full dev set after training (beam 5)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--amp", default="auto", help="auto|bf16|fp16|none (CUDA only)")
    parser.add_argument("--workdir", type=Path, default=None, help="keep checkpoints and the package here")
    parser.add_argument("--out", type=Path, default=None, help="also write the JSON here")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
    if not (args.data / "train.parquet").exists():
        parser.error(f"no corpus at {args.data} (run examples/bible-es-en/prepare.py to build it)")

    split = {name: pl.read_parquet(args.data / f"{name}.parquet") for name in ("train", "dev", "test")}
    t0 = time.perf_counter()
    tokenizers, config, examples, skipped = reference_setup(split["train"])
    setup_seconds = time.perf_counter() - t0
    model = build_model(config)
    train_config = TrainConfig(max_minutes=args.minutes, max_tokens=args.max_tokens, lr=args.lr,
                               warmup_steps=args.warmup, eval_every=args.eval_every,
                               eval_max_sentences=args.eval_sentences, patience=None, log_every=50,
                               checkpoint_every=0, device=args.device, amp=args.amp,
                               average_decay=args.average_decay or None)
    checkpoints = Store(str(args.workdir / "checkpoints")) if args.workdir else None
    trainer = Trainer(model, tokenizers, train_config, examples, split["dev"]["src"].to_list(),
                      split["dev"]["tgt"].to_list(), checkpoints=checkpoints)
    train_start = time.perf_counter()
    state = trainer.fit(resume=False)
    train_seconds = time.perf_counter() - train_start
    target_tokens = sum(len(e.tgt) + 1 for e in examples)
    epochs = state.epoch + state.batch_in_epoch / max(1, len(trainer.data.epoch_batches(state.epoch)))

    model.load_state_dict(trainer.best_weights())
    translator = Translator(model, tokenizers, trainer.device, amp=args.amp)
    test_src, test_ref = split["test"]["src"].to_list(), split["test"]["tgt"].to_list()
    dev_src, dev_ref = split["dev"]["src"].to_list(), split["dev"]["tgt"].to_list()
    tuning = tune_alpha(translator, dev_src, dev_ref, args.alphas) if args.alphas else {"alpha": 0.6}
    decode = {"greedy": decode_speed(translator, test_src, test_ref, beam=1),
              "beam5": decode_speed(translator, test_src, test_ref, beam=5, alpha=tuning["alpha"]),
              "length_penalty": tuning}
    if args.workdir:
        save_package(str(args.workdir / "model"), model, tokenizers, weights=trainer.best_weights(),
                     metrics={"history": trainer.history, "test": decode})

    device = trainer.device
    result = {
        "benchmark": "train_bench",
        "date": time.strftime("%Y-%m-%d"),
        "machine": {"platform": platform.platform(), "cpu_threads": torch.get_num_threads(),
                    "cores": os.cpu_count(), "load_average_at_end": load_average(),
                    "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
                    "amp": str(trainer.amp_dtype).replace("torch.", "") if trainer.amp_dtype else "fp32",
                    "torch": torch.__version__},
        "model": {**config.to_dict(), "parameters": count_parameters(model)},
        "data": {"train_pairs": len(examples), "skipped_pairs": skipped, "dev": len(split["dev"]),
                 "test": len(test_src), "vocab_size": tokenizers.src.vocab_size,
                 "setup_seconds": round(setup_seconds, 1)},  # tokenizers and examples
        "training": {"budget_minutes": args.minutes, "steps": state.step, "epochs": round(epochs, 2),
                     "seconds": round(train_seconds, 1), "dev_eval_seconds": round(state.eval_seconds, 1),
                     "target_tokens": state.target_tokens,
                     "target_tokens_per_second": round(
                         state.target_tokens / max(state.elapsed_seconds - state.eval_seconds, 1e-9), 1),
                     "corpus_target_tokens": target_tokens, "stop_reason": state.stop_reason,
                     "best_dev_bleu": round(state.best_bleu, 2), "best_step": state.best_step,
                     "best_is_average": best_is_average(trainer.history)},
        "dev_bleu_over_time": [{"step": r["step"], "minutes": round(r["elapsed_seconds"] / 60, 2),
                                "dev_bleu": round(r["dev_bleu"], 2), "dev_chrf": round(r["dev_chrf"], 2),
                                "weights": r.get("weights", "current")}
                               for r in trainer.history if "dev_bleu" in r],
        "test": decode,
        "peak_rss_mb": peak_rss_mb(),
    }
    if device.type == "cuda":
        result["peak_gpu_memory_mb"] = round(torch.cuda.max_memory_allocated(device) / 2**20, 1)
    return emit(result, args.out)


if __name__ == "__main__":
    main()
