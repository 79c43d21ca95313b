"""Errors, clock and checksum shared by the model-registry modules."""

from __future__ import annotations

import pandas as pd

from nowcast.durability import LeaseHeld
from nowcast.provenance import sha256_file  # noqa: F401 - re-exported: the registry's checksums

FORMAT = "nowcast-model-registry"
FORMAT_VERSION = 1
STATUSES = ("candidate", "champion", "retired")
CHECKPOINT_NAME = "checkpoint"


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


class LockHeldError(RegistryError, LeaseHeld):
    """A registry lock (``retrain.lock``, ``status.lock``) is held by another live job, or was
    lost; also a :class:`nowcast.durability.LeaseHeld`."""


def now_utc() -> pd.Timestamp:
    return pd.Timestamp.now(tz="UTC")


def _iso(t: pd.Timestamp) -> str:
    return t.isoformat().replace("+00:00", "Z")


