"""The inference loop: forecast each new complete observed frame, publish it atomically.

A background thread polls the observation store's version (every ``poll_seconds``). When
the last complete frame has no forecast yet, it reads the model's input window, runs the
nowcaster and writes the run into the forecasts store (data first, then the run's marker),
then applies retention. The loop is the forecasts store's single writer, never run per
request: ``nowcast serve`` runs it in a child process (:mod:`service.inference_process`, the
default) or, with ``inference_process = false``, as a thread of the API process.

Model choice: the configured model (with its checkpoint); when it cannot be created or
loaded, the fallback model (extrapolation) and the status says why.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pandas as pd

from nowcast.forecast_store import ForecastStore, RunInfo
from service.settings import ServiceSettings

if TYPE_CHECKING:
    from nowcast.store import ObservationStoreLike

log = logging.getLogger(__name__)

Listener = Callable[[dict[str, Any]], None]


class InferenceUnavailable(RuntimeError):
    """The inference process is not running or did not answer in time (the admin routes answer 503)."""


@dataclass
class ModelStatus:
    """Which model is active and why."""

    configured: str
    active: str = ""
    version: str = ""
    checkpoint: str | None = None
    fallback: bool = False
    message: str = ""
    loaded_at: pd.Timestamp | None = None
    #: registry version id when the model is the registry's champion
    registry_version: str | None = None
    #: set when a newly promoted champion could not be loaded (the previous model keeps serving)
    alert: str | None = None
    #: the model card of the serving weights (shipped weights, or a ``.card.json`` beside the checkpoint)
    card: dict[str, Any] | None = None


@dataclass
class LoopStatus:
    """Health of the loop (read by /v1/status)."""

    running: bool = False
    last_run_at: pd.Timestamp | None = None
    last_init_time: pd.Timestamp | None = None
    last_compute_seconds: float | None = None
    last_error: str | None = None
    consecutive_failures: int = 0
    runs: int = 0
    history: list[float] = field(default_factory=list)


def model_card_of(settings: ServiceSettings, champion: tuple[str, Any] | None, checkpoint: Any) -> dict[str, Any] | None:
    """The model card of the serving weights: the shipped domain's card for a registry version
    registered from shipped weights, else ``<checkpoint stem>.card.json`` beside the checkpoint."""
    from nowcast.models.weights import card_path_for, model_card

    if champion is not None and settings.model_registry:
        try:
            from nowcast.model_registry import ModelRegistry

            version = ModelRegistry(settings.model_registry).get(champion[0])
        except Exception as exc:  # the card is informative; never fail a model load for it
            log.debug("no manifest for %s: %s", champion[0], exc)
            version = None
        domain = version.manifest.get("shipped") if version is not None else None
        if domain:
            card = model_card(domain)
            # the card describes these weights only if the shipped file is the registered one
            return card if card and card.get("shipped_sha256") == version.checksum else None
    if checkpoint:
        card = card_path_for(checkpoint)
        if card.is_file():
            import json

            try:
                return json.loads(card.read_text())
            except (OSError, ValueError) as exc:
                log.warning("unreadable model card %s: %s", card, exc)
    return None


class InferenceLoop:
    """Runs the configured nowcaster on each new frame; see the module docstring."""

    #: the loop runs in the process that holds this object (create_app warms the model modules)
    in_process = True

    def __init__(self, settings: ServiceSettings, observation_store: ObservationStoreLike | None = None) -> None:
        self.settings = settings
        self._obs = observation_store
        self._fc: ForecastStore | None = None
        self._model: Any = None
        self.model_status = ModelStatus(configured=settings.model, checkpoint=str(settings.checkpoint) if settings.checkpoint else None)
        self.status = LoopStatus()
        self.listeners: list[Listener] = []
        self._seen_version: str | None = None
        self._detected: dict[pd.Timestamp, float] = {}
        self._run_lock = threading.RLock()
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._watcher: Any = None
        self._next_registry_poll = 0.0
        self._seed_error: str | None = None

    # -- model -----------------------------------------------------------------------------
    def _champion_watcher(self) -> Any:
        if self._watcher is None and self.settings.model_registry and self.settings.checkpoint is None:
            from nowcast.model_registry import ChampionWatcher

            if self.settings.shipped_champion:
                self._seed_registry()
            self._watcher = ChampionWatcher(self.settings.model_registry)
        return self._watcher

    def _seed_registry(self) -> None:
        """Create the registry when missing and make the shipped weights its champion when it
        has none (``shipped_champion``); a failure is logged and the loop falls back."""
        from nowcast.model_registry import ModelRegistry, seed_shipped_champion

        s = self.settings
        try:
            version = seed_shipped_champion(ModelRegistry.create(s.model_registry), s.shipped_champion)  # type: ignore[arg-type]
        except Exception as exc:  # missing weights, unwritable registry: serve the fallback, say why
            log.error("cannot seed the model registry %s with the shipped %s weights: %s", s.model_registry, s.shipped_champion, exc)
            self._seed_error = f"{type(exc).__name__}: {exc}"
            return
        if version is not None:
            log.info("model registry %s: initial champion %s (shipped %s weights)", s.model_registry, version.version_id, s.shipped_champion)

    def _create_configured(self, status: ModelStatus, champion: tuple[str, Any] | None) -> Any:
        """The configured model: the registry champion when one is given, else ``model`` (+ checkpoint)."""
        from nowcast.models import create_nowcaster

        s = self.settings
        if champion is not None:
            from nowcast.model_registry import ModelRegistry

            version_id, path = champion
            status.configured = f"registry champion {version_id}"
            status.checkpoint = str(path)
            try:
                return ModelRegistry(s.model_registry).load(version_id)  # type: ignore[arg-type]
            except Exception as exc:
                self._watcher.mark_failed(version_id, str(exc))
                raise
        options = dict(s.model_options)
        if s.checkpoint is not None:
            options["checkpoint"] = str(s.checkpoint)
        return create_nowcaster(s.model, **options)

    def load_model(self, champion: tuple[str, Any] | None = None) -> ModelStatus:
        """(Re)create the configured model; on failure fall back and record the reason.

        With ``model_registry`` set (and no explicit checkpoint) the registry's champion is
        served; a champion that cannot be loaded keeps the model that is serving, or falls back.
        """
        from nowcast.models import create_nowcaster

        s = self.settings
        status = ModelStatus(configured=s.model, checkpoint=str(s.checkpoint) if s.checkpoint else None)
        watcher = self._champion_watcher()
        if champion is None and watcher is not None:
            champion = watcher.poll() or (
                (watcher.current, None) if getattr(watcher, "current", None) else None
            )
            if champion is None and watcher.last_error:
                status.message = watcher.last_error
        try:
            if champion is not None and champion[1] is None:  # the champion is already serving: reload it
                champion = (champion[0], "")
            model = self._create_configured(status, champion)
        except Exception as exc:
            if champion is not None and self._model is not None and not self.model_status.fallback:
                log.error("champion %s cannot be loaded (%s); keeping %s", champion[0], exc, self.model_status.active)
                self.model_status.alert = f"promoted champion {champion[0]} could not be loaded ({exc}); still serving {self.model_status.version}"
                self._notify({"outcome": "reload_failed", "version": champion[0], "error": str(exc)})
                return self.model_status
            if champion is not None:
                self._notify({"outcome": "reload_failed", "version": champion[0], "error": str(exc)})
            reason = f"{type(exc).__name__}: {exc}"
            log.warning("model %r could not be loaded (%s); falling back to %r", s.model, reason, s.fallback_model)
            model = create_nowcaster(s.fallback_model)
            status.fallback = True
            status.message = f"configured model {status.configured!r} could not be loaded ({reason}); using {s.fallback_model!r}"
        if champion is None and watcher is not None and s.shipped_champion and not status.fallback:
            # the live defaults promise the shipped ConvLSTM: serving anything else is a fallback
            why = self._seed_error or watcher.last_error or "the registry has no champion"
            status.fallback = True
            status.message = f"no champion in the model registry {s.model_registry} ({why}); using {s.model!r}"
        status.active = str(getattr(model, "name", s.fallback_model))
        status.version = str(getattr(model, "version", ""))
        if champion is not None and not status.fallback:
            status.registry_version = champion[0]
            status.version = champion[0]
        if not status.fallback:
            status.card = model_card_of(self.settings, champion, getattr(model, "checkpoint", None))
        status.loaded_at = pd.Timestamp.now(tz="UTC").tz_localize(None)
        with self._run_lock:
            self._model = model
            self.model_status = status
        log.info("active model: %s %s%s", status.active, status.version, " (fallback)" if status.fallback else "")
        return status

    @property
    def model(self) -> Any:
        if self._model is None:
            self.load_model()
        return self._model

    # -- stores ----------------------------------------------------------------------------
    def observation_store(self) -> ObservationStoreLike | None:
        if self._obs is None:
            from nowcast.store import ObservationStore, StoreError

            try:
                self._obs = ObservationStore.open(self.settings.store, mode="r", storage_options=self.settings.store_options)
            except StoreError:
                return None
        return self._obs

    def forecast_store(self) -> ForecastStore | None:
        if self._fc is None:
            obs = self.observation_store()
            if obs is None:
                return None
            self._fc = ForecastStore.open_or_create(
                self.settings.forecast_store, obs.grid, storage_options=self.settings.forecast_store_options
            )
        return self._fc

    # -- one step --------------------------------------------------------------------------
    def step(self, force: bool = False) -> RunInfo | None:
        """Forecast the newest complete frame if it has no forecast yet (or ``force``); returns the run or None."""
        obs = self.observation_store()
        if obs is None:
            return None
        version = obs.version
        if version == self._seen_version and not force:
            return None
        detected = time.time()
        last = obs.last_complete()
        if last is None:
            self._seen_version = version
            return None
        last = pd.Timestamp(last)
        self._detected.setdefault(last, detected)
        fc_store = self.forecast_store()
        assert fc_store is not None
        if fc_store.has(last) and not force:
            self._seen_version = version
            return None
        with self._run_lock:
            model = self.model
            leads = [pd.Timedelta(minutes=m) for m in self.settings.lead_minutes]
            t0 = time.perf_counter()
            try:
                history = obs.window(last, int(getattr(model, "n_inputs", 1)))
                forecast = model.forecast(history, leads)
                compute = time.perf_counter() - t0
                info = fc_store.write(
                    forecast,
                    compute_seconds=compute,
                    extra={
                        "observation_version": version,
                        "fallback": self.model_status.fallback,
                        "model_registry_version": self.model_status.registry_version,
                    },
                )
            except Exception as exc:
                self.status.consecutive_failures += 1
                self.status.last_error = f"{type(exc).__name__}: {exc}"
                log.exception("forecast for %s failed", last)
                self._notify({"outcome": "error", "init_time": last, "error": self.status.last_error})
                # retry on the next poll only after a few failures' back-off: keep the version unseen
                if self.status.consecutive_failures >= 3:
                    self._seen_version = version
                return None
            try:
                fc_store.apply_retention(
                    keep=self.settings.retention_runs, max_age=pd.Timedelta(hours=self.settings.retention_hours)
                )
            except OSError as exc:  # retention must never stop forecasting
                log.warning("retention failed: %s", exc)
        published = time.time()
        self._seen_version = version
        st = self.status
        st.consecutive_failures = 0
        st.last_error = None
        st.last_run_at = pd.Timestamp.now(tz="UTC").tz_localize(None)
        st.last_init_time = last
        st.last_compute_seconds = compute
        st.runs += 1
        st.history = (st.history + [compute])[-100:]
        latency = published - self._detected.pop(last, detected)
        self._detected = {k: v for k, v in self._detected.items() if k > last}
        self._notify(
            {"outcome": "ok", "init_time": last, "compute_seconds": compute, "frame_to_forecast_seconds": latency, "model": info.model}
        )
        return info

    def _notify(self, event: dict[str, Any]) -> None:
        for fn in list(self.listeners):
            try:
                fn(event)
            except Exception:  # a broken listener must not stop inference
                log.exception("inference listener failed")

    # -- thread ----------------------------------------------------------------------------
    def start(self) -> None:
        """Start the background thread (idempotent)."""
        if self._thread is not None and self._thread.is_alive():
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="nowcast-inference", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        self.status.running = True
        try:
            if self._model is None:
                self.load_model()
            while not self._stop.is_set():
                self._follow_champion()
                try:
                    self.step()
                except Exception:
                    log.exception("inference step failed")
                self._wake.wait(self.settings.poll_seconds)
                self._wake.clear()
        finally:
            self.status.running = False

    def _follow_champion(self) -> None:
        """Load a newly promoted champion (checked every ``registry_poll_seconds``)."""
        watcher = self._champion_watcher()
        if watcher is None or time.monotonic() < self._next_registry_poll:
            return
        self._next_registry_poll = time.monotonic() + self.settings.model_registry_poll_seconds
        try:
            new = watcher.poll()
        except Exception:  # the registry must never stop forecasting
            log.exception("polling the model registry failed")
            return
        if new is not None:
            log.info("new champion %s: loading it", new[0])
            self.load_model(champion=new)

    def wake(self) -> None:
        """Check the store now instead of at the next poll."""
        self._wake.set()

    def stop(self, timeout: float = 30.0) -> None:
        """Ask the thread to stop and wait for the current run to finish."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
