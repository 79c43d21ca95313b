"""The one lease (nowcast.durability.Lease) and its adapters' exception types."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from nowcast import durability
from nowcast.durability import FsLeaseStorage, Lease, LeaseHeld, LeaseInfo


def _lease(path: Path, ttl: float = 30.0, owner: str = "job", **kw: object) -> Lease:
    return Lease(FsLeaseStorage(), str(path), ttl, owner, **kw)  # type: ignore[arg-type]


def _doc(path: Path, *, pid: int = 1, host: str = "elsewhere", expires_in: float = 3600.0, token: str = "theirs") -> None:
    now = datetime.now(UTC)
    info = LeaseInfo("someone", pid, host, now.isoformat(), (now + timedelta(seconds=expires_in)).isoformat(), token)
    path.write_bytes(info.to_json())


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_two_leases_contend_and_the_error_names_the_holder(tmp_path: Path) -> None:
    p = tmp_path / "x.lock"
    a, b = _lease(p, owner="job-a"), _lease(p, owner="job-b")
    info = a.acquire()
    assert a.held and json.loads(p.read_text())["token"] == info.token == a.token
    with pytest.raises(LeaseHeld, match=rf"held by job-a \(pid {info.pid} on {socket.gethostname()}\) until {info.expires}"):
        b.acquire()
    assert not b.held and json.loads(p.read_text())["owner"] == "job-a"
    a.release()
    assert not p.exists()
    with b:  # free again
        assert json.loads(p.read_text())["owner"] == "job-b"
    assert not p.exists() and not Path(f"{p}.break").exists()


def test_an_expired_lease_is_taken_over_exactly_once(tmp_path: Path) -> None:
    p = tmp_path / "x.lock"
    for _ in range(5):
        _doc(p, expires_in=-60)
        winners: list[Lease] = []
        errors: list[BaseException] = []
        barrier = threading.Barrier(6)

        def contend(i: int, barrier: threading.Barrier = barrier, winners: list[Lease] = winners, errors: list[BaseException] = errors) -> None:
            lease = _lease(p, owner=f"job-{i}")
            barrier.wait()
            try:
                lease.acquire()
                winners.append(lease)
            except LeaseHeld as exc:
                errors.append(exc)

        threads = [threading.Thread(target=contend, args=(i,)) for i in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len(winners) == 1, [w.owner for w in winners]
        assert len(errors) == 5 and all(winners[0].owner in str(e) for e in errors), errors
        assert json.loads(p.read_text())["token"] == winners[0].token
        assert not Path(f"{p}.break").exists()
        winners[0].release()
        assert not p.exists()


def test_a_lease_whose_pid_is_gone_on_this_host_is_stale(tmp_path: Path) -> None:
    p = tmp_path / "x.lock"
    _doc(p, pid=_dead_pid(), host=socket.gethostname())
    with pytest.raises(LeaseHeld):  # without the pid check only the expiry counts
        _lease(p, pid_check=False).acquire()
    lease = _lease(p)
    assert lease.is_stale(lease.read())  # type: ignore[arg-type]
    lease.acquire()
    assert json.loads(p.read_text())["token"] == lease.token
    lease.release()
    # a dead pid on another host is not stale before its expiry
    _doc(p, pid=_dead_pid(), host="another-host")
    with pytest.raises(LeaseHeld, match="another-host"):
        _lease(p).acquire()


def test_refresh_after_a_takeover_raises(tmp_path: Path) -> None:
    p = tmp_path / "x.lock"
    a, b = _lease(p, ttl=0.2, owner="job-a"), _lease(p, owner="job-b")
    a.acquire()
    before = a.info.expires  # type: ignore[union-attr]
    time.sleep(0.05)
    a.refresh()  # ours: renewed
    assert a.info.expires > before and json.loads(p.read_text())["expires"] == a.info.expires  # type: ignore[union-attr]
    time.sleep(0.3)
    b.acquire()
    with pytest.raises(LeaseHeld, match=r"taken over by job-b"):
        a.refresh()
    assert not a.held
    assert json.loads(p.read_text())["token"] == b.token  # the takeover was not overwritten


def test_release_does_not_remove_someone_elses_lease(tmp_path: Path) -> None:
    p = tmp_path / "x.lock"
    a, b = _lease(p, ttl=0.1, owner="job-a"), _lease(p, owner="job-b")
    a.acquire()
    time.sleep(0.2)
    b.acquire()
    a.release()
    assert not a.held
    assert json.loads(p.read_text())["token"] == b.token
    b.release()
    assert not p.exists()


@pytest.mark.parametrize("content", [b"{not json", b"", b"[1, 2]", b'{"owner": "x"}', b'{"owner": "x", "pid": 1, "host": "h", "acquired": "", "expires": "soon", "token": "t"}'])
def test_a_corrupted_lease_file_is_stale(tmp_path: Path, content: bytes) -> None:
    p = tmp_path / "x.lock"
    p.write_bytes(content)
    lease = _lease(p)
    assert lease.read() == LeaseInfo.unreadable() and lease.read().expired()  # type: ignore[union-attr]
    lease.acquire()
    assert json.loads(p.read_text())["token"] == lease.token


def test_a_breaker_left_by_a_dead_process_does_not_block(tmp_path: Path) -> None:
    p = tmp_path / "x.lock"
    _doc(p, expires_in=-1)
    _doc(Path(f"{p}.break"), pid=_dead_pid(), host=socket.gethostname(), expires_in=60)
    lease = _lease(p)
    lease.acquire()
    assert json.loads(p.read_text())["token"] == lease.token
    assert not Path(f"{p}.break").exists()


def test_legacy_ingest_document_uses_the_heartbeat(tmp_path: Path) -> None:
    """An ingest lease from before leases carried ``expires``: heartbeat + the reader's ttl."""
    from ingest import WriterLock

    url = str(tmp_path / "obs.zarr")
    lock = Path(url + ".ingest.lock")
    lock.write_text(json.dumps({"token": "old", "pid": 1, "host": "elsewhere", "heartbeat": time.time()}))
    with pytest.raises(LeaseHeld, match="being written by ingest pid 1 on elsewhere"):
        WriterLock(url, ttl=30).acquire()
    lock.write_text(json.dumps({"token": "old", "pid": 1, "host": "elsewhere", "heartbeat": time.time() - 60}))
    with WriterLock(url, ttl=30) as w:
        doc = json.loads(lock.read_text())
        assert doc["token"] == w.token and doc["heartbeat"] > 0  # still readable by an older ingest


class _RacyRemote(FsLeaseStorage):
    """A local folder posing as object storage whose creation is check-then-put; ``intruder``
    overwrites the lease right after our write (a concurrent PUT that landed later)."""

    def __init__(self, intruder: bytes | None = None) -> None:
        super().__init__()
        self.remote = True
        self.intruder = intruder

    def write_exclusive(self, name: str, data: bytes) -> None:
        if Path(name).exists():
            raise FileExistsError(name)
        Path(name).write_bytes(data)
        if self.intruder is not None and not name.endswith(".break"):
            Path(name).write_bytes(self.intruder)


def test_object_storage_creation_is_checked_by_a_reread(tmp_path: Path) -> None:
    p = tmp_path / "x.lock"
    now = datetime.now(UTC)
    other = LeaseInfo("job-z", 4242, "other-host", now.isoformat(), (now + timedelta(hours=1)).isoformat(), "z")
    lease = Lease(_RacyRemote(other.to_json()), str(p), 30, "job-a")
    with pytest.raises(LeaseHeld, match=r"held by job-z \(pid 4242 on other-host\)"):
        lease.acquire()
    assert not lease.held
    p.unlink()
    ok = Lease(_RacyRemote(), str(p), 30, "job-a")
    ok.acquire()  # no intruder: the re-read confirms
    # on object storage a dead pid on "this host" says nothing (another machine may share the name)
    p.unlink()
    _doc(p, pid=_dead_pid(), host=socket.gethostname())
    with pytest.raises(LeaseHeld):
        Lease(_RacyRemote(), str(p), 30, "job-b").acquire()


def test_adapter_errors_are_lease_errors(tmp_path: Path) -> None:
    from ingest import LockHeld, WriterLock
    from nowcast.model_registry import LockHeldError, LockInfo, RegistryError

    assert issubclass(LockHeld, LeaseHeld) and issubclass(LockHeldError, LeaseHeld) and issubclass(LockHeldError, RegistryError)
    assert LockInfo is durability.LeaseInfo
    url = str(tmp_path / "obs.zarr")
    with WriterLock(url, ttl=30):
        with pytest.raises(LeaseHeld):
            WriterLock(url, ttl=30).acquire()
