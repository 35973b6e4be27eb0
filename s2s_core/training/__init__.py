"""Training a Seq2Seq: the loop, checkpoints and exact resume, LR schedules, multi-process runs."""
