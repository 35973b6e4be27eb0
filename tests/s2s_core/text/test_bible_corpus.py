"""The shared Bible corpus, where present: its documented shape, its split rule, and `prepare` on it.

Skipped cleanly on a machine without ``../shared/data/bible-es-en`` (rebuild it with
``examples/bible-es-en/prepare.py`` or ``make data``).
"""

from __future__ import annotations

import hashlib
import importlib.util
from pathlib import Path

import polars as pl
import pytest

from s2s_core.text.prepare import FILTER_RULES, PrepareConfig, clean_parallel, read_parallel
from s2s_core.text.tokenizer import clean_text
from tasks.config import load_config

ROOT = Path(__file__).resolve().parents[3]
DATA = ROOT.parent / "shared" / "data" / "bible-es-en"
SIZES = {"train": 29_201, "dev": 950, "test": 926}  # documented in the developers' guide

pytestmark = pytest.mark.skipif(not (DATA / "train.parquet").exists(),
                                reason=f"Bible corpus not found at {DATA} (make data rebuilds it)")


@pytest.fixture(scope="module")
def splits() -> dict[str, pl.DataFrame]:
    return {name: read_parallel(str(DATA / f"{name}.parquet")) for name in SIZES}


def test_splits_have_the_documented_rows_and_unique_disjoint_ids(splits):
    assert {name: frame.height for name, frame in splits.items()} == SIZES
    ids = [set(frame["id"].to_list()) for frame in splits.values()]
    assert [len(s) for s in ids] == list(SIZES.values())  # unique within each split
    assert not (ids[0] & ids[1] or ids[0] & ids[2] or ids[1] & ids[2])
    for frame in splits.values():
        assert frame["src"].null_count() == frame["tgt"].null_count() == 0


def test_every_verse_is_in_the_split_the_example_script_assigns(splits):
    """The published split is the rebuild script's id-hash rule, so a rebuilt corpus matches it."""
    spec = importlib.util.spec_from_file_location("bible_prepare", ROOT / "examples/bible-es-en/prepare.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    for name, frame in splits.items():
        assert {script.split_of(i) for i in frame["id"]} == {name}
    # The rule itself, recomputed here: sha1 of the id, mod 100; < 3 test, < 6 dev.
    bucket = int(hashlib.sha1(b"Genesis 1:1").hexdigest(), 16) % 100
    assert script.split_of("Genesis 1:1") == ("test" if bucket < 3 else "dev" if bucket < 6 else "train")


def test_prepare_counts_match_an_independent_count_on_the_training_split(splits):
    """Each rule's count, recomputed in plain Python from the rule's definition, on 29k real pairs."""
    prep = load_config(ROOT / "configs/bible-es-en.yaml").data.prepare
    assert isinstance(prep, PrepareConfig)
    kept, report = clean_parallel(splits["train"], prep)

    expected = dict.fromkeys(FILTER_RULES, 0)
    seen: set[tuple[str, str]] = set()
    for src, tgt in zip(splits["train"]["src"], splits["train"]["tgt"], strict=True):
        src, tgt = clean_text(src), clean_text(tgt)
        ls, lt = len(src), len(tgt)
        longer, shorter = max(ls, lt), max(min(ls, lt), prep.ratio_min_chars)
        if ls == 0 or lt == 0:
            expected["empty"] += 1
        elif min(ls, lt) < prep.min_chars:
            expected["too_short"] += 1
        elif max(ls, lt) > prep.max_chars:
            expected["too_long"] += 1
        elif prep.max_length_ratio is not None and longer / shorter > prep.max_length_ratio:
            expected["length_ratio"] += 1
        elif (src, tgt) in seen:
            expected["duplicate"] += 1
        else:
            seen.add((src, tgt))
    assert {rule: report[rule] for rule in FILTER_RULES} == expected
    assert report["output_rows"] == kept.height == len(seen) == SIZES["train"] - sum(expected.values())
    assert expected["duplicate"] > 0 and expected["length_ratio"] > 0  # the real corpus exercises both
