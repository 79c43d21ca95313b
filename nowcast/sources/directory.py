"""The ``directory`` source: a drop folder that a producer writes files into.

A file is offered only once it is complete:

- names ending in a *part* suffix (``.part``, ``.tmp``, ``.partial``, ``.filepart``) and hidden
  files are ignored: a producer that writes ``x.h5.part`` and renames it to ``x.h5`` is safe;
- a file whose format states its own length is offered as soon as it is whole: HDF5 (the
  superblock's end-of-file address equals the file size), GRIB2 (section 0 length, ``7777``),
  gzip / bzip2 (the stream ends), PNG (``IEND``), GIF (trailer byte);
- any other file is offered once its size and modification time are unchanged across
  ``stable_polls`` polls; a file that claims to be incomplete but stops changing for
  ``give_up_seconds`` is offered anyway (it will fail to decode and be quarantined).

Keys are paths relative to the folder; signatures are ``size:mtime_ns``. Which files were
processed is tracked by the ingest pipeline in the store state, not by the source.
"""

from __future__ import annotations

import bz2
import logging
import struct
import time
import zlib
from pathlib import Path
from typing import Any

import pandas as pd

from nowcast.sources.base import (
    RADAR,
    Fetched,
    Item,
    NotAvailable,
    SourceBase,
    _check_kind,
    time_from_name,
)

log = logging.getLogger(__name__)

PART_SUFFIXES = (".part", ".tmp", ".partial", ".filepart", ".crdownload")
_HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
#: streams up to this size are decompressed to check that they end
_MAX_STREAM_CHECK = 256 * 1024**2


def content_complete(path: Path) -> bool | None:
    """True when the file's own structure says it is whole, False when it says it is not,
    None when the format gives no such information (unknown format)."""
    try:
        size = path.stat().st_size
        with path.open("rb") as fh:
            head = fh.read(64)
            if size == 0:
                return False
            if head.startswith(_HDF5_MAGIC):
                return _hdf5_complete(head, size)
            if head.startswith(b"GRIB"):
                if len(head) >= 16 and head[7] == 2:
                    total = struct.unpack(">Q", head[8:16])[0]
                    if total == size:
                        return True
                fh.seek(max(0, size - 4))
                return fh.read(4) == b"7777"
            if head.startswith(b"\x89PNG"):
                fh.seek(max(0, size - 12))
                return b"IEND" in fh.read(12)
            if head.startswith(b"GIF8"):
                fh.seek(size - 1)
                return fh.read(1) == b";"
            if head.startswith(b"\x1f\x8b") or head.startswith(b"BZh"):
                if size > _MAX_STREAM_CHECK:
                    return None
                fh.seek(0)
                return _stream_complete(fh.read(), gzip_=head.startswith(b"\x1f\x8b"))
    except OSError:
        return False
    return None


def _hdf5_complete(head: bytes, size: int) -> bool | None:
    version = head[8]
    try:
        if version in (0, 1):
            # sizes of offsets / lengths at bytes 13/14; base address follows the fixed part
            so = head[13]
            fixed = 24 if version == 0 else 28
            fmt = {4: "<I", 8: "<Q"}[so]
            base = struct.unpack(fmt, head[fixed : fixed + so])[0]
            eof = struct.unpack(fmt, head[fixed + 2 * so : fixed + 3 * so])[0]
        elif version in (2, 3):
            so = head[9]
            fmt = {4: "<I", 8: "<Q"}[so]
            base = struct.unpack(fmt, head[12 : 12 + so])[0]
            eof = struct.unpack(fmt, head[12 + 2 * so : 12 + 3 * so])[0]
        else:
            return None
    except (KeyError, struct.error):
        return None
    end = base + eof
    if size == end:
        return True
    if size < end:
        return False
    return None  # bigger than the superblock says: still being written, or trailing bytes


def _stream_complete(data: bytes, gzip_: bool) -> bool:
    try:
        if gzip_:
            d = zlib.decompressobj(wbits=31)
            d.decompress(data)
            return d.eof
        b = bz2.BZ2Decompressor()
        b.decompress(data)
        return b.eof
    except (zlib.error, OSError, EOFError):
        return False


class DirectorySource(SourceBase):
    """Files in a drop folder; see the module docstring.

    Parameters
    ----------
    path: the folder.
    pattern: glob of the files to take (``recursive`` uses ``**`` semantics via rglob).
    stable_polls: polls with unchanged size+mtime before a file of unknown format is taken.
    give_up_seconds: after this long unchanged, an incomplete-looking file is taken anyway.
    time_format: strptime format of a time in the file names (e.g. ``%Y%m%d%H%M``): files
        older than the backfill window are then skipped without reading them.
    """

    def __init__(
        self,
        name: str = "directory",
        *,
        path: str | Path,
        pattern: str = "*",
        recursive: bool = False,
        kind: str = RADAR,
        stable_polls: int = 2,
        give_up_seconds: float = 120.0,
        time_format: str | None = None,
        grid: object = None,
        store_cadence: object = None,
    ) -> None:
        self.name = name
        self.kind = _check_kind(kind)
        self.path = Path(path)
        self.pattern = pattern
        self.recursive = recursive
        if stable_polls < 1:
            raise ValueError(f"stable_polls must be >= 1, got {stable_polls}")
        self.stable_polls = int(stable_polls)
        self.give_up_seconds = float(give_up_seconds)
        self.time_format = time_format

    def _candidates(self) -> list[Path]:
        if not self.path.is_dir():
            raise NotAvailable(f"drop folder {self.path} does not exist", key=str(self.path))
        it = self.path.rglob(self.pattern) if self.recursive else self.path.glob(self.pattern)
        out = []
        for p in it:
            if p.name.startswith(".") or p.name.endswith(PART_SUFFIXES):
                continue
            if p.is_file():
                out.append(p)
        return sorted(out)

    def poll(self, now: pd.Timestamp, since: pd.Timestamp, state: dict[str, Any]) -> list[Item]:
        pending: dict[str, dict[str, Any]] = state.setdefault("pending", {})
        wall = time.time()
        items: list[Item] = []
        present: set[str] = set()
        for p in self._candidates():
            rel = p.relative_to(self.path).as_posix()
            try:
                st = p.stat()
            except FileNotFoundError:
                continue
            present.add(rel)
            sig = f"{st.st_size}:{st.st_mtime_ns}"
            t = time_from_name(p.name, self.time_format) if self.time_format else None
            if t is not None and t <= since:
                continue
            done = state.get("done", {})
            if done.get(rel, {}).get("sig") == sig or state.get("bad", {}).get(rel, {}).get("sig") == sig:
                pending.pop(rel, None)
                continue  # already processed (the pipeline records it)
            prev = pending.get(rel)
            if prev is None or prev["sig"] != sig:
                prev = {"sig": sig, "polls": 1, "since": wall}
                pending[rel] = prev
            else:
                prev["polls"] += 1
            complete = content_complete(p)
            stable = prev["polls"] >= self.stable_polls
            ready = (
                complete is True
                or (complete is None and stable)
                or (complete is False and stable and wall - prev["since"] >= self.give_up_seconds)
            )
            if ready:
                items.append(Item(key=rel, time=t, signature=sig, kind=self.kind))
        for rel in list(pending):
            if rel not in present:
                del pending[rel]
        return items

    def fetch(self, item: Item, state: dict[str, Any]) -> Fetched:
        p = self.path / item.key
        if not p.is_file():
            raise NotAvailable(f"{p} disappeared", key=item.key)
        state.get("pending", {}).pop(item.key, None)
        return Fetched(item=item, path=p, temporary=False)
