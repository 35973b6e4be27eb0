"""Fault injection on real components: a flaky S3 proxy and SIGKILL-and-resume trials (tests and bench)."""
