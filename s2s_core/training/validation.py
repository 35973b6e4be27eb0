"""Dev-set validation during training: decode and score (sacrebleu BLEU/chrF), keep the weights
of the best dev BLEU, and count the evaluations without improvement that early stopping acts on."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import torch

from s2s_core.evaluation.metrics import corpus_scores
from s2s_core.inference.segment import DEFAULT_LANGUAGE
from s2s_core.inference.translator import DecodeConfig, Translator
from s2s_core.model.seq2seq import Seq2Seq
from s2s_core.text.spans import DEFAULT_RULES
from s2s_core.text.tokenizer import Tokenizers
from s2s_core.training.config import TrainConfig
from s2s_core.training.distributed import ProcessGroup, broadcast_object
from s2s_core.training.state import TrainState


class Validator:
    """Scores the model on the dev set (rank 0 decodes) and tracks the best dev BLEU."""

    def __init__(self, tokenizers: Tokenizers, dev_src: Sequence[str], dev_ref: Sequence[str],
                 config: TrainConfig, device: torch.device, group: ProcessGroup,
                 clock: Callable[[], float] = time.perf_counter, language: str = DEFAULT_LANGUAGE):
        limit = config.eval_max_sentences or None
        self.dev_src, self.dev_ref = list(dev_src)[:limit], list(dev_ref)[:limit]
        self.tokenizers, self.config, self.device, self.group = tokenizers, config, device, group
        self.clock = clock
        self.language = language  # the source's sentence rules, for dev inputs over the length limit
        self.best_weights: dict[str, torch.Tensor] | None = None  # in memory, from this run only

    @property
    def enabled(self) -> bool:
        return bool(self.dev_src)

    def evaluate(self, model: Seq2Seq) -> dict:
        """Dev BLEU/chrF (detokenized) with the current weights; every rank gets rank 0's record."""
        record = self._score(model) if self.group.is_main else None
        return broadcast_object(record, self.group)

    def _score(self, model: Seq2Seq) -> dict:
        translator = Translator(model, self.tokenizers, self.device, amp=self.config.amp,
                                protect=DEFAULT_RULES if self.tokenizers.config.placeholders else None,
                                language=self.language)
        start = self.clock()
        hyps = [t.text for t in translator.translate(
            self.dev_src, DecodeConfig(beam_size=self.config.eval_beam_size))]
        scores = corpus_scores(hyps, self.dev_ref)
        return {"dev_bleu": scores["bleu"].score, "dev_chrf": scores["chrf"].score,
                "dev_seconds": self.clock() - start, "dev_sample": hyps[:2]}

    def observe(self, record: dict, state: TrainState, model: Seq2Seq) -> bool:
        """Book an evaluation into ``state``; on a new best BLEU keep the weights and return True."""
        if record["dev_bleu"] > state.best_bleu:
            state.best_bleu, state.best_step = record["dev_bleu"], state.step
            state.evals_without_improvement = 0
            self.best_weights = {k: v.detach().clone() for k, v in model.state_dict().items()}
            return True
        state.evals_without_improvement += 1
        return False
