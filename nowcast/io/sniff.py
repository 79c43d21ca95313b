"""Format detection from file *content* (magic bytes, HDF5 attributes, headers), never names."""

from __future__ import annotations

from pathlib import Path

from nowcast.io.base import READERS, ReaderError, Source, as_reader


def _describe(head: bytes) -> str:
    sample = head[:16]
    return f"first bytes {sample!r}"


def sniff_source(src: Source) -> str:
    """Name of the registered reader whose ``accepts`` matches ``src``; ReaderError if none."""
    matches = [name for name, reader in READERS.items() if _safe_accepts(reader, src)]  # sorted by name
    if not matches:
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
