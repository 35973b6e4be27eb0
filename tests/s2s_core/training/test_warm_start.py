import pytest
import torch

from s2s_core.inference.package import save_package
from s2s_core.model.seq2seq import build_model
from s2s_core.training.warm_start import WarmStartError, load_warm_start, shape_differences
from tests.s2s_core.conftest import reverse_model_config
from tests.s2s_core.synthetic import reverse_tokenizers


@pytest.fixture(scope="module")
def package(tmp_path_factory):
    tokenizers = reverse_tokenizers()
    torch.manual_seed(1)
    model = build_model(reverse_model_config(tokenizers))
    url = str(tmp_path_factory.mktemp("package") / "v1")
    save_package(url, model, tokenizers)
    return url, model, tokenizers


def test_warm_start_copies_every_weight_of_the_package(package):
    url, source, tokenizers = package
    torch.manual_seed(2)  # other initial weights
    model = build_model(reverse_model_config(tokenizers, dropout=0.3, max_src_len=32))  # free fields
    assert not torch.equal(model.state_dict()["encoder.embedding.weight"],
                           source.state_dict()["encoder.embedding.weight"])
    load_warm_start(model, url)
    for name, tensor in source.state_dict().items():
        assert torch.equal(tensor, model.state_dict()[name]), name
    assert model.config.dropout == 0.3  # the run's own regularisation stays


def test_a_model_of_another_shape_is_refused_naming_the_fields(package):
    url, _, tokenizers = package
    model = build_model(reverse_model_config(tokenizers, emb_dim=48, attention="additive"))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(WarmStartError, match=r"emb_dim: 32 in the package, 48 in the config") as err:
        load_warm_start(model, url)
    assert "attention: 'general' in the package, 'additive' in the config" in str(err.value)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # untouched


def test_only_architecture_fields_count_as_differences(package):
    _, source, tokenizers = package
    config = source.config.to_dict()
    assert shape_differences(config, reverse_model_config(tokenizers, dropout=0.5, max_tgt_len=20)) == []
    assert shape_differences(config, reverse_model_config(tokenizers, rnn_type="gru")) == \
        ["rnn_type: 'lstm' in the package, 'gru' in the config"]
