"""Resume only what can be resumed: other data or tokenizer refused, non-finite steps never applied."""

from __future__ import annotations

import math

import pytest
import torch

from s2s_core.model.seq2seq import build_model
from s2s_core.storage import Store
from s2s_core.text.tokenizer import EOS_ID, TokenizerConfig, train_tokenizers
from s2s_core.training.checkpoint import LAST, ResumeMismatchError, read_checkpoint
from s2s_core.training.config import TrainConfig
from s2s_core.training.data import Example
from s2s_core.training.trainer import Trainer
from tests.s2s_core.conftest import reverse_examples, reverse_model_config
from tests.s2s_core.synthetic import reverse_pairs, reverse_tokenizers
from tests.s2s_core.training.test_trainer import make_trainer


def test_resuming_over_changed_data_or_tokenizer_is_refused_with_what_changed(tmp_path):
    tokenizers = reverse_tokenizers()
    make_trainer(tokenizers, reverse_examples(tokenizers, 100, seed=3), 6, str(tmp_path)).fit()
    saved = read_checkpoint(Store(str(tmp_path)), LAST)
    assert set(saved["data"]) == {"train", "dev", "tokenizer"}

    changed_data = make_trainer(tokenizers, reverse_examples(tokenizers, 100, seed=4), 12, str(tmp_path))
    with pytest.raises(ResumeMismatchError) as caught:
        changed_data.fit()
    message = str(caught.value)
    assert "the training data changed" in message and "another --run-id" in message and "\n" not in message

    src, tgt = reverse_pairs(2000, seed=0)  # same vocabulary size, other pieces and ids
    other = train_tokenizers(src, tgt, TokenizerConfig(model_type="unigram", vocab_size=40))
    assert other.src.vocab_size == tokenizers.src.vocab_size
    with pytest.raises(ResumeMismatchError, match="tokenizer changed"):
        make_trainer(other, reverse_examples(other, 100, seed=3), 12, str(tmp_path)).fit()
    # The same data and tokenizer resume as before.
    same = make_trainer(tokenizers, reverse_examples(tokenizers, 100, seed=3), 8, str(tmp_path))
    assert same.fit().step == 8


def poison(trainer, token: int) -> None:
    """Make every batch holding ``token`` give a NaN loss (a NaN embedding row)."""
    with torch.no_grad():
        trainer.model.encoder.embedding.weight[token] = float("nan")


def finite_except(model, token: int) -> bool:
    """Every weight is finite, apart from the poisoned row of the source embedding (and its ties)."""
    poisoned = model.encoder.embedding.weight.data_ptr()
    for tensor in model.state_dict().values():
        if tensor.data_ptr() == poisoned:
            tensor = torch.cat([tensor[:token], tensor[token + 1:]])
        if not torch.isfinite(tensor).all():
            return False
    return True


def test_non_finite_steps_are_skipped_before_they_touch_the_weights(tmp_path):
    tokenizers = reverse_tokenizers()
    examples = reverse_examples(tokenizers, 300, seed=3)
    used = {i for e in examples for i in e.src + e.tgt}
    rare = next(i for i in range(tokenizers.src.vocab_size - 1, 3, -1) if i not in used)
    examples += [Example([rare, EOS_ID], [used.pop()])] * 2  # in two batches an epoch, no more
    torch.manual_seed(0)
    # Separate source embeddings: the poisoned row reaches only the batches that hold the token.
    model = build_model(reverse_model_config(tokenizers, share_embeddings=False, tie_embeddings=False))
    config = TrainConfig(max_steps=20, max_tokens=300, lr=2e-3, warmup_steps=5, eval_every=0, patience=None)
    trainer = Trainer(model, tokenizers, config, examples, checkpoints=Store(str(tmp_path)))
    poison(trainer, rare)
    state = trainer.fit()
    assert state.step == 20 and 0 < state.skipped_steps < 20
    assert finite_except(trainer.model, rare)  # only the poisoned row itself, never updated from it
    assert all(math.isfinite(r["loss"]) for r in trainer.history if "loss" in r)


def test_repeated_non_finite_steps_stop_training_with_the_last_good_checkpoint_intact(tmp_path):
    tokenizers = reverse_tokenizers()
    examples = reverse_examples(tokenizers, 300, seed=3)

    def poison_at_6(kind, record):
        if kind == "checkpoint" and record["step"] == 6:
            poison(trainer, EOS_ID)  # every source ends with EOS: every later step is non-finite

    trainer = make_trainer(tokenizers, examples, 30, str(tmp_path), eval_every=0, checkpoint_every=6,
                           on_event=poison_at_6)
    with pytest.raises(FloatingPointError, match="non-finite for 5 steps in a row .* is intact"):
        trainer.fit()
    assert trainer.state.step == 11 and finite_except(trainer.model, EOS_ID)
    last = read_checkpoint(Store(str(tmp_path)), LAST)
    assert last["state"]["step"] == 6 and all(torch.isfinite(t).all() for t in last["model"].values())
