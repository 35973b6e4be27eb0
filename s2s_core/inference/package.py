"""Model packages: a directory (any fsspec URL) with safetensors weights, JSON config, SentencePiece
models and training metrics. ``config.json`` is written last and lists every file's checksum, so
its presence marks a complete package and corruption is detected on load."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field

import safetensors.torch
import torch

from s2s_core import __version__
from s2s_core.device import resolve_device
from s2s_core.inference.flags import FlagThresholds, thresholds_from
from s2s_core.inference.precision import DEFAULT_PRECISION
from s2s_core.inference.segment import DEFAULT_LANGUAGE
from s2s_core.inference.translator import Translator
from s2s_core.model.cell import upgrade_rnn_state
from s2s_core.model.seq2seq import ModelConfig, Seq2Seq, build_model
from s2s_core.storage import Store
from s2s_core.text.spans import DEFAULT_RULES, SpanRules
from s2s_core.text.tokenizer import SPECIAL_IDS, SubwordModel, TokenizerConfig, Tokenizers

PACKAGE_FORMAT = 1
CONFIG, WEIGHTS, METRICS = "config.json", "model.safetensors", "metrics.json"


class PackageError(ValueError):
    """A model package is missing, incomplete, corrupt or incompatible."""


@dataclass
class ModelPackage:
    model: Seq2Seq
    tokenizers: Tokenizers
    config: dict
    metrics: dict = field(default_factory=dict)

    @property
    def source_language(self) -> str:
        """The source language the package was trained on (packages before it was recorded: English)."""
        return self.config.get("source_language") or DEFAULT_LANGUAGE

    @property
    def protects_spans(self) -> bool:
        """Whether the package's tokenizer holds the placeholder symbols (trained with protected spans)."""
        return self.tokenizers.config.placeholders

    def translator(self, device: str = "auto", amp: str = "auto", language: str | None = None,
                   precision: str = DEFAULT_PRECISION, protect: bool | None = None,
                   span_rules: SpanRules = DEFAULT_RULES) -> Translator:
        """A translator on ``device`` computing at ``precision`` (fp32, bf16, int8: see
        ``precision``; ``amp`` applies to fp32 on CUDA only); ``language`` (the source's; default: the
        package's) picks the sentence rules that split over-long inputs. ``protect`` (default: on for a
        package trained with protected spans) protects the spans ``span_rules`` find."""
        protect = self.protects_spans if protect is None else protect
        if protect and not self.protects_spans:
            raise PackageError("this model was trained without protected spans (its tokenizer lacks the "
                               "placeholder symbols): translate it without --protect")
        return Translator(self.model, self.tokenizers, resolve_device(device), amp=amp,
                          language=language or self.source_language, precision=precision,
                          protect=span_rules if protect else None, thresholds=self.flag_thresholds)

    @property
    def flag_thresholds(self) -> FlagThresholds:
        """Where this model's quality flags fire: calibrated on its dev set at training, else the defaults."""
        return thresholds_from(self.config.get("flag_thresholds"))


def _alias_names(model: Seq2Seq) -> set[str]:
    """State-dict names that alias an earlier entry (tied or shared embeddings)."""
    seen: set[int] = set()
    aliases = set()
    for name, tensor in model.state_dict().items():
        if tensor.data_ptr() in seen:
            aliases.add(name)
        seen.add(tensor.data_ptr())
    return aliases


def _unique_tensors(model: Seq2Seq, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``state`` without aliases of tied weights (safetensors stores each tensor once)."""
    aliases = _alias_names(model)
    return {k: v.detach().cpu().contiguous() for k, v in state.items() if k not in aliases}


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _spm_files(tokenizers: Tokenizers) -> dict[str, bytes]:
    if tokenizers.joint:
        return {"spm.model": tokenizers.src.model_proto}
    return {"src.spm.model": tokenizers.src.model_proto, "tgt.spm.model": tokenizers.tgt.model_proto}


TOKENIZER_CONFIG = "tokenizer.json"


def save_tokenizers(url: str, tokenizers: Tokenizers, storage_options: dict | None = None) -> str:
    """Write the SentencePiece model(s) and ``tokenizer.json`` (written last) under ``url``."""
    folder = Store(url, storage_options)
    for name, data in _spm_files(tokenizers).items():
        folder.write_bytes(name, data)
    folder.write_text(TOKENIZER_CONFIG, json.dumps(tokenizers.describe(), indent=2))
    return url


def load_tokenizers(url: str, storage_options: dict | None = None) -> Tokenizers:
    """Read tokenizers written by ``save_tokenizers``."""
    folder = Store(url, storage_options)
    try:
        described = folder.read_json(TOKENIZER_CONFIG)
        config = TokenizerConfig(**described["config"])
        if described["joint"]:
            subwords = SubwordModel(folder.read_bytes("spm.model"))
            return Tokenizers(subwords, subwords, config)
        return Tokenizers(SubwordModel(folder.read_bytes("src.spm.model")),
                          SubwordModel(folder.read_bytes("tgt.spm.model")), config)
    except (FileNotFoundError, KeyError, json.JSONDecodeError) as err:
        raise PackageError(f"no usable tokenizer at {url}: {err}") from err


def save_package(url: str, model: Seq2Seq, tokenizers: Tokenizers, *,
                 weights: dict[str, torch.Tensor] | None = None, metrics: dict | None = None,
                 extra: dict | None = None, storage_options: dict | None = None) -> str:
    """Write a package to ``url`` (``weights`` default to the model's current ones)."""
    folder = Store(url, storage_options)
    state = weights if weights is not None else model.state_dict()
    files = {WEIGHTS: safetensors.torch.save(_unique_tensors(model, state), metadata={"format": "pt"}),
             METRICS: json.dumps(metrics or {}, indent=2, default=str).encode(),
             **_spm_files(tokenizers)}
    for name, data in files.items():
        folder.write_bytes(name, data)
    config = {
        "format": PACKAGE_FORMAT,
        "s2s_version": __version__,
        "torch_version": torch.__version__,
        "model": model.config.to_dict(),
        "tokenizer": tokenizers.describe(),
        "files": {name: {"sha256": _sha256(data), "bytes": len(data)} for name, data in files.items()},
        **(extra or {}),
    }
    folder.write_text(CONFIG, json.dumps(config, indent=2))  # last: its presence marks a complete package
    return url


def _read(folder: Store, name: str, config: dict) -> bytes:
    """A package file, checked against the checksum that config.json lists for it."""
    url = folder.url
    expected = config["files"].get(name)
    if expected is None:
        raise PackageError(f"model package {url}: config.json does not list {name}")
    try:
        data = folder.read_bytes(name)
    except FileNotFoundError as err:
        raise PackageError(f"model package {url} is incomplete: {name} is missing") from err
    if _sha256(data) != expected["sha256"]:
        raise PackageError(f"model package {url} is corrupt: {name} does not match its checksum "
                           f"({len(data)} bytes read, {expected['bytes']} expected)")
    return data


def read_package_config(url: str, storage_options: dict | None = None) -> dict:
    """Parse and version-check ``config.json`` of the package at ``url``."""
    return _read_config(Store(url, storage_options))


def _read_config(folder: Store) -> dict:
    url = folder.url
    try:
        raw = folder.read_text(CONFIG)
    except FileNotFoundError as err:
        raise PackageError(f"no model package at {url} (config.json not found)") from err
    try:
        config = json.loads(raw)
    except json.JSONDecodeError as err:
        raise PackageError(f"model package {url}: config.json is not valid JSON ({err})") from err
    if not isinstance(config, dict) or config.get("format") != PACKAGE_FORMAT:
        raise PackageError(f"model package {url}: unsupported package format "
                           f"{config.get('format') if isinstance(config, dict) else None!r} "
                           f"(this s2s reads format {PACKAGE_FORMAT})")
    missing = [k for k in ("model", "tokenizer", "files") if k not in config]
    if missing:
        raise PackageError(f"model package {url}: config.json lacks {missing}")
    return config


def load_package(url: str, device: str = "cpu", storage_options: dict | None = None) -> ModelPackage:
    """Load and validate a package; raises ``PackageError`` with the reason when it is unusable."""
    folder = Store(url, storage_options)
    config = _read_config(folder)
    tok = config["tokenizer"]
    if tok.get("special_ids") != SPECIAL_IDS:
        raise PackageError(f"model package {url}: special ids {tok.get('special_ids')} "
                           f"differ from this version's {SPECIAL_IDS}")
    try:
        if tok["joint"]:
            src = tgt = SubwordModel(_read(folder, "spm.model", config))
        else:
            src = SubwordModel(_read(folder, "src.spm.model", config))
            tgt = SubwordModel(_read(folder, "tgt.spm.model", config))
        tokenizers = Tokenizers(src, tgt, TokenizerConfig(**tok["config"]))
        model_config = ModelConfig.from_dict(config["model"])
    except (ValueError, TypeError, RuntimeError) as err:
        if isinstance(err, PackageError):
            raise
        raise PackageError(f"model package {url}: invalid tokenizer or model config: {err}") from err
    if (src.vocab_size, tgt.vocab_size) != (model_config.src_vocab_size, model_config.tgt_vocab_size):
        raise PackageError(
            f"model package {url}: vocabulary sizes {src.vocab_size}/{tgt.vocab_size} of the "
            f"SentencePiece models do not match the model's {model_config.src_vocab_size}/"
            f"{model_config.tgt_vocab_size}")
    model = build_model(model_config)
    weights = safetensors.torch.load(_read(folder, WEIGHTS, config))
    # Packages written before the decoder's step-wise cell hold nn.LSTM/nn.GRU parameter names.
    upgrade_rnn_state(weights, "decoder.", model_config.emb_dim, model_config.dec_layers)
    expected = _unique_tensors(model, model.state_dict())
    if set(weights) != set(expected):
        missing, unexpected = sorted(set(expected) - set(weights)), sorted(set(weights) - set(expected))
        raise PackageError(f"model package {url}: weights do not match the config: "
                           f"missing {missing[:5]}, unexpected {unexpected[:5]}")
    for name, tensor in weights.items():
        if tensor.shape != expected[name].shape:
            raise PackageError(f"model package {url}: {name} has shape {tuple(tensor.shape)}, "
                               f"the config implies {tuple(expected[name].shape)}")
    model.load_state_dict(weights, strict=False)  # tied aliases are filled by their owner
    metrics = json.loads(_read(folder, METRICS, config)) if METRICS in config["files"] else {}
    return ModelPackage(model.to(resolve_device(device)).eval(), tokenizers, config, metrics)
