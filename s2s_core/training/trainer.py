"""The training loop: token-budget batches, label smoothing, AdamW, AMP, dev BLEU, exact resume."""

from __future__ import annotations

import io
import json
import logging
import math
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, fields

import torch
from torch.nn import functional as F
from torch.nn.parallel import DistributedDataParallel

from s2s_core import storage
from s2s_core.device import amp_dtype, autocast, resolve_device
from s2s_core.evaluation.metrics import corpus_scores
from s2s_core.inference.translator import DecodeConfig, Translator
from s2s_core.model.seq2seq import Seq2Seq
from s2s_core.text.batching import pad_sequences, token_batches
from s2s_core.text.tokenizer import BOS_ID, EOS_ID, PAD_ID, Tokenizers
from s2s_core.training.distributed import ProcessGroup, all_gather_objects, all_reduce_sum, broadcast_object
from s2s_core.training.schedule import LRSchedule

log = logging.getLogger(__name__)

CHECKPOINT_FORMAT = 2
LAST, BEST = "last.pt", "best.pt"


@dataclass(frozen=True)
class TrainConfig:
    max_tokens: int = 4000  # padded target (or source) tokens per batch
    max_sentences: int | None = None
    lr: float = 1e-3
    betas: tuple[float, float] = (0.9, 0.98)
    weight_decay: float = 0.0
    schedule: str = "inverse_sqrt"  # inverse_sqrt | plateau | constant
    warmup_steps: int = 500
    plateau_factor: float = 0.5
    plateau_patience: int = 2
    label_smoothing: float = 0.1
    clip_norm: float = 1.0
    max_steps: int | None = None
    max_epochs: int | None = None
    max_minutes: float | None = None  # wall-clock budget over all (resumed) runs
    eval_every: int = 1000  # steps; 0 disables periodic dev evaluation
    eval_beam_size: int = 1
    eval_max_sentences: int | None = None  # dev subset used during training
    patience: int | None = 5  # early stopping: dev evaluations without BLEU improvement
    checkpoint_every: int = 500  # steps; a checkpoint is also written at every evaluation
    log_every: int = 100
    amp: str = "auto"
    device: str = "auto"
    seed: int = 1234

    def __post_init__(self) -> None:
        if self.max_steps is None and self.max_epochs is None and self.max_minutes is None:
            raise ValueError("set at least one of max_steps, max_epochs or max_minutes")
        if self.max_tokens < 1:
            raise ValueError(f"max_tokens must be ≥ 1, got {self.max_tokens}")
        if not 0.0 <= self.label_smoothing < 1.0:
            raise ValueError(f"label_smoothing must be in [0, 1), got {self.label_smoothing}")

    @classmethod
    def from_dict(cls, data: dict) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown train config fields: {unknown}")
        data = dict(data)
        if "betas" in data:
            data["betas"] = tuple(data["betas"])
        return cls(**data)


@dataclass
class Example:
    src: list[int]  # ids + EOS
    tgt: list[int]  # ids (BOS/EOS added when batching)


def make_examples(tokenizers: Tokenizers, src: Sequence[str], tgt: Sequence[str],
                  max_src_len: int, max_tgt_len: int) -> tuple[list[Example], int]:
    """Encode sentence pairs; pairs that are empty or exceed the model limits are skipped.

    Returns the examples and how many pairs were skipped (reported by the caller).
    """
    src_ids, tgt_ids = tokenizers.src.encode(src), tokenizers.tgt.encode(tgt)
    examples = [Example(s + [EOS_ID], t) for s, t in zip(src_ids, tgt_ids, strict=True)
                if s and t and len(s) < max_src_len and len(t) < max_tgt_len]
    return examples, len(src_ids) - len(examples)


@dataclass
class TrainState:
    """Where training stands; saved in every checkpoint."""

    step: int = 0
    epoch: int = 0
    batch_in_epoch: int = 0
    elapsed_seconds: float = 0.0  # wall clock over all runs, dev evaluation included
    eval_seconds: float = 0.0
    target_tokens: int = 0  # target tokens trained on (EOS included)
    best_bleu: float = -1.0
    best_step: int = 0
    evals_without_improvement: int = 0
    stop_reason: str | None = None


Event = Callable[[str, dict], None]


class Trainer:
    """Trains a ``Seq2Seq`` on encoded examples; checkpoints go to an fsspec URL directory."""

    def __init__(self, model: Seq2Seq, tokenizers: Tokenizers, config: TrainConfig,
                 train: Sequence[Example], dev_src: Sequence[str] = (), dev_ref: Sequence[str] = (),
                 checkpoint_dir: str | None = None, on_event: Event | None = None,
                 storage_options: dict | None = None, group: ProcessGroup | None = None,
                 history_url: str | None = None):
        if not train:
            raise ValueError("no training examples (all pairs empty or over the length limits?)")
        self.config = config
        self.group = group or ProcessGroup()
        self.device = resolve_device(config.device)
        if self.device.type == "cuda" and self.group.enabled:
            self.device = torch.device("cuda", self.group.local_rank)
        self.amp_dtype = amp_dtype(config.amp, self.device)
        # Each rank draws its own dropout masks; batches are shared by seed, then split by rank.
        torch.manual_seed(config.seed + self.group.rank)
        random.seed(config.seed + self.group.rank)
        self.model = model.to(self.device)
        # DDP averages gradients across ranks during backward; the bare model is what we save.
        self.network = (DistributedDataParallel(self.model, device_ids=[self.device.index]
                                                if self.device.type == "cuda" else None)
                        if self.group.enabled else self.model)
        self.tokenizers = tokenizers
        self.train_set = list(train)
        self.dev_src, self.dev_ref = list(dev_src), list(dev_ref)
        if config.eval_max_sentences:
            self.dev_src = self.dev_src[: config.eval_max_sentences]
            self.dev_ref = self.dev_ref[: config.eval_max_sentences]
        self.checkpoint_dir = checkpoint_dir
        self.history_url = history_url  # JSON lines of the training history, rewritten at each eval
        self.storage_options = storage_options or {}
        self.on_event = on_event or (lambda kind, record: None)
        decay = [p for n, p in model.named_parameters() if p.dim() > 1 and "embedding" not in n]
        no_decay = [p for n, p in model.named_parameters() if p.dim() <= 1 or "embedding" in n]
        self.optimizer = torch.optim.AdamW(
            [{"params": decay, "weight_decay": config.weight_decay},
             {"params": no_decay, "weight_decay": 0.0}],
            lr=config.lr, betas=config.betas, fused=self.device.type == "cuda")
        self.schedule = LRSchedule(config.lr, config.schedule, config.warmup_steps,
                                   config.plateau_factor, config.plateau_patience)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp_dtype == torch.float16)
        self.state = TrainState()
        self.history: list[dict] = []
        self.best_state: dict[str, torch.Tensor] | None = None
        self._lengths = [max(len(e.src), len(e.tgt) + 1) for e in self.train_set]

    # ---------------------------------------------------------------- data position
    def epoch_batches(self, epoch: int) -> list[list[int]]:
        """The batches of ``epoch``: a pure function of (seed, epoch), so resume needs no data state.

        With several processes each step takes ``world_size`` consecutive batches (one per rank);
        the epoch's remainder that would leave a rank idle is dropped (it is reshuffled next epoch).
        """
        batches = token_batches(self._lengths, self.config.max_tokens,
                                max_sentences=self.config.max_sentences,
                                shuffle_seed=self.config.seed * 100_003 + epoch)
        world = self.group.world_size
        if world > 1:
            if len(batches) < world:
                raise ValueError(f"{len(batches)} batches per epoch cannot feed {world} processes: "
                                 "lower max_tokens or use fewer processes")
            batches = batches[: len(batches) - len(batches) % world]
        return batches

    def _tensors(self, batch: list[int]) -> tuple[torch.Tensor, ...]:
        examples = [self.train_set[i] for i in batch]
        src, src_len = pad_sequences([e.src for e in examples], self.device)
        tgt_in, _ = pad_sequences([[BOS_ID, *e.tgt] for e in examples], self.device)
        tgt_out, _ = pad_sequences([[*e.tgt, EOS_ID] for e in examples], self.device)
        return src, src_len, tgt_in, tgt_out

    # ---------------------------------------------------------------- one step
    def train_step(self, batch: list[int]) -> tuple[float, int]:
        """One optimizer step; returns (summed loss, target tokens)."""
        self.network.train()
        src, src_len, tgt_in, tgt_out = self._tensors(batch)
        with autocast(self.device, self.amp_dtype):
            logits = self.network(src, src_len, tgt_in)
        loss = F.cross_entropy(logits.float().view(-1, logits.size(-1)), tgt_out.view(-1),
                               ignore_index=PAD_ID, label_smoothing=self.config.label_smoothing,
                               reduction="sum")
        tokens = int((tgt_out != PAD_ID).sum())
        # Normalise by the tokens of all ranks' batches: DDP's gradient average (÷ world size)
        # then equals the gradient of the mean loss over the global batch.
        global_tokens = all_reduce_sum(tokens, self.group, self.device)
        for group in self.optimizer.param_groups:
            group["lr"] = self.schedule.lr(self.state.step + 1)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss * self.group.world_size / global_tokens).backward()
        if self.config.clip_norm > 0:
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.config.clip_norm)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        return all_reduce_sum(float(loss.detach()), self.group, self.device), int(global_tokens)

    # ---------------------------------------------------------------- evaluation
    def evaluate(self) -> dict:
        """Dev BLEU/chrF (sacrebleu, detokenized) with the current weights; rank 0 decodes."""
        record = self._evaluate() if self.group.is_main else None
        return broadcast_object(record, self.group)

    def _evaluate(self) -> dict:
        translator = Translator(self.model, self.tokenizers, self.device, amp=self.config.amp)
        start = time.perf_counter()
        hyps = [t.text for t in translator.translate(
            self.dev_src, DecodeConfig(beam_size=self.config.eval_beam_size))]
        scores = corpus_scores(hyps, self.dev_ref)
        return {"dev_bleu": scores["bleu"].score, "dev_chrf": scores["chrf"].score,
                "dev_seconds": time.perf_counter() - start, "dev_sample": hyps[:2]}

    # ---------------------------------------------------------------- checkpoints
    def _url(self, name: str) -> str:
        assert self.checkpoint_dir is not None
        return storage.join(self.checkpoint_dir, name)

    def checkpoint_bytes(self, full: bool = True) -> bytes:
        """Serialized weights and progress; ``full`` adds what exact resume needs."""
        payload = {
            "format": CHECKPOINT_FORMAT,
            "model_config": self.model.config.to_dict(),
            "model": self.model.state_dict(),
            "state": asdict(self.state),
            "history": self.history,
        }
        if full:
            payload.update(optimizer=self.optimizer.state_dict(), scaler=self.scaler.state_dict(),
                           schedule=self.schedule.state_dict(),
                           rng=all_gather_objects(_rng_state(), self.group), world_size=self.group.world_size)
        buffer = io.BytesIO()
        torch.save(payload, buffer)
        return buffer.getvalue()

    def save_checkpoint(self, name: str = LAST) -> None:
        if self.checkpoint_dir is None:
            return
        data = self.checkpoint_bytes(full=name == LAST)  # collective: every rank takes part
        if not self.group.is_main:
            return
        storage.write_bytes(self._url(name), data, **self.storage_options)
        self.on_event("checkpoint", {"step": self.state.step, "name": name})

    def resume(self) -> bool:
        """Restore the last checkpoint if there is one; returns whether training resumed."""
        if self.checkpoint_dir is None or not storage.exists(self._url(LAST), **self.storage_options):
            return False
        payload = load_checkpoint(self._url(LAST), self.storage_options)
        if payload["model_config"] != self.model.config.to_dict():
            raise ValueError(f"checkpoint {self._url(LAST)} was made for a different model config")
        self.model.load_state_dict(payload["model"])
        self.optimizer.load_state_dict(payload["optimizer"])
        self.scaler.load_state_dict(payload["scaler"])
        self.schedule.load_state_dict(payload["schedule"])
        self.state = TrainState(**payload["state"])
        self.history = list(payload["history"])
        rng_states = payload["rng"]
        if len(rng_states) == self.group.world_size:
            _set_rng_state(rng_states[self.group.rank])
        else:  # resumed with another process count: data position holds, dropout masks differ
            log.warning("checkpoint was written by %d processes, resuming with %d: RNG streams reseeded",
                        len(rng_states), self.group.world_size)
        if self.group.is_main:
            log.info("resumed from %s at step %d (epoch %d, batch %d)", self._url(LAST),
                     self.state.step, self.state.epoch, self.state.batch_in_epoch)
            self.on_event("resume", asdict(self.state))
        return True

    # ---------------------------------------------------------------- the loop
    def _should_stop(self) -> str | None:
        c, s = self.config, self.state
        if c.max_steps is not None and s.step >= c.max_steps:
            return "max_steps"
        if c.max_epochs is not None and s.epoch >= c.max_epochs:
            return "max_epochs"
        if c.max_minutes is not None and s.elapsed_seconds >= c.max_minutes * 60:
            return "max_minutes"
        if c.patience is not None and s.evals_without_improvement >= c.patience:
            return "early_stopping"
        return None

    def write_history(self) -> None:
        if self.history_url and self.group.is_main:
            lines = "".join(json.dumps(r, default=str) + "\n" for r in self.history)
            storage.write_text(self.history_url, lines, **self.storage_options)

    def _after_eval(self, record: dict) -> None:
        s = self.state
        self.schedule.observe(record["dev_bleu"])
        if record["dev_bleu"] > s.best_bleu:
            s.best_bleu, s.best_step, s.evals_without_improvement = record["dev_bleu"], s.step, 0
            self.best_state = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
            self.save_checkpoint(BEST)
        else:
            s.evals_without_improvement += 1

    def fit(self, resume: bool = True) -> TrainState:
        """Train until a stop condition holds; always leaves a final ``last`` checkpoint."""
        if resume:
            self.resume()
        c, s = self.config, self.state
        if self.group.is_main:
            self.on_event("start", {"step": s.step, "batches_per_epoch": len(self.epoch_batches(s.epoch)),
                                    "examples": len(self.train_set), "device": str(self.device),
                                    "processes": self.group.world_size})
        batches = self.epoch_batches(s.epoch)
        window_loss, window_tokens, window_start = 0.0, 0, time.perf_counter()
        last_tick = time.perf_counter()
        while (reason := broadcast_object(self._should_stop(), self.group)) is None:
            loss, tokens = self.train_step(batches[s.batch_in_epoch + self.group.rank])
            s.step += 1
            s.batch_in_epoch += self.group.world_size
            if s.batch_in_epoch >= len(batches):
                s.epoch, s.batch_in_epoch = s.epoch + 1, 0
                batches = self.epoch_batches(s.epoch)
            now = time.perf_counter()
            # Rank 0's clock is the one that counts (ranks must agree on time-budget stops).
            s.elapsed_seconds = broadcast_object(s.elapsed_seconds + now - last_tick, self.group)
            last_tick = now
            window_loss += loss
            window_tokens += tokens
            s.target_tokens += tokens
            if not math.isfinite(loss):
                raise FloatingPointError(f"training loss became {loss} at step {s.step}")
            record: dict = {}
            if c.log_every and s.step % c.log_every == 0:
                record = {"loss": window_loss / max(window_tokens, 1),
                          "tokens_per_second": window_tokens / max(now - window_start, 1e-9)}
                window_loss, window_tokens, window_start = 0.0, 0, now
            if c.eval_every and s.step % c.eval_every == 0 and self.dev_src:
                record.update(self.evaluate())
                last_tick = time.perf_counter()  # dev decoding counts towards the budget
                s.elapsed_seconds += last_tick - now
                s.eval_seconds += last_tick - now
            if record:
                record.update(step=s.step, epoch=s.epoch, lr=self.schedule.lr(s.step),
                              elapsed_seconds=round(s.elapsed_seconds, 2))
                self.history.append(record)
                if self.group.is_main:
                    self.on_event("eval" if "dev_bleu" in record else "log", record)
                    log.info("step %d %s", s.step, _brief(record))
                if "dev_bleu" in record:
                    self._after_eval(record)
                    self.write_history()
            self.on_event("step", {"step": s.step})
            if "dev_bleu" in record or (c.checkpoint_every and s.step % c.checkpoint_every == 0):
                self.save_checkpoint(LAST)
        s.stop_reason = reason
        if self.dev_src and (not self.history or self.history[-1].get("step") != s.step
                             or "dev_bleu" not in self.history[-1]):
            record = {**self.evaluate(), "step": s.step, "epoch": s.epoch,
                      "elapsed_seconds": round(s.elapsed_seconds, 2)}
            self.history.append(record)
            if self.group.is_main:
                self.on_event("eval", record)
            self._after_eval(record)
        self.save_checkpoint(LAST)
        self.write_history()
        if self.group.is_main:
            log.info("training stopped at step %d: %s (best dev BLEU %.2f at step %d)",
                     s.step, reason, s.best_bleu, s.best_step)
            self.on_event("end", asdict(s))
        return s

    def best_weights(self) -> dict[str, torch.Tensor]:
        """Weights with the best dev BLEU (current weights when there was no dev evaluation)."""
        if self.best_state is not None:
            return self.best_state
        if self.checkpoint_dir and storage.exists(self._url(BEST), **self.storage_options):
            return load_checkpoint(self._url(BEST), self.storage_options)["model"]
        return self.model.state_dict()


def _rng_state() -> dict:
    rng = {"torch": torch.get_rng_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        rng["cuda"] = torch.cuda.get_rng_state_all()
    return rng


def _set_rng_state(rng: dict) -> None:
    torch.set_rng_state(rng["torch"])
    random.setstate(rng["python"])
    if "cuda" in rng and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(rng["cuda"])


def load_checkpoint(url: str, storage_options: dict | None = None) -> dict:
    """Read a training checkpoint (restricted unpickler: tensors and plain containers only)."""
    data = storage.read_bytes(url, **(storage_options or {}))
    try:
        payload = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - any decoding failure means a corrupt file
        raise ValueError(f"checkpoint {url} is corrupt or not a s2s checkpoint: {err}") from err
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"checkpoint {url} has an unsupported format")
    return payload


def _brief(record: dict) -> str:
    keys = ("loss", "tokens_per_second", "dev_bleu", "dev_chrf", "lr")
    return " ".join(f"{k}={record[k]:.4g}" for k in keys if k in record)
