"""Warm start (``train.init_from``): find the package a run starts from and give the run its tokenizer."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from prefect import task

from s2s_core import storage
from s2s_core.inference.package import (
    TOKENIZER_CONFIG,
    load_package,
    load_tokenizers,
    read_package_config,
    save_tokenizers,
)
from s2s_core.registry.registry import Registry, resolve_model
from s2s_core.training.warm_start import check_warm_start
from tasks.common import IO_RETRIES, run_logger
from tasks.config import PipelineConfig
from tasks.layout import RunLayout

CHAMPION = "champion"


def _resolve(config: PipelineConfig) -> str | None:
    """``train.init_from`` as a package URL; None for "champion" when none serves yet."""
    wanted, opts = config.train.init_from, config.storage_options
    if wanted == CHAMPION:
        champion = Registry(config.store, config.name, opts).champion()
        if champion is None:
            run_logger().warning("train.init_from: champion, but no %s model has been promoted in %s yet: "
                                 "training from scratch", config.name, config.store)
            return None
        return champion.model
    return resolve_model(wanted, opts)  # a package, or a registry URL → its champion


@task(name="resolve-warm-start", **IO_RETRIES)
def resolve_warm_start(config: PipelineConfig, layout: RunLayout) -> str | None:
    """The package URL this run starts from (None: from scratch), checked against the model config.

    Decided once per run and recorded in the run folder: a resumed run keeps the package it began
    with even if another champion was promoted in between (its tokenizer is already the run's).
    """
    opts = config.storage_options
    if config.train.init_from is None:
        return None
    if storage.exists(layout.warm_start, **opts):
        return json.loads(storage.read_text(layout.warm_start, **opts))["package"]
    package = _resolve(config)
    if package is not None:
        model = read_package_config(package, opts)["model"]
        # The vocabulary is the package's: compare the architecture with the package's vocab sizes.
        check_warm_start(package, model, config.model.with_vocab(model["src_vocab_size"],
                                                                 model["tgt_vocab_size"]))
        run_logger().info("warm start from %s (its weights and tokenizer; fresh optimizer)", package)
    storage.write_text(layout.warm_start, json.dumps(
        {"requested": config.train.init_from, "package": package,
         "resolved_at": datetime.now(UTC).isoformat(timespec="seconds")}, indent=1), **opts)
    return package


@task(name="inherit-tokenizer", **IO_RETRIES)
def inherit_tokenizer(package_url: str, out_url: str, storage_options: dict[str, Any] | None = None) -> dict:
    """Copy a package's tokenizer into the run (the run stays whole if the package is removed); a
    resumed run keeps the copy it has."""
    if storage.exists(storage.join(out_url, TOKENIZER_CONFIG), **(storage_options or {})):
        tokenizers = load_tokenizers(out_url, storage_options)
    else:
        tokenizers = load_package(package_url, "cpu", storage_options).tokenizers
        save_tokenizers(out_url, tokenizers, storage_options)
    run_logger().info("tokenizer of %s: %s, vocab %d/%d (the config's tokenizer section is not used)",
                      package_url, "joint" if tokenizers.joint else "per-side", tokenizers.src.vocab_size,
                      tokenizers.tgt.vocab_size)
    return {"url": out_url, "src_vocab_size": tokenizers.src.vocab_size,
            "tgt_vocab_size": tokenizers.tgt.vocab_size, "joint": tokenizers.joint}
