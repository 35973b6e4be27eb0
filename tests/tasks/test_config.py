from pathlib import Path

import pytest

from tasks.config import ConfigError, PipelineConfig, TranslateConfig, load_config, with_overrides

ROOT = Path(__file__).resolve().parents[2]


def test_shipped_configs_validate():
    for path in (ROOT / "configs").glob("*.yaml"):
        config = load_config(path)
        assert config.name and config.data.train


def test_overrides_are_typed_and_nested():
    config = load_config(ROOT / "configs/tiny.yaml",
                         ["train.max_steps=7", "model.attention=cosine", "train.betas=[0.8, 0.9]",
                          "data.prepare.dev_size=0.1", "evaluate.decode.beam_size=2"], store="s3://b/p/")
    assert config.train.max_steps == 7 and config.train.betas == (0.8, 0.9)
    assert config.model.attention == "cosine" and config.data.prepare.dev_size == 0.1
    assert config.evaluate.decode.beam_size == 2 and config.store == "s3://b/p"


@pytest.mark.parametrize(("override", "message"), [
    ("train.max_tokens=lots", r"train\.max_tokens: Input should be a valid integer"),
    ("model.attention=softmax", r"model: attention must be one of"),
    ("model.colour=red", r"model\.colour: Unexpected keyword argument"),
    ("name=bad name!", r"name: String should match pattern"),
    ("tokenizer.model_type=wordpiece", r"tokenizer: tokenizer\.model_type must be 'unigram' or 'bpe'"),
    ("train.max_steps=null", r"train: set at least one of max_steps"),
    ("evaluate.decode.beam_size=0", r"evaluate\.decode: beam_size must be ≥ 1"),
    ("colour=red", r"colour: Extra inputs are not permitted"),
])
def test_bad_values_fail_naming_the_field(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config(ROOT / "configs/tiny.yaml", [override])


def test_bad_override_syntax_and_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="--set expects key=value"):
        load_config(ROOT / "configs/tiny.yaml", ["train.max_steps"])
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.yaml")
    (tmp_path / "bad.yaml").write_text("name: [unclosed")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(tmp_path / "bad.yaml")


def test_run_id_is_stable_for_a_config_and_changes_with_it():
    a = load_config(ROOT / "configs/tiny.yaml")
    b = load_config(ROOT / "configs/tiny.yaml", store="/elsewhere")
    c = load_config(ROOT / "configs/tiny.yaml", ["train.max_steps=61"])
    assert a.resolved_run_id == b.resolved_run_id != c.resolved_run_id
    assert a.resolved_run_id.startswith("tiny-") and a.resolved_version == a.resolved_run_id


def test_flow_parameter_schema_exposes_sections():
    schema = PipelineConfig.model_json_schema()
    assert {"name", "store", "data", "model", "train", "tokenizer", "evaluate"} <= set(schema["properties"])
    assert schema["required"] == ["name", "data"]


def test_promotion_settings_are_typed_and_do_not_change_the_run_id():
    a = load_config(ROOT / "configs/tiny.yaml")
    b = load_config(ROOT / "configs/tiny.yaml", ["promotion.alpha=0.01", "promotion.min_bleu_gain=1"])
    assert a.promotion.alpha == 0.05 and b.promotion.alpha == 0.01
    assert a.resolved_run_id == b.resolved_run_id  # thresholds judge a model, they do not shape it


def test_overrides_change_one_field_of_a_given_config():
    config = load_config(ROOT / "configs/tiny.yaml")
    changed = with_overrides(config, ["train.max_minutes=5", "evaluate.decode.beam_size=2", "data.dev=null"])
    assert isinstance(changed, PipelineConfig) and changed.train.max_minutes == 5
    assert changed.evaluate.decode.beam_size == 2 and changed.data.dev is None
    rest = {"train", "evaluate", "data"}
    assert changed.model_dump(exclude=rest) == config.model_dump(exclude=rest)
    assert with_overrides(config, None) is config
    translate = TranslateConfig(model="m", input="i", output="o")
    assert with_overrides(translate, ["chunk_rows=10"]).chunk_rows == 10
    with pytest.raises(ConfigError, match=r"invalid config after overrides: train\.max_tokens"):
        with_overrides(config, ["train.max_tokens=lots"])


def test_evaluation_precision_is_typed_and_the_default_leaves_run_ids_as_they_were():
    import hashlib
    import json

    config = load_config(ROOT / "configs/tiny.yaml")
    assert config.evaluate.precision == "fp32"
    # The run id of a config that does not set it is the one it had before the option existed.
    payload = config.model_dump(mode="json", exclude={"store", "storage_options", "run_id", "version",
                                                      "promotion"})
    del payload["evaluate"]["precision"]
    before = hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:10]
    assert config.resolved_run_id == f"tiny-{before}"
    assert load_config(ROOT / "configs/tiny.yaml", ["evaluate.precision=bf16"]).resolved_run_id != \
        config.resolved_run_id  # another evaluation, another run
    with pytest.raises(ConfigError, match=r"evaluate\.precision: Input should be 'fp32', 'bf16' or 'int8'"):
        load_config(ROOT / "configs/tiny.yaml", ["evaluate.precision=fp16"])


def test_translate_config_takes_a_precision_beside_the_older_amp():
    config = TranslateConfig(model="m", input="i", output="o", precision="int8")
    assert config.precision == "int8" and config.amp == "auto"
    assert TranslateConfig(model="m", input="i", output="o").precision == "fp32"
    schema = TranslateConfig.model_json_schema()["properties"]["precision"]
    assert schema["enum"] == ["fp32", "bf16", "int8"] and schema["default"] == "fp32"
