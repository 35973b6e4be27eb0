import shutil

import polars as pl
from prefect import flow

from s2s_core.inference.package import load_tokenizers
from s2s_core.text.tokenizer import TokenizerConfig
from tasks.tokenize import tokenize


def test_tokenizer_task_is_cached_by_content_and_config(prefect_harness, tmp_path):
    train = tmp_path / "train.parquet"
    pl.DataFrame({"src": ["uno dos tres", "cuatro cinco"] * 20,
                  "tgt": ["one two three", "four five"] * 20}).write_parquet(train)
    out = str(tmp_path / "tok")

    @flow
    def tokenize_twice(config: TokenizerConfig) -> list[str]:
        first = tokenize(str(train), config, out, return_state=True)
        second = tokenize(str(train), config, out, return_state=True)
        return [first.name, second.name]

    config = TokenizerConfig(vocab_size=30)
    assert tokenize_twice(config) == ["Completed", "Cached"]
    assert tokenize_twice(TokenizerConfig(vocab_size=31))[0] == "Completed"  # new config: retrained
    pl.DataFrame({"src": ["otra cosa"] * 40, "tgt": ["something else"] * 40}).write_parquet(train)
    assert tokenize_twice(TokenizerConfig(vocab_size=30))[0] == "Completed"  # new content: retrained
    assert load_tokenizers(out).src.vocab_size <= 30
    shutil.rmtree(out)  # outputs deleted behind the cache's back: retrained, not a stale hit
    assert tokenize_twice(TokenizerConfig(vocab_size=30)) == ["Completed", "Cached"]
    assert load_tokenizers(out).src.vocab_size <= 30
