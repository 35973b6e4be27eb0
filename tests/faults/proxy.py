"""A fault-injecting HTTP proxy between s3fs and a loopback S3 API server.

Each request draws from a seeded generator: a share is answered ``503 SlowDown`` without reaching the
server, a share is dropped without an answer (half before the server sees it, half after, so the
client cannot tell whether a put landed), and the rest are forwarded unchanged. Two switches emulate
S3-compatible servers with weaker conditional writes: ``ignore_if_none_match`` strips the header (the
put overwrites), and ``conflict_answer`` rewrites a "412 PreconditionFailed" into another answer
(``"409"``: ConditionalRequestConflict; ``"412-bare"``: a 412 that does not name the condition).
"""

from __future__ import annotations

import asyncio
import random
import threading
from collections import Counter
from dataclasses import dataclass, field

import aiohttp
from aiohttp import web

SLOWDOWN = (b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>SlowDown</Code>'
            b"<Message>Please reduce your request rate.</Message></Error>")
CONFLICT = (b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>ConditionalRequestConflict</Code>'
            b"<Message>A conflicting conditional operation is in progress.</Message></Error>")
BARE_412 = (b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>PreconditionFailed</Code>'
            b"<Message>At least one of the preconditions you specified did not hold.</Message></Error>")
# Not forwarded either way: connection-level headers that each hop sets for itself.
HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "expect", "host",
              "proxy-connection", "te", "trailer", "upgrade", "content-encoding"}


@dataclass
class Faults:
    """What the proxy does to requests; change the fields while it runs (``FaultProxy.faults``)."""

    slowdown: float = 0.0  # share answered 503 SlowDown
    drop: float = 0.0  # share dropped without an answer
    ignore_if_none_match: bool = False
    conflict_answer: str | None = None  # None | "409" | "412-bare"
    outage_after: int | None = None  # an outage: every request from this one on is answered 503 ...
    outage_requests: int = 0  # ... this many of them (longer than a client's own retries ride out)
    seed: int = 0
    counts: Counter = field(default_factory=Counter)


class FaultProxy:
    """``with FaultProxy(upstream, Faults(...)) as url:`` gives an endpoint URL for s3fs."""

    def __init__(self, upstream: str, faults: Faults | None = None):
        self.upstream = upstream.rstrip("/")
        self.faults = faults or Faults()
        self._rng = random.Random(self.faults.seed)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True, name="fault-proxy")
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None
        self.url = ""

    def __enter__(self) -> str:
        self._thread.start()
        self.url = asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(30)
        return self.url

    def __exit__(self, *exc) -> None:
        asyncio.run_coroutine_threadsafe(self._stop(), self._loop).result(30)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def reseed(self, seed: int) -> None:
        self._rng.seed(seed)

    async def _start(self) -> str:
        self._session = aiohttp.ClientSession(auto_decompress=False,
                                              timeout=aiohttp.ClientTimeout(total=120))
        app = web.Application(client_max_size=1 << 30)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return f"http://127.0.0.1:{port}"

    async def _stop(self) -> None:
        if self._session:
            await self._session.close()
        if self._runner:
            await self._runner.cleanup()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        faults, counts = self.faults, self.faults.counts
        body = await request.read()
        counts["requests"] += 1
        roll = self._rng.random()
        if faults.outage_after is not None and faults.outage_after < counts["requests"] and \
                counts["outage_503"] < faults.outage_requests:
            counts["outage_503"] += 1
            return web.Response(status=503, body=SLOWDOWN, content_type="application/xml")
        if roll < faults.slowdown:
            counts["slowdown_503"] += 1
            return web.Response(status=503, body=SLOWDOWN, content_type="application/xml")
        drop = roll < faults.slowdown + faults.drop
        drop_after = drop and self._rng.random() < 0.5
        if drop and not drop_after:
            counts["dropped_before"] += 1
            return self._drop(request)
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP}
        if faults.ignore_if_none_match:
            headers = {k: v for k, v in headers.items() if k.lower() != "if-none-match"}
        async with self._session.request(request.method, self.upstream + request.rel_url.raw_path_qs,
                                         headers=headers, data=body, allow_redirects=False) as answer:
            data = await answer.read()
            status, answer_headers = answer.status, answer.headers
        if drop_after:  # the server acted on it; the client never learns whether it did
            counts["dropped_after"] += 1
            return self._drop(request)
        counts["forwarded"] += 1
        if status == 412 and faults.conflict_answer:
            counts[f"rewritten_{faults.conflict_answer}"] += 1
            if faults.conflict_answer == "409":
                return web.Response(status=409, body=CONFLICT, content_type="application/xml")
            return web.Response(status=412, body=BARE_412, content_type="application/xml")
        out = {k: v for k, v in answer_headers.items() if k.lower() not in HOP_BY_HOP}
        if request.method == "HEAD" and "Content-Length" in answer_headers:  # a HEAD's size is the object's
            out["Content-Length"] = answer_headers["Content-Length"]
            return web.Response(status=status, headers=out)
        return web.Response(status=status, body=data, headers=out)

    @staticmethod
    def _drop(request: web.Request) -> web.StreamResponse:
        if request.transport is not None:
            request.transport.abort()
        raise asyncio.CancelledError  # nothing is sent: the connection is already gone
