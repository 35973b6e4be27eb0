"""Warm-started training (``train.init_from``): from the serving champion or a package URL."""

from __future__ import annotations

import json

import pytest
from safetensors.torch import load_file

from s2s_core import storage
from s2s_core.registry.registry import Registry
from s2s_core.training.warm_start import WarmStartError
from tasks.layout import RunLayout
from tasks.warm_start import resolve_warm_start
from tests.flows.conftest import tiny_config
from tests.flows.test_retrain_flow import RETRAIN

# lr 0 (the linear schedule has no floor) and no weight decay: the optimizer moves nothing, so the
# package holds the weights the run began from.
FROZEN = ["train.max_steps=2", "train.lr=0", "train.schedule=linear", "train.eval_every=0",
          "evaluate.heatmaps=0", "evaluate.n_bootstrap=50"]


@pytest.fixture(scope="module")
def champion_store(prefect_harness, tmp_path_factory):
    from flows.retrain import retrain_flow

    store = str(tmp_path_factory.mktemp("store"))
    first = retrain_flow(tiny_config(store, RETRAIN))
    assert first["decision"] == "promoted"
    return store, first["model"]


def weights(package: str) -> dict:
    return load_file(storage.join(package, "model.safetensors"))


def test_warm_start_from_the_champion_begins_with_its_weights_and_tokenizer(champion_store):
    from flows.train import train_flow

    store, champion = champion_store
    # Another tokenizer section: ignored, the vocabulary is the champion's.
    result = train_flow(tiny_config(store, [*FROZEN, "train.init_from=champion", "tokenizer.vocab_size=300"],
                                    run_id="warm"))
    assert result["training"]["warm_start"] == champion
    started, served = weights(result["model"]), weights(champion)
    assert started.keys() == served.keys()
    assert all((started[k] == served[k]).all() for k in served)
    assert storage.read_bytes(f"{result['model']}/spm.model") == storage.read_bytes(f"{champion}/spm.model")
    package = json.loads(storage.read_text(f"{result['model']}/config.json"))
    assert package["warm_start"] == champion and package["tokenizer"]["config"]["vocab_size"] == 500
    record = json.loads(storage.read_text(RunLayout(store, "warm").warm_start))
    assert record["requested"] == "champion" and record["package"] == champion


def test_a_package_url_of_another_shape_is_refused_before_any_work(champion_store):
    from flows.train import train_flow

    store, champion = champion_store
    with pytest.raises(WarmStartError, match=r"emb_dim: 32 in the package, 48 in the config"):
        train_flow(tiny_config(store, [*FROZEN, f"train.init_from={champion}", "model.emb_dim=48"],
                               run_id="misfit"))
    run = RunLayout(store, "misfit")
    assert not storage.exists(run.split("train")) and not storage.exists(run.checkpoints)


def test_a_run_keeps_the_package_it_began_with(champion_store, tmp_path):
    store, champion = champion_store
    config = tiny_config(store, ["train.init_from=champion"], run_id="pinned")
    layout = RunLayout(store, "pinned")
    assert resolve_warm_start.fn(config, layout) == champion
    # A later champion does not change what a resumed run starts from.
    registry = Registry(store, "tiny")
    storage.write_text(layout.warm_start, json.dumps({"requested": "champion", "package": "elsewhere"}))
    assert resolve_warm_start.fn(config, layout) == "elsewhere"
    assert registry.champion().model == champion


def test_champion_without_one_trains_from_scratch(prefect_harness, tmp_path):
    config = tiny_config(str(tmp_path), ["train.init_from=champion"], run_id="first")
    layout = RunLayout(str(tmp_path), "first")
    assert resolve_warm_start.fn(config, layout) is None
    assert json.loads(storage.read_text(layout.warm_start))["package"] is None


def test_a_missing_package_is_a_clear_error(tmp_path):
    config = tiny_config(str(tmp_path), [f"train.init_from={tmp_path}/nothing"], run_id="missing")
    with pytest.raises(Exception, match="no model package at"):
        resolve_warm_start.fn(config, RunLayout(str(tmp_path), "missing"))
