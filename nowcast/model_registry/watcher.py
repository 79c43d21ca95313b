"""What the service uses: seeding the shipped champion, loading the champion, following it."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from nowcast.model_registry.base import RegistryError
from nowcast.model_registry.versions import ModelRegistry, ModelVersion

log = logging.getLogger(__name__)


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
