"""Translate a Parquet corpus chunk by chunk, resumably, and verify the result (no torch, no Prefect).

Read top-down: ``plan`` (pin the settings in ``_plan.json``, list and fingerprint the input, cut it
into content-addressed chunks: a re-run translates only new or changed files) → ``chunk`` (translate one
chunk through a callable the caller passes in) → ``commit`` (part file + exclusive marker) →
``verify`` (every row in exactly once, then ``manifest.json``). ``files`` reads the input and
``idcheck`` checks ids in bounded memory; every step takes ``Store`` handles built by its caller.
"""
