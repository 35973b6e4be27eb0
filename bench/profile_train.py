"""Where a training step's time goes, by part of the model: data, encoder, decoder recurrence,
attention, attentional combination, output layer, loss, backward, optimizer. Prints JSON.

    python bench/profile_train.py --steps 12 --out bench/results/profile-train.json

Forward parts are timed with module hooks (CPU ops are synchronous; on CUDA each hook synchronizes,
which slows the run: read the shares, not the total). Backward and optimizer are timed whole; the
profiler's top backward operators say which parts they belong to.
"""

from __future__ import annotations

import argparse
import os
import time
from collections import defaultdict
from pathlib import Path

import polars as pl
import torch
from common import emit, load_average, peak_rss_mb
from torch import nn
from train_bench import DEFAULT_DATA, reference_setup

from s2s_core.device import autocast
from s2s_core.model.seq2seq import build_model
from s2s_core.text.tokenizer import PAD_ID
from s2s_core.training.config import TrainConfig
from s2s_core.training.loss import smoothed_cross_entropy
from s2s_core.training.trainer import Trainer


class PartTimer:
    """Accumulates wall time per named part; module hooks open and close a part around each call."""

    def __init__(self, device: torch.device):
        self.device, self.seconds, self._open = device, defaultdict(float), {}

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize()

    def start(self, name: str) -> None:
        self._sync()
        self._open[name] = time.perf_counter()

    def stop(self, name: str) -> None:
        self._sync()
        self.seconds[name] += time.perf_counter() - self._open.pop(name)

    def watch(self, module: nn.Module, name: str) -> None:
        module.register_forward_pre_hook(lambda *_: self.start(name))
        module.register_forward_hook(lambda *_: self.stop(name))


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--steps", type=int, default=12, help="measured steps (after 3 warm-up steps)")
    parser.add_argument("--max-tokens", type=int, default=2500)
    parser.add_argument("--amp", default="auto")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--label", default="", help="a name for this configuration in the JSON")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)

    train = pl.read_parquet(args.data / "train.parquet").head(6000)
    tokenizers, config, examples, _ = reference_setup(train)
    torch.manual_seed(0)
    model = build_model(config)
    trainer = Trainer(model, tokenizers, TrainConfig(max_steps=10**6, max_tokens=args.max_tokens, lr=1e-3,
                                                     warmup_steps=10, amp=args.amp, device=args.device),
                      examples)
    batches = trainer.data.epoch_batches(0)
    timer = PartTimer(trainer.device)
    decoder = model.decoder
    for module, name in [(model.encoder, "encoder"), (decoder.attention, "attention"),
                         (decoder.combine, "combine"), (model.generator, "output_layer"),
                         (model.pre_output, "output_layer_pre"), (model, "forward_total")]:
        timer.watch(module, name)
    timer.watch(decoder.cell if hasattr(decoder, "cell") else decoder.rnn, "decoder_recurrence")

    tokens = 0
    for i, batch in enumerate(batches[: args.steps + 3]):
        if i == 3:  # warm-up done: start counting
            timer.seconds.clear()
            tokens = 0
            step_start = time.perf_counter()
        timer.start("data")
        src, src_len, tgt_in, tgt_out = trainer.data.tensors(batch, trainer.device)
        timer.stop("data")
        model.train()
        with autocast(trainer.device, trainer.amp_dtype):
            logits = model(src, src_len, tgt_in)
        timer.start("loss")
        loss = smoothed_cross_entropy(logits.view(-1, logits.size(-1)), tgt_out.view(-1), 0.1, PAD_ID)
        n = int((tgt_out != PAD_ID).sum())
        timer.stop("loss")
        timer.start("backward")
        (loss / n).backward()
        timer.stop("backward")
        timer.start("optimizer")
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        trainer.optimizer.step()
        trainer.optimizer.zero_grad(set_to_none=True)
        timer.stop("optimizer")
        tokens += n
    total = time.perf_counter() - step_start

    sec = dict(timer.seconds)
    forward = sec.pop("forward_total")
    parts = {
        "data": sec["data"],
        "encoder": sec["encoder"],
        "decoder_recurrence": sec["decoder_recurrence"],
        "attention": sec["attention"],
        "combine": sec["combine"],
        "output_layer": sec["output_layer"] + sec["output_layer_pre"],
        "decoder_other (embedding, concatenations, stacking)": forward - sec["encoder"]
        - sec["decoder_recurrence"] - sec["attention"] - sec["combine"] - sec["output_layer"]
        - sec["output_layer_pre"],
        "loss": sec["loss"],
        "backward": sec["backward"],
        "optimizer (clip + AdamW)": sec["optimizer"],
    }
    parts["unaccounted"] = total - sum(parts.values())
    result = {
        "benchmark": "profile_train", "label": args.label, "date": time.strftime("%Y-%m-%d"),
        "machine": {"cores": os.cpu_count(), "threads": torch.get_num_threads(),
                    "load_average": load_average(), "torch": torch.__version__,
                    "amp": str(trainer.amp_dtype).replace("torch.", "") if trainer.amp_dtype else "fp32"},
        "steps": args.steps, "target_tokens": tokens,
        "seconds_per_step": round(total / args.steps, 4),
        "target_tokens_per_second": round(tokens / total, 1),
        "parts_ms_per_step": {k: round(v / args.steps * 1e3, 1) for k, v in parts.items()},
        "parts_share": {k: round(v / total, 3) for k, v in parts.items()},
        "peak_rss_mb": peak_rss_mb(),
    }
    return emit(result, args.out)


if __name__ == "__main__":
    main()
