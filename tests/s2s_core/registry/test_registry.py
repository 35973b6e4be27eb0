"""The model registry on a local store and on a loopback S3 server: CAS promotions, crashes, history."""

from __future__ import annotations

import json
import threading
import uuid

import pytest
import torch

from s2s_core.inference.package import PackageError, load_package, save_package
from s2s_core.model.seq2seq import build_model
from s2s_core.registry.registry import Champion, PromotionConflict, Registry, _now, resolve_model
from tests.s2s_core.conftest import reverse_model_config
from tests.s2s_core.synthetic import reverse_tokenizers

NAME = "rev"


@pytest.fixture(scope="module")
def tokenizers():
    return reverse_tokenizers()


@pytest.fixture(params=["local", "s3"])
def registry(request, tmp_path) -> Registry:
    """An empty registry on a local directory or on the loopback S3 server."""
    if request.param == "local":
        return Registry(str(tmp_path / "store"), NAME)
    s3 = request.getfixturevalue("s3_server")
    import s3fs

    bucket = f"reg-{uuid.uuid4().hex[:12]}"
    s3fs.S3FileSystem(**s3["storage_options"]).mkdir(bucket)
    return Registry(f"s3://{bucket}/store", NAME, s3["storage_options"])


def add_package(registry: Registry, tokenizers, version: str, seed: int = 0) -> str:
    """Write a complete (untrained) package at models/<name>/<version>/, as training does."""
    torch.manual_seed(seed)
    model = build_model(reverse_model_config(tokenizers, enc_hidden=8, dec_hidden=8, emb_dim=8))
    return save_package(registry.package_url(version), model, tokenizers,
                        storage_options=registry.storage_options, extra={"name": NAME, "version": version})


def current(registry: Registry) -> dict:
    return registry.folder.read_json("current")


def test_first_promotion_makes_the_champion_and_records_it(registry, tokenizers):
    assert registry.champion() is None and registry.history() == []
    url = add_package(registry, tokenizers, "v1")
    record = registry.promote("v1", None, "first model", {"scores": {"test": {"bleu": 9.0}}}, run_id="r1")
    champion = registry.champion()
    assert (champion.seq, champion.version, champion.model) == (1, "v1", url)
    assert current(registry) == record == champion.record
    assert record["previous"] is None and record["reason"] == "first model"
    assert load_package(champion.model, storage_options=registry.storage_options).config["version"] == "v1"
    assert resolve_model(registry.url, registry.storage_options) == url  # "whatever is serving"
    assert resolve_model(url, registry.storage_options) == url


def test_two_promoters_from_the_same_champion_exactly_one_wins(registry, tokenizers):
    add_package(registry, tokenizers, "v1")
    registry.promote("v1", None, "first", run_id="r1")
    for round_ in range(3):
        base = registry.champion()
        versions = [f"a{round_}", f"b{round_}"]
        for v in versions:
            add_package(registry, tokenizers, v)
        start, outcomes = threading.Barrier(2), {}

        def promote(version: str, base=base, start=start, outcomes=outcomes) -> None:
            # Separate Registry objects, as two flow runs would have.
            other = Registry(registry.store_url, NAME, registry.storage_options)
            start.wait()
            try:
                outcomes[version] = other.promote(version, base, "better", run_id=f"run-{version}")
            except PromotionConflict as err:
                outcomes[version] = err

        threads = [threading.Thread(target=promote, args=(v,)) for v in versions]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        winners = [v for v in versions if isinstance(outcomes[v], dict)]
        losers = [v for v in versions if isinstance(outcomes[v], PromotionConflict)]
        assert len(winners) == 1 and len(losers) == 1, outcomes
        assert f"lost the race: promotion {base.seq + 1} went to {winners[0]}" in str(outcomes[losers[0]])
        champion = registry.champion()
        assert (champion.seq, champion.version) == (base.seq + 1, winners[0])
        assert champion.record["previous"] == {"seq": base.seq, "version": base.version}
    assert [r["seq"] for r in registry.history()] == [1, 2, 3, 4]


def test_a_decision_based_on_a_stale_champion_cannot_promote(registry, tokenizers):
    for v in ("v1", "v2", "v3"):
        add_package(registry, tokenizers, v)
    registry.promote("v1", None, "first", run_id="r1")
    stale = registry.champion()
    registry.promote("v2", stale, "better", run_id="r2")
    with pytest.raises(PromotionConflict, match="promotion 2 went to v2"):
        registry.promote("v3", stale, "better", run_id="r3")
    assert registry.champion().version == "v2"


def test_retrying_a_promotion_of_the_same_run_is_idempotent(registry, tokenizers):
    add_package(registry, tokenizers, "v1")
    first = registry.promote("v1", None, "first", run_id="r1")
    again = registry.promote("v1", None, "first", run_id="r1")  # e.g. a task retry after a crash
    assert again == first and len(registry.history()) == 1
    with pytest.raises(PromotionConflict):  # the same version from another run is a different decision
        registry.promote("v1", None, "first", run_id="r9")


def test_a_crash_before_the_pointer_moves_leaves_the_old_champion(registry, tokenizers):
    add_package(registry, tokenizers, "v1")
    registry.promote("v1", None, "first", run_id="r1")
    before = current(registry)
    # Crash after the package is written, before promotion: nothing points at it.
    add_package(registry, tokenizers, "v2")
    assert registry.champion().version == "v1" and current(registry) == before
    # Crash while the package is being written: config.json (written last) is missing.
    add_package(registry, tokenizers, "v3")
    registry.folder.remove("v3/config.json")
    with pytest.raises(PackageError, match="config.json not found"):
        registry.promote("v3", registry.champion(), "better", run_id="r3")
    assert registry.champion().version == "v1" and current(registry) == before
    assert [r["version"] for r in registry.history()] == ["v1"]


def test_a_crash_after_the_switch_is_healed_by_the_next_promotion(registry, tokenizers):
    for v in ("v1", "v2", "v3"):
        add_package(registry, tokenizers, v)
    registry.promote("v1", None, "first", run_id="r1")
    stale_current = registry.folder.read_bytes("current")
    registry.promote("v2", registry.champion(), "better", run_id="r2")
    # The state a crash right after the promotion record leaves: `current` still names v1.
    registry.folder.write_bytes("current", stale_current)
    assert registry.champion().version == "v2"  # readers that must be right use the promotions log
    registry.promote("v3", registry.champion(), "better", run_id="r3")
    assert current(registry)["version"] == "v3" and current(registry)["seq"] == 3


def test_a_promoter_finishing_late_never_moves_current_behind_the_highest_promotion(registry, tokenizers):
    for v in ("v1", "v2", "v3"):
        add_package(registry, tokenizers, v)
    registry.promote("v1", None, "first", run_id="r1")
    # Run r2 creates promotion 2 and stalls (or crashes) before publishing; r3 promotes over it.
    record = {"decision": "promoted", "seq": 2, "version": "v2", "model": registry.package_url("v2"),
              "previous": {"seq": 1, "version": "v1"}, "reason": "better", "decided_at": _now(),
              "run_id": "r2", "details": {}}
    registry.folder.create_bytes("promotions/00000002.json", json.dumps(record).encode())
    registry.promote("v3", registry.champion(), "better still", run_id="r3")
    assert current(registry)["seq"] == 3
    # r2 resumes (or is re-run) and finishes its own promotion: `current` stays on the highest one.
    v1 = Champion(1, "v1", registry.package_url("v1"), {})
    assert registry.promote("v2", v1, "better", run_id="r2") == record
    assert current(registry)["version"] == "v3" and registry.champion().version == "v3"
    lines = registry.folder.read_text("history.jsonl").splitlines()
    assert [json.loads(line)["seq"] for line in lines] == [1, 2, 3]
    assert registry.decision_of("r2") == record and registry.decision_of("r9") is None


def test_rejections_never_touch_the_champion_and_history_records_every_decision(registry, tokenizers):
    for v in ("v1", "v2"):
        add_package(registry, tokenizers, v)
    registry.promote("v1", None, "first model: passes the quality gate", run_id="r1")
    pointer = registry.folder.read_bytes("current")
    registry.reject("v2", registry.champion(), "test: BLEU -3.10 (p=0.001): BLEU gain not > 0", run_id="r2")
    registry.reject("v-failed", registry.champion(), "training failed: ValueError: boom", run_id="r3")
    assert registry.folder.read_bytes("current") == pointer
    assert registry.champion().version == "v1"
    history = registry.history()
    assert [(r["decision"], r["version"]) for r in history] == [
        ("promoted", "v1"), ("rejected", "v2"), ("rejected", "v-failed")]
    assert history[1]["champion"] == {"seq": 1, "version": "v1"} and "BLEU gain" in history[1]["reason"]
    snapshot = registry.folder.read_text("history.jsonl")
    assert [json.loads(line) for line in snapshot.splitlines()] == history


def test_only_complete_packages_of_this_model_can_be_promoted(registry, tokenizers):
    with pytest.raises(PackageError, match="no model package"):
        registry.promote("missing", None, "first")
    with pytest.raises(ValueError, match="reserved"):
        registry.promote("current", None, "first")
    other = Registry(registry.store_url, "other", registry.storage_options)
    add_package(other, tokenizers, "v1")  # extra name is "rev"
    with pytest.raises(ValueError, match="is a 'rev' model, not 'other'"):
        other.promote("v1", None, "first")
    assert registry.champion() is None and other.champion() is None
    with pytest.raises(FileNotFoundError, match="no model has been promoted"):
        resolve_model(registry.url, registry.storage_options)

