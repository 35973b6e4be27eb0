"""The quality flags of a part: a ``flags`` column (list<string>) and per-flag counts in the marker."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq

from s2s_core.corpus import commit
from s2s_core.corpus.chunk import flag_counts, output_columns
from s2s_core.inference.translator import Translator
from tests.s2s_core.corpus.helpers import job, run_job, write_corpus


class FlagOnLetter(Translator):
    """Flags a piece ``copy`` when its source has the word 'a', ``repetition`` when it has 'd'."""

    def _flags(self, src_ids, best, text):
        words = self.tokenizers.src.decode([src_ids])[0].split()
        return tuple(f for f, w in (("repetition", "d"), ("copy", "a")) if w in words)


def test_parts_carry_a_flags_column_and_markers_count_them(tmp_path, translator):
    flagging = FlagOnLetter(translator.model, translator.tokenizers, translator.device)
    texts = ["a b c", "d e\nf a", None, "", "l k j", "b d"]
    write_corpus(tmp_path / "in/0.parquet", [f"r{i}" for i in range(len(texts))], texts, row_group_size=10)
    spec = job(tmp_path / "in", tmp_path / "out", chunk_rows=10)
    _, (record,) = run_job(flagging, spec)
    part = pq.read_table(tmp_path / "out" / record["part"])
    assert part.schema.field("flags").type == pa.list_(pa.string())
    assert part.column("flags").to_pylist() == [["copy"], ["repetition", "copy"], [], [], [], ["repetition"]]
    marker = json.loads((tmp_path / "out" / commit.marker_name(record["chunk"])).read_text())
    assert marker["flags"] == {"copy": 2, "repetition": 2}


def test_flags_is_an_output_column_name():
    assert "flags" in commit.OUTPUT_COLUMNS
    assert output_columns([])["flags"].type == pa.list_(pa.string())
    assert flag_counts(pa.array([[], ["copy"], None, ["copy", "repetition"]], pa.list_(pa.string()))) == \
        {"copy": 2, "repetition": 1}
