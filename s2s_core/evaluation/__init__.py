"""Scoring translations: sacrebleu metrics with confidence intervals, paired tests, reports."""
