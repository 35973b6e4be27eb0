"""The evaluate flow: a finished evaluation is reused, and its artifact has no broken image links."""

from __future__ import annotations

from pathlib import Path

from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey
from prefect.client.schemas.sorting import ArtifactSort

from flows.evaluate import evaluate_flow
from tasks.common import artifact_key
from tasks.config import EvaluateSection

SETTINGS = EvaluateSection.model_validate({"decode": {"beam_size": 1}, "n_bootstrap": 20, "heatmaps": 1})


def mtimes(folder) -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in folder.iterdir()}


def test_a_finished_evaluation_is_reused_not_recomputed(tiny_run, tmp_path):
    _, trained = tiny_run
    test, reports = f"{trained['run']}/data/test.parquet", tmp_path / "reports"
    first = evaluate_flow(trained["model"], test, str(reports), SETTINGS)
    written = mtimes(reports)
    assert {"report.json", "report.md", "test.translations.parquet", "attention-1.png"} <= set(written)

    again = evaluate_flow(trained["model"], test, str(reports), SETTINGS)
    assert again == first and mtimes(reports) == written  # nothing decoded or rewritten

    other = SETTINGS.model_copy(update={"n_bootstrap": 30})  # another setting: evaluated afresh
    evaluate_flow(trained["model"], test, str(reports), other)
    assert mtimes(reports)["report.json"] > written["report.json"]


def test_the_report_artifact_says_where_the_figures_are(tiny_run, tmp_path):
    _, trained = tiny_run
    reports = tmp_path / "reports"
    evaluate_flow(trained["model"], f"{trained['run']}/data/test.parquet", str(reports), SETTINGS)
    key = artifact_key(Path(trained["run"]).name, "evaluation")  # named after the model's run
    with get_client(sync_client=True) as client:
        (artifact,) = client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key])),
                                            sort=ArtifactSort.CREATED_DESC, limit=1)
    markdown = artifact.data
    assert "![" not in markdown  # a relative (or file://) image would show broken in the UI
    assert f"`{reports}/attention-1.png`" in markdown
