"""The translation memory through the flow and the CLI: default location, hit rate, --no-memory, --memory."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from flows.cli import main
from tasks.config import TranslateConfig
from tests.flows.test_translate_flow import assert_same_rows, bible_corpus, read_output


def test_the_memory_lives_next_to_the_output_unless_named_or_turned_off():
    def memory_url(output: str, **fields) -> str | None:
        return TranslateConfig(model="m", input="i", output=output, **fields).memory_url

    assert memory_url("out/corpus-en") == "out/_memory" and memory_url("/data/out/") == "/data/_memory"
    assert memory_url("s3://bucket/outputs/en") == "s3://bucket/outputs/_memory"
    assert memory_url("s3://bucket") == "s3://bucket/_memory" and memory_url("out") == "_memory"
    assert memory_url("out/x", memory="s3://b/tm/") == "s3://b/tm"
    assert memory_url("out/x", memory="s3://b/tm", use_memory=False) is None


def snapshot(directory: Path) -> dict[str, bytes]:
    files = sorted(p for p in directory.rglob("*") if p.is_file())
    return {str(p.relative_to(directory)): p.read_bytes() for p in files}


def poison(directory: Path) -> int:
    """Replace every remembered translation with "POISON" (new shard names: shards are immutable)."""
    shards = list(directory.rglob("*.parquet"))
    for path in shards:
        table = pq.read_table(path)
        column = pa.array(["POISON"] * table.num_rows, pa.string())
        table = table.set_column(table.column_names.index("translation"), "translation", column)
        pq.write_table(table, path.with_name(f"{path.name[:4]}{uuid.uuid4().hex}.parquet"))
        path.unlink()
    return len(shards)


def test_memory_default_location_hit_rate_no_memory_and_memory_url(tiny_run, tmp_path, capsys):
    _, trained = tiny_run
    corpus = bible_corpus(tmp_path / "in", 100)
    args = ["translate", "--model", trained["model"], "--input", str(corpus), "--chunk-rows", "20",
            "--beam", "1", "--workers", "1"]
    assert main([*args, "--output", str(tmp_path / "a")]) == 0
    summary = json.loads(capsys.readouterr().out)
    memory = tmp_path / "_memory"  # next to the output by default
    manifest = json.loads((tmp_path / "a" / "manifest.json").read_text())
    assert memory.is_dir() and manifest["memory"] == summary["this_run"]["memory"]
    counts = manifest["memory"]
    assert counts["written"] > 0 and counts["hits"] + counts["misses"] == 100

    # --no-memory: the memory is neither read nor written (a poisoned memory changes nothing).
    assert poison(memory) > 0
    before = snapshot(memory)
    assert main([*args, "--output", str(tmp_path / "b"), "--no-memory"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert "memory" not in summary["this_run"] and snapshot(memory) == before
    assert_same_rows(read_output(tmp_path / "b"), read_output(tmp_path / "a"))

    # With the memory (named explicitly), every row comes from it: no row is translated again.
    assert main([*args, "--output", str(tmp_path / "c"), "--memory", str(memory)]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["this_run"]["memory"] == {"hits": 100, "misses": 0, "written": 0}
    rows = read_output(tmp_path / "c")
    assert set(rows["translation"].to_list()) == {"POISON"}  # read from the memory, not translated
    index = pq.read_table(tmp_path / "c" / "_chunks.parquet")
    assert pc.sum(index.column("rows_out")).as_py() == 100
    assert not (tmp_path / "b" / "_memory").exists() and not (tmp_path / "c" / "_memory").exists()

    # Other search settings: another namespace, nothing read from the first one.
    assert args[-4:-2] == ["--beam", "1"]
    assert main([*args[:-3], "2", *args[-2:], "--output", str(tmp_path / "d")]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["this_run"]["memory"]["hits"] < 100
    assert "POISON" not in read_output(tmp_path / "d")["translation"]
    assert len([p for p in memory.iterdir() if p.is_dir()]) == 2
