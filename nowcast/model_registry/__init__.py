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
  *exclusively* (:func:`nowcast.durability.write_exclusive`: hard link locally, ``If-None-Match: *`` conditional PUT on S3), so writing the
  same version twice fails with :class:`VersionExistsError`; a directory without a manifest is
  an incomplete upload and is ignored. Loading checks the checkpoint against the manifest's
  sha256, so a corrupt or replaced checkpoint is refused (:class:`CorruptModelError`).
- ``status.json`` is replaced as one document (:func:`nowcast.durability.write_atomic`: temp file + rename locally, one PUT on
  object storage), so a reader sees the old or the new champion, never a mix. Read-modify-write
  of the status is serialised by a short-lived ``status.lock``.
- Statuses: ``candidate`` (registered, never champion), ``champion`` (exactly one, or none in a
  fresh registry), ``retired`` (a former champion).

The service follows the champion with :class:`ChampionWatcher` (cheap: reads ``status.json``)
and loads it with :func:`load_champion` / :meth:`ModelRegistry.load`.

Modules: ``base`` (errors, clock, checksum), ``backend`` (byte-level local / object storage),
``lock`` (lock files with expiry), ``versions`` (:class:`ModelRegistry`, versions, status),
``watcher`` (service helpers). Import from the package: the names below are its API.
"""

from nowcast.model_registry.base import (
    CHECKPOINT_NAME,
    FORMAT,
    FORMAT_VERSION,
    STATUSES,
    CorruptModelError,
    LockHeldError,
    RegistryError,
    UnknownVersionError,
    VersionExistsError,
    _iso,  # noqa: F401 - used by training.retrain
    now_utc,
    sha256_file,
)
from nowcast.model_registry.lock import LockInfo, RegistryLock
from nowcast.model_registry.versions import (
    ModelRegistry,
    ModelVersion,
    RegistryStatus,
    new_version_id,
)
from nowcast.model_registry.watcher import ChampionWatcher, load_champion, seed_shipped_champion

__all__ = [
    "CHECKPOINT_NAME",
    "FORMAT",
    "FORMAT_VERSION",
    "STATUSES",
    "ChampionWatcher",
    "CorruptModelError",
    "LockHeldError",
    "LockInfo",
    "ModelRegistry",
    "ModelVersion",
    "RegistryError",
    "RegistryLock",
    "RegistryStatus",
    "UnknownVersionError",
    "VersionExistsError",
    "load_champion",
    "new_version_id",
    "now_utc",
    "seed_shipped_champion",
    "sha256_file",
]
