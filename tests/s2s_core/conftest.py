"""Shared fixtures: one reverse-task model trained once per test session."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from s2s_core.model.seq2seq import ModelConfig, Seq2Seq, build_model
from s2s_core.text.tokenizer import Tokenizers
from s2s_core.training.config import TrainConfig
from s2s_core.training.data import Example, make_examples
from s2s_core.training.trainer import Trainer
from tests.s2s_core.synthetic import reverse_pairs, reverse_tokenizers


@dataclasses.dataclass
class ReverseTask:
    tokenizers: Tokenizers
    model: Seq2Seq
    trainer: Trainer
    dev_src: list[str]
    dev_tgt: list[str]


def reverse_model_config(tokenizers: Tokenizers, **overrides) -> ModelConfig:
    base = dict(src_vocab_size=tokenizers.src.vocab_size, tgt_vocab_size=tokenizers.tgt.vocab_size,
                emb_dim=32, enc_hidden=64, dec_hidden=128, dropout=0.1, share_embeddings=True,
                attention="general", max_src_len=64, max_tgt_len=64)
    return ModelConfig(**{**base, **overrides})


def reverse_examples(tokenizers: Tokenizers, n: int, seed: int) -> list[Example]:
    src, tgt = reverse_pairs(n, seed)
    return make_examples(tokenizers, src, tgt, 64, 64)[0]


@pytest.fixture(scope="session")
def reverse_task() -> ReverseTask:
    """A model trained to reverse symbol sequences (about half a minute of CPU)."""
    torch.manual_seed(0)
    tokenizers = reverse_tokenizers()
    dev_src, dev_tgt = reverse_pairs(200, seed=2)
    config = TrainConfig(max_steps=400, max_tokens=1000, lr=3e-3, warmup_steps=50,
                         eval_every=200, log_every=100, label_smoothing=0.0, patience=None, seed=7)
    model = build_model(reverse_model_config(tokenizers))
    trainer = Trainer(model, tokenizers, config, reverse_examples(tokenizers, 4000, seed=1),
                      dev_src, dev_tgt)
    trainer.fit()
    return ReverseTask(tokenizers, trainer.model.eval(), trainer, dev_src, dev_tgt)
