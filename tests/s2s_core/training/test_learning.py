from s2s_core.inference.translator import DecodeConfig, Translator


def test_reverse_task_is_learned_to_95_percent_exact_match(reverse_task):
    history = reverse_task.trainer.history
    translator = Translator(reverse_task.model, reverse_task.tokenizers)
    for beam in (1, 4):
        out = translator.translate(reverse_task.dev_src, DecodeConfig(beam_size=beam))
        exact = sum(t.text == ref for t, ref in zip(out, reverse_task.dev_tgt, strict=True))
        assert exact / len(out) >= 0.95, f"beam {beam}: {exact}/{len(out)} exact"
    losses = [r["loss"] for r in history if "loss" in r]
    assert losses[-1] < losses[0] / 5
    assert max(r["dev_bleu"] for r in history if "dev_bleu" in r) > 90
