"""Run a DAP evaluation plan: validate against the data, run every split, record, report.

``prepare(plan)`` opens the store and checks everything that needs the data (period
present, leads on the store's cadence, crop inside the grid, enough blocks for the folds)
before any work. ``run_split(task)`` trains the learned methods on the split's training
blocks (``training.api.fit``), forecasts every valid start time of the test blocks with every
method and accumulates the streaming scores; it is a pure function of its task (a dask task
when the plan runs on a cluster). ``evaluate(...)`` ties it together: ledger, results
(netCDF + JSON) and the skill report.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import xarray as xr

from nowcast import dims
from nowcast.metrics import ScoreSuite
from training.dap.ledger import Ledger, code_version, device_info, package_versions
from training.dap.plan import MethodSpec, Plan, PlanError, canonical_json, plan_hash
from training.dap.splits import Geometry, Split, embargo_of, make_splits

if TYPE_CHECKING:
    from nowcast.store import ObservationStoreLike

log = logging.getLogger(__name__)

#: lead indices shown in the example panels: first, middle, last
EXAMPLE_MAX_PIXELS = 256


@dataclass(frozen=True)
class Prepared:
    """A plan checked against its data: the time axis, blocks and splits."""

    plan: Plan
    plan_hash: str
    cadence: pd.Timedelta
    geometry: Geometry
    lead_steps: tuple[int, ...]
    times: pd.DatetimeIndex
    blocks: list[pd.DatetimeIndex]
    splits: list[Split]
    grid_shape: tuple[int, int]
    store_info: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class SplitTask:
    """Everything one split needs (picklable, sent to a dask worker)."""

    plan_json: str
    split: Split
    geometry: Geometry
    lead_steps: tuple[int, ...]
    out_dir: str
    device: str
    keep_example: bool = True


def _open_store(plan: Plan):  # -> ObservationStore
    from nowcast.store import ObservationStore, StoreError

    try:
        return ObservationStore.open(
            plan.data.store, mode="r", storage_options=plan.data.storage_options
        )
    except (StoreError, FileNotFoundError, OSError, ValueError) as exc:
        raise PlanError(
            f"data.store {plan.data.store!r} cannot be opened ({exc}); build it first "
            "(nowcast import ... or a synthetic store, see docs/evaluation.md) or fix data.store"
        ) from exc


def method_inputs(method: MethodSpec) -> int:
    """Frames of history ``method`` needs (without training it)."""
    if method.train and method.model == "convlstm":
        from nowcast.models.network import ModelConfig

        return ModelConfig.model_validate(method.fit.get("model", {})).frames_needed
    if method.train:
        n = method.fit.get("model", {}).get("n_inputs", method.options.get("n_inputs"))
        if n is None:
            raise PlanError(
                f"method {method.label!r}: cannot tell its input frames; set fit.model.n_inputs"
            )
        return int(n)
    from nowcast.models import create_nowcaster

    try:
        return int(create_nowcaster(method.model, **method.options).n_inputs)
    except (TypeError, ValueError) as exc:
        raise PlanError(
            f"method {method.label!r}: model {method.model!r} rejects its options: {exc}"
        ) from exc


def prepare(plan: Plan) -> Prepared:
    """Check ``plan`` against its store and build the splits; PlanError says what to change."""
    store = _open_store(plan)
    cadence = pd.Timedelta(store.cadence)
    all_times = store.times()
    if len(all_times) == 0:
        raise PlanError(
            f"data.store {plan.data.store!r} holds no complete frame; import data first"
        )
    first, last = all_times[0], all_times[-1]
    start = pd.Timestamp(plan.data.start) if plan.data.start else first
    end = pd.Timestamp(plan.data.end) if plan.data.end else last
    if start < first or end > last:
        raise PlanError(
            f"data.store {plan.data.store!r} covers {first.isoformat()} .. {last.isoformat()} but the plan asks for "
            f"{start.isoformat()} .. {end.isoformat()}; change data.start/data.end or import the missing period"
        )
    times = all_times[(all_times >= start) & (all_times <= end)]
    if len(times) == 0:
        raise PlanError(
            f"data.store {plan.data.store!r} has no frame in {start} .. {end}; change data.start/data.end"
        )
    steps = []
    for lead in plan.lead_timedeltas:
        q, r = divmod(lead.value, cadence.value)
        if r or q < 1:
            raise PlanError(
                f"lead time {lead} is not a multiple of the store cadence {cadence}; change scores.leads"
            )
        steps.append(int(q))
    ny, nx = store.grid.shape
    for name, crop, n in (("rows", plan.data.rows, ny), ("cols", plan.data.cols, nx)):
        if crop is not None and crop[1] > n:
            raise PlanError(
                f"data.{name} {list(crop)} exceeds the grid ({n} {name}); change data.{name}"
            )
    n_in = max(method_inputs(m) for m in plan.methods)
    geo = Geometry(n_in=n_in, n_out=max(steps), cadence=cadence)
    need_training = any(m.train for m in plan.methods)
    if need_training:
        try:
            import training.api  # noqa: F401
        except ImportError as exc:
            raise PlanError(
                f"methods with train = true need training.api.fit, which is not available: {exc}"
            ) from exc
        if plan.splits.validation_fraction <= 0:
            raise PlanError(
                "learned methods early-stop on validation blocks: set splits.validation_fraction > 0 (e.g. 0.2)"
            )
        for m in plan.methods:
            if m.train and m.model == "convlstm":
                from training.config import parse_options

                try:
                    parse_options(dict(m.fit))
                except ValueError as exc:  # pydantic ValidationError is a ValueError
                    raise PlanError(f"method {m.label!r}: invalid fit options: {exc}") from exc
    blocks, splits = make_splits(times, plan.splits, geo, plan.seed, need_training=need_training)
    rows = plan.data.rows or (0, ny)
    cols = plan.data.cols or (0, nx)
    info = {
        "store": plan.data.store,
        "store_range": [first.isoformat(), last.isoformat()],
        "period": [times[0].isoformat(), times[-1].isoformat()],
        "n_frames": len(times),
        "cadence": cadence.isoformat(),
        "grid_shape": [ny, nx],
        "crop_shape": [rows[1] - rows[0], cols[1] - cols[0]],
        "crs": store.grid.crs_wkt[:80] if getattr(store.grid, "crs_wkt", None) else None,
        "blocks": [[b[0].isoformat(), b[-1].isoformat(), len(b)] for b in blocks],
        "embargo": embargo_of(plan.splits, geo).isoformat(),
        "window": {"n_inputs": geo.n_in, "n_lead_steps": geo.n_out},
    }
    return Prepared(
        plan, plan_hash(plan), cadence, geo, tuple(steps), times, blocks, splits, (ny, nx), info
    )


def split_seed(plan_seed: int, split_index: int) -> int:
    """The seed of one split (training and any randomness), derived from the plan seed."""
    return int(np.random.SeedSequence([plan_seed, split_index]).generate_state(1)[0])


def _file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


class _FrameCache:
    """Frames read from the store once each, in time order; their bytes feed the fingerprint."""

    def __init__(self, store: ObservationStoreLike, rows: slice | None, cols: slice | None) -> None:
        self.store, self.rows, self.cols = store, rows, cols
        self.frames: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        self.digest = hashlib.sha256()
        self.n_read = 0
        self.template: xr.Dataset | None = None
        self.read_s = 0.0

    def need(self, times: pd.DatetimeIndex) -> None:
        missing = [t for t in times if t.value not in self.frames]
        if not missing:
            return
        t0 = time.perf_counter()
        ds = self.store.read_times(pd.DatetimeIndex(missing), rows=self.rows, cols=self.cols)
        if self.template is None:
            self.template = ds.isel({dims.TIME: slice(0, 0)})
        rain = np.ascontiguousarray(ds[dims.RAIN_RATE].values, dtype="<f4")
        light = np.ascontiguousarray(ds[dims.LIGHTNING].values, dtype="<f4")
        for i, t in enumerate(missing):
            self.digest.update(np.int64(t.value).tobytes())
            self.digest.update(rain[i].tobytes())
            self.digest.update(light[i].tobytes())
            self.frames[t.value] = (rain[i], light[i])
        self.n_read += len(missing)
        self.read_s += time.perf_counter() - t0

    def drop_before(self, t: pd.Timestamp) -> None:
        for k in [k for k in self.frames if k < t.value]:
            del self.frames[k]

    def stack(self, times: pd.DatetimeIndex) -> tuple[np.ndarray, np.ndarray]:
        rain = np.stack([self.frames[t.value][0] for t in times])
        light = np.stack([self.frames[t.value][1] for t in times])
        return rain, light

    def dataset(self, times: pd.DatetimeIndex) -> xr.Dataset:
        """History Dataset(time, y, x) with rain_rate and lightning, CRS attached."""
        assert self.template is not None
        rain, light = self.stack(times)
        tpl = self.template
        ds = xr.Dataset(
            {
                dims.RAIN_RATE: (dims.FRAME_DIMS, rain, dict(tpl[dims.RAIN_RATE].attrs)),
                dims.LIGHTNING: (dims.FRAME_DIMS, light, dict(tpl[dims.LIGHTNING].attrs)),
            },
            coords={dims.TIME: times.values, dims.Y: tpl[dims.Y], dims.X: tpl[dims.X]},
            attrs=dict(tpl.attrs),
        )
        if dims.GRID_MAPPING in tpl.coords:
            ds = ds.assign_coords({dims.GRID_MAPPING: tpl.coords[dims.GRID_MAPPING]})
        return ds


def _build_methods(
    plan: Plan, split: Split, out_dir: Path, device: str, seed: int
) -> tuple[dict[str, Any], dict[str, Any], dict[str, float]]:
    """Nowcasters by label (training the learned ones); checkpoint info; training seconds."""
    from nowcast.models import create_nowcaster

    models: dict[str, Any] = {}
    checkpoints: dict[str, Any] = {}
    train_s: dict[str, float] = {}
    store = None
    for m in plan.methods:
        if m.train:
            from training.api import fit

            if store is None:
                store = _open_store(plan)
            options = json.loads(json.dumps(m.fit))
            if m.model == "convlstm":  # guides are keyed by content: one cache shared by all splits
                train_opts = options.setdefault("train", {})
                train_opts.setdefault("cache_dir", str(out_dir / "cache" / "guides"))
            t0 = time.perf_counter()
            ckpt = Path(
                fit(
                    options,
                    store,
                    split.train_times,
                    split.val_times,
                    seed=seed,
                    device=device,
                    out_dir=out_dir / "checkpoints" / f"split-{split.index:03d}" / m.label,
                )
            )
            train_s[m.label] = time.perf_counter() - t0
            checkpoints[m.label] = {"path": str(ckpt), "sha256": _file_sha256(ckpt)}
            opts = {"device": device, **m.options} if m.model == "convlstm" else dict(m.options)
            models[m.label] = create_nowcaster(m.model, checkpoint=str(ckpt), **opts)
        else:
            models[m.label] = create_nowcaster(m.model, **m.options)
    return models, checkpoints, train_s


def _thumb(a: np.ndarray) -> np.ndarray:
    step = max(1, int(np.ceil(max(a.shape[-2:]) / EXAMPLE_MAX_PIXELS)))
    return np.ascontiguousarray(a[..., ::step, ::step], dtype=np.float32)


def run_split(task: SplitTask) -> dict[str, Any]:
    """Train, forecast and score one split; see :func:`_run_split`.

    Nested ``dask.compute`` calls (pysteps S-PROG uses dask) run on the synchronous scheduler:
    inside a distributed worker they would otherwise be sent back to the cluster and queue
    behind the long split tasks.
    """
    import dask

    with dask.config.set(scheduler="synchronous"):
        return _run_split(task)


def _run_split(task: SplitTask) -> dict[str, Any]:
    """Train, forecast and score one split; returns a JSON-able result (+ ``example`` arrays).

    The result holds the exact streaming states of every method (``states``), the data
    fingerprint (SHA-256 of every frame's time and bytes in read order), timings, the
    checkpoints of learned methods and model versions.

    The loop is not :func:`nowcast.evaluation.score_starts` on purpose: a split is scored by
    the whole :class:`~nowcast.metrics.ScoreSuite` (continuous scores, FSS, lightning
    reliability, not only contingency tables), on the plan's crop through a frame cache that
    reads each frame once for all methods and lead steps, and forecast and scoring times are
    recorded apart; the kernel covers the categorical, whole-grid case (event-level DAP,
    retraining, benchmarks).
    """
    t_start = time.perf_counter()
    plan = Plan.model_validate_json(task.plan_json)
    split, geo = task.split, task.geometry
    seed = split_seed(plan.seed, split.index)
    out_dir = Path(task.out_dir)
    np.random.seed(seed % 2**32)
    try:
        import torch

        torch.manual_seed(seed)
    except ImportError:  # pragma: no cover - torch is a dependency, only learned methods need it
        pass

    models, checkpoints, train_s = _build_methods(plan, split, out_dir, task.device, seed)
    store = _open_store(plan)
    rows = slice(*plan.data.rows) if plan.data.rows else None
    cols = slice(*plan.data.cols) if plan.data.cols else None
    cache = _FrameCache(store, rows, cols)
    sc = plan.scores
    suites = {
        label: ScoreSuite.init(
            n_leads=len(task.lead_steps),
            thresholds=sc.thresholds,
            fss_thresholds=sc.fss_thresholds,
            fss_scales=sc.fss_scales,
            lightning=sc.lightning,
            occurrence=sc.lightning_occurrence,
            probability_threshold=sc.lightning_probability,
            n_bins=sc.reliability_bins,
        )
        for label in models
    }
    leads = [geo.cadence * s for s in task.lead_steps]
    steps = np.asarray(task.lead_steps)
    forecast_s = dict.fromkeys(models, 0.0)
    score_s = 0.0
    example: dict[str, Any] | None = None
    best_wet = -1.0
    ex_idx = sorted({0, len(leads) // 2, len(leads) - 1})
    ex_thr = sc.thresholds[min(1, len(sc.thresholds) - 1)]

    for t in split.test_starts:
        first = t - geo.before
        hist_times = pd.date_range(first, t, freq=geo.cadence)
        obs_times = pd.DatetimeIndex([t + geo.cadence * int(s) for s in steps])
        cache.drop_before(first)
        cache.need(hist_times.append(obs_times).unique().sort_values())
        history = cache.dataset(hist_times)
        obs_rain, obs_light = cache.stack(obs_times)
        observed = xr.Dataset(
            {
                dims.RAIN_RATE: (dims.FORECAST_DIMS, obs_rain),
                dims.LIGHTNING: (dims.FORECAST_DIMS, obs_light),
            }
        )
        wet = float(np.nanmean(obs_rain >= ex_thr)) if np.isfinite(obs_rain).any() else 0.0
        keep = task.keep_example and wet > best_wet
        fcs: dict[str, np.ndarray] = {}
        for label, model in models.items():
            h = history.isel({dims.TIME: slice(geo.n_in - int(model.n_inputs), None)})
            t0 = time.perf_counter()
            fc = model.forecast(h, leads)
            forecast_s[label] += time.perf_counter() - t0
            t0 = time.perf_counter()
            suites[label].accumulate(fc, observed)
            score_s += time.perf_counter() - t0
            if keep:
                fcs[label] = _thumb(np.asarray(fc[dims.RAIN_RATE].values)[ex_idx])
        if keep:
            best_wet = wet
            example = {
                "init_time": t.isoformat(),
                "leads_min": [int(leads[i].total_seconds() // 60) for i in ex_idx],
                "init": _thumb(history[dims.RAIN_RATE].values[-1]),
                "observed": _thumb(obs_rain[ex_idx]),
                "forecasts": fcs,
            }

    result = {
        "split": split.index,
        "repetition": split.repetition,
        "fold": split.fold,
        "seed": seed,
        "definition": split.describe(),
        "data_fingerprint": cache.digest.hexdigest(),
        "n_frames_read": cache.n_read,
        "n_forecasts": len(split.test_starts),
        "checkpoints": checkpoints,
        "model_versions": {k: str(getattr(m, "version", "")) for k, m in models.items()},
        "timings": {
            "train_s": train_s,
            "read_s": cache.read_s,
            "forecast_s": forecast_s,
            "score_s": score_s,
            "total_s": time.perf_counter() - t_start,
        },
        "states": {k: s.to_dict() for k, s in suites.items()},
        "scores": {k: _headline_scores(s) for k, s in suites.items()},
        "example": example,
    }
    log.info(
        "split %d: %d forecasts in %.1f s",
        split.index,
        len(split.test_starts),
        result["timings"]["total_s"],
    )
    return result


def _headline_scores(suite: ScoreSuite) -> dict[str, Any]:
    """CSI and MCC (lead, threshold) and MAE/RMSE (lead) of one split, NaN as None (readable ledger)."""
    sc = suite.compute()
    return {
        k: _nan_to_none(np.asarray(sc[k], dtype=np.float64).tolist())
        for k in ("csi", "mcc", "mae", "rmse")
    }


def _nan_to_none(v: Any) -> Any:
    if isinstance(v, list):
        return [_nan_to_none(x) for x in v]
    return None if isinstance(v, float) and not np.isfinite(v) else v


def make_tasks(prepared: Prepared, out_dir: Path, device: str) -> list[SplitTask]:
    pj = prepared.plan.model_dump_json()
    return [
        SplitTask(
            pj, s, prepared.geometry, prepared.lead_steps, str(out_dir), device, keep_example=True
        )
        for s in prepared.splits
    ]


def connect(scheduler: str, timeout_s: float = 5.0) -> Any:
    """A dask Client of an existing scheduler; PlanError naming the address when unreachable."""
    from distributed import Client

    try:
        return Client(scheduler, timeout=f"{timeout_s}s")
    except (OSError, TimeoutError, ValueError) as exc:
        raise PlanError(
            f"cannot reach the dask scheduler {scheduler} within {timeout_s:g} s ({type(exc).__name__}: {exc}); "
            "start it (dask scheduler / dask worker) or drop --scheduler"
        ) from exc


def _run_tasks(
    tasks: list[SplitTask],
    workers: int,
    threads_per_worker: int,
    client: Any | None,
    on_result: Callable[[dict[str, Any]], None],
) -> str:
    """Run the split tasks in-process (workers 0, no client) or on dask; returns the mode."""
    if client is None and workers == 0:
        for task in tasks:
            on_result(run_split(task))
        return "in-process"
    from distributed import Client, LocalCluster, as_completed

    cluster = None
    if client is not None:
        mode = f"dask scheduler {client.scheduler.address}"
    else:
        cluster = LocalCluster(
            n_workers=workers,
            threads_per_worker=threads_per_worker,
            processes=True,
            dashboard_address=":0",
        )
        client = Client(cluster)
        mode = f"dask LocalCluster ({workers} workers x {threads_per_worker} threads)"
    try:
        futures = [
            client.submit(
                run_split, t, pure=False, key=f"dap-split-{t.split.index}-{uuid.uuid4().hex[:8]}"
            )
            for t in tasks
        ]
        for fut in as_completed(futures):
            on_result(fut.result())
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
    return mode


@dataclass
class EvaluationOutput:
    """Where an evaluation wrote its outputs, and the results Dataset."""

    out_dir: Path
    ledger: Path
    results_nc: Path
    results_json: Path
    report: Path | None
    results: xr.Dataset
    plan_hash: str
    wall_s: float


def evaluate(
    plan: Plan,
    out_dir: str | Path,
    *,
    workers: int | None = None,
    scheduler: str | None = None,
    device: str | None = None,
    plan_path: str | None = None,
    report: bool = True,
) -> EvaluationOutput:
    """Run ``plan`` and write ledger, results (netCDF + JSON) and report under ``out_dir``."""
    from training.dap.results import build_results, write_results

    t0 = time.perf_counter()
    client = connect(scheduler) if scheduler else None  # an unreachable scheduler fails first, fast
    try:
        prepared = prepare(plan)  # every data-dependent check, before any work
    except BaseException:
        if client is not None:
            client.close()
        raise
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    n_workers = plan.run.workers if workers is None else int(workers)
    dev = device or plan.run.device
    ledger = Ledger(out / "ledger.jsonl")
    run_id = uuid.uuid4().hex
    ph = prepared.plan_hash
    ledger.append(
        {
            "event": "plan",
            "run_id": run_id,
            "plan_hash": ph,
            "plan": json.loads(canonical_json(plan)),
            "run": plan.run.model_dump(mode="json")
            | {"workers": n_workers, "device": dev, "scheduler": scheduler},
            "plan_path": plan_path,
            "code_version": code_version(),
            "packages": package_versions(),
            "device": device_info(dev),
            "data": prepared.store_info,
            "splits": [s.describe() for s in prepared.splits],
        }
    )
    results: list[dict[str, Any]] = []

    def on_result(res: dict[str, Any]) -> None:
        results.append(res)
        rec = {k: v for k, v in res.items() if k != "example"}
        ledger.append({"event": "split", "run_id": run_id, "plan_hash": ph, **rec})

    mode = _run_tasks(
        make_tasks(prepared, out, dev), n_workers, plan.run.threads_per_worker, client, on_result
    )
    results.sort(key=lambda r: r["split"])
    ds = build_results(prepared, results)
    nc, js = write_results(ds, out)
    report_path = None
    wall = time.perf_counter() - t0
    if report:
        from training.dap.report import write_report

        report_path = write_report(
            out, prepared, ds, results, ledger_path=ledger.path, wall_s=wall, mode=mode
        )
    wall = time.perf_counter() - t0
    ledger.append(
        {
            "event": "summary",
            "run_id": run_id,
            "plan_hash": ph,
            "mode": mode,
            "wall_s": wall,
            "n_splits": len(results),
            "outputs": [str(p) for p in (nc, js, report_path) if p is not None],
        }
    )
    return EvaluationOutput(out, ledger.path, nc, js, report_path, ds, ph, wall)
