"""The training history: one record per logged step or dev evaluation.

How a record reads in a log line, and its JSON-lines copy (``train.jsonl``) in the run's logs folder.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from s2s_core.storage import Store

HISTORY = "train.jsonl"

_FORMATS = {"loss": "loss {:.3f}", "tokens_per_second": "{:.0f} tok/s", "dev_bleu": "dev BLEU {:.2f}",
            "dev_chrf": "chrF {:.2f}", "lr": "lr {:.2e}"}


def brief(record: dict) -> str:
    """``loss 2.345, 1234 tok/s, dev BLEU 12.34, chrF 40.12, lr 1.00e-03`` (the parts the record has)."""
    return ", ".join(fmt.format(record[k]) for k, fmt in _FORMATS.items() if k in record)


def write_history(logs: Store, records: Sequence[dict]) -> None:
    """Rewrite ``train.jsonl`` in ``logs`` whole (atomically: readers never see a partial history)."""
    logs.write_text(HISTORY, "".join(json.dumps(r, default=str) + "\n" for r in records))
