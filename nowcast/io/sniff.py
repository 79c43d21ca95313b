"""Format detection from file *content* (magic bytes, HDF5 attributes, headers), never names."""

from __future__ import annotations

from pathlib import Path

from nowcast.io.base import READERS, ReaderError, Source, as_reader


def _describe(head: bytes) -> str:
    sample = head[:16]
    return f"first bytes {sample!r}"


HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"


def _truncated_hdf5(src: Source) -> str | None:
    """"truncated HDF5 file: N of M bytes" when the superblock's end-of-file address lies
    beyond the end of an (uncompressed) HDF5 file, else None."""
    head = src.head
    if src.compression or not head.startswith(HDF5_SIGNATURE) or len(head) < 16:
        return None
    version = head[8]
    if version in (0, 1):  # offsets size at byte 13; base, free-space, end-of-file addresses follow
        size, at = head[13], 24 + (4 if version == 1 else 0)
    elif version in (2, 3):  # offsets size at byte 9; base, extension, end-of-file addresses follow
        size, at = head[9], 12
    else:
        return None
    if size not in (2, 4, 8) or len(head) < at + 3 * size:
        return None
    base = int.from_bytes(head[at : at + size], "little")
    eof = int.from_bytes(head[at + 2 * size : at + 3 * size], "little")
    actual = src.path.stat().st_size
    if base + eof > actual:
        return f"truncated HDF5 file: {actual} of {base + eof} bytes"
    return None


def sniff_source(src: Source) -> str:
    """Name of the registered reader whose ``accepts`` matches ``src``; ReaderError if none."""
    matches = [name for name, reader in READERS.items() if _safe_accepts(reader, src)]  # sorted by name
    if not matches:
        truncated = _truncated_hdf5(src)
        if truncated:
            raise ReaderError(src.path, truncated)
        comp = f" ({src.compression}-compressed)" if src.compression else ""
        raise ReaderError(src.path, f"unknown or unsupported format{comp}: {_describe(src.head)}")
    if len(matches) > 1:  # readers are written to be mutually exclusive; keep the first, deterministic
        import logging

        logging.getLogger(__name__).warning("%s: several readers accept it: %s; using %s", src.path, matches, matches[0])
    return matches[0]


def _safe_accepts(reader: object, src: Source) -> bool:
    try:
        return bool(as_reader(reader).accepts(src))
    except ReaderError:
        return False
    except Exception:  # a plug-in's sniffing bug must not break detection of the others
        return False


def sniff(path: str | Path) -> str:
    """Reader name for ``path`` detected from its content (gzip/bzip2 are looked through)."""
    from nowcast.io import _load_builtins

    _load_builtins()
    return sniff_source(Source.open_path(path))
