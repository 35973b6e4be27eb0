"""Prefect events the pipeline emits, for automations and deployment triggers to act on.

``s2s.model.promoted`` on resource ``s2s.model.<name>``: a new model version started serving
(prefect.yaml's ``translate-on-promotion`` deployment is triggered by it).
"""

from __future__ import annotations

from prefect.events import Event, emit_event

MODEL_PROMOTED = "s2s.model.promoted"


def model_resource(name: str) -> dict[str, str]:
    """The event resource of a model name (what a trigger's ``match`` names)."""
    return {"prefect.resource.id": f"s2s.model.{name}", "prefect.resource.name": name}


def emit_promotion(store: str, name: str, record: dict) -> Event | None:
    """Announce that ``record`` (a promotion record of the registry) made its version the serving one."""
    return emit_event(MODEL_PROMOTED, resource={**model_resource(name), "s2s.version": record["version"]},
                      payload={"store": store, "model": record["model"], "seq": record["seq"],
                               "version": record["version"], "reason": record.get("reason")})
