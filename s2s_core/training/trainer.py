"""The training loop: one optimizer step (label smoothing, AdamW, AMP, data-parallel) and ``fit``,
which steps until a stop condition holds, logging, evaluating and checkpointing on the way.

The units it drives live beside it: ``data`` (batches), ``validation`` (dev scores, best weights,
patience), ``checkpoint`` (exact resume), ``history`` (the records) and ``state`` (when to stop).
"""

from __future__ import annotations

import hashlib
import logging
import math
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import torch
from torch.nn.parallel import DistributedDataParallel

from s2s_core.device import amp_dtype, autocast, resolve_device
from s2s_core.inference.segment import DEFAULT_LANGUAGE
from s2s_core.model.seq2seq import Seq2Seq
from s2s_core.storage import Store
from s2s_core.text.tokenizer import PAD_ID, Tokenizers
from s2s_core.training.averaging import WeightAverage
from s2s_core.training.checkpoint import BEST, LAST, Checkpointer
from s2s_core.training.config import TrainConfig
from s2s_core.training.data import Example, TrainingData
from s2s_core.training.distributed import ProcessGroup, all_reduce_sum, broadcast_object
from s2s_core.training.history import brief, write_history
from s2s_core.training.loss import smoothed_cross_entropy
from s2s_core.training.schedule import LRSchedule
from s2s_core.training.state import TrainState, budget_spent, stop_reason
from s2s_core.training.validation import Validator

log = logging.getLogger(__name__)

Event = Callable[[str, dict], None]
MAX_NONFINITE_STEPS = 5  # skipped steps in a row (non-finite loss) before training stops


class Trainer:
    """Trains a ``Seq2Seq`` on encoded examples.

    ``checkpoints`` is the store of the checkpoint folder (``last.pt``, ``best.pt``), ``logs`` the one the
    history goes to (``train.jsonl``); without them nothing is written. ``clock`` measures the time budget.
    """

    def __init__(self, model: Seq2Seq, tokenizers: Tokenizers, config: TrainConfig,
                 train: Sequence[Example], dev_src: Sequence[str] = (), dev_ref: Sequence[str] = (),
                 checkpoints: Store | None = None, on_event: Event | None = None,
                 group: ProcessGroup | None = None, logs: Store | None = None,
                 clock: Callable[[], float] = time.perf_counter, source_language: str = DEFAULT_LANGUAGE):
        self.config = config
        self.group = group or ProcessGroup()
        self.data = TrainingData(train, config, self.group.world_size)
        self.device = _device(config.device, self.group)
        self.amp_dtype = amp_dtype(config.amp, self.device)
        # Each rank draws its own dropout masks; batches are shared by seed, then split by rank.
        torch.manual_seed(config.seed + self.group.rank)
        random.seed(config.seed + self.group.rank)
        self.model = model.to(self.device)
        # DDP averages gradients across ranks during backward; the bare model is what we save.
        self.network = (DistributedDataParallel(self.model, device_ids=[self.device.index]
                                                if self.device.type == "cuda" else None)
                        if self.group.enabled else self.model)
        self.optimizer = _adamw(self.model, config, self.device)
        self.schedule = LRSchedule(config.lr, config.schedule, config.warmup_steps,
                                   config.plateau_factor, config.plateau_patience)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp_dtype == torch.float16)
        self.average = WeightAverage(self.model, config.average_decay) if config.average_decay else None
        self.validator = Validator(tokenizers, dev_src, dev_ref, config, self.device, self.group, clock,
                                   source_language)
        self.checkpointer = None if checkpoints is None else Checkpointer(
            checkpoints, self.model, self.optimizer, self.scaler, self.schedule, self.group,
            data_fingerprint(self.data, dev_src, dev_ref, tokenizers), self.average)
        self.logs = logs
        self.on_event = on_event or (lambda kind, record: None)
        self.clock = clock
        self.state = TrainState()
        self.history: list[dict] = []
        self._last_tick = 0.0
        self._batches_per_epoch = 1  # of the current epoch: the epochs' share of the budget
        self._last_lr = 0.0  # the rate of the last optimizer step (logged)

    # ---------------------------------------------------------------- the loop
    def fit(self, resume: bool = True) -> TrainState:
        """Train until a stop condition holds; always leaves a final ``last`` checkpoint."""
        if resume:
            self.resume()
        c, s = self.config, self.state
        batches = self._epoch_batches(s.epoch)
        self._emit("start", {"step": s.step, "batches_per_epoch": len(batches), "examples": len(self.data),
                             "device": str(self.device), "processes": self.group.world_size})
        window = _LossWindow(self.clock())
        self._last_tick = window.start
        while (reason := broadcast_object(stop_reason(c, s), self.group)) is None:
            if self.data.epoch_done(batches, s.batch_in_epoch):
                # Only after resuming with more processes: the epoch's rest cannot feed them all.
                s.epoch, s.batch_in_epoch = s.epoch + 1, 0
                batches = self._epoch_batches(s.epoch)
                continue
            loss, tokens, stepped = self.train_step(batches[s.batch_in_epoch + self.group.rank])
            s.step, s.batch_in_epoch = s.step + 1, s.batch_in_epoch + self.group.world_size
            if self.data.epoch_done(batches, s.batch_in_epoch):
                s.epoch, s.batch_in_epoch = s.epoch + 1, 0
                batches = self._epoch_batches(s.epoch)
            now = self._tick()
            if stepped:
                window.add(loss, tokens)
                s.target_tokens += tokens
            self._count_nonfinite(stepped, loss)
            record = window.flush(now) if c.log_every and s.step % c.log_every == 0 else {}
            if c.eval_every and s.step % c.eval_every == 0 and self.validator.enabled:
                record.update(self._timed_evaluation(now))
            if record:
                self._record({**record, "step": s.step, "epoch": s.epoch, "lr": self._last_lr,
                              "elapsed_seconds": round(s.elapsed_seconds, 2)})
            self.on_event("step", {"step": s.step})
            if "dev_bleu" in record or (c.checkpoint_every and s.step % c.checkpoint_every == 0):
                self.save_checkpoint(LAST)
        s.stop_reason = reason
        self._final_evaluation()
        self._evaluate_average()
        self.save_checkpoint(LAST)
        self._write_history()
        if self.group.is_main:
            log.info("training stopped at step %d: %s (best dev BLEU %.2f at step %d)",
                     s.step, reason, s.best_bleu, s.best_step)
        self._emit("end", asdict(s))
        return s

    def train_step(self, batch: list[int]) -> tuple[float, int, bool]:
        """One optimizer step; returns (summed loss, target tokens, whether the weights were updated).

        A non-finite loss or gradient norm is caught *before* the optimizer step, which is then
        skipped: the weights, the optimizer state and the checkpoints never see it. Under fp16 the
        gradient scaler skips overflowing steps itself (and lowers its scale); only a non-finite loss
        counts as a bad step there. Both values are the same on every rank (the loss is summed over
        ranks, gradients are averaged by DDP), so all ranks skip together.
        """
        self.network.train()
        src, src_len, tgt_in, tgt_out = self.data.tensors(batch, self.device)
        with autocast(self.device, self.amp_dtype):
            logits = self.network(src, src_len, tgt_in)
        loss = smoothed_cross_entropy(logits.view(-1, logits.size(-1)), tgt_out.view(-1),
                                      self.config.label_smoothing, PAD_ID)
        tokens = int((tgt_out != PAD_ID).sum())
        # Normalise by the tokens of all ranks' batches: DDP's gradient average (÷ world size)
        # then equals the gradient of the mean loss over the global batch.
        global_tokens = all_reduce_sum(tokens, self.group, self.device)
        self._last_lr = self.schedule.lr(self.state.step + 1,
                                         budget_spent(self.config, self.state, self._batches_per_epoch))
        for group in self.optimizer.param_groups:
            group["lr"] = self._last_lr
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss * self.group.world_size / global_tokens).backward()
        global_loss = all_reduce_sum(float(loss.detach()), self.group, self.device)
        if self.config.clip_norm > 0 or not self.scaler.is_enabled():
            self.scaler.unscale_(self.optimizer)
            norm = float(torch.nn.utils.clip_grad_norm_(self.model.parameters(),
                                                        self.config.clip_norm or math.inf))
        finite = math.isfinite(global_loss) and (self.scaler.is_enabled() or math.isfinite(norm))
        if finite or self.scaler.is_enabled():
            self.scaler.step(self.optimizer)  # with fp16: skipped by the scaler if gradients overflowed
            if self.average is not None:
                self.average.update(self.model)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        return global_loss, int(global_tokens), finite

    def _epoch_batches(self, epoch: int) -> list[list[int]]:
        batches = self.data.epoch_batches(epoch)
        self._batches_per_epoch = len(batches)
        return batches

    def _count_nonfinite(self, stepped: bool, loss: float) -> None:
        """Skip a bad step with a warning; stop after ``MAX_NONFINITE_STEPS`` of them in a row."""
        s = self.state
        if stepped:
            s.nonfinite_in_a_row = 0
            return
        s.nonfinite_in_a_row += 1
        s.skipped_steps += 1
        if self.group.is_main:
            log.warning("step %d: loss %s, optimizer step skipped (%d in a row)", s.step, loss,
                        s.nonfinite_in_a_row)
        if s.nonfinite_in_a_row >= MAX_NONFINITE_STEPS:
            where = self.checkpointer.store.url_of(LAST) if self.checkpointer else "no checkpoint"
            raise FloatingPointError(
                f"training loss was non-finite for {s.nonfinite_in_a_row} steps in a row (last {loss} at "
                f"step {s.step}); no update was applied, and the last good checkpoint ({where}) is intact: "
                "lower train.lr, raise train.warmup_steps or use amp=bf16/none, then resume")

    # ---------------------------------------------------------------- time, records, evaluation
    def _tick(self) -> float:
        """Add the time since the last tick to the budget; returns the clock's reading."""
        now = self.clock()
        # Rank 0's clock is the one that counts (ranks must agree on time-budget stops).
        self.state.elapsed_seconds = broadcast_object(self.state.elapsed_seconds + now - self._last_tick,
                                                      self.group)
        self._last_tick = now
        return now

    def _timed_evaluation(self, now: float) -> dict:
        record = self.validator.evaluate(self.model)
        self._last_tick = self.clock()  # dev decoding counts towards the budget
        self.state.elapsed_seconds += self._last_tick - now
        self.state.eval_seconds += self._last_tick - now
        return record

    def _record(self, record: dict) -> None:
        """Add a log or eval record to the history and report it; book an evaluation's score."""
        self.history.append(record)
        if self.group.is_main:
            self.on_event("eval" if "dev_bleu" in record else "log", record)
            log.info("step %d %s", record["step"], brief(record))
        if "dev_bleu" in record:
            self._after_eval(record)
            self._write_history()

    def _final_evaluation(self) -> None:
        """Score the final weights, unless the last record did at this step (not counted in the budget)."""
        s, last = self.state, self.history[-1] if self.history else {}
        if not self.validator.enabled or (last.get("step") == s.step and "dev_bleu" in last):
            return
        record = {**self.validator.evaluate(self.model), "step": s.step, "epoch": s.epoch,
                  "elapsed_seconds": round(s.elapsed_seconds, 2)}
        self.history.append(record)
        self._emit("eval", record)
        self._after_eval(record)

    def _evaluate_average(self) -> None:
        """Score the averaged weights once at the end; they become ``best`` only if they beat it."""
        s = self.state
        if self.average is None or not self.validator.enabled or any(
                r.get("weights") == "average" and r.get("step") == s.step for r in self.history):
            return
        live = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
        self.model.load_state_dict(self.average.state_dict_for(self.model))
        record = {**self.validator.evaluate(self.model), "step": s.step, "epoch": s.epoch,
                  "elapsed_seconds": round(s.elapsed_seconds, 2), "weights": "average"}
        self.history.append(record)
        self._emit("eval", record)
        if self.group.is_main:
            log.info("averaged weights (decay %g): dev BLEU %.2f vs best %.2f at step %d",
                     self.average.decay, record["dev_bleu"], s.best_bleu, s.best_step)
        if record["dev_bleu"] > s.best_bleu and self.validator.observe(record, s, self.model):
            self.save_checkpoint(BEST)
        self.model.load_state_dict(live)

    def _after_eval(self, record: dict) -> None:
        self.schedule.observe(record["dev_bleu"])
        if self.validator.observe(record, self.state, self.model):
            self.save_checkpoint(BEST)

    def _write_history(self) -> None:
        if self.logs is not None and self.group.is_main:
            write_history(self.logs, self.history)

    def _emit(self, kind: str, record: dict) -> None:
        """Report an event once (from rank 0)."""
        if self.group.is_main:
            self.on_event(kind, record)

    # ---------------------------------------------------------------- checkpoints
    def save_checkpoint(self, name: str = LAST) -> None:
        """Write checkpoint ``name`` (collective: every rank takes part, rank 0 writes)."""
        if self.checkpointer is not None and self.checkpointer.save(name, self.state, self.history):
            self.on_event("checkpoint", {"step": self.state.step, "name": name})

    def resume(self) -> bool:
        """Restore the last checkpoint if there is one; returns whether training resumed."""
        restored = self.checkpointer.restore() if self.checkpointer is not None else None
        if restored is None:
            return False
        self.state, self.history = restored
        if self.group.is_main:
            s = self.state
            log.info("resumed from %s at step %d (epoch %d, batch %d)",
                     self.checkpointer.store.url_of(LAST), s.step, s.epoch, s.batch_in_epoch)
        self._emit("resume", asdict(self.state))
        return True

    def best_weights(self) -> dict[str, torch.Tensor]:
        """Weights with the best dev BLEU (current weights when there was no dev evaluation)."""
        if self.validator.best_weights is not None:
            return self.validator.best_weights
        saved = self.checkpointer.best_weights() if self.checkpointer is not None else None
        return saved if saved is not None else self.model.state_dict()


@dataclass
class _LossWindow:
    """Loss and target tokens since the last log record: the logged loss and throughput."""

    start: float
    loss: float = 0.0
    tokens: int = 0

    def add(self, loss: float, tokens: int) -> None:
        self.loss += loss
        self.tokens += tokens

    def flush(self, now: float) -> dict:
        """The window's record (per-token loss, tokens per second); starts a new window at ``now``."""
        record = {"loss": self.loss / max(self.tokens, 1),
                  "tokens_per_second": self.tokens / max(now - self.start, 1e-9)}
        self.start, self.loss, self.tokens = now, 0.0, 0
        return record


def data_fingerprint(data: TrainingData, dev_src: Sequence[str], dev_ref: Sequence[str],
                     tokenizers: Tokenizers) -> dict[str, str]:
    """What a run trains on, by part (``FINGERPRINT_PARTS``), recorded in its checkpoints."""
    dev = hashlib.sha256("\n".join(["\t".join(pair) for pair in zip(dev_src, dev_ref, strict=True)]).encode())
    protos = tokenizers.src.model_proto + (b"" if tokenizers.joint else tokenizers.tgt.model_proto)
    return {"train": data.fingerprint(), "dev": dev.hexdigest()[:16],
            "tokenizer": hashlib.sha256(protos).hexdigest()[:16]}


def _device(name: str, group: ProcessGroup) -> torch.device:
    device = resolve_device(name)
    # Data-parallel on CUDA: one GPU per process, chosen by torchrun's LOCAL_RANK.
    return torch.device("cuda", group.local_rank) if device.type == "cuda" and group.enabled else device


def _adamw(model: Seq2Seq, config: TrainConfig, device: torch.device) -> torch.optim.AdamW:
    """AdamW that decays weight matrices only (not biases, norms or embeddings)."""
    decay = [p for n, p in model.named_parameters() if p.dim() > 1 and "embedding" not in n]
    no_decay = [p for n, p in model.named_parameters() if p.dim() <= 1 or "embedding" in n]
    return torch.optim.AdamW([{"params": decay, "weight_decay": config.weight_decay},
                              {"params": no_decay, "weight_decay": 0.0}],
                             lr=config.lr, betas=config.betas, fused=device.type == "cuda")
