import json

import pytest
import torch

from s2s_core.inference.package import PackageError, load_package, save_package
from s2s_core.inference.translator import DecodeConfig, Translator
from s2s_core.model.seq2seq import build_model
from tests.s2s_core.conftest import reverse_model_config
from tests.s2s_core.synthetic import reverse_pairs


@pytest.fixture()
def package_dir(reverse_task, tmp_path):
    url = str(tmp_path / "model")
    save_package(url, reverse_task.model, reverse_task.tokenizers,
                 metrics={"history": reverse_task.trainer.history})
    return url


def test_round_trip_gives_identical_translations(reverse_task, package_dir):
    src, _ = reverse_pairs(40, seed=21)
    loaded = load_package(package_dir)
    for config in (DecodeConfig(), DecodeConfig(beam_size=3, n_best=2)):
        before = Translator(reverse_task.model, reverse_task.tokenizers).translate(src, config)
        after = loaded.translator(device="cpu").translate(src, config)
        assert [(t.text, t.score, t.nbest) for t in before] == [(t.text, t.score, t.nbest) for t in after]
    assert loaded.metrics["history"][-1]["step"] == reverse_task.trainer.history[-1]["step"]
    assert loaded.config["tokenizer"]["joint"] is True


def test_package_stores_weights_as_safetensors_not_pickle(package_dir, tmp_path):
    files = {p.name for p in (tmp_path / "model").iterdir()}
    assert files == {"config.json", "model.safetensors", "metrics.json", "spm.model"}
    header_len = int.from_bytes((tmp_path / "model" / "model.safetensors").read_bytes()[:8], "little")
    header = json.loads((tmp_path / "model" / "model.safetensors").read_bytes()[8 : 8 + header_len])
    assert "encoder.rnn.weight_ih_l0" in header


def test_corrupt_weights_are_detected(package_dir, tmp_path):
    weights = tmp_path / "model" / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-100] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(PackageError, match="corrupt: model.safetensors does not match its checksum"):
        load_package(package_dir)


def test_truncated_config_is_detected(package_dir, tmp_path):
    config = tmp_path / "model" / "config.json"
    config.write_text(config.read_text()[:50])
    with pytest.raises(PackageError, match="config.json is not valid JSON"):
        load_package(package_dir)


def test_missing_file_is_detected(package_dir, tmp_path):
    (tmp_path / "model" / "spm.model").unlink()
    with pytest.raises(PackageError, match="incomplete: spm.model is missing"):
        load_package(package_dir)


def test_missing_package_is_reported(tmp_path):
    with pytest.raises(PackageError, match="no model package at .*config.json not found"):
        load_package(str(tmp_path / "nowhere"))


def test_weights_of_another_architecture_are_rejected(reverse_task, tmp_path):
    other = build_model(reverse_model_config(reverse_task.tokenizers, dec_hidden=64))
    url = str(tmp_path / "other")
    save_package(url, other, reverse_task.tokenizers)
    config_path = tmp_path / "other" / "config.json"
    config = json.loads(config_path.read_text())
    config["model"]["dec_hidden"] = 128  # config now disagrees with the stored tensors
    config_path.write_text(json.dumps(config))
    with pytest.raises(PackageError, match="has shape .* the config implies"):
        load_package(url)


def test_unsupported_format_version_is_rejected(package_dir, tmp_path):
    config_path = tmp_path / "model" / "config.json"
    config = json.loads(config_path.read_text())
    config["format"] = 99
    config_path.write_text(json.dumps(config))
    with pytest.raises(PackageError, match="unsupported package format 99"):
        load_package(package_dir)


def test_tied_and_shared_embeddings_survive_the_round_trip(package_dir):
    model = load_package(package_dir).model
    assert model.generator.weight is model.decoder.embedding.weight
    assert model.decoder.embedding is model.encoder.embedding
    assert not torch.all(model.generator.weight == 0)


def test_the_package_records_its_source_language_and_splits_long_inputs_by_its_rules(reverse_task, tmp_path):
    text = "Vino la Dra. Pérez. Se fue."  # English rules end a sentence after "Dra."
    spanish, older = str(tmp_path / "es"), str(tmp_path / "older")
    save_package(spanish, reverse_task.model, reverse_task.tokenizers, extra={"source_language": "es"})
    save_package(older, reverse_task.model, reverse_task.tokenizers)  # written before it was recorded

    def sentences(translator: Translator) -> list[str]:
        return [text[a:b] for a, b in translator.splitter.sentences(text, 0, len(text))]

    assert sentences(load_package(spanish).translator(device="cpu")) == ["Vino la Dra. Pérez.", "Se fue."]
    assert sentences(load_package(older).translator(device="cpu")) == ["Vino la Dra.", "Pérez.", "Se fue."]
    assert sentences(load_package(spanish).translator(device="cpu", language="en")) == [
        "Vino la Dra.", "Pérez.", "Se fue."]  # an explicit language wins
