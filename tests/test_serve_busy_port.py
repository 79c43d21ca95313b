"""`nowcast serve` on a port already in use (issue 13, item 7): a one-line error before anything starts."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_busy_port_is_refused_before_ingest_starts(tmp_path: Path) -> None:
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen(1)
    port = taken.getsockname()[1]
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "cli", "serve", "--port", str(port), "--store", str(tmp_path / "obs.zarr"),
             "--forecast-store", str(tmp_path / "fc.zarr")],
            cwd=tmp_path,
            env={**os.environ, "PYTHONPATH": str(REPO)},
            capture_output=True,
            text=True,
            timeout=120,
        )
    finally:
        taken.close()
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert f"cannot listen on 127.0.0.1:{port}" in proc.stderr and "another process uses it" in proc.stderr, proc.stderr
    assert "serving on" not in proc.stderr, "no URL is printed for a server that cannot start"
    assert not (tmp_path / "obs.zarr").exists(), "no ingest process was started"
    assert not (tmp_path / "var").exists() and not (tmp_path / "fc.zarr").exists()


def test_bind_gives_the_socket_uvicorn_serves_on() -> None:
    from cli.commands.serve import bind

    sock = bind("127.0.0.1", 0)
    try:
        assert sock.getsockname()[1] > 0
        client = socket.create_connection(sock.getsockname(), timeout=5)  # it listens already
        client.close()
    finally:
        sock.close()
