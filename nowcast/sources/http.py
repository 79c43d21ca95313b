"""The ``http`` source: files at URLs made from a template, fetched with httpx.

``url`` is a template: ``strftime`` placeholders are filled with the slot time (UTC), one URL
per provider ``cadence`` slot; ``latest_url`` optionally names an alias that always points to
the newest file (its time then comes from the reader). A ``preset`` (see
:mod:`nowcast.sources.presets`) fills ``url``/``latest_url``/``cadence`` for public providers.

Every request has a hard timeout: httpx's connect/read/write/pool timeouts are all
``timeout`` seconds, and a watchdog ends the whole request (headers and body) at ``timeout``
seconds after it started, whatever the server does: at the deadline it shuts the request's
socket down, which ends a read blocked on a server that drips bytes. Each request uses its own
connection (no keep-alive) so that the watchdog knows the socket from the first byte. Requests are conditional (``If-None-Match`` / ``If-Modified-Since``) when the
state remembers the URL's validators (``state["validators"]``, recorded by the pipeline
once an item was ingested or quarantined), so an unchanged "latest" file or a file that was
already quarantined is not downloaded again. The body is streamed to a temporary file (the
readers take paths) and its SHA-1 recorded; a body shorter than ``Content-Length`` is a
truncated transfer (retried), not a bad file.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import socket
import tempfile
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pandas as pd

from nowcast import dims
from nowcast.sources.base import (
    RADAR,
    Fetched,
    Item,
    NotAvailable,
    NotModified,
    SourceBase,
    SourceError,
    TransientError,
    _check_kind,
    slots_between,
)
from nowcast.sources.presets import get_preset

log = logging.getLogger(__name__)

class _Deadline:
    """Ends one request at ``seconds`` after its start: shuts its socket(s) down from a timer."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.expired = threading.Event()
        self._socks: list[Any] = []
        self._lock = threading.Lock()
        self._timer = threading.Timer(seconds, self._expire)
        self._timer.daemon = True

    def __enter__(self) -> _Deadline:
        self._timer.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._timer.cancel()

    def trace(self, event: str, info: dict[str, Any]) -> None:
        """httpx trace hook: remember the socket of each new connection (TCP, then TLS)."""
        if event in ("connection.connect_tcp.complete", "connection.start_tls.complete"):
            self.attach(info.get("return_value"))

    def attach(self, stream: Any) -> None:
        sock = stream.get_extra_info("socket") if stream is not None else None
        if sock is None:
            return
        with self._lock:
            self._socks.append(sock)
            late = self.expired.is_set()
        if late:
            self._shutdown(sock)

    def _expire(self) -> None:
        self.expired.set()
        with self._lock:
            socks = list(self._socks)
        for sock in socks:
            self._shutdown(sock)

    @staticmethod
    def _shutdown(sock: Any) -> None:
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:  # already closed
            pass


class HttpSource(SourceBase):
    """Radar (or lightning) files from URL templates; see the module docstring.

    Parameters
    ----------
    url: template with strftime placeholders (optional when ``latest_url`` or ``preset`` gives one).
    latest_url: alias of the newest file, polled with conditional requests.
    preset: name of a provider preset; ``preset_options`` fill its ``{fields}`` (e.g. base_url).
    cadence: provider cadence (default: the store cadence, ``store_cadence``).
    timeout: hard limit in seconds for each request.
    headers: extra request headers (e.g. an API key).
    max_bytes: larger bodies are refused (a guard against runaway downloads).
    """

    def __init__(
        self,
        name: str = "http",
        *,
        url: str | None = None,
        latest_url: str | None = None,
        preset: str | None = None,
        preset_options: dict[str, Any] | None = None,
        cadence: pd.Timedelta | str | None = None,
        timeout: float = 10.0,
        headers: dict[str, str] | None = None,
        max_bytes: int = 2 * 1024**3,
        kind: str = RADAR,
        verify: bool = True,
        store_cadence: pd.Timedelta | str = dims.DEFAULT_CADENCE,
        grid: object = None,
    ) -> None:
        self.name = name
        self.kind = _check_kind(kind)
        if preset:
            p = get_preset(preset).expand(**(preset_options or {}))
            url = url or p["url"]
            latest_url = latest_url or p["latest_url"]
            if cadence is None or "cadence" in (preset_options or {}):
                cadence = p["cadence"]
        if not url and not latest_url:
            raise ValueError(f"http source {name!r}: give url, latest_url or preset")
        if timeout <= 0:
            raise ValueError(f"http source {name!r}: timeout must be positive, got {timeout}")
        self.url = url
        self.latest_url = latest_url
        self.cadence = pd.Timedelta(cadence if cadence is not None else store_cadence)
        self.timeout = float(timeout)
        self.max_bytes = int(max_bytes)
        self._client = httpx.Client(
            timeout=httpx.Timeout(self.timeout),
            headers={"User-Agent": "nowcast-ingest", **(headers or {})},
            follow_redirects=True,
            verify=verify,
            limits=httpx.Limits(max_keepalive_connections=0),  # one connection per request: see _Deadline
        )
        self._tmp = Path(tempfile.mkdtemp(prefix=f"nowcast-{name}-"))

    # -- listing -----------------------------------------------------------------------
    def url_for(self, time: pd.Timestamp) -> str:
        """The URL of the slot ``time`` (strftime placeholders filled, UTC)."""
        if not self.url:
            raise ValueError(f"http source {self.name!r} has no url template")
        return dims.to_utc_timestamp(time).strftime(self.url)

    def poll(self, now: pd.Timestamp, since: pd.Timestamp, state: dict[str, Any]) -> list[Item]:
        items: list[Item] = []
        if self.url:
            items.extend(Item(key=self.url_for(t), time=t, kind=self.kind) for t in slots_between(since, now, self.cadence))
        if self.latest_url:
            items.append(Item(key=self.latest_url, time=None, kind=self.kind))
        return items

    # -- fetching ----------------------------------------------------------------------
    def fetch(self, item: Item, state: dict[str, Any]) -> Fetched:
        url = item.key
        # validators are recorded by the pipeline once an item is processed (ingested or
        # quarantined), never at fetch time: a crash before the append must not turn the
        # next request for a never-ingested file into a 304
        headers = {}
        known = state.get("validators", {}).get(url, {})
        if known.get("etag"):
            headers["If-None-Match"] = known["etag"]
        if known.get("last_modified"):
            headers["If-Modified-Since"] = known["last_modified"]
        name = os.path.basename(urlsplit(url).path) or "download"
        fd, tmp_name = tempfile.mkstemp(prefix="part-", suffix=f"-{name}"[-80:], dir=self._tmp)
        path = Path(tmp_name)
        start = time.monotonic()
        sha = hashlib.sha1()
        too_slow = f"{url}: transfer exceeded the {self.timeout:g} s timeout"
        deadline = _Deadline(self.timeout)
        try:
            with deadline, os.fdopen(fd, "wb") as out, self._client.stream(
                "GET", url, headers=headers, extensions={"trace": deadline.trace}
            ) as resp:
                deadline.attach(resp.extensions.get("network_stream"))
                self._check_status(resp, url)
                expected = resp.headers.get("Content-Length")
                if expected is not None and int(expected) > self.max_bytes:
                    raise SourceError(f"{url}: {expected} bytes exceeds max_bytes={self.max_bytes}", key=url)
                received = 0
                for chunk in resp.iter_raw():  # as the bytes arrive, whatever their size
                    received += len(chunk)
                    if received > self.max_bytes:
                        raise SourceError(f"{url}: body exceeds max_bytes={self.max_bytes}", key=url)
                    if deadline.expired.is_set():
                        raise TransientError(too_slow, key=url)
                    out.write(chunk)
                    sha.update(chunk)
                if deadline.expired.is_set():  # a body without Content-Length ends at the shutdown
                    raise TransientError(too_slow, key=url)
                if expected is not None and received != int(expected):
                    raise TransientError(f"{url}: truncated transfer ({received} of {expected} bytes)", key=url)
                got = {"sha1": sha.hexdigest()}
                if resp.headers.get("ETag"):
                    got["etag"] = resp.headers["ETag"]
                if resp.headers.get("Last-Modified"):
                    got["last_modified"] = resp.headers["Last-Modified"]
        except httpx.TimeoutException as exc:
            path.unlink(missing_ok=True)
            raise TransientError(f"{url}: timed out after {self.timeout:g} s ({type(exc).__name__})", key=url) from exc
        except httpx.TransportError as exc:  # resets, refused connections, protocol errors
            path.unlink(missing_ok=True)
            if deadline.expired.is_set():
                raise TransientError(too_slow, key=url) from exc
            raise TransientError(f"{url}: {type(exc).__name__}: {exc}", key=url) from exc
        except BaseException:
            path.unlink(missing_ok=True)
            raise
        if resp.headers.get("Content-Encoding") not in (None, "identity"):
            # iter_raw keeps transfer-encoded bytes; decode those we understand
            path = self._decode_content(path, resp.headers["Content-Encoding"], url)
        log.debug("fetched %s (%d bytes, %.2f s)", url, received, time.monotonic() - start)
        return Fetched(item=item, path=path, temporary=True, validators=got)

    @staticmethod
    def _check_status(resp: httpx.Response, url: str) -> None:
        code = resp.status_code
        if code == 304:
            raise NotModified(f"{url}: not modified", key=url)
        if code in (403, 404, 410):
            raise NotAvailable(f"{url}: HTTP {code}", key=url)
        if code in (408, 425, 429) or code >= 500:
            raise TransientError(f"{url}: HTTP {code}", key=url)
        if code >= 400:
            raise SourceError(f"{url}: HTTP {code}", key=url)

    def _decode_content(self, path: Path, encoding: str, url: str) -> Path:
        import gzip
        import zlib

        data = path.read_bytes()
        try:
            if encoding == "gzip":
                data = gzip.decompress(data)
            elif encoding == "deflate":
                data = zlib.decompress(data)
            else:
                raise TransientError(f"{url}: unsupported Content-Encoding {encoding!r}", key=url)
        except (OSError, zlib.error, EOFError) as exc:
            raise TransientError(f"{url}: corrupt {encoding} transfer ({exc})", key=url) from exc
        path.write_bytes(data)
        return path

    def close(self) -> None:
        self._client.close()
        shutil.rmtree(self._tmp, ignore_errors=True)
