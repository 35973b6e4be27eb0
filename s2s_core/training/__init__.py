"""Training a Seq2Seq, one unit per module.

``trainer`` (the step and the loop) drives ``data`` (examples, each epoch's batches), ``validation``
(dev scores, best weights, patience), ``checkpoint`` (``last.pt``/``best.pt``, exact resume),
``history`` (records, their log line, ``train.jsonl``) and ``state`` (progress, stop conditions);
``config`` holds ``TrainConfig``, ``schedule`` the LR schedules, ``distributed`` the multi-process helpers.
"""
