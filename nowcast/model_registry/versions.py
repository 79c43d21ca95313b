"""Immutable model versions, the status document (champion pointer) and :class:`ModelRegistry`."""

from __future__ import annotations

import contextlib
import getpass
import hashlib
import json
import logging
import os
import socket
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from nowcast.model_registry.backend import _Storage
from nowcast.model_registry.base import (
    CHECKPOINT_NAME,
    FORMAT,
    FORMAT_VERSION,
    CorruptModelError,
    LockHeldError,
    RegistryError,
    UnknownVersionError,
    VersionExistsError,
    _iso,
    now_utc,
    sha256_file,
)
from nowcast.model_registry.lock import RegistryLock
from nowcast.provenance import code_version_string

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ModelVersion:
    """One registered version: its id, manifest (dict) and current status."""

    version_id: str
    manifest: dict[str, Any]
    status: str = "candidate"

    @property
    def model(self) -> str:
        return str(self.manifest["model"])

    @property
    def model_options(self) -> dict[str, Any]:
        return dict(self.manifest.get("model_options") or {})

    @property
    def checksum(self) -> str:
        return str(self.manifest["checkpoint_sha256"])

    @property
    def created(self) -> str:
        return str(self.manifest.get("created", ""))

    def summary(self) -> dict[str, Any]:
        m = self.manifest
        return {
            "version": self.version_id,
            "status": self.status,
            "model": m.get("model"),
            "created": m.get("created"),
            "parent": m.get("parent"),
            "train_period": ((m.get("data") or {}).get("periods") or {}).get("train"),
            "score": (m.get("evaluation") or {}).get("score"),
        }


@dataclass
class RegistryStatus:
    """Contents of ``status.json``."""

    champion: str | None = None
    previous: list[str] = field(default_factory=list)  # former champions, most recent last
    statuses: dict[str, str] = field(default_factory=dict)
    revision: int = 0
    updated: str = ""

    def to_json(self) -> bytes:
        return json.dumps({"format": f"{FORMAT}-status", **self.__dict__}, indent=1, sort_keys=True).encode()

    @classmethod
    def from_bytes(cls, data: bytes, where: str) -> RegistryStatus:
        try:
            d = json.loads(data)
            return cls(
                champion=d.get("champion"),
                previous=list(d.get("previous", [])),
                statuses=dict(d.get("statuses", {})),
                revision=int(d.get("revision", 0)),
                updated=str(d.get("updated", "")),
            )
        except (ValueError, TypeError) as exc:
            raise RegistryError(f"{where}: corrupt status document: {exc}") from exc


def new_version_id(checksum: str, at: pd.Timestamp | None = None) -> str:
    """A sortable id: ``YYYYMMDDTHHMMSSZ-<8 hex of the checkpoint sha256>``."""
    t = at if at is not None else now_utc()
    if t.tzinfo is not None:
        t = t.tz_convert("UTC")
    return f"{t.strftime('%Y%m%dT%H%M%SZ')}-{checksum[:8]}"


def _valid_id(version_id: str) -> str:
    if not version_id or "/" in version_id or version_id.startswith(".") or version_id.strip() != version_id:
        raise RegistryError(f"invalid version id {version_id!r}")
    return version_id


class ModelRegistry:
    """A registry of immutable model versions with a champion pointer; see the module docstring.

    Open an existing registry with ``ModelRegistry(url)``; create one with
    :meth:`create` (or ``ModelRegistry(url, create=True)``).
    """

    def __init__(self, url: str | Path, storage_options: dict[str, Any] | None = None, *, create: bool = False) -> None:
        self.url = str(url).rstrip("/")
        self.storage_options = storage_options
        self._s = _Storage(self.url, storage_options)
        self._status_lock_ttl = pd.Timedelta(seconds=60)
        if not self._s.exists("registry.json"):
            if not create:
                raise RegistryError(
                    f"{self.url}: no model registry found (missing registry.json); "
                    f"create it with `nowcast models init {self.url}`"
                )
            self._init_new()
        try:
            marker = json.loads(self._s.read_bytes("registry.json"))
        except (ValueError, FileNotFoundError) as exc:
            raise RegistryError(f"{self.url}/registry.json: unreadable registry marker: {exc}") from exc
        if marker.get("format") != FORMAT:
            raise RegistryError(f"{self.url}: not a nowcast model registry (format {marker.get('format')!r})")
        if int(marker.get("format_version", 0)) > FORMAT_VERSION:
            raise RegistryError(f"{self.url}: registry format {marker.get('format_version')} is newer than supported")

    @property
    def remote(self) -> bool:
        """True for object storage (``s3://`` ...), False for a local directory."""
        return self._s.remote

    @property
    def local_path(self) -> Path | None:
        """The registry directory for a local registry, None on object storage."""
        return None if self._s.remote else Path(self._s.root)

    @classmethod
    def create(cls, url: str | Path, storage_options: dict[str, Any] | None = None) -> ModelRegistry:
        """Create a registry at ``url`` (no-op when one already exists there)."""
        return cls(url, storage_options, create=True)

    def _init_new(self) -> None:
        self._s.makedirs("")
        self._s.makedirs("versions")
        marker = {"format": FORMAT, "format_version": FORMAT_VERSION, "created": _iso(now_utc())}
        try:
            self._s.write_exclusive("registry.json", json.dumps(marker, indent=1).encode())
        except FileExistsError:
            return
        if not self._s.exists("status.json"):
            self._s.write_atomic("status.json", RegistryStatus(updated=_iso(now_utc())).to_json())
        log.info("created model registry %s", self.url)

    # ------------------------------------------------------------------ reading
    def status(self) -> RegistryStatus:
        """The current status document (fresh read)."""
        try:
            data = self._s.read_bytes("status.json")
        except FileNotFoundError:
            return RegistryStatus()
        return RegistryStatus.from_bytes(data, f"{self.url}/status.json")

    def version_ids(self) -> list[str]:
        """Ids of the complete versions (with a manifest), oldest first."""
        out = []
        for name in self._s.listdir("versions"):
            if name.startswith("."):
                continue
            if self._s.exists(f"versions/{name}/manifest.json"):
                out.append(name)
        return sorted(out)

    def get(self, version_id: str) -> ModelVersion:
        """The version ``version_id``; :class:`UnknownVersionError` lists the known ones."""
        _valid_id(version_id)
        try:
            data = self._s.read_bytes(f"versions/{version_id}/manifest.json")
        except FileNotFoundError:
            known = ", ".join(self.version_ids()[-10:]) or "(none)"
            raise UnknownVersionError(f"{self.url}: unknown model version {version_id!r}; known: {known}") from None
        try:
            manifest = json.loads(data)
        except ValueError as exc:
            raise CorruptModelError(f"{self.url}/versions/{version_id}/manifest.json: corrupt manifest: {exc}") from exc
        return ModelVersion(version_id, manifest, self.status().statuses.get(version_id, "candidate"))

    def list(self) -> list[ModelVersion]:
        """All complete versions, oldest first, with their status."""
        st = self.status()
        out = []
        for vid in self.version_ids():
            try:
                manifest = json.loads(self._s.read_bytes(f"versions/{vid}/manifest.json"))
            except (ValueError, FileNotFoundError) as exc:
                log.warning("skipping version %s: unreadable manifest (%s)", vid, exc)
                continue
            out.append(ModelVersion(vid, manifest, st.statuses.get(vid, "candidate")))
        return out

    def champion(self) -> ModelVersion | None:
        vid = self.status().champion
        return self.get(vid) if vid else None

    def read_config(self, version_id: str) -> dict[str, Any]:
        try:
            return json.loads(self._s.read_bytes(f"versions/{_valid_id(version_id)}/config.json"))
        except FileNotFoundError:
            return {}

    def events(self) -> list[dict[str, Any]]:
        """The audit log (register / promote / rollback), oldest first."""
        try:
            text = self._s.read_bytes("events.jsonl").decode()
        except FileNotFoundError:
            return []
        return [json.loads(line) for line in text.splitlines() if line.strip()]

    # ------------------------------------------------------------------ checkpoints
    def checkpoint_path(self, version_id: str, cache_dir: str | Path | None = None, *, verify: bool = True) -> Path:
        """A local path of the version's checkpoint, verified against the manifest's sha256.

        Local registries return the file in place; remote ones download it once into
        ``cache_dir`` (default ``$NOWCAST_CACHE`` or ``~/.cache/nowcast/models``).
        Raises :class:`CorruptModelError` on a checksum mismatch or a missing file; with
        ``verify=False`` the path is returned unchecked (it may be missing or corrupt: load it
        with :meth:`load`, which verifies).
        """
        v = self.get(version_id)
        rel = f"versions/{version_id}/{CHECKPOINT_NAME}"
        if not self._s.remote:
            local = Path(self._s.path(rel))
            if not local.is_file():
                if not verify:
                    return local
                raise CorruptModelError(f"{self.url}: version {version_id} has no checkpoint file ({local})")
        else:
            base = Path(cache_dir or os.environ.get("NOWCAST_CACHE") or Path.home() / ".cache" / "nowcast" / "models")
            local = base / hashlib.sha256(self.url.encode()).hexdigest()[:12] / version_id / CHECKPOINT_NAME
            if local.is_file() and sha256_file(local) == v.checksum:
                return local
            try:
                self._s.get_file(rel, local)
            except FileNotFoundError as exc:
                if not verify:
                    return local
                raise CorruptModelError(f"{self.url}: version {version_id} has no checkpoint file") from exc
        if not verify:
            return local
        got = sha256_file(local)
        if got != v.checksum:
            raise CorruptModelError(
                f"{self.url}: checkpoint of version {version_id} is corrupt "
                f"(sha256 {got[:12]}... != manifest {v.checksum[:12]}...)"
            )
        return local

    def load(self, version_id: str, cache_dir: str | Path | None = None, **overrides: Any) -> Any:
        """Instantiate the nowcaster of ``version_id`` (checksum verified); CorruptModelError if it fails."""
        from nowcast.models.base import create_nowcaster

        v = self.get(version_id)
        path = self.checkpoint_path(version_id, cache_dir)
        options = {**v.model_options, **overrides, "checkpoint": path}
        try:
            return create_nowcaster(v.model, **options)
        except Exception as exc:
            raise CorruptModelError(
                f"{self.url}: version {version_id} ({v.model}) cannot be loaded: {type(exc).__name__}: {exc}"
            ) from exc

    # ------------------------------------------------------------------ writing
    def register(
        self,
        checkpoint: str | Path,
        *,
        model: str,
        model_options: dict[str, Any] | None = None,
        config: dict[str, Any] | None = None,
        data: dict[str, Any] | None = None,
        training: dict[str, Any] | None = None,
        evaluation: dict[str, Any] | None = None,
        parent: str | None = None,
        version_id: str | None = None,
        extra: dict[str, Any] | None = None,
    ) -> ModelVersion:
        """Add an immutable version (status ``candidate``) from a local checkpoint file.

        Writes checkpoint and config first, the manifest last and exclusively; raises
        :class:`VersionExistsError` when ``version_id`` is already registered.
        """
        ckpt = Path(checkpoint)
        if not ckpt.is_file():
            raise RegistryError(f"{ckpt}: checkpoint file not found")
        checksum = sha256_file(ckpt)
        created = now_utc()
        vid = _valid_id(version_id or new_version_id(checksum, created))
        if parent is not None:
            self.get(parent)
        prefix = f"versions/{vid}"
        if self._s.exists(f"{prefix}/manifest.json"):
            raise VersionExistsError(f"{self.url}: version {vid} already exists (versions are immutable)")
        if not self._s.remote:
            try:
                os.makedirs(self._s.path("versions"), exist_ok=True)
                os.mkdir(self._s.path(prefix))  # claim the id (local writers)
            except FileExistsError:
                if self._s.listdir(prefix):
                    raise VersionExistsError(
                        f"{self.url}: version {vid} is being written or exists (versions are immutable)"
                    ) from None
            except OSError as exc:
                raise self._s._wrap(prefix, exc) from exc
        self._s.put_file(ckpt, f"{prefix}/{CHECKPOINT_NAME}")
        self._s.write_atomic(f"{prefix}/config.json", json.dumps(config or {}, indent=1, default=str).encode())
        manifest = {
            "format": f"{FORMAT}-manifest",
            "version": vid,
            "model": model,
            "model_options": model_options or {},
            "created": _iso(created),
            "parent": parent,
            "checkpoint": CHECKPOINT_NAME,
            "checkpoint_sha256": checksum,
            "checkpoint_bytes": ckpt.stat().st_size,
            "code_version": code_version_string(),
            "data": data or {},
            "training": training or {},
            "evaluation": evaluation or {},
            **(extra or {}),
        }
        try:
            self._s.write_exclusive(f"{prefix}/manifest.json", json.dumps(manifest, indent=1, default=str).encode())
        except FileExistsError:
            raise VersionExistsError(f"{self.url}: version {vid} already exists (versions are immutable)") from None
        with self._status_update() as st:
            st.statuses.setdefault(vid, "candidate")
        self._event("register", vid, reason=f"model {model}, parent {parent}")
        log.info("registered model version %s in %s", vid, self.url)
        return ModelVersion(vid, manifest, "candidate")

    @contextlib.contextmanager
    def _status_update(self) -> Iterator[RegistryStatus]:
        """Read-modify-write of status.json under the short status lock; one atomic write."""
        lock = RegistryLock(self._s, "status.lock", self._status_lock_ttl)
        deadline = now_utc() + pd.Timedelta(seconds=10)
        while True:
            try:
                lock.acquire()
                break
            except LockHeldError:
                if now_utc() > deadline:
                    raise
                threading.Event().wait(0.05)
        try:
            st = self.status()
            yield st
            st.revision += 1
            st.updated = _iso(now_utc())
            self._s.write_atomic("status.json", st.to_json())
        finally:
            lock.release()

    def _event(self, action: str, version: str | None, **fields: Any) -> None:
        rec = {"time": _iso(now_utc()), "action": action, "version": version, "user": _user(), **fields}
        try:
            self._s.append_line("events.jsonl", json.dumps(rec, default=str))
        except RegistryError as exc:  # the status is the source of truth; the log is an audit trail
            log.warning("could not append to the events log: %s", exc)

    def promote(self, version_id: str, reason: str = "", *, verify: bool = True) -> ModelVersion:
        """Make ``version_id`` the champion; the old champion is retired (kept for rollback).

        With ``verify`` (default) the checkpoint is checked and loaded first, so a corrupt
        version can never become champion. Returns the new champion.
        """
        v = self.get(version_id)
        if verify:
            self.load(version_id)
        with self._status_update() as st:
            old = st.champion
            if old == version_id:
                raise RegistryError(f"{self.url}: version {version_id} is already the champion")
            if old is not None:
                st.statuses[old] = "retired"
                st.previous.append(old)
            st.champion = version_id
            st.statuses[version_id] = "champion"
        self._event("promote", version_id, previous=old, reason=reason)
        log.info("promoted %s (was %s) in %s", version_id, old, self.url)
        return ModelVersion(version_id, v.manifest, "champion")

    def rollback(self, reason: str = "", *, verify: bool = True) -> ModelVersion:
        """The previous champion becomes champion again; the current one is retired."""
        st0 = self.status()
        if not st0.previous:
            raise RegistryError(f"{self.url}: no previous champion to roll back to")
        target = st0.previous[-1]
        if verify:
            self.load(target)
        with self._status_update() as st:
            if not st.previous:
                raise RegistryError(f"{self.url}: no previous champion to roll back to")
            target = st.previous.pop()
            old = st.champion
            if old is not None:
                st.statuses[old] = "retired"
            st.champion = target
            st.statuses[target] = "champion"
        self._event("rollback", target, previous=old, reason=reason)
        log.info("rolled back %s -> %s in %s", old, target, self.url)
        return self.get(target)

    def lock(self, name: str = "retrain.lock", ttl: pd.Timedelta | str = "6h", owner: str | None = None) -> RegistryLock:
        """A lock file in the registry (``retrain.lock`` by default); use ``with reg.lock(): ...``."""
        return RegistryLock(self._s, name, pd.Timedelta(ttl), owner)

    def check_writable(self) -> None:
        """Raise RegistryError (naming the registry) when it cannot be written."""
        probe = f".probe-{uuid.uuid4().hex}"
        self._s.write_atomic(probe, b"")
        self._s.remove(probe)

    def append_ledger(self, record: dict[str, Any], name: str = "ledger.jsonl") -> None:
        """Append one JSON record to ``<registry>/<name>``."""
        self._s.append_line(name, json.dumps(record, default=str, sort_keys=True))

    def read_ledger(self, name: str = "ledger.jsonl") -> list[dict[str, Any]]:
        try:
            text = self._s.read_bytes(name).decode()
        except FileNotFoundError:
            return []
        return [json.loads(line) for line in text.splitlines() if line.strip()]


def _user() -> str:
    try:
        return f"{getpass.getuser()}@{socket.gethostname()}"
    except Exception:  # pragma: no cover - no user database in some containers
        return f"pid{os.getpid()}@{socket.gethostname()}"

