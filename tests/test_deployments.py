"""Every deployment in prefect.yaml loads its flow, has valid parameters and parseable schedules."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml
from prefect.cli.deploy._models import PrefectYamlModel
from prefect.client.schemas.schedules import CronSchedule
from prefect.events.schemas.deployment_triggers import DeploymentEventTrigger
from prefect.flows import load_flow_from_entrypoint
from prefect.server.schemas.schedules import CronSchedule as ServerCronSchedule
from prefect.utilities.callables import parameter_schema
from prefect.utilities.schema_tools import validate

from tasks.config import PipelineConfig, TranslateConfig, load_config
from tasks.events import MODEL_PROMOTED, model_resource

ROOT = Path(__file__).resolve().parents[1]
PREFECT_YAML = yaml.safe_load((ROOT / "prefect.yaml").read_text(encoding="utf-8"))
DEPLOYMENTS = {d["name"]: d for d in PREFECT_YAML["deployments"]}
PREFECT_YAML_NAMES = {d["name"]: d["parameters"]["config"].get("name") for d in PREFECT_YAML["deployments"]}
PARAMETER_TYPES = {"flows.retrain:retrain_flow": PipelineConfig,
                   "flows.translate:translate_flow": TranslateConfig}


def test_prefect_yaml_has_the_expected_deployments_in_prefects_own_format():
    model = PrefectYamlModel.model_validate(PREFECT_YAML)
    assert {d.entrypoint for d in model.deployments} == set(PARAMETER_TYPES)
    assert len(DEPLOYMENTS) == len(model.deployments)  # names are unique
    for deployment in model.deployments:
        assert deployment.work_pool.name and deployment.enforce_parameter_schema
        assert deployment.schedules or deployment.triggers, f"{deployment.name} never runs by itself"


@pytest.mark.parametrize("name", sorted(DEPLOYMENTS))
def test_parameters_validate_against_the_flows_parameter_schema(name, monkeypatch):
    deployment = DEPLOYMENTS[name]
    monkeypatch.chdir(ROOT)  # entrypoints are relative to the repository root, as for `prefect deploy`
    flow = load_flow_from_entrypoint(deployment["entrypoint"])
    # What the API checks when a run is created (enforce_parameter_schema): the JSON schema...
    schema = parameter_schema(flow).model_dump_for_openapi()
    assert validate(deployment["parameters"], schema, raise_on_error=True) == []
    # ...and what the flow does when it starts: pydantic validation into the config model.
    validated = flow.validate_parameters(deployment["parameters"])
    assert isinstance(validated["config"], PARAMETER_TYPES[deployment["entrypoint"]])


def test_a_bad_parameter_is_refused_by_the_schema(monkeypatch):
    monkeypatch.chdir(ROOT)
    flow = load_flow_from_entrypoint("flows.retrain:retrain_flow")
    bad = yaml.safe_load(yaml.safe_dump(DEPLOYMENTS["retrain-weekly"]["parameters"]))
    bad["config"]["promotion"]["alpha"] = 2
    with pytest.raises(Exception, match="alpha must be in"):
        flow.validate_parameters(bad)
    bad["config"]["promotion"] = {"alfa": 0.01}  # a misspelled setting is not silently ignored
    with pytest.raises(Exception, match="invalid parameters"):
        flow.validate_parameters(bad)


@pytest.mark.parametrize("name", sorted(DEPLOYMENTS))
def test_cron_schedules_parse(name):
    for schedule in DEPLOYMENTS[name].get("schedules", []):
        CronSchedule(cron=schedule["cron"], timezone=schedule.get("timezone"))  # raises if invalid


def test_retraining_runs_weekly():
    (schedule,) = DEPLOYMENTS["retrain-weekly"]["schedules"]
    cron = ServerCronSchedule(cron=schedule["cron"], timezone=schedule["timezone"])
    dates = asyncio.run(cron.get_dates(n=3, start=datetime(2026, 1, 1, tzinfo=UTC)))
    assert [b - a for a, b in zip(dates, dates[1:], strict=False)] == [timedelta(days=7)] * 2


def test_retrain_deployment_trains_the_shipped_benchmark_config():
    """prefect.yaml repeats configs/bible-es-en.yaml inline (no YAML includes): keep them in step."""
    deployment = next(d for d in yaml.safe_load((ROOT / "prefect.yaml").read_text())["deployments"]
                      if d["name"] == "retrain-weekly")
    inline = PipelineConfig.model_validate(deployment["parameters"]["config"])
    shipped = load_config(ROOT / "configs" / "bible-es-en.yaml")
    assert inline.model_dump(exclude={"promotion"}) == shipped.model_dump(exclude={"promotion"})


def test_a_promotion_triggers_the_translation_of_the_promoted_models_corpus():
    """The trigger names the event and resource that tasks/events.py emits on a promotion."""
    deployment = DEPLOYMENTS["translate-on-promotion"]
    (trigger,) = deployment["triggers"]
    DeploymentEventTrigger.model_validate(trigger)  # what `prefect deploy` builds from it
    assert trigger["expect"] == [MODEL_PROMOTED]
    name = PREFECT_YAML_NAMES["retrain-weekly"]
    assert trigger["match"] == {"prefect.resource.id": model_resource(name)["prefect.resource.id"]}
    # It translates the corpus of the model it is triggered by, following the registry.
    assert deployment["parameters"]["config"]["model"].endswith(f"/models/{name}")
    assert deployment["parameters"] == DEPLOYMENTS["translate-nightly"]["parameters"]
