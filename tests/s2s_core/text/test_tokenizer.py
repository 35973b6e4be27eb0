import pytest

from s2s_core.text.tokenizer import (
    BOS_ID,
    EOS_ID,
    PAD_ID,
    UNK_ID,
    SubwordModel,
    TokenizerConfig,
    clean_text,
    train_tokenizers,
)

SRC = ["el perro come pan", "la casa es grande", "el gato duerme en la casa"] * 50
TGT = ["the dog eats bread", "the house is big", "the cat sleeps in the house"] * 50


@pytest.mark.parametrize("model_type", ["unigram", "bpe"])
def test_joint_model_round_trips_and_has_fixed_special_ids(model_type):
    tok = train_tokenizers(SRC, TGT, TokenizerConfig(model_type=model_type, vocab_size=60))
    assert tok.joint and tok.src is tok.tgt
    sp = tok.src._sp
    assert (sp.pad_id(), sp.unk_id(), sp.bos_id(), sp.eos_id()) == (PAD_ID, UNK_ID, BOS_ID, EOS_ID)
    ids = tok.src.encode(["el perro come pan", ""])
    assert ids[1] == [] and min(ids[0]) > EOS_ID
    assert tok.src.decode(ids) == ["el perro come pan", ""]
    assert tok.tgt.decode([[BOS_ID, *tok.tgt.encode(["the dog"])[0], EOS_ID, PAD_ID]]) == ["the dog"]


def test_per_side_models():
    tok = train_tokenizers(SRC, TGT, TokenizerConfig(vocab_size=40, joint=False))
    assert not tok.joint
    assert tok.describe()["joint"] is False
    assert tok.tgt.decode(tok.tgt.encode(["the house is big"])) == ["the house is big"]


def test_training_is_deterministic():
    config = TokenizerConfig(vocab_size=50)
    assert train_tokenizers(SRC, TGT, config).src.model_proto == \
        train_tokenizers(SRC, TGT, config).src.model_proto


def test_unknown_characters_map_to_unk():
    tok = train_tokenizers(SRC, TGT, TokenizerConfig(vocab_size=50))
    assert UNK_ID in tok.src.encode(["el 中 perro"])[0]


def test_clean_text_removes_control_characters_and_normalizes():
    assert clean_text("a\x00b\tc\u200b\nd  ﬁ") == "a b c d fi"
    assert clean_text(None) == "" and clean_text("  \t ") == ""


def test_clean_text_can_keep_line_breaks():
    assert clean_text("a\x00b\r\n\tc\u200b \u00a0 d\n", keep_line_breaks=True) == "a b\n\tc d\n"
    assert clean_text(" \n ", keep_line_breaks=True) == "\n"


def test_model_with_other_special_ids_is_rejected():
    import io

    import sentencepiece as spm

    buffer = io.BytesIO()
    spm.SentencePieceTrainer.train(sentence_iterator=iter(SRC), model_writer=buffer, vocab_size=30,
                                   minloglevel=2, hard_vocab_limit=False)
    with pytest.raises(ValueError, match="special ids"):
        SubwordModel(buffer.getvalue())


def test_bad_config_is_rejected():
    with pytest.raises(ValueError, match="model_type"):
        TokenizerConfig(model_type="wordpiece")
