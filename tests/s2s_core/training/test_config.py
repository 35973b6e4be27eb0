import pytest

from s2s_core.configs import dataclass_from_dict
from s2s_core.model.seq2seq import ModelConfig
from s2s_core.training.config import TrainConfig


def test_train_config_from_json_turns_lists_into_tuples():
    config = TrainConfig.from_dict({"max_steps": 3, "betas": [0.8, 0.9]})
    assert config == TrainConfig(max_steps=3, betas=(0.8, 0.9))
    assert TrainConfig.from_dict({"max_steps": 3}).betas == (0.9, 0.98)


def test_round_trips_through_a_plain_dict():
    model = ModelConfig(rnn_type="gru", attention="general", src_vocab_size=7, tgt_vocab_size=9)
    assert ModelConfig.from_dict(model.to_dict()) == model


@pytest.mark.parametrize(("cls", "message"), [
    (TrainConfig, r"unknown train config fields: \['bogus', 'lr_max'\]"),
    (ModelConfig, r"unknown model config fields: \['bogus', 'lr_max'\]"),
])
def test_unknown_fields_are_named_before_anything_else(cls, message):
    with pytest.raises(ValueError, match=message):
        cls.from_dict({"lr_max": 2, "bogus": 3})


def test_a_field_that_is_not_a_tuple_keeps_its_list():
    from dataclasses import dataclass

    @dataclass
    class Sample:
        names: list[str]
        pair: tuple[int, int] | None = None

    sample = dataclass_from_dict(Sample, {"names": ["a"], "pair": [1, 2]})
    assert sample.names == ["a"] and sample.pair == (1, 2)
