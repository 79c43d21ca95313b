"""The model registry: immutable model versions, a champion pointer, a retrain lock.

A registry is a directory, local or on S3-compatible storage (any fsspec URL, same scheme as
the observation store)::

    <registry>/registry.json                    marker: format, format_version, created
    <registry>/versions/<version_id>/checkpoint the weights (file, e.g. a torch checkpoint)
    <registry>/versions/<version_id>/config.json    the training configuration
    <registry>/versions/<version_id>/manifest.json  written LAST: model name and options,
                                                data fingerprint, code version, training
                                                metrics, evaluation scores, created time,
                                                parent (warm start), sha256 of the checkpoint
    <registry>/status.json                      champion pointer + status of every version +
                                                the stack of previous champions (for rollback)
    <registry>/events.jsonl                     append-only audit log of register/promote/rollback
    <registry>/ledger.jsonl                     retrain decisions (when no DAP ledger is configured)
    <registry>/retrain.lock                     held by a running retrain job (owner, pid, host, expiry)

Consistency:

- A version exists once its ``manifest.json`` exists. The manifest is written last and
  *exclusively* (``O_EXCL`` locally, ``If-None-Match: *`` conditional PUT on S3), so writing the
  same version twice fails with :class:`VersionExistsError`; a directory without a manifest is
  an incomplete upload and is ignored. Loading checks the checkpoint against the manifest's
  sha256, so a corrupt or replaced checkpoint is refused (:class:`CorruptModelError`).
- ``status.json`` is replaced as one document (temp file + ``os.replace`` locally, one PUT on
  object storage), so a reader sees the old or the new champion, never a mix. Read-modify-write
  of the status is serialised by a short-lived ``status.lock``.
- Statuses: ``candidate`` (registered, never champion), ``champion`` (exactly one, or none in a
  fresh registry), ``retired`` (a former champion).

The service follows the champion with :class:`ChampionWatcher` (cheap: reads ``status.json``)
and loads it with :func:`load_champion` / :func:`load_version`.
"""

from __future__ import annotations

import contextlib
import errno
import getpass
import hashlib
import json
import logging
import os
import shutil
import socket
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

log = logging.getLogger(__name__)

FORMAT = "nowcast-model-registry"
FORMAT_VERSION = 1
STATUSES = ("candidate", "champion", "retired")
CHECKPOINT_NAME = "checkpoint"
_CHUNK = 1 << 20


class RegistryError(RuntimeError):
    """A registry that cannot be opened/written, or an operation that is not allowed."""


class VersionExistsError(RegistryError):
    """A version id that is already in the registry (versions are immutable)."""


class UnknownVersionError(RegistryError, KeyError):
    """A version id that is not in the registry; the message lists the known ones."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class CorruptModelError(RegistryError):
    """A checkpoint whose checksum does not match its manifest, or that cannot be loaded."""


class LockHeldError(RegistryError):
    """The retrain lock is held by another live job."""


def now_utc() -> pd.Timestamp:
    return pd.Timestamp.now(tz="UTC")


def _iso(t: pd.Timestamp) -> str:
    return t.isoformat().replace("+00:00", "Z")


def sha256_file(path: str | Path) -> str:
    """Hex sha256 of a local file."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def _is_remote(url: str) -> bool:
    return "://" in url and not url.startswith("file://")


# --------------------------------------------------------------------------- storage backend

def _durable_temp(target: str, data: bytes) -> str:
    """Write ``data`` to a fsynced temp file beside ``target``; returns its path (caller moves it)."""
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=os.path.dirname(target) or ".")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return tmp

class _Storage:
    """Byte-level access to the registry directory: local (os) or remote (fsspec).

    Local operations use ``os`` directly for the atomic primitives (O_EXCL, rename);
    remote ones use fsspec (``xb`` = conditional PUT where the filesystem supports it).
    """

    def __init__(self, url: str, storage_options: dict[str, Any] | None = None) -> None:
        self.url = str(url).rstrip("/")
        self.remote = _is_remote(self.url)
        if self.remote:
            from nowcast.storage import filesystem

            self.fs, self.root = filesystem(self.url, storage_options)
            self.root = self.root.rstrip("/")
        else:
            self.fs = None
            self.root = self.url[len("file://") :] if self.url.startswith("file://") else self.url

    def path(self, rel: str) -> str:
        return f"{self.root}/{rel}" if rel else self.root

    def describe(self, rel: str) -> str:
        return f"{self.url}/{rel}" if rel else self.url

    # -- reading
    def exists(self, rel: str) -> bool:
        if self.remote:
            self.fs.invalidate_cache(self.path(rel))
            return bool(self.fs.exists(self.path(rel)))
        return os.path.exists(self.path(rel))

    def read_bytes(self, rel: str) -> bytes:
        try:
            if self.remote:
                self.fs.invalidate_cache(self.path(rel))
                return self.fs.cat_file(self.path(rel))
            with open(self.path(rel), "rb") as f:
                return f.read()
        except FileNotFoundError:
            raise
        except OSError as exc:
            raise RegistryError(f"{self.describe(rel)}: cannot read: {exc}") from exc

    def listdir(self, rel: str) -> list[str]:
        """Names (not paths) of the entries of a directory; [] when it does not exist."""
        if self.remote:
            p = self.path(rel)
            self.fs.invalidate_cache(p)
            try:
                entries = self.fs.ls(p, detail=False)
            except FileNotFoundError:
                return []
            return sorted(e.rstrip("/").rsplit("/", 1)[-1] for e in entries)
        try:
            return sorted(os.listdir(self.path(rel)))
        except FileNotFoundError:
            return []

    def get_file(self, rel: str, local: Path) -> None:
        """Copy a registry file to a local path (atomic rename at the end)."""
        local.parent.mkdir(parents=True, exist_ok=True)
        tmp = local.with_name(f".{local.name}.{uuid.uuid4().hex}.part")
        try:
            if self.remote:
                self.fs.get_file(self.path(rel), str(tmp))
            else:
                shutil.copyfile(self.path(rel), tmp)
            os.replace(tmp, local)
        finally:
            tmp.unlink(missing_ok=True)

    # -- writing
    def _wrap(self, rel: str, exc: OSError) -> RegistryError:
        if isinstance(exc, PermissionError) or exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
            return RegistryError(f"{self.describe(rel)}: registry is not writable ({exc.strerror or exc})")
        return RegistryError(f"{self.describe(rel)}: cannot write: {exc}")

    def makedirs(self, rel: str) -> None:
        if self.remote:
            return  # object storage has no directories
        try:
            os.makedirs(self.path(rel), exist_ok=True)
        except OSError as exc:
            raise self._wrap(rel, exc) from exc

    def write_atomic(self, rel: str, data: bytes) -> None:
        """Replace ``rel`` with ``data`` in one step (readers see old or new, never half)."""
        try:
            if self.remote:
                self.fs.pipe_file(self.path(rel), data)
                return
            target = self.path(rel)
            tmp = _durable_temp(target, data)
            try:
                os.replace(tmp, target)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
                raise
        except OSError as exc:
            raise self._wrap(rel, exc) from exc

    def write_exclusive(self, rel: str, data: bytes) -> None:
        """Create ``rel`` with ``data``; FileExistsError when it exists (O_EXCL / If-None-Match)."""
        try:
            if self.remote:
                try:
                    with self.fs.open(self.path(rel), "xb") as f:
                        f.write(data)
                except (NotImplementedError, ValueError, TypeError):
                    # no conditional writes on this filesystem: best effort (documented)
                    if self.exists(rel):
                        raise FileExistsError(self.describe(rel)) from None
                    self.fs.pipe_file(self.path(rel), data)
                return
            target = self.path(rel)
            tmp = _durable_temp(target, data)
            try:
                os.link(tmp, target)  # atomic, fails with EEXIST: complete content or nothing
            finally:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
        except FileExistsError:
            raise
        except OSError as exc:
            if exc.errno == errno.EEXIST:
                raise FileExistsError(self.describe(rel)) from exc
            raise self._wrap(rel, exc) from exc

    def put_file(self, local: Path, rel: str) -> None:
        try:
            if self.remote:
                self.fs.put_file(str(local), self.path(rel))
                return
            tmp = self.path(rel) + f".{uuid.uuid4().hex}.part"
            try:
                shutil.copyfile(local, tmp)
                os.replace(tmp, self.path(rel))
            finally:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
        except OSError as exc:
            raise self._wrap(rel, exc) from exc

    def append_line(self, rel: str, line: str) -> None:
        """Append one line (O_APPEND locally; read + rewrite on object storage)."""
        data = (line.rstrip("\n") + "\n").encode()
        try:
            if self.remote:
                old = self.read_bytes(rel) if self.exists(rel) else b""
                self.fs.pipe_file(self.path(rel), old + data)
                return
            fd = os.open(self.path(rel), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
            try:
                os.write(fd, data)
            finally:
                os.close(fd)
        except OSError as exc:
            raise self._wrap(rel, exc) from exc

    def remove(self, rel: str) -> None:
        try:
            if self.remote:
                self.fs.rm_file(self.path(rel))
            else:
                os.unlink(self.path(rel))
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise self._wrap(rel, exc) from exc

    def rename(self, src: str, dst: str) -> None:
        """Rename a file (atomic locally; copy + delete on object storage)."""
        if self.remote:
            self.fs.mv(self.path(src), self.path(dst))
        else:
            os.rename(self.path(src), self.path(dst))


# --------------------------------------------------------------------------- locks
@dataclass
class LockInfo:
    """Contents of a lock file."""

    owner: str
    pid: int
    host: str
    acquired: str
    expires: str
    token: str

    def expired(self, at: pd.Timestamp | None = None) -> bool:
        return pd.Timestamp(self.expires) <= (at or now_utc())

    def to_json(self) -> bytes:
        return json.dumps(self.__dict__, indent=1).encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> LockInfo:
        d = json.loads(data)
        return cls(**{k: d[k] for k in ("owner", "pid", "host", "acquired", "expires", "token")})


class RegistryLock:
    """A lock file with expiry: ``<registry>/<name>`` holding owner, pid, host and expiry time.

    Created atomically (``O_EXCL`` locally, conditional PUT on S3 where supported, else
    check-then-put: best effort). A lock whose expiry has passed is stale and is broken by the
    next acquirer (rename to a unique name first, so two breakers cannot both win locally).
    Use as a context manager; :meth:`refresh` extends a long job's lease.
    """

    def __init__(self, storage: _Storage, name: str, ttl: pd.Timedelta, owner: str | None = None) -> None:
        self._s = storage
        self.name = name
        self.ttl = pd.Timedelta(ttl)
        self.owner = owner or f"{getpass.getuser()}@{socket.gethostname()}"
        self.info: LockInfo | None = None

    def _new_info(self) -> LockInfo:
        t = now_utc()
        return LockInfo(self.owner, os.getpid(), socket.gethostname(), _iso(t), _iso(t + self.ttl), uuid.uuid4().hex)

    def read(self) -> LockInfo | None:
        """The current holder, or None when unlocked (an unreadable lock counts as expired)."""
        try:
            data = self._s.read_bytes(self.name)
        except FileNotFoundError:
            return None
        try:
            return LockInfo.from_bytes(data)
        except (ValueError, KeyError, TypeError):
            return LockInfo("unknown (unreadable lock)", 0, "", "", _iso(pd.Timestamp(0, tz="UTC")), "")

    def acquire(self) -> LockInfo:
        """Take the lock or raise :class:`LockHeldError` naming the holder."""
        for _ in range(50):
            info = self._new_info()
            try:
                self._s.write_exclusive(self.name, info.to_json())
                self.info = info
                log.info("acquired %s (expires %s)", self._s.describe(self.name), info.expires)
                return info
            except FileExistsError:
                holder = self.read()
                if holder is None:
                    continue  # released meanwhile
                if not holder.expired():
                    raise LockHeldError(
                        f"{self._s.describe(self.name)} is held by {holder.owner} (pid {holder.pid} on "
                        f"{holder.host or '?'}) until {holder.expires}"
                    ) from None
                self._break_stale(holder)
        raise LockHeldError(f"{self._s.describe(self.name)}: could not acquire (contended)")

    def _break_stale(self, holder: LockInfo) -> None:
        """Remove the stale lock ``holder`` under a short-lived breaker mutex.

        Only the job holding ``<lock>.break`` (created exclusively) may delete the lock, and
        only if it still carries the stale token; the lock itself is then re-taken by
        exclusive creation, so exactly one contender wins. A breaker mutex left by a crashed
        job is ignored after a minute.
        """
        breaker = f"{self.name}.break"
        try:
            self._s.write_exclusive(breaker, json.dumps({"created": _iso(now_utc())}).encode())
        except FileExistsError:
            try:
                created = pd.Timestamp(json.loads(self._s.read_bytes(breaker))["created"])
            except (FileNotFoundError, ValueError, KeyError, TypeError):
                return
            if now_utc() - created > pd.Timedelta(minutes=1):
                with contextlib.suppress(FileNotFoundError, OSError):
                    self._s.remove(breaker)
            time.sleep(0.01)  # another job is breaking it: look again shortly
            return
        try:
            current = self.read()
            if current is not None and current.token == holder.token and current.expired():
                log.warning("breaking stale lock %s of %s (expired %s)", self.name, holder.owner, holder.expires)
                self._s.remove(self.name)
        finally:
            with contextlib.suppress(FileNotFoundError, OSError):
                self._s.remove(breaker)

    def refresh(self) -> None:
        """Extend the expiry of a lock we hold."""
        if self.info is None:
            raise RegistryError(f"{self.name}: not held")
        current = self.read()
        if current is None or current.token != self.info.token:
            raise LockHeldError(f"{self._s.describe(self.name)}: lost the lock (taken over after expiry)")
        info = LockInfo(**{**self.info.__dict__, "expires": _iso(now_utc() + self.ttl)})
        self._s.write_atomic(self.name, info.to_json())
        self.info = info

    def release(self) -> None:
        """Remove the lock if we still hold it."""
        if self.info is None:
            return
        current = self.read()
        if current is not None and current.token == self.info.token:
            self._s.remove(self.name)
        else:
            log.warning("%s was taken over by another job; not removing it", self.name)
        self.info = None

    def __enter__(self) -> RegistryLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


# --------------------------------------------------------------------------- versions
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
            "code_version": code_version(),
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


def code_version() -> str:
    """The code version stamped on registered versions (:func:`nowcast.provenance.code_version_string`)."""
    from nowcast.provenance import code_version_string

    return code_version_string()


# --------------------------------------------------------------------------- service helpers
def seed_shipped_champion(registry: ModelRegistry, domain: str = "real") -> ModelVersion | None:
    """Register the ConvLSTM weights shipped with the package (with their model card) and make
    them the champion, when the registry has no champion yet; returns the version, or None when
    a champion exists. ``domain``: "real" or "synthetic" (:mod:`nowcast.models.weights`)."""
    from nowcast.models.weights import default_checkpoint, model_card

    if registry.status().champion is not None:
        return None
    path = default_checkpoint(domain)
    card = model_card(domain)
    version = registry.register(
        path,
        model="convlstm",
        data=card.get("data", {}),
        training={k: card.get(k) for k in ("config", "config_sha256", "seed", "train_seconds", "hardware", "code_version")},
        evaluation=card.get("evaluation", {}),
        extra={"shipped": domain},
    )
    return registry.promote(version.version_id, reason=f"initial champion: the shipped {domain} weights")


def load_champion(
    registry_url: str, storage_options: dict[str, Any] | None = None, cache_dir: str | Path | None = None, **overrides: Any
) -> Any:
    """The champion's nowcaster (checksum verified); RegistryError when there is no champion."""
    reg = ModelRegistry(registry_url, storage_options)
    champ = reg.status().champion
    if champ is None:
        raise RegistryError(f"{registry_url}: the registry has no champion yet")
    return reg.load(champ, cache_dir, **overrides)


class ChampionWatcher:
    """Follows the champion pointer of a registry (reads only ``status.json``).

    ``poll()`` returns ``(version_id, local checkpoint path)`` when the champion differs from
    the last one returned (the first poll returns the current champion), else None. Errors
    reading the registry are logged and reported as None (the caller keeps its model);
    :attr:`last_error` holds the message. The path is *not* verified here: load the version
    with :meth:`ModelRegistry.load` (checksum verified, raises :class:`CorruptModelError`)
    and call :meth:`mark_failed` when that fails, so the version is not returned again until
    the champion pointer moves; :meth:`accept` records a successful load.
    """

    def __init__(
        self, registry_url: str, storage_options: dict[str, Any] | None = None, cache_dir: str | Path | None = None
    ) -> None:
        self.registry_url = str(registry_url)
        self.storage_options = storage_options
        self.cache_dir = cache_dir
        self.current: str | None = None
        #: the champion pointer as last read (None: no champion, or not read yet)
        self.champion: str | None = None
        self.last_error: str | None = None
        self._failed: str | None = None
        self._serving: str | None = None
        self._reg: ModelRegistry | None = None

    def _registry(self) -> ModelRegistry:
        if self._reg is None:
            self._reg = ModelRegistry(self.registry_url, self.storage_options)
        return self._reg

    def poll(self) -> tuple[str, Path] | None:
        try:
            reg = self._registry()
            champ = reg.status().champion
            self.champion = champ
        except (RegistryError, OSError) as exc:
            self.last_error = f"cannot read model registry: {exc}"
            log.warning("%s", self.last_error)
            return None
        if champ is None or champ == self.current or champ == self._failed:
            return None
        try:
            path = reg.checkpoint_path(champ, self.cache_dir, verify=False)  # verified when loaded
        except (RegistryError, OSError) as exc:
            self._failed = champ
            self.last_error = str(exc)
            log.error("champion %s cannot be used: %s", champ, exc)
            return None
        self._serving = self.current  # what serves until the caller has loaded ``champ``
        self.current = champ
        self.last_error = None
        self._failed = None
        return champ, path

    def mark_failed(self, version_id: str, error: str) -> None:
        """Tell the watcher that loading a polled ``version_id`` failed: it is not returned
        again (until the champion pointer moves), and :attr:`current` goes back to the
        version returned before it (the one still serving)."""
        self._failed = version_id
        self.last_error = error
        if self.current == version_id:
            self.current = self._serving
        log.error("model version %s failed to load: %s", version_id, error)

    def accept(self, version_id: str) -> None:
        """Record that ``version_id`` is serving (optional: a polled version counts as serving
        unless :meth:`mark_failed` is called)."""
        self._serving = version_id
        self.current = version_id

