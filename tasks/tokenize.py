"""tokenize: train SentencePiece on the training split (cached by input content + config)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict
from typing import Any

from prefect import task
from prefect.context import TaskRunContext

from s2s_core import storage
from s2s_core.inference.package import TOKENIZER_CONFIG, save_tokenizers
from s2s_core.text.prepare import read_parquet
from s2s_core.text.tokenizer import TokenizerConfig, train_tokenizers
from tasks.common import IO_RETRIES, run_logger


def tokenizer_cache_key(context: TaskRunContext, parameters: dict[str, Any]) -> str:
    """Same training-split bytes + same tokenizer config + same destination → reuse the result."""
    out, opts = parameters["out_url"], parameters.get("storage_options") or {}
    digest = hashlib.sha256(storage.read_bytes(parameters["train_url"], **opts))
    digest.update(json.dumps(asdict(parameters["config"]), sort_keys=True).encode())
    digest.update(out.encode())
    return f"s2s-tokenize-{digest.hexdigest()}"


@task(name="tokenize", cache_key_fn=tokenizer_cache_key, persist_result=True, **IO_RETRIES)
def train_tokenizer(train_url: str, config: TokenizerConfig, out_url: str,
                    storage_options: dict[str, Any] | None = None) -> dict:
    """Train the subword model(s) on the training split and write them under ``out_url``."""
    train = read_parquet(train_url, storage_options, columns=["src", "tgt"])
    tokenizers = train_tokenizers(train["src"].to_list(), train["tgt"].to_list(), config)
    save_tokenizers(out_url, tokenizers, storage_options)
    run_logger().info("trained %s %s tokenizer(s): vocab %d/%d → %s", config.model_type,
                          "joint" if tokenizers.joint else "per-side", tokenizers.src.vocab_size,
                          tokenizers.tgt.vocab_size, out_url)
    return {"url": out_url, "src_vocab_size": tokenizers.src.vocab_size,
            "tgt_vocab_size": tokenizers.tgt.vocab_size, "joint": tokenizers.joint}


def tokenize(train_url: str, config: TokenizerConfig, out_url: str,
             storage_options: dict[str, Any] | None = None, **call_options: Any) -> Any:
    """Run ``train_tokenizer``, ignoring a cached result whose files are gone (e.g. a deleted run)."""
    present = storage.exists(storage.join(out_url, TOKENIZER_CONFIG), **(storage_options or {}))
    return train_tokenizer.with_options(refresh_cache=not present)(
        train_url, config, out_url, storage_options, **call_options)
