"""`s2s translate` on corpora as data tools write them: CSV, a nightly schema change, categories."""

from __future__ import annotations

import json

import pandas as pd
import polars as pl
import pyarrow.parquet as pq

from s2s_core.corpus.verify import output_parts
from s2s_core.storage import Store
from tests.flows.test_cli import one_line_error, run_cli
from tests.flows.test_translate_flow import verses


def _args(trained: dict, input, output) -> list[str]:
    return ["translate", "--model", trained["model"], "--input", str(input), "--output", str(output),
            "--beam", "1", "--workers", "1", "--device", "cpu", "--no-memory"]


def test_a_csv_corpus_is_a_corpus_in_and_out(capsys, tiny_run, tmp_path):
    _, trained = tiny_run
    rows = verses(30).to_pandas()
    rows.to_csv(tmp_path / "corpus.csv", index=False)  # header id,src: not 31 lines of text
    code, out, err = run_cli(capsys, *_args(trained, tmp_path / "corpus.csv", tmp_path / "out"),
                             "--chunk-rows", "10")
    assert code == 0, err
    summary = json.loads(out)
    assert summary["rows_in"] == summary["rows_out"] == 30
    parts = [pq.read_table(p) for p in output_parts(Store(str(tmp_path / "out")))]
    assert sum(p.num_rows for p in parts) == 30 and not (tmp_path / "out" / "_staged").exists()
    assert [i for p in parts for i in p.column("id").to_pylist()] == rows["id"].tolist()
    # The same rows as CSV parts, readable by any CSV reader.
    code, _, err = run_cli(capsys, *_args(trained, tmp_path / "corpus.csv", tmp_path / "out-csv"),
                           "--chunk-rows", "10", "--output-format", "csv")
    assert code == 0, err
    csv_parts = output_parts(Store(str(tmp_path / "out-csv")))
    frame = pl.concat([pl.read_csv(p, infer_schema=False) for p in csv_parts])
    assert frame["translation"].to_list() == [t for p in parts for t in p.column("translation").to_pylist()]
    # A file whose name does not say its format is refused, with how to choose.
    (tmp_path / "corpus.data").write_text("id,src\n1,hola\n")
    code, _, err = run_cli(capsys, *_args(trained, tmp_path / "corpus.data", tmp_path / "out-data"))
    assert code == 2 and "cannot tell the format of" in one_line_error(err) and "--format" in err


def test_a_nightly_run_takes_an_added_column_and_a_category_text_column(capsys, tiny_run, tmp_path):
    _, trained = tiny_run
    rows = verses(30)
    corpus = tmp_path / "in"
    corpus.mkdir()
    rows[:15].write_parquet(corpus / "day-1.parquet")
    code, _, err = run_cli(capsys, *_args(trained, corpus, tmp_path / "out"))
    assert code == 0, err
    # The upstream adds a column, and pandas writes the text as a category (dictionary-encoded).
    newest = rows[15:].to_pandas().assign(ingested="2026-12-03")
    newest["src"] = newest["src"].astype("category")
    newest.to_parquet(corpus / "day-2.parquet")
    code, out, err = run_cli(capsys, *_args(trained, corpus, tmp_path / "out"))
    assert code == 0, err
    assert json.loads(out)["this_run"]["chunks_skipped"] == 1 and json.loads(out)["rows_out"] == 30
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["changes"]["files"]["reused"] == 1 and len(manifest["schemas"]) == 2
    last = pd.read_parquet(output_parts(Store(str(tmp_path / "out")))[-1])
    assert "ingested" in last.columns and list(last["src"]) == list(rows[15:]["src"])
    # Ids that turn from strings into integers are a type change: refused naming the file.
    pl.DataFrame({"id": [1], "src": ["hola"]}).write_parquet(corpus / "day-3.parquet")
    code, _, err = run_cli(capsys, *_args(trained, corpus, tmp_path / "out"))
    assert code == 2 and "id column 'id' of input file day-3.parquet holds integers" in one_line_error(err)
