"""Credentials in storage options are SecretStr from validation on, masked in every dump, plain in Store."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest
import yaml
from pydantic import SecretStr

from flows.cli import _storage_options
from s2s_core.storage import Store, reveal
from tasks.config import ConfigError, TranslateConfig, load_config, with_overrides
from tasks.secrets import MASK, is_secret_name, validate_storage_options
from tasks.train_worker import STORAGE_OPTIONS_ENV, TrainingJob

ROOT = Path(__file__).resolve().parents[2]
TINY = ROOT / "configs/tiny.yaml"


@pytest.fixture
def secret() -> str:
    return uuid.uuid4().hex


@pytest.mark.parametrize("name", ["key", "secret", "token", "password", "session_token", "aws_access_key_id",
                                  "aws_secret_access_key", "aws_session_token", "client_secret", "sas_token",
                                  "account_key", "connection_string", "sse_customer_key", "Password"])
def test_credential_names_are_secret(name):
    assert is_secret_name(name)


@pytest.mark.parametrize("name", ["endpoint_url", "anon", "region_name", "client_kwargs", "use_ssl",
                                  "default_block_size", "requester_pays", "version_aware"])
def test_settings_are_not_secret(name):
    assert not is_secret_name(name)


def test_secret_values_are_wrapped_at_any_depth_and_marked_ones_too(secret):
    options = validate_storage_options({
        "endpoint_url": "http://127.0.0.1:9000", "anon": False, "key": "id", "secret": secret,
        "client_kwargs": {"region_name": "eu", "aws_session_token": secret},
        "secret:api_id": secret, "token": {"refresh": secret, "expires": None}, "password": 1234})
    assert options["endpoint_url"] == "http://127.0.0.1:9000" and options["anon"] is False
    assert options["client_kwargs"]["region_name"] == "eu"
    for value in (options["key"], options["secret"], options["client_kwargs"]["aws_session_token"],
                  options["api_id"], options["token"]["refresh"], options["password"]):
        assert isinstance(value, SecretStr)
    assert options["token"]["expires"] is None and "secret:api_id" not in options
    # A YAML password of digits is still a string credential.
    assert reveal(options)["password"] == "1234" and reveal(options)["api_id"] == secret
    assert secret not in repr(options) and secret not in str(options)


def test_configs_dump_the_mask_and_plain_options_unchanged(secret):
    opts = {"endpoint_url": "http://127.0.0.1:9000", "key": "id", "secret": secret}
    config = load_config(TINY, [f"storage_options.{k}={v}" for k, v in opts.items()], store="s3://b/p")
    dumped = config.model_dump(mode="json")
    assert dumped["storage_options"] == {"endpoint_url": "http://127.0.0.1:9000", "key": MASK, "secret": MASK}
    assert secret not in yaml.safe_dump(dumped) and secret not in config.model_dump_json()
    assert config.storage_options["secret"].get_secret_value() == secret
    translate = TranslateConfig(model="m", input="i", output="o", storage_options=opts)
    assert secret not in translate.model_dump_json() and secret not in repr(translate)
    # Options that skipped validation are masked in the dump all the same.
    copied = config.model_copy(update={"storage_options": {"secret": secret, "secret:api_id": secret}})
    assert copied.model_dump(mode="json")["storage_options"] == {"secret": MASK, "api_id": MASK}
    # Options without credentials are what they always were.
    plain = TranslateConfig(model="m", input="i", output="o", storage_options={"endpoint_url": "http://e"})
    assert plain.model_dump(mode="json")["storage_options"] == {"endpoint_url": "http://e"}


def test_the_mask_is_refused_as_a_credential():
    with pytest.raises(ValueError, match="is the mask"):
        validate_storage_options({"secret": MASK})


def test_overrides_keep_the_credentials(secret):
    config = load_config(TINY, [f"storage_options.secret={secret}", "storage_options.key=0123"])
    assert config.storage_options["key"].get_secret_value() == "0123"  # taken as typed, not YAML
    changed = with_overrides(config, ["train.max_steps=3", "storage_options.token=0042"])
    assert changed.train.max_steps == 3
    assert reveal(changed.storage_options) == {"secret": secret, "key": "0123", "token": "0042"}


def test_storage_option_flags_take_credentials_literally_and_never_echo_them(secret):
    options = _storage_options(["endpoint_url=http://e", f"key=[{secret}", f"secret={secret}: x"])
    assert reveal(options) == {"endpoint_url": "http://e", "key": f"[{secret}", "secret": f"{secret}: x"}
    with pytest.raises(ConfigError) as caught:
        _storage_options([f"={secret}"])
    assert secret not in str(caught.value)
    with pytest.raises(ConfigError, match="is the mask") as caught:
        _storage_options([f"secret={MASK}"])


def test_store_builds_its_filesystem_from_the_revealed_values(tmp_path, secret):
    store = Store(str(tmp_path), validate_storage_options({"secret": secret}))
    assert store.storage_options == {"secret": secret} and secret not in repr(store)


def test_flow_parameters_as_prefect_serialises_them_hold_the_mask(secret):
    from flows.evaluate import evaluate_flow
    from flows.train import train_flow

    config = load_config(TINY, [f"storage_options.secret={secret}"])
    serialised = train_flow.serialize_parameters({"config": config})
    assert secret not in json.dumps(serialised) and serialised["config"]["storage_options"]["secret"] == MASK
    options = _storage_options([f"secret={secret}"])
    assert secret not in json.dumps(evaluate_flow.serialize_parameters({"storage_options": options}))


def test_the_torchrun_job_file_holds_no_credentials(secret):
    options = validate_storage_options({"secret": secret, "anon": False})
    job = TrainingJob(model={}, train={}, tokenizer_url="t", train_url="a", dev_url="d", checkpoint_dir="c",
                      logs_dir="l", storage_options=options)
    text = job.to_json()
    assert secret not in text
    environment = job.storage_environment()
    assert TrainingJob.from_json(text, environment).storage_options == {"secret": secret, "anon": False}
    assert set(environment) == {STORAGE_OPTIONS_ENV}


def test_a_prefect_secret_block_supplies_the_credentials(prefect_harness, secret):
    from prefect.blocks.system import Secret

    name = f"s2s-test-{uuid.uuid4().hex[:8]}"
    Secret(value={"key": "id", "secret": secret, "client_kwargs": {"region_name": "eu"}}).save(name)
    options = validate_storage_options({"secret_block": name, "endpoint_url": "http://e", "key": "given"})
    assert reveal(options) == {"key": "given", "secret": secret, "client_kwargs": {"region_name": "eu"},
                               "endpoint_url": "http://e"}  # what is given wins over the block
    assert isinstance(options["secret"], SecretStr) and "secret_block" not in options
    with pytest.raises(ConfigError, match="Secret block 'no-such-block' cannot be loaded"):
        _storage_options(["secret_block=no-such-block"])
