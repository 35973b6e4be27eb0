"""Corpus-level BLEU, chrF and TER with sacrebleu on detokenized text, with signatures."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

from sacrebleu.metrics import BLEU, CHRF, TER

METRICS = {"bleu": BLEU, "chrf": CHRF, "ter": TER}


@dataclass(frozen=True)
class Score:
    name: str
    score: float
    signature: str

    def to_dict(self) -> dict:
        return asdict(self)


def corpus_score(name: str, hypotheses: Sequence[str], references: Sequence[str]) -> Score:
    """One sacrebleu metric (``bleu``, ``chrf`` or ``ter``) with its default settings."""
    if len(hypotheses) != len(references):
        raise ValueError(f"{len(hypotheses)} hypotheses but {len(references)} references")
    metric = METRICS[name]()
    result = metric.corpus_score(list(hypotheses), [list(references)])
    return Score(name, float(result.score), str(metric.get_signature()))


def corpus_scores(hypotheses: Sequence[str], references: Sequence[str],
                  names: Sequence[str] = ("bleu", "chrf")) -> dict[str, Score]:
    return {name: corpus_score(name, hypotheses, references) for name in names}
