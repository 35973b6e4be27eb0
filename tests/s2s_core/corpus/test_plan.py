"""The pinned plan: input ids checked before anything is translated, a changed job refused."""

from __future__ import annotations

import dataclasses
import json

import pytest

from s2s_core.corpus.plan import PLAN, SHAPING_FIELDS, Numerics, PlanMismatchError, plan_job
from tests.s2s_core.corpus.helpers import DECODE, MODEL, NUMERICS, job, reverse_corpus, write_corpus


def test_repeated_or_null_input_ids_are_refused_before_translating(tmp_path):
    write_corpus(tmp_path / "dup.parquet", ["a", "b", "a"], ["x", "y", "z"], 2)
    with pytest.raises(ValueError, match=r"not unique \('a' ×2\)"):
        plan_job(job(tmp_path / "dup.parquet", tmp_path / "out"), MODEL, DECODE, NUMERICS)
    write_corpus(tmp_path / "null.parquet", ["a", None], ["x", "y"], 2)
    with pytest.raises(ValueError, match="1 rows have a null id"):
        plan_job(job(tmp_path / "null.parquet", tmp_path / "out2"), MODEL, DECODE, NUMERICS)
    assert not (tmp_path / "out").exists()  # nothing pinned, nothing translated
    # Without an id column the same rows are fine.
    plan = plan_job(job(tmp_path / "dup.parquet", tmp_path / "out3", id_column=None), MODEL, DECODE, NUMERICS)
    assert plan.corpus.rows == 3


def test_the_plan_pins_the_model_identity_and_refuses_other_weights(tmp_path):
    spec = job(reverse_corpus(tmp_path, sizes=(30,)), tmp_path / "out", chunk_rows=10)
    plan = plan_job(spec, MODEL, DECODE, NUMERICS)
    pinned = json.loads((tmp_path / "out" / PLAN).read_text())
    assert pinned == plan.record and pinned["model"] == dataclasses.asdict(MODEL)
    moved = plan_job(spec, dataclasses.replace(MODEL, url="elsewhere"), DECODE, NUMERICS)
    assert moved.fingerprint == plan.fingerprint
    with pytest.raises(PlanMismatchError, match="different model"):
        plan_job(spec, dataclasses.replace(MODEL, weights_sha256="other"), DECODE, NUMERICS)


def test_the_plan_pins_the_numerics_and_refuses_a_resume_on_other_hardware(tmp_path):
    spec = job(reverse_corpus(tmp_path, sizes=(30,)), tmp_path / "out", chunk_rows=10)
    plan = plan_job(spec, MODEL, DECODE, NUMERICS)
    assert plan.record["numerics"] == {"device": "cpu", "amp": "none", "quantization": "none"}
    for other in (Numerics("cuda", "bfloat16"), Numerics("cpu", "none", "int8")):
        with pytest.raises(PlanMismatchError, match=r"different numerics \(pinned .*'cpu'.*, now"):
            plan_job(spec, MODEL, DECODE, other)
    assert plan_job(spec, MODEL, DECODE, NUMERICS).fingerprint == plan.fingerprint


def test_the_plan_pins_the_source_language_of_sentence_splitting(tmp_path):
    spec = job(reverse_corpus(tmp_path, sizes=(30,)), tmp_path / "out", chunk_rows=10)
    plan = plan_job(spec, MODEL, DECODE, NUMERICS, "es")
    assert plan.record["source_language"] == "es"
    with pytest.raises(PlanMismatchError, match="different source_language"):
        plan_job(spec, MODEL, DECODE, NUMERICS, "en")
    assert plan_job(spec, MODEL, DECODE, NUMERICS, "es").fingerprint == plan.fingerprint


def test_the_plan_pins_the_precision_and_refuses_another_one(tmp_path):
    """bf16 (autocast) and int8 (quantized weights) are pinned through the numerics: a re-run with
    another --precision against the same output is refused, never mixed into it."""
    spec = job(reverse_corpus(tmp_path, sizes=(30,)), tmp_path / "out", chunk_rows=10)
    bf16 = Numerics("cpu", "bfloat16")
    plan = plan_job(spec, MODEL, DECODE, bf16)
    pinned = json.loads((tmp_path / "out" / PLAN).read_text())
    assert pinned["precision"] == "bf16" and pinned["numerics"]["amp"] == "bfloat16"
    int8 = Numerics("cpu", "none", "int8-weight-only-per-channel")
    for other, name in ((NUMERICS, "fp32"), (int8, "int8")):
        assert other.precision == name
        with pytest.raises(PlanMismatchError, match=rf"different numerics \(pinned bf16 .*, now {name} .*\); "
                                                    "use a new --output"):
            plan_job(spec, MODEL, DECODE, other)
    assert plan_job(spec, MODEL, DECODE, bf16).fingerprint == plan.fingerprint


def test_fp32_plans_keep_the_record_they_had_before_precision_existed(tmp_path):
    """The precision is a reader's label beside the numerics, not a new shaping field: outputs (and
    memory namespaces) pinned by an older s2s in fp32 keep their fingerprint and resume as before."""
    spec = job(reverse_corpus(tmp_path, sizes=(30,)), tmp_path / "out", chunk_rows=10)
    plan = plan_job(spec, MODEL, DECODE, NUMERICS)
    assert plan.record["precision"] == "fp32" and "precision" not in SHAPING_FIELDS
    assert plan.record["numerics"] == {"device": "cpu", "amp": "none", "quantization": "none"}
