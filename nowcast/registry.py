"""A small generic registry: built-ins register by name, third parties through entry points.

Each family (readers, sources, models, metrics) owns one :class:`Registry`. Lookup errors
name the bad value and list the valid ones. Entry points of group ``nowcast.<family>`` are
loaded lazily on the first lookup; a broken plug-in is logged and skipped, never fatal.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from importlib.metadata import entry_points
from typing import Generic, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")


class UnknownNameError(KeyError):
    """A name that is not registered; the message lists the valid names."""

    def __str__(self) -> str:  # KeyError quotes its message; keep it readable
        return str(self.args[0]) if self.args else ""


class Registry(Generic[T]):
    """Name -> factory mapping for one family of plug-ins."""

    def __init__(self, family: str) -> None:
        self.family = family
        self._items: dict[str, T] = {}
        self._entry_points_loaded = False

    def register(self, name: str, item: T | None = None, *, replace: bool = False):  # noqa: ANN201
        """Register ``item`` under ``name``; usable as a decorator when ``item`` is omitted."""

        def _add(obj: T) -> T:
            if name in self._items and not replace and self._items[name] is not obj:
                raise ValueError(f"{self.family} {name!r} is already registered")
            self._items[name] = obj
            return obj

        if item is None:
            return _add
        return _add(item)

    def _load_entry_points(self) -> None:
        if self._entry_points_loaded:
            return
        self._entry_points_loaded = True
        for ep in entry_points(group=f"nowcast.{self.family}"):
            if ep.name in self._items:
                continue
            try:
                self._items[ep.name] = ep.load()
            except Exception as exc:  # a broken plug-in must not break the built-ins
                log.warning("could not load %s plug-in %r (%s): %s", self.family, ep.name, ep.value, exc)

    def get(self, name: str) -> T:
        """The item registered as ``name``; raises :class:`UnknownNameError` listing valid names."""
        self._load_entry_points()
        try:
            return self._items[name]
        except KeyError:
            valid = ", ".join(sorted(self._items)) or "(none)"
            raise UnknownNameError(f"unknown {self.family} {name!r}; valid: {valid}") from None

    def names(self) -> list[str]:
        self._load_entry_points()
        return sorted(self._items)

    def items(self) -> Iterator[tuple[str, T]]:
        self._load_entry_points()
        return iter(sorted(self._items.items()))

    def __contains__(self, name: object) -> bool:
        self._load_entry_points()
        return name in self._items

    def __len__(self) -> int:
        self._load_entry_points()
        return len(self._items)


Factory = Callable[..., T]
