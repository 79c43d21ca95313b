"""The uvicorn configuration of the API: one place for ``nowcast serve``, the benchmark and deploys.

uvicorn's h11 parser refuses a request line or header block larger than its buffer
(``h11_max_incomplete_event_size``) with a bare ``400 Invalid HTTP request received`` and
closes the connection at once, so a client still sending its request sees a TCP reset.
:class:`GuardedH11Protocol` answers ``414`` when the request line did not fit and ``431``
when the headers did not, then reads and discards what the client still sends (bounded in
bytes and time) before closing, so the client reads the answer.

    config = uvicorn_config(app, settings)      # settings.host / port, limits, no access log
    uvicorn.Server(config).run()
"""

from __future__ import annotations

import json
import logging
import socket
from typing import Any

import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from service.settings import ServiceSettings

log = logging.getLogger(__name__)

#: after refusing an oversized head, discard at most this many further bytes ...
DISCARD_BYTES = 16 * 2**20
#: ... for at most this many seconds, then close
DISCARD_SECONDS = 5.0


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol answering oversized request lines (414) and header blocks (431)."""

    _discarding: int = -1

    def connection_made(self, transport: Any) -> None:  # type: ignore[override]
        # no Nagle delay whatever socket the server was given (asyncio sets it only for IPPROTO_TCP sockets)
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:
                pass
        super().connection_made(transport)

    def data_received(self, data: bytes) -> None:
        if self._discarding >= 0:
            self._discarding += len(data)
            if self._discarding > DISCARD_BYTES and not self.transport.is_closing():
                self.transport.close()
            return
        super().data_received(data)

    def send_400_response(self, msg: str) -> None:
        buffered, _ = self.conn.trailing_data
        limit = self.config.h11_max_incomplete_event_size or 16 * 1024
        if len(buffered) <= limit:  # malformed, not oversized: uvicorn's answer
            super().send_400_response(msg)
            return
        line_end = buffered.find(b"\r\n")
        if line_end < 0 or line_end > limit:
            status, detail = 414, f"request line longer than {limit} bytes (URL and query string too long)"
        else:
            status, detail = 431, f"request header block larger than {limit} bytes"
        self.logger.warning("refused request: %s", detail)
        body = json.dumps({"detail": detail}).encode()
        head = (
            f"HTTP/1.1 {status} {'URI Too Long' if status == 414 else 'Request Header Fields Too Large'}\r\n"
            f"content-type: application/json\r\ncontent-length: {len(body)}\r\nconnection: close\r\n\r\n"
        ).encode()
        self.transport.write(head + body)
        # keep reading (and dropping) what the client still sends, so it can read the answer
        self._discarding = 0
        try:
            self.transport.write_eof()
        except (OSError, NotImplementedError, RuntimeError):
            pass
        self.loop.call_later(DISCARD_SECONDS, self._close_if_open)

    def _close_if_open(self) -> None:
        if not self.transport.is_closing():
            self.transport.close()


def uvicorn_config(app: Any, settings: ServiceSettings, **overrides: Any) -> uvicorn.Config:
    """The uvicorn Config serving ``app`` for ``settings`` (host, port, request-head limit, guarded h11)."""
    options: dict[str, Any] = {
        "host": settings.host,
        "port": settings.port,
        "log_level": "warning",
        "lifespan": "on",
        "access_log": False,
        "http": GuardedH11Protocol,
        "h11_max_incomplete_event_size": settings.max_header_bytes,
    }
    options.update(overrides)
    return uvicorn.Config(app, **options)
