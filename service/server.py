"""The uvicorn configuration of the API: one place for ``nowcast serve``, the benchmark and deploys.

uvicorn's h11 parser refuses a request line or header block larger than its buffer
(``h11_max_incomplete_event_size``) with a bare ``400 Invalid HTTP request received`` and
closes the connection at once, so a client still sending its request sees a TCP reset.
:class:`GuardedH11Protocol` answers ``414`` when the request line did not fit and ``431``
when the headers did not, then reads and discards what the client still sends (bounded in
bytes and time) before closing, so the client reads the answer.

    config = uvicorn_config(app, settings)      # settings.host / port, limits, no access log
    uvicorn.Server(config).run()

``python -m service.server --workers N`` runs N API-only workers (``create_app()`` from the
``NOWCAST_*`` variables, no ingest, no inference) on one port, for a deployment with the
inference in its own process and a reverse proxy or CDN in front (docs/deploy.md).
"""

from __future__ import annotations

import argparse
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

    def connection_lost(self, exc: Exception | None) -> None:
        transport = self.transport
        super().connection_lost(exc)
        # Two reference cycles per closed connection would otherwise be left to the cyclic GC, whose
        # full collections stall every request in flight (~30 ms each, every ~45 s when clients
        # reconnect often); without them the connection's objects are freed right away:
        # - uvicorn cancels the keep-alive timer only on a clean close: after a reset the timer
        #   handle (holding a bound method of this protocol) stays referenced by the protocol;
        self._unset_keepalive_if_required()
        # - asyncio's selector transport keeps a bound method of itself (``_read_ready_cb``,
        #   CPython 3.11); its reader was removed, so nothing calls it again.
        if getattr(transport, "_read_ready_cb", None) is not None:
            transport._read_ready_cb = None

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


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m service.server",
        description="API-only uvicorn workers (settings from NOWCAST_* variables; no ingest, no inference).",
    )
    p.add_argument("--workers", type=int, default=1, help="worker processes sharing the port (default 1)")
    p.add_argument("--host", default=None, help="bind address (default: NOWCAST_HOST or 127.0.0.1)")
    p.add_argument("--port", type=int, default=None, help="port (default: NOWCAST_PORT or 8000)")
    return p


def main(argv: list[str] | None = None) -> int:
    """``python -m service.server [--workers N] [--host H] [--port P]``: API-only workers of create_app()."""
    p = build_parser()
    args = p.parse_args(argv)
    if args.workers < 1:
        p.error("--workers must be >= 1")
    overrides = {k: v for k, v in (("host", args.host), ("port", args.port)) if v is not None}
    settings = ServiceSettings(**overrides)
    config = uvicorn_config("service.app:create_app", settings, factory=True, workers=args.workers)
    log.info("serving the API with %d worker(s) on %s:%d", args.workers, settings.host, settings.port)
    if args.workers == 1:
        uvicorn.Server(config).run()
    else:  # as `uvicorn --workers`: one socket, a supervisor restarting workers that die
        from uvicorn.supervisors import Multiprocess

        Multiprocess(config, sockets=[config.bind_socket()]).run()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
