import math
import time

import pytest
import torch

from s2s_core.model.seq2seq import build_model
from s2s_core.storage import Store
from s2s_core.training.checkpoint import LAST, load_checkpoint
from s2s_core.training.config import TrainConfig
from s2s_core.training.schedule import LRSchedule
from s2s_core.training.state import TrainState, budget_spent
from s2s_core.training.trainer import Trainer
from tests.s2s_core.conftest import reverse_examples, reverse_model_config
from tests.s2s_core.synthetic import reverse_pairs, reverse_tokenizers


class SimulatedCrash(RuntimeError):
    pass


def make_trainer(tokenizers, examples, max_steps, checkpoint_dir, on_event=None, clock=time.perf_counter,
                 **overrides):
    torch.manual_seed(0)  # identical initial weights in every run
    model = build_model(reverse_model_config(tokenizers, dropout=0.3))
    dev_src, dev_tgt = reverse_pairs(20, seed=5)
    config = TrainConfig(**{**dict(max_steps=max_steps, max_tokens=300, lr=2e-3, warmup_steps=5,
                                   eval_every=7, checkpoint_every=6, log_every=3, patience=None,
                                   seed=11), **overrides})
    checkpoints = Store(checkpoint_dir) if checkpoint_dir else None
    return Trainer(model, tokenizers, config, examples, dev_src, dev_tgt, checkpoints=checkpoints,
                   on_event=on_event, clock=clock)


@pytest.fixture
def one_cpu_thread():
    """Bit-for-bit comparisons need deterministic kernels: with several threads, CPU LSTM kernels
    may split their reductions differently from run to run (about 1 run in 5 differs in the last
    bits here), which says nothing about resume."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize("average", [None, 0.9])
def test_resume_after_crash_equals_uninterrupted_training(tmp_path, one_cpu_thread, average):
    """N steps, crash, resume, N more steps == 2N uninterrupted steps, bit for bit on CPU."""
    tokenizers = reverse_tokenizers()
    examples = reverse_examples(tokenizers, 300, seed=3)  # ~20 batches/epoch: crosses an epoch

    reference = make_trainer(tokenizers, examples, 30, str(tmp_path / "reference"), average_decay=average)
    reference.fit()

    def crash_at_15(kind, record):
        if kind == "step" and record["step"] == 15:
            raise SimulatedCrash("killed")

    crashed_dir = str(tmp_path / "crashed")
    with pytest.raises(SimulatedCrash):
        make_trainer(tokenizers, examples, 30, crashed_dir, on_event=crash_at_15, average_decay=average).fit()
    assert load_checkpoint(f"{crashed_dir}/{LAST}")["state"]["step"] == 14  # last checkpoint (eval)

    events = []
    resumed = make_trainer(tokenizers, examples, 30, crashed_dir, average_decay=average,
                           on_event=lambda kind, record: events.append((kind, record)))
    resumed.fit()
    assert events[0][0] == "resume" and events[0][1]["step"] == 14
    assert resumed.state.step == reference.state.step == 30
    assert resumed.state.epoch == reference.state.epoch >= 1
    for name, tensor in reference.model.state_dict().items():
        assert torch.equal(tensor, resumed.model.state_dict()[name]), name
    ref_opt, res_opt = reference.optimizer.state_dict(), resumed.optimizer.state_dict()
    for key, state in ref_opt["state"].items():
        assert torch.equal(state["exp_avg_sq"], res_opt["state"][key]["exp_avg_sq"])
    assert [r["dev_bleu"] for r in resumed.history if "dev_bleu" in r] == \
        [r["dev_bleu"] for r in reference.history if "dev_bleu" in r]
    if average:  # the weight average resumes too, and is scored once at the end
        assert resumed.average.updates == reference.average.updates == 30
        for a, b in zip(reference.average.average, resumed.average.average, strict=True):
            assert torch.equal(a, b)
        assert [r["step"] for r in resumed.history if r.get("weights") == "average"] == [30]


def test_finished_training_is_not_repeated_on_rerun(tmp_path):
    tokenizers = reverse_tokenizers()
    examples = reverse_examples(tokenizers, 100, seed=3)
    make_trainer(tokenizers, examples, 8, str(tmp_path)).fit()
    steps = []
    again = make_trainer(tokenizers, examples, 8, str(tmp_path),
                         on_event=lambda kind, record: steps.append(kind) if kind == "step" else None)
    again.fit()
    assert steps == [] and again.state.step == 8


def test_early_stopping_on_dev_bleu(tmp_path):
    tokenizers = reverse_tokenizers()
    examples = reverse_examples(tokenizers, 100, seed=3)
    # lr 0: the model never improves, so patience runs out after the first evaluation + 2 more.
    trainer = make_trainer(tokenizers, examples, 1000, None, lr=0.0, eval_every=2, patience=2,
                           schedule="constant")
    state = trainer.fit()
    assert state.stop_reason == "early_stopping"
    assert state.step == 6


def test_time_budget_stops_training(tmp_path):
    tokenizers = reverse_tokenizers()
    examples = reverse_examples(tokenizers, 100, seed=3)
    trainer = make_trainer(tokenizers, examples, None, None, max_minutes=0.002, eval_every=0)
    state = trainer.fit()
    assert state.stop_reason == "max_minutes"
    assert state.elapsed_seconds >= 0.12


def test_best_checkpoint_holds_the_weights_of_the_best_dev_bleu_in_the_history(tmp_path):
    tokenizers = reverse_tokenizers()
    examples = reverse_examples(tokenizers, 200, seed=3)
    # A high learning rate makes dev BLEU go up and down, so the best evaluation is not the last one.
    trainer = make_trainer(tokenizers, examples, 40, str(tmp_path), eval_every=5, lr=1e-2)
    trainer.fit()
    evals = [r for r in trainer.history if "dev_bleu" in r]
    best_record = max(evals, key=lambda r: r["dev_bleu"])  # the first evaluation to reach the maximum
    assert best_record is not evals[-1] and len({r["dev_bleu"] for r in evals}) > 2

    best = load_checkpoint(f"{tmp_path}/best.pt")
    assert best["state"]["step"] == best["state"]["best_step"] == best_record["step"]
    assert best["state"]["best_bleu"] == best_record["dev_bleu"]
    assert trainer.state.best_step == best_record["step"]
    assert trainer.state.best_bleu == best_record["dev_bleu"]
    for name, tensor in trainer.best_weights().items():
        assert torch.equal(tensor, best["model"][name])
    # Decoding the dev set with best.pt's weights gives the score the history recorded for them.
    trainer.model.load_state_dict(best["model"])
    assert trainer.validator.evaluate(trainer.model)["dev_bleu"] == best_record["dev_bleu"]


class StepClock:
    """A fake clock for time budgets: each training step takes ``seconds_per_step``, nothing else any time."""

    def __init__(self, seconds_per_step: float):
        self.now, self.seconds_per_step = 0.0, seconds_per_step

    def __call__(self) -> float:
        return self.now

    def on_event(self, kind: str, record: dict) -> None:
        if kind == "step":
            self.now += self.seconds_per_step


def test_time_budget_counts_the_time_of_all_resumed_runs(tmp_path):
    """``max_minutes`` is a budget for the whole training: a resumed run gets only what is left of it."""
    tokenizers = reverse_tokenizers()
    examples = reverse_examples(tokenizers, 100, seed=3)

    def run(max_minutes: float) -> tuple[Trainer, int]:
        clock = StepClock(6.0)  # a fresh process: its clock starts anywhere, here at 0
        trainer = make_trainer(tokenizers, examples, None, str(tmp_path), on_event=clock.on_event,
                               clock=clock, max_minutes=max_minutes, eval_every=0)
        resumed_at = trainer.state.step if trainer.resume() else 0
        state = trainer.fit(resume=False)
        assert state.stop_reason == "max_minutes"
        return trainer, state.step - resumed_at

    first, first_steps = run(0.5)
    assert first.state.elapsed_seconds == pytest.approx(30.0) and first_steps > 1
    again, again_steps = run(0.5)  # the budget is spent: nothing more to train
    assert again_steps == 0 and again.state.elapsed_seconds == pytest.approx(30.0)
    longer, longer_steps = run(1.0)  # 30 s are left of the larger budget, not 60
    assert longer.state.elapsed_seconds == pytest.approx(60.0)
    assert longer_steps == first_steps
    elapsed = [r["elapsed_seconds"] for r in longer.history]
    assert elapsed == sorted(elapsed) and elapsed[-1] == pytest.approx(60.0)


def test_config_requires_a_stop_condition():
    with pytest.raises(ValueError, match="max_steps, max_epochs or max_minutes"):
        TrainConfig()


def test_inverse_sqrt_and_plateau_schedules():
    schedule = LRSchedule(1.0, "inverse_sqrt", warmup_steps=100)
    assert schedule.lr(50) == pytest.approx(0.5)
    assert schedule.lr(100) == pytest.approx(1.0)
    assert schedule.lr(400) == pytest.approx(0.5)
    plateau = LRSchedule(1.0, "plateau", warmup_steps=0, plateau_factor=0.5, plateau_patience=2)
    for score in (10, 12, 11, 11):
        plateau.observe(score)
    assert plateau.lr(10) == pytest.approx(0.5)
    restored = LRSchedule(1.0, "plateau", warmup_steps=0)
    restored.load_state_dict(plateau.state_dict())
    assert restored.lr(10) == plateau.lr(10)


@pytest.mark.parametrize("kind", ["linear", "cosine"])
def test_budget_schedules_decay_to_zero_after_the_warm_up(kind):
    schedule = LRSchedule(1.0, kind, warmup_steps=10)
    assert schedule.lr(5, 0.0) == pytest.approx(0.5)  # warm-up as in every schedule
    assert schedule.lr(10, 0.0) == pytest.approx(1.0)
    assert schedule.lr(500, 0.5) == pytest.approx(0.5)  # halfway: half the rate (cosine too, by symmetry)
    expected = 0.75 if kind == "linear" else 0.5 * (1 + math.cos(math.pi * 0.25))
    assert schedule.lr(500, 0.25) == pytest.approx(expected)
    assert schedule.lr(900, 1.0) == 0.0  # no floor: zero at the budget's end
    assert schedule.lr(900, 1.5) == 0.0
    assert LRSchedule(1.0, "inverse_sqrt", warmup_steps=10).lr(10, 0.9) == 1.0  # others ignore the budget


def test_budget_spent_is_the_bound_furthest_along():
    state = TrainState(step=50, epoch=1, batch_in_epoch=25, elapsed_seconds=90.0)
    assert budget_spent(TrainConfig(max_steps=200), state, 100) == pytest.approx(0.25)
    assert budget_spent(TrainConfig(max_epochs=5), state, 100) == pytest.approx(0.25)
    assert budget_spent(TrainConfig(max_minutes=2), state, 100) == pytest.approx(0.75)
    assert budget_spent(TrainConfig(max_steps=200, max_epochs=2, max_minutes=10), state, 100) == \
        pytest.approx(0.625)  # the epochs: 1.25 of 2
    assert budget_spent(TrainConfig(max_steps=40), state, 100) == 1.0


def test_config_rejects_an_unknown_schedule():
    with pytest.raises(ValueError, match="schedule must be one of .*linear, cosine"):
        TrainConfig(max_steps=1, schedule="linear_decay")


@pytest.mark.parametrize("kind", ["linear", "cosine"])
def test_budget_decay_ends_at_zero_on_the_time_budget_and_resumes_exactly(tmp_path, one_cpu_thread, kind):
    """Under ``max_minutes`` the rate follows the share of the time spent: it is zero where the budget
    ends, and a run crashed and resumed takes the same rates (and weights) as an uninterrupted one."""
    tokenizers = reverse_tokenizers()
    examples = reverse_examples(tokenizers, 300, seed=3)
    budget_seconds, warmup = 30, 5  # one fake second a step, a 30-second budget

    def trainer_for(directory, crash_at=None):
        clock = StepClock(1.0)  # a fresh process: its clock starts at 0 whatever was spent before

        def crash(kind, record):
            if kind == "step" and record["step"] == crash_at:
                raise SimulatedCrash("killed")

        trainer = make_trainer(tokenizers, examples, None, str(directory), on_event=crash, clock=clock,
                               max_minutes=budget_seconds / 60, schedule=kind, warmup_steps=warmup,
                               eval_every=0, log_every=1)
        step = trainer.train_step

        def timed_step(batch):  # the second passes inside the step, as a real one's time does
            result = step(batch)
            clock.now += clock.seconds_per_step
            return result

        trainer.train_step = timed_step
        return trainer

    reference = trainer_for(tmp_path / "reference")
    state = reference.fit()
    assert state.stop_reason == "max_minutes" and state.step == budget_seconds
    rates = [r["lr"] for r in reference.history if "lr" in r]
    assert len(rates) == state.step
    for step, rate in enumerate(rates, start=1):  # step k's rate: k - 1 of the 30 seconds spent
        left = 1 - (step - 1) / budget_seconds
        decay = left if kind == "linear" else 0.5 * (1 - math.cos(math.pi * left))
        assert rate == pytest.approx(2e-3 * min(1.0, step / warmup) * decay), step
    assert rates[-1] > 0.0
    assert reference.schedule.lr(state.step + 1, budget_spent(reference.config, state, 1)) == 0.0

    with pytest.raises(SimulatedCrash):
        trainer_for(tmp_path / "crashed", crash_at=15).fit()
    assert load_checkpoint(f"{tmp_path / 'crashed'}/{LAST}")["state"]["step"] == 12  # checkpoint_every 6
    resumed = trainer_for(tmp_path / "crashed")
    resumed.fit()
    assert resumed.state.step == state.step
    assert [r["lr"] for r in resumed.history if "lr" in r] == rates
    for name, tensor in reference.model.state_dict().items():
        assert torch.equal(tensor, resumed.model.state_dict()[name]), name
