"""Inference precision: batch invariance in every precision, agreement with fp32, int8 leaves the
embeddings and the caller's model alone, float32 scores."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from s2s_core.inference.precision import (
    DEFAULT_PRECISION,
    INT8_SCHEME,
    PRECISIONS,
    autocast_dtype,
    check_precision,
    prepare_model,
    quantization,
)
from s2s_core.inference.translator import DecodeConfig, Translator
from s2s_core.model.seq2seq import build_model
from s2s_core.text.batching import pad_sequences
from s2s_core.text.tokenizer import EOS_ID
from tests.s2s_core.conftest import reverse_model_config
from tests.s2s_core.synthetic import reverse_pairs

CPU = torch.device("cpu")


def search(translator: Translator, sources: list[list[int]], beam: int):
    """The translator's own search (its model, its autocast) over one batch of source ids."""
    return translator._search(sources, DecodeConfig(beam_size=beam, n_best=beam))


@pytest.fixture(scope="module")
def translators(reverse_task) -> dict[str, Translator]:
    return {p: Translator(reverse_task.model, reverse_task.tokenizers, CPU, precision=p) for p in PRECISIONS}


@pytest.mark.parametrize("beam", [1, 4])
@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_hypotheses_do_not_depend_on_batch_composition_in_fp32_and_int8(reverse_task, translators,
                                                                        precision, beam):
    """A sentence alone and inside a batch of mixed lengths gives the same n-best tokens and scores."""
    translator = translators[precision]
    src, _ = reverse_pairs(16, seed=11, min_len=1, max_len=20)
    sources = [ids + [EOS_ID] for ids in reverse_task.tokenizers.src.encode(src)]
    together = search(translator, sources, beam)
    for i, source in enumerate(sources):
        alone = search(translator, [source], beam)[0]
        assert [h.tokens for h in alone] == [h.tokens for h in together[i]], (precision, i)
        for a, b in zip(alone, together[i], strict=True):
            assert a.score == pytest.approx(b.score, abs=1e-4)


@pytest.mark.parametrize("beam", [1, 4])
def test_bf16_hypotheses_depend_on_batch_composition_only_within_bfloat16_rounding(reverse_task, translators,
                                                                                     beam):
    """bf16 kernels are chosen by batch shape (oneDNN on AMX CPUs), and bfloat16 rounding makes their
    float32 round-off visible: a sentence alone and in a batch agree on its best hypothesis nearly
    always, with log-probs as close as bf16 is to fp32 (~0.02 per token: a logit of 16 has steps of
    0.125 in bfloat16). Near-ties may flip; on a real model ~5% of sentences do (README, Precision)."""
    translator = translators["bf16"]
    src, _ = reverse_pairs(40, seed=11, min_len=1, max_len=20)
    sources = [ids + [EOS_ID] for ids in reverse_task.tokenizers.src.encode(src)]
    together = [hyps[0] for hyps in search(translator, sources, beam)]
    alone = [search(translator, [source], beam)[0][0] for source in sources]
    same = [(a, b) for a, b in zip(alone, together, strict=True) if a.tokens == b.tokens]
    assert len(same) >= 0.9 * len(sources)
    assert max(abs(a.score - b.score) / (len(a.tokens) + 1) for a, b in same) < 0.05


@pytest.mark.parametrize("beam", [1, 4])
def test_int8_is_batch_invariant_even_without_margins(reverse_task, beam):
    """An untrained model has no margin between candidates: any row-to-row leak (a scale shared by
    the rows of a batch, quantized activations) would flip tokens. Weight-only int8 has none."""
    torch.manual_seed(3)
    model = build_model(reverse_model_config(reverse_task.tokenizers, dropout=0.0)).eval()
    src, _ = reverse_pairs(12, seed=13, min_len=1, max_len=20)
    sources = [ids + [EOS_ID] for ids in reverse_task.tokenizers.src.encode(src)]
    translator = Translator(model, reverse_task.tokenizers, CPU, precision="int8")
    together = search(translator, sources, beam)
    for i, source in enumerate(sources):
        alone = search(translator, [source], beam)[0]
        assert [h.tokens for h in alone] == [h.tokens for h in together[i]], i
        for a, b in zip(alone, together[i], strict=True):
            assert a.score == pytest.approx(b.score, abs=1e-4)


@pytest.mark.parametrize("beam", [1, 4])
@pytest.mark.parametrize("precision", ["bf16", "int8"])
def test_reduced_precision_agrees_with_fp32_on_a_trained_model(reverse_task, translators, precision, beam):
    config = DecodeConfig(beam_size=beam)
    sources = reverse_task.dev_src[:120]
    reference = translators["fp32"].translate(sources, config)
    reduced = translators[precision].translate(sources, config)
    same = sum(a.text == b.text for a, b in zip(reference, reduced, strict=True)) / len(sources)
    assert same >= 0.95, f"{precision}: only {same:.1%} of the sentences match fp32"
    correct = sum(t.text == ref for t, ref in zip(reduced, reverse_task.dev_tgt, strict=False)) / len(sources)
    assert correct >= 0.8, f"{precision} reverses only {correct:.1%} of the dev sentences"
    # Scores are mean log-probs of the same tokens: close to fp32's where the tokens agree.
    gaps = [abs(a.score - b.score) for a, b in zip(reference, reduced, strict=True) if a.text == b.text]
    assert max(gaps) < 0.05


def test_int8_quantizes_a_copy_and_keeps_the_embeddings_float(reverse_task):
    model = reverse_task.model
    assert model.generator.weight is model.decoder.embedding.weight  # tied in the trained model
    before = {k: v.clone() for k, v in model.state_dict().items()}
    quantized = prepare_model(model, "int8")
    assert quantized is not model
    # The caller's model is untouched: still float, still tied, same values.
    assert model.generator.weight is model.decoder.embedding.weight
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    # The copy: every linear layer's weight is int8; the embeddings keep float tables, untied.
    linears = [m for m in quantized.modules() if isinstance(m, nn.Linear)]
    assert linears and all(type(m.weight.data) is not torch.Tensor for m in linears)
    assert all(m.weight.dequantize().dtype == torch.float32 for m in linears)
    embedding = quantized.decoder.embedding.weight
    assert type(embedding.data) is torch.Tensor and embedding.dtype == torch.float32
    assert torch.equal(embedding, model.decoder.embedding.weight)
    # The untied output layer still holds the embedding's values, up to int8 rounding per row.
    generator = quantized.generator.weight.dequantize()
    step = embedding.abs().amax(dim=1, keepdim=True) / 127
    assert bool(((generator - embedding).abs() <= step * 0.51 + 1e-7).all())


def test_fp32_and_bf16_decode_the_model_itself(reverse_task):
    for precision in ("fp32", "bf16"):
        assert prepare_model(reverse_task.model, precision) is reverse_task.model


def test_log_probs_and_scores_stay_float32_under_bf16(reverse_task, translators):
    model = reverse_task.model
    src, lengths = pad_sequences([[5, 6, 7, EOS_ID]])
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        enc = model.encode(src, lengths)
        state = model.init_state(enc)
        log_probs, _, _ = model.decode_step(torch.full((1,), 2), enc, state)
    assert log_probs.dtype == torch.float32
    assert float(log_probs.exp().sum()) == pytest.approx(1.0, abs=1e-4)
    (hyp,) = search(translators["bf16"], [[5, 6, 7, EOS_ID]], 1)[0]
    assert isinstance(hyp.score, float) and hyp.coverage.dtype == torch.float32


def test_what_each_precision_autocasts_to_and_quantizes():
    cuda = torch.device("cuda")  # only compared, never used
    assert autocast_dtype("fp32", CPU, "auto") is None and autocast_dtype("bf16", CPU) is torch.bfloat16
    assert autocast_dtype("int8", CPU) is None and autocast_dtype("bf16", cuda, "fp16") is torch.bfloat16
    # fp32 leaves CUDA to the older amp setting, as before precision existed; int8 supersedes it.
    assert autocast_dtype("fp32", cuda, "none") is None
    assert autocast_dtype("fp32", cuda, "fp16") is torch.float16
    assert autocast_dtype("int8", cuda, "auto") is None
    assert [quantization(p) for p in PRECISIONS] == ["none", "none", INT8_SCHEME]
    assert DEFAULT_PRECISION == "fp32"
    with pytest.raises(ValueError, match="precision must be one of"):
        check_precision("fp16")
    with pytest.raises(ValueError, match="precision must be one of"):
        Translator(nn.Linear(2, 2), None, CPU, precision="int4")  # type: ignore[arg-type]


def test_the_cli_and_the_config_offer_exactly_these_precisions():
    from typing import get_args

    from flows import cli
    from tasks.config import Precision

    assert cli.PRECISIONS == PRECISIONS == get_args(Precision)
