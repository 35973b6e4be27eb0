"""Warm start: begin training from a model package's weights (its tokenizer is the run's tokenizer).

The optimizer starts fresh (as OpenNMT-py's ``train_from`` with ``reset_optim`` or fairseq's
``--finetune-from-model``): only the weights carry over. The architecture must be the package's;
regularisation and length limits may differ, since they shape no parameter.
"""

from __future__ import annotations

from dataclasses import fields

from s2s_core.inference.package import load_package
from s2s_core.model.seq2seq import ModelConfig, Seq2Seq

# ModelConfig fields that shape no parameter: a warm-started run may change them.
FREE_FIELDS = frozenset({"dropout", "max_src_len", "max_tgt_len"})


class WarmStartError(ValueError):
    """The package to start from does not fit this run's model config."""


def shape_differences(package_model: dict, config: ModelConfig) -> list[str]:
    """``field: package value ≠ config value`` for every architecture field that differs."""
    package = ModelConfig.from_dict(package_model)
    return [f"{f.name}: {getattr(package, f.name)!r} in the package, {getattr(config, f.name)!r} in the "
            "config" for f in fields(ModelConfig)
            if f.name not in FREE_FIELDS and getattr(package, f.name) != getattr(config, f.name)]


def check_warm_start(package_url: str, package_model: dict, config: ModelConfig) -> None:
    """Raise ``WarmStartError`` naming each field where ``config`` (vocabulary sizes set from the
    package's tokenizer) and the package's model differ in shape."""
    differences = shape_differences(package_model, config)
    if differences:
        raise WarmStartError(
            f"train.init_from: the model at {package_url} has another architecture than this config's model "
            f"section ({'; '.join(differences)}); set those model fields to the package's values, or train "
            "from scratch (remove train.init_from)")


def load_warm_start(model: Seq2Seq, package_url: str, storage_options: dict | None = None) -> None:
    """Copy the weights of the package at ``package_url`` into ``model`` (checked for shape first)."""
    package = load_package(package_url, "cpu", storage_options)
    check_warm_start(package_url, package.config["model"], model.config)
    model.load_state_dict(package.model.state_dict())
