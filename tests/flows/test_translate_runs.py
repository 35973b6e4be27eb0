"""What a deployment run of the translate flow gets: overrides, the skip before the first promotion,
n-best and segments in the Parquet output."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

from flows.translate import translate_flow
from s2s_core.registry.registry import Registry
from tasks.translate import output_artifact_key
from tests.flows.test_translate_flow import bible_corpus, config_for, read_output


def test_before_the_first_promotion_a_run_is_skipped_not_failed(prefect_harness, tmp_path):
    registry = Registry(str(tmp_path / "store"), "tiny")  # nothing promoted yet
    config = config_for(registry.url, bible_corpus(tmp_path / "in", 20, files=1), tmp_path / "out",
                        output_per_version=True)
    state = translate_flow(config, return_state=True)
    assert state.is_completed() and state.message.startswith("skipped: no serving model yet")
    assert state.result()["skipped"] == state.message
    assert not (tmp_path / "out").exists()
    with get_client(sync_client=True) as client:
        key = output_artifact_key(str(tmp_path / "out"), "skipped")
        (artifact,) = client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key])))
    assert "no serving model yet" in artifact.data


def test_overrides_change_one_field_and_n_best_fills_a_list_column(tiny_run, tmp_path):
    _, trained = tiny_run
    corpus = tmp_path / "in"
    corpus.mkdir()
    texts = ["Y dijo Dios: Sea la luz.", "Y fue la luz.\nY vio Dios que la luz era buena.", ""]
    pq.write_table(pa.table({"id": ["a", "b", "c"], "src": texts}), corpus / "0.parquet")
    config = config_for("unused", corpus, tmp_path / "unused", workers=1)
    # What `prefect deployment run ... --param overrides='[...]'` does to the deployment's config.
    result = translate_flow(config, overrides=[f"model={trained['model']}", f"output={tmp_path / 'out'}",
                                               "decode.beam_size=3", "decode.n_best=2"])
    assert result["rows_out"] == 3 and result["decode"]["n_best"] == 2
    out = read_output(tmp_path / "out")
    assert out["segments"].to_list() == [1, 2, 0]
    assert [len(alternatives) for alternatives in out["nbest"].to_list()] == [2, 2, 0]
    assert out["translation"][1].count("\n") == 1
    manifest = json.loads(Path(result["manifest"]).read_text())
    assert manifest["columns"]["added"] == ["translation", "score", "status", "segments", "flags", "nbest"]
    assert out.columns == ["id", "src", *manifest["columns"]["added"]]


def test_the_source_language_defaults_to_the_packages_and_is_pinned_in_the_plan(tiny_run, tmp_path):
    import shutil

    _, trained = tiny_run
    spanish = tmp_path / "model-es"
    shutil.copytree(trained["model"], spanish)
    package = json.loads((spanish / "config.json").read_text())
    assert package["source_language"] == "en"
    (spanish / "config.json").write_text(json.dumps({**package, "source_language": "es"}))
    corpus = bible_corpus(tmp_path / "in", 10, files=1)

    translate_flow(config_for(str(spanish), corpus, tmp_path / "default", workers=1, use_memory=False))
    translate_flow(config_for(str(spanish), corpus, tmp_path / "explicit", workers=1, use_memory=False,
                              source_language="en"))
    assert json.loads((tmp_path / "default/_plan.json").read_text())["source_language"] == "es"
    assert json.loads((tmp_path / "explicit/_plan.json").read_text())["source_language"] == "en"
