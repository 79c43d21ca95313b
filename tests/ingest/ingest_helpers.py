"""Helpers of the ingest tests: the real KNMI files, and a real HTTP server on loopback with
programmable faults.

Each path serves bytes; a per-path list of faults is consumed one request at a time (the
path then behaves normally). Faults: ``"404"``, ``"500"``, ``"503"`` (status codes),
``"slow"`` (sleep ``slow_seconds`` before answering), ``"drip"`` (send headers, then the body
slowly), ``"reset"`` (close the connection with a TCP RST, no answer), ``"cut"`` (announce the
full Content-Length, send half the body, close), ``"cut-nolength"`` (no Content-Length, the
full file's ETag, half the body, close: a truncation the client cannot see),
``"trickle"`` / ``"trickle-nolength"`` (one byte every ``trickle_interval`` seconds, with or
without Content-Length, for up to ``trickle_seconds``). Paths not served answer 404. Responses carry
an ETag and honour ``If-None-Match`` (304). POSTs are recorded in ``posts`` (204). ``log`` records (path, outcome) per request: the
status code (200, 304, 404) or the name of the injected fault.
"""

from __future__ import annotations

import hashlib
import socket
import struct
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pandas as pd

KNMI_DAY = "20100826"
KNMI_TEMPLATE = "/knmi/RAD_NL25_RAP_5min_%Y%m%d%H%M.h5"
T0 = pd.Timestamp("2010-08-26 00:00")


def slot(i: int) -> pd.Timestamp:
    """The i-th 5-min slot of the KNMI day."""
    return T0 + i * pd.Timedelta("5min")


def knmi_file(knmi_dir: Path, t: pd.Timestamp) -> Path:
    return knmi_dir / t.strftime("RAD_NL25_RAP_5min_%Y%m%d%H%M.h5")


class FaultServer:
    def __init__(self, slow_seconds: float = 1.5, trickle_interval: float = 0.25, trickle_seconds: float = 8.0) -> None:
        self.routes: dict[str, bytes] = {}
        self.faults: dict[str, list[str]] = {}
        self.log: list[tuple[str, int | str]] = []
        self.posts: list[tuple[str, bytes]] = []
        self.slow_seconds = slow_seconds
        self.trickle_interval = trickle_interval
        self.trickle_seconds = trickle_seconds
        self._lock = threading.Lock()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- configuration -------------------------------------------------------------------
    def serve(self, path: str, content: bytes, faults: list[str] | tuple[str, ...] = ()) -> str:
        with self._lock:
            self.routes[path] = content
            self.faults[path] = list(faults)
        return self.url(path)

    def fail(self, path: str, faults: list[str]) -> None:
        with self._lock:
            self.faults[path] = list(faults)

    def remove(self, path: str) -> None:
        with self._lock:
            self.routes.pop(path, None)

    def url(self, path: str = "/") -> str:
        assert self._httpd is not None
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}{path}"

    def requests(self, path: str) -> list[int | str]:
        with self._lock:
            return [s for p, s in self.log if p == path]

    # -- lifecycle -----------------------------------------------------------------------
    def start(self) -> FaultServer:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:  # keep test output clean
                pass

            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with server._lock:
                    server.posts.append((self.path, body))
                self.send_response(204)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def do_GET(self) -> None:  # noqa: N802
                path = self.path.split("?", 1)[0]
                with server._lock:
                    content = server.routes.get(path)
                    queue = server.faults.get(path, [])
                    fault = queue.pop(0) if queue else "ok"
                    if content is None:
                        server.log.append((path, 404))
                    elif fault != "ok":
                        server.log.append((path, fault))
                if fault in ("404", "500", "503") or content is None:
                    code = 404 if content is None else int(fault)
                    body = f"error {code}\n".encode()
                    self.send_response(code)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                    return
                if fault == "reset":
                    self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    self.connection.close()
                    self.close_connection = True
                    return
                if fault == "slow":
                    time.sleep(server.slow_seconds)
                etag = '"' + hashlib.sha1(content).hexdigest() + '"'
                if self.headers.get("If-None-Match") == etag:
                    with server._lock:
                        server.log.append((path, 304))
                    self.send_response(304)
                    self.send_header("ETag", etag)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                if fault == "ok":
                    with server._lock:
                        server.log.append((path, 200))
                self.send_response(200)
                self.send_header("Content-Type", "application/octet-stream")
                if fault.endswith("nolength"):  # a close-delimited body
                    self.send_header("Connection", "close")
                    self.close_connection = True
                else:
                    self.send_header("Content-Length", str(len(content)))
                self.send_header("ETag", etag)
                self.end_headers()
                try:
                    if fault == "cut-nolength":
                        self.wfile.write(content[: len(content) // 2])
                        self.wfile.flush()
                        self.connection.shutdown(socket.SHUT_RDWR)
                        return
                    if fault.startswith("trickle"):
                        end = time.monotonic() + server.trickle_seconds
                        for i in range(len(content)):
                            if time.monotonic() > end:
                                break
                            self.wfile.write(content[i : i + 1])
                            self.wfile.flush()
                            time.sleep(server.trickle_interval)
                        self.close_connection = True
                        self.connection.shutdown(socket.SHUT_RDWR)
                        return
                    if fault == "cut":
                        self.wfile.write(content[: len(content) // 2])
                        self.wfile.flush()
                        self.close_connection = True
                        self.connection.shutdown(socket.SHUT_RDWR)
                        return
                    if fault == "drip":
                        step = max(1, len(content) // 20)
                        for i in range(0, len(content), step):
                            self.wfile.write(content[i : i + step])
                            self.wfile.flush()
                            time.sleep(server.slow_seconds / 10)
                        return
                    self.wfile.write(content)
                except (BrokenPipeError, ConnectionResetError, OSError):
                    self.close_connection = True

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None


def assert_store_consistent(store_url: str, expected: dict[pd.Timestamp, Path], exact_counter: bool = True) -> None:
    """The reopened store holds exactly ``expected`` (time -> original file), each frame whole
    (equal to the file read directly), none written twice (``frames_written`` counts every
    successful append; after a crash it may lag by the frame being finished, so then it is
    only checked not to exceed the frames)."""
    import numpy as np

    from nowcast.io import read_radar
    from nowcast.store import ObservationStore

    store = ObservationStore.open(store_url)
    times = list(store.times())
    assert times == sorted(expected), (times, sorted(expected))
    written = store._root_attrs()["frames_written"]
    if exact_counter:
        assert written == len(expected), f"{written} appends for {len(expected)} frames: a frame was stored twice"
    else:
        assert len(expected) - 1 <= written <= len(expected), f"{written} appends for {len(expected)} frames"
    if not times:
        return
    ds = store.read_times(times)
    assert bool(ds["present"].all())
    for i, t in enumerate(times):
        original = read_radar(expected[t]).isel(time=0).values
        np.testing.assert_array_equal(ds["rain_rate"].isel(time=i).values, original)
