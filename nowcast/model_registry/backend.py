"""Byte-level access to a registry directory, local (``os``) or on object storage (fsspec):
atomic replace, exclusive create, append, rename."""

from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path
from typing import Any

from nowcast import durability
from nowcast.model_registry.base import RegistryError


class _Storage:
    """Byte-level access to the registry directory: local (os) or remote (fsspec).

    Atomic replace, exclusive create and the remote check are :mod:`nowcast.durability`'s
    (temporary + rename / hard link locally; one PUT / conditional PUT on object storage).
    """

    def __init__(self, url: str, storage_options: dict[str, Any] | None = None) -> None:
        self.url = str(url).rstrip("/")
        self.remote = durability.is_remote(self.url)
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
        with durability.atomic_path(local) as tmp:
            if self.remote:
                self.fs.get_file(self.path(rel), str(tmp))
            else:
                shutil.copyfile(self.path(rel), tmp)

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
            durability.write_atomic(self.path(rel), data, self.fs)
        except OSError as exc:
            raise self._wrap(rel, exc) from exc

    def write_exclusive(self, rel: str, data: bytes) -> None:
        """Create ``rel`` with ``data``; FileExistsError when it exists (link / If-None-Match)."""
        try:
            durability.write_exclusive(self.path(rel), data, self.fs)
        except FileExistsError as exc:
            raise FileExistsError(self.describe(rel)) from exc
        except OSError as exc:
            if exc.errno == errno.EEXIST:
                raise FileExistsError(self.describe(rel)) from exc
            raise self._wrap(rel, exc) from exc

    def put_file(self, local: Path, rel: str) -> None:
        try:
            if self.remote:
                self.fs.put_file(str(local), self.path(rel))
                return
            with durability.atomic_path(self.path(rel)) as tmp:
                shutil.copyfile(local, tmp)
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
