"""Translate a Parquet corpus chunk by chunk, resumably, and verify the result (no torch, no Prefect).

Read top-down: ``plan`` (cut the input into chunks, pin ``_plan.json``) → ``chunk`` (translate one
chunk through a callable the caller passes in) → ``commit`` (part file + exclusive marker) →
``verify`` (every row in exactly once, then ``manifest.json``). ``files`` reads the input and
``idcheck`` checks ids in bounded memory; every step takes ``Store`` handles built by its caller.
"""
