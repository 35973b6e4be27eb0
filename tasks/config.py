"""The pipeline's typed configuration: YAML in ``configs/`` + ``--set key=value`` overrides.

The same pydantic model is the flows' parameter type, so deployments get a schema and bad
parameters fail before any work starts. Sections reuse the core's dataclasses (one definition
of each setting).
"""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)

from s2s_core.inference.precision import DEFAULT_PRECISION, PRECISIONS
from s2s_core.inference.segment import DEFAULT_LANGUAGE
from s2s_core.inference.translator import DecodeConfig
from s2s_core.model.seq2seq import ModelConfig
from s2s_core.registry.promotion import PromotionConfig
from s2s_core.text.prepare import PrepareConfig
from s2s_core.text.spans import SpanRules
from s2s_core.text.tokenizer import TokenizerConfig
from s2s_core.training.config import TrainConfig
from tasks.secrets import StorageOptions, storage_option_is_secret

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]*$"
Precision = Literal[*PRECISIONS]
PRECISION_HELP = ("inference precision: fp32 (as trained), bf16 (bfloat16 autocast; AMP bf16 on CUDA) "
                  "or int8 (int8 weights, torchao); see README, Precision")
ConfigT = TypeVar("ConfigT", bound=BaseModel)


class ConfigError(ValueError):
    """A configuration file or override is unusable; the message names the bad field."""


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DataSection(Strict):
    """Where the parallel data comes from (any fsspec URL) and how it is cleaned and split."""

    train: str = Field(description="Parquet file, TSV file, or source side of a plain-text pair")
    train_tgt: str | None = Field(None, description="target side when `train` is a plain-text file")
    dev: str | None = Field(None, description="dev set (same format); split off `train` when absent")
    test: dict[str, str] = Field(default_factory=dict,
                                 description="named test sets; split off `train` when empty")
    prepare: PrepareConfig = PrepareConfig()
    source_language: str = Field(DEFAULT_LANGUAGE, min_length=2,
                                 description="source language (ISO 639 code): its sentence rules split "
                                             "over-long inputs in validation, evaluation and (as the "
                                             "package's default) translation")


class EvaluateSection(Strict):
    decode: DecodeConfig = DecodeConfig(beam_size=5)
    precision: Precision = Field(DEFAULT_PRECISION, description=PRECISION_HELP)
    n_bootstrap: int = Field(1000, ge=0, description="bootstrap resamples for 95% confidence intervals")
    heatmaps: int = Field(3, ge=0, description="attention heatmaps drawn for the first test sentences")
    examples: int = Field(5, ge=0)

    def identity(self) -> dict:
        """The settings as JSON, without ``precision`` when it is the default: run ids and finished
        evaluations recorded before the option existed stay valid."""
        data = self.model_dump(mode="json")
        if data["precision"] == DEFAULT_PRECISION:
            del data["precision"]
        return data


class DistributedSection(Strict):
    """Data-parallel training: the train task launches ``torchrun`` with this many processes."""

    processes: int = Field(1, ge=1, description="training processes (one per GPU; gloo on CPU)")


class PipelineConfig(Strict):
    """Everything one train → evaluate run needs."""

    name: str = Field(pattern=NAME_PATTERN, description="model name: models/<name>/<version>/")
    store: str = Field("./store", description="root URL of runs/ and models/ (local dir or s3://...)")
    storage_options: StorageOptions = Field(default_factory=dict,
                                            description="fsspec options for the store, e.g. endpoint_url; "
                                                        "credentials are kept secret (README, Credentials)")
    run_id: str | None = Field(None, pattern=NAME_PATTERN,
                               description="default: name + config hash, so a re-run resumes")
    version: str | None = Field(None, pattern=NAME_PATTERN, description="model version; default: run id")
    data: DataSection
    tokenizer: TokenizerConfig = TokenizerConfig()
    model: ModelConfig = ModelConfig()
    train: TrainConfig = TrainConfig(max_epochs=10)
    evaluate: EvaluateSection = EvaluateSection()
    distributed: DistributedSection = DistributedSection()
    # Used by retrain-and-evaluate only; lives here so one YAML (and one deployment schema) serves
    # both flows. Not part of the fingerprint: changing a threshold must not start a new run.
    promotion: PromotionConfig = PromotionConfig()

    @field_validator("store")
    @classmethod
    def _store_is_a_url(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("store must be a directory path or URL")
        return value.rstrip("/")

    def fingerprint(self) -> str:
        """Hash of everything that shapes the result (not where it is stored)."""
        payload = self.model_dump(mode="json", exclude={"store", "storage_options", "run_id", "version",
                                                    "promotion"})
        payload["evaluate"] = self.evaluate.identity()
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:10]

    @property
    def resolved_run_id(self) -> str:
        return self.run_id or f"{self.name}-{self.fingerprint()}"

    @property
    def resolved_version(self) -> str:
        return self.version or self.resolved_run_id


class TranslateConfig(Strict):
    """One corpus translation (the ``s2s-translate`` flow's parameters): what, with which model, where."""

    model: str = Field(description="model package URL (models/<name>/<version>)")
    input: str = Field(description="corpus file, directory/prefix of corpus files, or glob (fsspec URL): "
                                   "Parquet, CSV, TSV or JSON Lines (plain or .gz/.bz2/.zst/.xz)")
    output: str = Field(description="output directory URL: part-<chunk>.parquet, _done/, manifest.json")
    output_format: Literal["parquet", "csv", "tsv", "jsonl"] = Field(
        "parquet", description="format of the output parts (CSV/TSV: nested values as JSON text)")
    input_format: Literal["auto", "parquet", "csv", "tsv", "jsonl"] = Field(
        "auto", description="format of the input files; auto: by their names (*.parquet, *.csv, *.tsv, "
                            "*.jsonl, *.ndjson, optionally compressed)")
    text_encoding: str | None = Field(None, description="encoding of a binary text column and of CSV/TSV "
                                                        "files (default: strings only, CSV/TSV in UTF-8)")
    text_column: str = Field("src", min_length=1)
    id_column: str | None = Field("id", description="unique row id, checked in and out; None: no id check")
    chunk_rows: int = Field(2000, ge=1, description="target rows per chunk (the unit of work and of resume)")
    decode: DecodeConfig = DecodeConfig(beam_size=5)
    device: str = Field("auto", description="auto | cpu | cuda | cuda:N")
    precision: Precision = Field(DEFAULT_PRECISION, description=PRECISION_HELP)
    amp: str = Field("auto", description="auto | bf16 | fp16 | none: CUDA autocast with precision fp32 "
                                         "(bf16 and int8 supersede it)")
    workers: int | None = Field(None, ge=1, description="thread-pool workers; default: one per GPU, else few")
    dask_address: str | None = Field(None, description="run chunks on this existing Dask scheduler")
    source_language: str | None = Field(None, min_length=2,
                                        description="source language (ISO 639 code) whose sentence rules "
                                                    "split over-long rows; default: the one the model "
                                                    "package records")
    protect: bool | None = Field(None, description="protect placeholders and markup (formats, tags, URLs, "
                                                   "paths, options, line breaks) so they come out "
                                                   "byte-exact; default: on for a model trained with "
                                                   "protected spans (--protect / --no-protect)")
    spans: SpanRules = Field(default_factory=SpanRules,
                             description="what is protected: span kinds, extra regular expressions "
                                         "(patterns) and do-not-translate terms")
    retry_failed: bool = Field(False, description="translate the failed rows of committed chunks again "
                                                  "(rows that ran out of memory even alone)")
    output_per_version: bool = Field(
        False, description="write under <output>/<model version>/: for schedules that follow the "
                           "serving model, so a promotion starts a new output instead of clashing "
                           "with the pinned plan of the old one")
    use_memory: bool = Field(True, description="take translations from the translation memory and add "
                                                "new ones to it (false: --no-memory)")
    memory: str | None = Field(None, description="translation memory URL, shared by all outputs and models "
                                                 "(namespaced); default: <output's parent>/_memory")
    storage_options: StorageOptions = Field(default_factory=dict,
                                            description="fsspec options for model, input, output and "
                                                        "memory URLs; credentials are kept secret "
                                                        "(README, Credentials)")

    @field_validator("output")
    @classmethod
    def _output_is_a_directory(cls, value: str) -> str:
        if not value.strip().rstrip("/"):
            raise ValueError("output must be a directory path or URL")
        return value.rstrip("/")

    @field_validator("text_encoding")
    @classmethod
    def _known_encoding(cls, value: str | None) -> str | None:
        from s2s_core.corpus.columns import check_encoding

        return check_encoding(value) if value else None

    @field_validator("memory")
    @classmethod
    def _memory_is_a_directory(cls, value: str | None) -> str | None:
        return value.rstrip("/") or None if value and value.strip() else None

    @property
    def memory_url(self) -> str | None:
        """Where the translation memory lives (None with ``use_memory`` off).

        By default next to the output, so the outputs of one folder (and ``output_per_version``'s
        versions, which live under ``output``) share it; at the root of a bucket, inside the output.
        """
        if not self.use_memory:
            return None
        if self.memory:
            return self.memory
        scheme, sep, path = self.output.rpartition("://")
        parent, slash, _ = path.rpartition("/")
        if not slash:  # s3://bucket has no parent; a relative local name's is the working directory
            return f"{self.output}/_memory" if sep else "_memory"
        return f"{scheme}{sep}{parent}/_memory"

    @field_validator("id_column")
    @classmethod
    def _empty_means_no_id(cls, value: str | None) -> str | None:
        return value or None

    @field_validator("decode")
    @classmethod
    def _no_attention(cls, value: DecodeConfig) -> DecodeConfig:
        if value.return_attention:
            raise ValueError("corpus translation writes no attention weights: return_attention must be false")
        return value

    @model_validator(mode="after")
    def _one_runner(self) -> TranslateConfig:
        if self.workers is not None and self.dask_address:
            raise ValueError("give either workers (thread pool) or dask_address, not both")
        return self


def validate_translate_config(data: dict) -> TranslateConfig:
    try:
        return TranslateConfig.model_validate(data)
    except ValidationError as err:
        raise ConfigError(f"invalid translate settings: {describe_validation_error(err)}") from None


def validate_section(cls: type, data: dict) -> Any:
    """``data`` validated into ``cls`` (a config section: pydantic model or core dataclass)."""
    try:
        return TypeAdapter(cls).validate_python(data)
    except ValidationError as err:
        raise ConfigError(f"invalid settings: {describe_validation_error(err)}") from None


def apply_override(data: dict, assignment: str, option: str = "--set", literal: bool = False) -> None:
    """Apply ``a.b.c=value`` (value parsed as YAML: numbers, booleans, lists, null; ``literal``: as is)."""
    key, sep, raw = assignment.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"{option} expects key=value, got {assignment!r}")
    parts = key.strip().split(".")
    node = data
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"{option} {key}: {part!r} is not a section")
        node = child
    # A credential is taken as typed (YAML would make 0123 the number 123), via --set too.
    if literal or parts[0] == "storage_options" and storage_option_is_secret(".".join(parts[1:])):
        node[parts[-1]] = raw
        return
    try:
        node[parts[-1]] = yaml.safe_load(raw) if raw.strip() else raw
    except yaml.YAMLError as err:
        raise ConfigError(f"{option} {key}: cannot parse value {raw!r}: {err}") from err


def with_overrides(config: ConfigT, overrides: Sequence[str] | None) -> ConfigT:
    """``config`` with ``key=value`` overrides applied as ``--set`` applies them, validated again.

    Lets a deployment run change one field (``--param overrides='["train.max_minutes=5"]'``)
    instead of restating the whole config object its ``--params`` would replace.
    """
    if not overrides:
        return config
    # The JSON dump masks the credentials: they are put back as the (still secret) objects they are.
    data = config.model_dump(mode="json")
    if "storage_options" in data:
        data["storage_options"] = copy.deepcopy(config.storage_options)
    for assignment in overrides:
        apply_override(data, assignment, option="override")
    try:
        return type(config).model_validate(data)
    except ValidationError as err:
        raise ConfigError(f"invalid config after overrides: {describe_validation_error(err)}") from None


def describe_validation_error(err: ValidationError) -> str:
    """One line per problem: ``field.path: message``."""
    lines = []
    for problem in err.errors():
        where = ".".join(str(p) for p in problem["loc"]) or "config"
        message = problem["msg"].removeprefix("Value error, ")
        lines.append(f"{where}: {message}")
    return "; ".join(lines)


def validate_config(data: dict) -> PipelineConfig:
    try:
        return PipelineConfig.model_validate(data)
    except ValidationError as err:
        raise ConfigError(f"invalid config: {describe_validation_error(err)}") from None


def load_config(path: str | Path, overrides: list[str] | None = None, store: str | None = None
                ) -> PipelineConfig:
    """Read a YAML config, apply overrides, validate."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as err:
        raise ConfigError(f"{path} is not valid YAML: {err}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path} must hold a mapping of config sections")
    for assignment in overrides or []:
        apply_override(data, assignment)
    if store:
        data["store"] = store
    return validate_config(data)
