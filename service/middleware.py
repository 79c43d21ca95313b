"""Pure-ASGI middleware of the API: request limits and request metrics.

A plain ASGI class rather than ``@app.middleware("http")``: Starlette's ``BaseHTTPMiddleware``
runs each request through an extra task and memory streams, which costs more than a cached
tile itself.

Limits (from the settings): a query string longer than ``max_query_bytes`` gets 414, a header
block larger than ``max_header_bytes`` 431, a body larger than ``max_body_bytes`` 413. A
refused body is read and discarded first (up to ``DRAIN_LIMIT``), so the client, still
sending, reads the answer instead of a TCP reset. Request lines and header blocks too large
for the HTTP parser itself are answered by :mod:`service.server`.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from service.cache import LRUCache
from service.metrics import ServiceMetrics

log = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

#: at most this much of a refused body is read (and discarded) before answering
DRAIN_LIMIT = 64 * 2**20

#: scope key where a route leaves how :class:`HotCache` may answer its URL under newer store
#: versions: a function (snapshot) -> the 200 response (headers and body) for that snapshot, or
#: None when only the routes can tell
REVALIDATE = "nowcast.revalidate"


async def send_error(send: Send, status: int, detail: str, close: bool = False) -> None:
    """Send a JSON ``{"detail": ...}`` error response."""
    body = json.dumps({"detail": detail}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()), (b"cache-control", b"no-store")]
    if close:
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class RequestGuard:
    """Refuse oversized requests (414 / 431 / 413) and record each request's latency by route template."""

    def __init__(
        self,
        app: ASGIApp,
        metrics: ServiceMetrics | None = None,
        max_query_bytes: int = 8192,
        max_header_bytes: int = 16384,
        max_body_bytes: int = 65536,
    ) -> None:
        self.app = app
        self.metrics = metrics
        self.max_query_bytes = max_query_bytes
        self.max_header_bytes = max_header_bytes
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        t0 = time.perf_counter()
        refused, receive = await self._refuse(scope, receive, send)
        if refused:
            self._observe(scope, refused, t0)
            return
        status = 500

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            self._observe(scope, status, t0)

    def _observe(self, scope: Scope, status: int, t0: float) -> None:
        if self.metrics is not None:
            route = scope.get("route")
            self.metrics.observe_request(getattr(route, "path", "unmatched"), scope.get("method", ""), status, time.perf_counter() - t0)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> tuple[int, Receive]:
        """Answer an oversized request: (its status, receive); status 0 when the request may go on."""
        query = scope.get("query_string", b"")
        if len(query) > self.max_query_bytes:
            await send_error(send, 414, f"query string of {len(query)} bytes is too long: at most {self.max_query_bytes} bytes")
            return 414, receive
        headers = scope.get("headers", ())
        size = sum(len(k) + len(v) + 4 for k, v in headers)
        if size > self.max_header_bytes:
            await send_error(send, 431, f"request headers of {size} bytes are too large: at most {self.max_header_bytes} bytes in all")
            return 431, receive
        length: int | None = None
        chunked = False
        for k, v in headers:
            if k == b"content-length":
                try:
                    length = int(v)
                except ValueError:
                    length = None
            elif k == b"transfer-encoding":
                chunked = True
        if length is not None and length > self.max_body_bytes:
            read = await self._drain(receive, 0)
            await send_error(send, 413, self._too_large(length), close=read < length)
            return 413, receive
        if chunked and length is None:  # size unknown: buffer up to the limit, then replay it to the app
            messages: list[Message] = []
            read = 0
            while True:
                message = await receive()
                messages.append(message)
                if message["type"] != "http.request":
                    break
                read += len(message.get("body", b""))
                if read > self.max_body_bytes:
                    more = message.get("more_body", False)
                    total = await self._drain(receive, read) if more else read
                    await send_error(send, 413, self._too_large(total), close=total >= DRAIN_LIMIT)
                    return 413, receive
                if not message.get("more_body", False):
                    break

            async def replay() -> Message:
                return messages.pop(0) if messages else await receive()

            return 0, replay
        return 0, receive

    def _too_large(self, size: int) -> str:
        return f"request body of {size} bytes is too large: the API takes at most {self.max_body_bytes} bytes"

    @staticmethod
    async def _drain(receive: Receive, read: int) -> int:
        """Read and discard the rest of the request body (up to DRAIN_LIMIT bytes in all); the bytes read in all."""
        while read < DRAIN_LIMIT:
            message = await receive()
            if message["type"] != "http.request":
                break
            read += len(message.get("body", b""))
            if not message.get("more_body", False):
                break
        return read


class HotCache:
    """Answer repeated GETs of cacheable routes from their stored response, before FastAPI.

    A 200 response of a route in ``templates`` that carries an ETag is stored under its path
    and query string together with the store versions it was built from (the snapshot was
    checked unchanged before and after the handler ran). A later GET of the same URL is
    answered from it - 304 when its validators match - while the snapshot
    (:meth:`DataAccess.snapshot_async`: after a change, the new one once read, within
    ``refresh_wait_s``, else the previous one, as the routes answer) has the same versions.

    After a new frame or run the entry no longer matches. A route may have left in the scope,
    under :data:`REVALIDATE`, a function of the new snapshot that answers the same URL without
    the routes - the same response when what the URL shows is unchanged (a fixed-key tile whose
    frame was not replaced), a new one built from memory (a point series from the stacks the
    refresh read) - or None, and then the request goes through the routes again (which read
    their own version-keyed caches). Routing, parameter validation and serialisation are
    skipped only for byte-identical URLs whose answer is known, so every other request (errors
    included) is handled by the routes. Bounded by ``max_items`` and ``max_bytes``.
    """

    def __init__(self, app: ASGIApp, access: Any, templates: frozenset[str], entries: LRUCache[tuple] | None = None) -> None:
        self.app = app
        self.access = access
        self.templates = templates
        #: URL -> (versions, headers, body, etag, last-modified, route, revalidate); bounded by the caller
        self.entries: LRUCache[tuple] = entries if entries is not None else LRUCache(4096, max_bytes=64 * 2**20)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "GET":
            await self.app(scope, receive, send)
            return
        key = (scope["path"], scope.get("query_string", b""))
        entry = self.entries.get(key)
        # a URL the replay holds waits for a refresh like the routes; any other only notes the
        # snapshot it was built from (None while a refresh is due: then it is not stored)
        snap = await self._snapshot() if entry is not None else self._current()
        if snap is not None and entry is not None:
            if entry[0] != snap.versions:
                entry = self._revalidate(key, entry, snap)
            if entry is not None:
                await self._answer(scope, send, entry)
                return
        start: Message | None = None
        chunks: list[bytes] = []

        async def capture(message: Message) -> None:
            nonlocal start
            if message["type"] == "http.response.start":
                start = message
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))
            await send(message)

        await self.app(scope, receive, capture)
        route = scope.get("route")
        template = getattr(route, "path", None)
        if snap is None or start is None or start["status"] != 200 or template not in self.templates:
            return
        headers = list(start.get("headers", ()))
        etag = next((v for k, v in headers if k == b"etag"), None)
        if etag is None:
            return
        after = self._current()
        if after is None or after.versions != snap.versions:
            return  # the stores changed while the handler ran: do not keep this answer
        self._store(key, snap, headers, b"".join(chunks), route, scope.get(REVALIDATE))

    def _current(self) -> Any:
        """The snapshot while it is valid, else None (no store I/O, no wait)."""
        try:
            return self.access.current()
        except Exception:  # noqa: BLE001 - stores unavailable: the routes answer (503)
            return None

    async def _snapshot(self) -> Any:
        """The snapshot the routes would answer from now (None: stores unavailable, the routes answer 503)."""
        snap = self._current()
        if snap is not None:
            return snap
        try:
            return await self.access.snapshot_async()
        except Exception:  # noqa: BLE001
            return None

    def _store(self, key: tuple, snap: Any, headers: list, body: bytes, route: Any, revalidate: Any) -> tuple:
        etag = next(v for k, v in headers if k == b"etag")
        modified = next((v for k, v in headers if k == b"last-modified"), None)
        entry = (snap.versions, headers, body, etag.decode(), modified.decode() if modified else None, route, revalidate)
        self.entries.put(key, entry)
        return entry

    def _revalidate(self, key: tuple, entry: tuple, snap: Any) -> tuple | None:
        """``entry`` brought to ``snap`` by the function its route left (see :data:`REVALIDATE`), or None."""
        revalidate = entry[6]
        if revalidate is None:
            return None
        try:
            fresh = revalidate(snap)
        except Exception as exc:  # noqa: BLE001 - the routes answer (and report) it
            log.debug("replay of %s not revalidated: %s", key, exc)
            return None
        if fresh is None:
            return None
        headers, body = fresh
        if not any(k == b"etag" for k, _ in headers):
            return None
        return self._store(key, snap, headers, body, entry[5], revalidate)

    @staticmethod
    async def _answer(scope: Scope, send: Send, entry: tuple) -> None:
        from service.cache import not_modified

        _versions, headers, body, etag, modified, route, _revalidate = entry
        scope["route"] = route  # the request metrics label it by its route template
        inm = ims = None
        for k, v in scope.get("headers", ()):
            if k == b"if-none-match":
                inm = v.decode("latin-1")
            elif k == b"if-modified-since":
                ims = v.decode("latin-1")
        if (inm is not None or ims is not None) and not_modified(inm, ims, etag, modified):
            keep = [(k, v) for k, v in headers if k not in (b"content-length", b"content-type")]
            await send({"type": "http.response.start", "status": 304, "headers": keep})
            await send({"type": "http.response.body", "body": b""})
            return
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})
