"""Session-wide fixtures shared by every test package."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterator
from typing import Any

import pytest

# Prefect reads its settings at import: point it at a throw-away home before any test imports it.
os.environ.setdefault("PREFECT_HOME", tempfile.mkdtemp(prefix="s2s-test-prefect-"))
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
# Task retries back off from 0.2 s instead of 2 s: fault tests exhaust them in seconds, not a minute.
os.environ.setdefault("S2S_RETRY_BASE_SECONDS", "0.2")


@pytest.fixture(scope="session")
def prefect_harness() -> Iterator[None]:
    """One temporary Prefect API (SQLite) for the whole session: flows run against it."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture(scope="session")
def s3_server() -> Iterator[dict[str, Any]]:
    """A real loopback S3 endpoint (moto) for fsspec/s3fs I/O tests.

    Yields ``{"endpoint_url": ..., "storage_options": {"endpoint_url": ...}}``. Dummy credentials and
    the region are set through environment variables (restored afterwards) so botocore never looks
    for real ones; buckets are created by the tests that need them.
    """
    moto_server = pytest.importorskip("moto.server")
    env = {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    saved = {key: os.environ.get(key) for key in env}
    os.environ.update(env)
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        endpoint_url = f"http://{host}:{port}"
        yield {"endpoint_url": endpoint_url, "storage_options": {"endpoint_url": endpoint_url}}
    finally:
        server.stop()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@pytest.fixture
def fault_proxy(s3_server) -> Iterator[Callable[..., dict[str, Any]]]:
    """Start fault-injecting proxies in front of the loopback S3 server: ``fault_proxy(Faults(...))``.

    Each call returns the storage options that route s3fs through a new proxy; the ``Faults`` object
    it was given counts what the proxy did and may be changed while it runs.
    """
    from tests.faults.proxy import FaultProxy, Faults

    proxies: list[FaultProxy] = []

    def start(faults: Faults | None = None) -> dict[str, Any]:
        proxy = FaultProxy(s3_server["endpoint_url"], faults or Faults())
        proxies.append(proxy)
        return {"endpoint_url": proxy.__enter__()}

    yield start
    for proxy in proxies:
        proxy.__exit__(None, None, None)
