"""Prometheus metrics of one app instance (own registry, no process-global state).

- ``nowcast_http_request_duration_seconds{route,method,status}`` histogram;
- ``nowcast_forecast_duration_seconds`` histogram of model run times (inference loop);
- ``nowcast_frame_to_forecast_seconds`` histogram: new frame detected -> its forecast published;
- ``nowcast_forecast_runs_total{outcome}`` counter;
- ``nowcast_observation_age_seconds`` / ``nowcast_forecast_age_seconds`` gauges, computed at scrape;
- ``nowcast_cache_{hits,misses}_total`` from the response cache;
- ``nowcast_gc_pause_seconds{generation}`` histogram: collections of Python's cyclic garbage
  collector in this process while :meth:`ServiceMetrics.watch_gc` watches (every thread, the
  event loop included, waits for one; full collections are generation 2).
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
GC_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)
FORECAST_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0)


class _ScrapeCollector:
    """Gauges and counters whose values are read at scrape time."""

    def __init__(self, ages: Callable[[], tuple[float | None, float | None]], cache_stats: Callable[[], tuple[int, int]]) -> None:
        self._ages = ages
        self._cache_stats = cache_stats

    def collect(self):  # noqa: ANN201
        obs_age, fc_age = self._ages()
        g = GaugeMetricFamily("nowcast_observation_age_seconds", "Age of the newest complete observed frame")
        if obs_age is not None:
            g.add_metric([], obs_age)
        yield g
        g = GaugeMetricFamily("nowcast_forecast_age_seconds", "Age of the newest forecast run (by init time)")
        if fc_age is not None:
            g.add_metric([], fc_age)
        yield g
        hits, misses = self._cache_stats()
        yield CounterMetricFamily("nowcast_cache_hits", "Response cache hits", value=hits)
        yield CounterMetricFamily("nowcast_cache_misses", "Response cache misses", value=misses)


class ServiceMetrics:
    """The metrics of one app; ``render()`` gives the Prometheus text exposition."""

    def __init__(
        self,
        ages: Callable[[], tuple[float | None, float | None]],
        cache_stats: Callable[[], tuple[int, int]],
    ) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.request_latency = Histogram(
            "nowcast_http_request_duration_seconds",
            "HTTP request latency by route template",
            ["route", "method", "status"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.forecast_latency = Histogram(
            "nowcast_forecast_duration_seconds", "Time to compute one forecast run", buckets=FORECAST_BUCKETS, registry=self.registry
        )
        self.frame_to_forecast = Histogram(
            "nowcast_frame_to_forecast_seconds",
            "From detecting a new observed frame to publishing its forecast",
            buckets=FORECAST_BUCKETS,
            registry=self.registry,
        )
        self.forecast_runs = Counter("nowcast_forecast_runs", "Forecast runs by outcome", ["outcome"], registry=self.registry)
        self.reload_failures = Counter(
            "nowcast_model_reload_failures", "Promoted/reloaded models that could not be loaded", registry=self.registry
        )
        self.build_info = Gauge("nowcast_model_info", "Active model (value 1)", ["model", "version", "fallback"], registry=self.registry)
        self.gc_pause = Histogram(
            "nowcast_gc_pause_seconds",
            "Collections of the cyclic garbage collector (every thread waits for one) by generation; 2: full",
            ["generation"],
            buckets=GC_BUCKETS,
            registry=self.registry,
        )
        self.registry.register(_ScrapeCollector(ages, cache_stats))

    def observe_request(self, route: str, method: str, status: int, seconds: float) -> None:
        self.request_latency.labels(route=route, method=method, status=str(status)).observe(seconds)

    def observe_forecast(self, event: dict) -> None:
        """Listener of the inference loop: {'outcome', 'compute_seconds', 'frame_to_forecast_seconds', ...}."""
        outcome = event.get("outcome", "ok")
        if outcome == "reload_failed":
            self.reload_failures.inc()
            return
        self.forecast_runs.labels(outcome=outcome).inc()
        if outcome == "ok":
            self.forecast_latency.observe(float(event.get("compute_seconds", 0.0)))
            if event.get("frame_to_forecast_seconds") is not None:
                self.frame_to_forecast.observe(float(event["frame_to_forecast_seconds"]))

    def set_model(self, model: str, version: str, fallback: bool) -> None:
        self.build_info.clear()
        self.build_info.labels(model=model, version=version, fallback=str(fallback).lower()).set(1)

    def watch_gc(self) -> Callable[[], None]:
        """Observe this process's garbage collections into ``gc_pause`` until the returned function
        is called (``gc.callbacks`` is process-wide: the app's lifespan adds and removes it)."""
        started: list[float] = []

        def on_gc(phase: str, info: dict) -> None:
            if phase == "start":
                started[:] = [time.perf_counter()]
            elif started:
                self.gc_pause.labels(generation=str(info["generation"])).observe(time.perf_counter() - started.pop())

        gc.callbacks.append(on_gc)

        def unwatch() -> None:
            if on_gc in gc.callbacks:
                gc.callbacks.remove(on_gc)

        return unwatch

    def render(self) -> bytes:
        return generate_latest(self.registry)


def now() -> float:
    return time.perf_counter()
