"""The crash-point harness: for each write step of store creation, ingest and forecast
publication, a real process is SIGKILLed at that step (``NOWCAST_CRASH_AT``, see
:mod:`nowcast.durability`) and restarted; the restart must end with every frame (and every
forecast run) exactly once, the "latest" markers right and the status counts exact.

Ingest runs ``nowcast ingest --once`` against real KNMI files served over loopback HTTP.
Each case starts two or three Python processes; the fast suite keeps one ingest and one
forecast case, the others are ``slow`` (``make test``, and so ``.ci/run``, runs them all).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from ingest_helpers import KNMI_TEMPLATE, FaultServer, assert_store_consistent, knmi_file, slot

from ingest import read_ingest_status
from nowcast import dims
from nowcast.durability import CRASH_ENV, CRASH_POINTS
from nowcast.grid import Grid
from nowcast.store import ObservationStore

REPO = Path(__file__).resolve().parents[2]
N = 3

#: (crash point, occurrence) of the ingest scenario; frames are processed newest first, so
#: occurrence 1 of an append step is the newest frame (the one "latest" must end on)
INGEST_STEPS = [
    ("store.create.begun", 1),
    ("store.create.coords", 1),
    ("store.day.begun", 1),
    ("store.day.arrays", 1),
    ("store.append.data", 1),
    ("store.append.marked", 1),
    ("ingest.frame.stored", 2),
    ("ingest.state.saved", 2),
]
FORECAST_STEPS = [("forecast.create.begun", 1), ("forecast.write.data", 1)]
#: the cases of the fast suite
FAST = {"store.append.marked", "forecast.write.data"}


def _cases(steps: list[tuple[str, int]]) -> list[object]:
    return [pytest.param(p, n, id=p, marks=() if p in FAST else pytest.mark.slow) for p, n in steps]


def test_every_crash_point_is_exercised() -> None:
    assert {p for p, _ in INGEST_STEPS + FORECAST_STEPS + LIGHTNING_STEPS} == set(CRASH_POINTS)


def _env(crash: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != CRASH_ENV}
    env["PYTHONPATH"] = str(REPO)
    env.setdefault("OMP_NUM_THREADS", "1")
    if crash:
        env[CRASH_ENV] = crash
    return env


def _ingest_config(tmp_path: Path, server: FaultServer, grid_file: Path) -> Path:
    offset = (slot(N - 1) + pd.Timedelta("1min")) - pd.Timestamp.now(tz="UTC").tz_localize(None)
    cfg = tmp_path / "ingest.toml"
    cfg.write_text(
        f"""
quarantine_dir = "{tmp_path / 'quarantine'}"
timeout = 5.0
lock_ttl = 30
[store]
url = "{tmp_path / 'obs.zarr'}"
create = true
grid = {{ from_file = "{grid_file}" }}
[[sources]]
name = "knmi"
type = "http"
url = "{server.url(KNMI_TEMPLATE)}"
backfill = "{5 * N}min"
interval = 3600
jitter = 0
clock_offset = "{int(offset.total_seconds())}s"
"""
    )
    return cfg


def _run(args: list[str], crash: str | None, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cli", *args], cwd=cwd, env=_env(crash), capture_output=True, text=True, timeout=300
    )


@pytest.mark.parametrize(("point", "nth"), _cases(INGEST_STEPS))
def test_ingest_killed_at_each_write_step_then_restarted(point: str, nth: int, server: FaultServer, knmi_dir: Path, tmp_path: Path) -> None:
    for i in range(N):
        server.serve(slot(i).strftime(KNMI_TEMPLATE), knmi_file(knmi_dir, slot(i)).read_bytes())
    cfg = _ingest_config(tmp_path, server, knmi_file(knmi_dir, slot(0)))
    url = str(tmp_path / "obs.zarr")

    killed = _run(["-v", "ingest", "--once", "--config", str(cfg)], f"{point}#{nth}", tmp_path)
    assert killed.returncode == -signal.SIGKILL, f"not killed at {point}: rc {killed.returncode}\n{killed.stderr[-3000:]}"
    assert f"crash point {point} reached" in killed.stderr

    again = _run(["-v", "ingest", "--once", "--config", str(cfg)], None, tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]

    expected = {slot(i): knmi_file(knmi_dir, slot(i)) for i in range(N)}
    assert_store_consistent(url, expected, exact_counter=True)  # whole frames, each appended once
    store = ObservationStore.open(url)
    assert store.last_complete() == slot(N - 1), "latest is the newest frame"
    assert store.version == f"{N}.0.{slot(N - 1).isoformat()}"
    assert store.frames_by_source() == {"knmi": N}
    days = {d: store._day_attrs(d) for d in store.days()}
    assert sum(a["sources"].get("knmi", 0) for a in days.values() if a) == N, days
    status = read_ingest_status(store)["sources"]["knmi"]
    assert status["frames_ingested"] == N, status
    info = store.info()  # what `nowcast info` prints
    assert info["frames"] == N and info["last"] == slot(N - 1).isoformat() and info["gaps"] == []
    assert not list(Path(url).rglob("*.nowcast-tmp-*")), "leftover temporary files are removed"


def _forecast_script(obs: str, fc: str) -> str:
    return (
        "from service.inference import InferenceLoop\n"
        "from service.settings import ServiceSettings\n"
        f"s = ServiceSettings(store={obs!r}, forecast_store={fc!r}, model='persistence', lead_minutes=[5, 10], run_ingest=False)\n"
        "info = InferenceLoop(s).step()\n"
        "print('published', info.key if info else None)\n"
    )


def _publish(obs: str, fc: str, crash: str | None, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", _forecast_script(obs, fc)], cwd=cwd, env=_env(crash), capture_output=True, text=True, timeout=300
    )


@pytest.mark.parametrize(("point", "nth"), _cases(FORECAST_STEPS))
def test_forecast_publication_killed_at_each_step_then_restarted(point: str, nth: int, tmp_path: Path) -> None:
    from nowcast.forecast_store import ForecastStore, run_key

    grid = Grid.from_bounds("EPSG:3035", 4_000_000, 2_500_000, 4_064_000, 2_548_000, 1000)
    t0 = pd.Timestamp("2024-03-01 12:00")
    step = pd.Timedelta("5min")
    obs_url, fc_url = str(tmp_path / "obs.zarr"), str(tmp_path / "fc.zarr")
    obs = ObservationStore.create(obs_url, grid)
    for i in range(2):
        obs.append(dims.make_frames(np.full(grid.shape, 1.0 + i, np.float32), t0 + i * step, grid.x, grid.y, grid.crs_wkt))
    if point != "forecast.create.begun":  # a published run of the previous frame exists
        first = _publish(obs_url, fc_url, None, tmp_path)
        assert first.returncode == 0 and f"published {run_key(t0 + step)}" in first.stdout, first.stderr[-3000:]
        obs.append(dims.make_frames(np.full(grid.shape, 3.0, np.float32), t0 + 2 * step, grid.x, grid.y, grid.crs_wkt))
    newest = obs.last_complete()
    assert newest is not None

    killed = _publish(obs_url, fc_url, f"{point}#{nth}", tmp_path)
    assert killed.returncode == -signal.SIGKILL, f"not killed at {point}: rc {killed.returncode}\n{killed.stderr[-3000:]}"
    if point != "forecast.create.begun":  # readers never see the half-written run
        reader = ForecastStore.open(fc_url)
        assert reader.run_keys() == [run_key(t0 + step)]
        assert reader.latest() is not None and reader.latest().init_time == t0 + step

    again = _publish(obs_url, fc_url, None, tmp_path)
    assert again.returncode == 0 and f"published {run_key(newest)}" in again.stdout, again.stderr[-3000:]
    fc = ForecastStore.open(fc_url)
    expected = [run_key(newest)] if point == "forecast.create.begun" else [run_key(t0 + step), run_key(newest)]
    assert fc.run_keys() == expected, "each run published exactly once"
    latest = fc.latest()
    assert latest is not None and latest.init_time == newest
    leads, rain, _ = fc.read_run(newest)
    assert list(leads) == [pd.Timedelta("5min"), pd.Timedelta("10min")]
    assert np.nanmax(rain) == pytest.approx(float(obs.window(newest, 1)[dims.RAIN_RATE].max()))
    assert sorted(p.name for p in (Path(fc_url) / "runs").iterdir()) == expected, "no orphan run data"
    # nothing left to do: a further step publishes nothing
    idle = _publish(obs_url, fc_url, None, tmp_path)
    assert idle.returncode == 0 and "published None" in idle.stdout and ForecastStore.open(fc_url).run_keys() == expected


LIGHTNING_STEPS = [("store.lightning.data", 1), ("ingest.lightning.stored", 1)]


def _lightning_script(url: str, drop: Path, quarantine: Path) -> str:
    return (
        "import pandas as pd\n"
        "from ingest import IngestSettings, IngestStatus, SourceRunner\n"
        "from nowcast.sources import create_source\n"
        "from nowcast.store import ObservationStore\n"
        f"store = ObservationStore.open({url!r}, 'a')\n"
        f"src = create_source('directory', name='glm', kind='lightning', path={str(drop)!r}, pattern='*.nc')\n"
        f"st = IngestSettings(quarantine_dir={str(quarantine)!r}, missing_retry=pd.Timedelta(0), lightning_settle=pd.Timedelta('30s'))\n"
        "rep = SourceRunner(src, store, st, IngestStatus(store)).run_once(pd.Timestamp('2018-07-02 04:36'))\n"
        "print('lightning slots', rep.lightning_slots, rep.errors)\n"
    )


@pytest.mark.slow
@pytest.mark.parametrize(("point", "nth"), LIGHTNING_STEPS, ids=[p for p, _ in LIGHTNING_STEPS])
def test_lightning_ingest_killed_at_each_write_step_then_restarted(point: str, nth: int, shared_data: Path, tmp_path: Path) -> None:
    import shutil

    from nowcast.lightning import Flashes, grid_counts, read_lightning

    glm = sorted((shared_data / "lightning" / "glm" / "20180702").glob("OR_GLM-L2-LCFA_*.nc"))[:2]
    if len(glm) < 2:
        pytest.skip("real data not available: GLM LCFA files")
    grid = Grid.from_bounds("EPSG:4326", -120.0, -37.0, -47.0, 53.0, 0.5)
    url = str(tmp_path / "obs.zarr")
    ObservationStore.create(url, grid)
    drop = tmp_path / "glm"
    drop.mkdir()
    for f in glm:
        shutil.copy(f, drop)
    script = _lightning_script(url, drop, tmp_path / "quarantine")
    run = [sys.executable, "-c", script]
    killed = subprocess.run(run, cwd=tmp_path, env=_env(f"{point}#{nth}"), capture_output=True, text=True, timeout=300)
    assert killed.returncode == -signal.SIGKILL, f"not killed at {point}: rc {killed.returncode}\n{killed.stderr[-3000:]}"
    again = subprocess.run(run, cwd=tmp_path, env=_env(None), capture_output=True, text=True, timeout=300)
    assert again.returncode == 0 and "[]" in again.stdout, again.stdout + again.stderr[-3000:]

    slot_t = pd.Timestamp("2018-07-02 04:35")
    store = ObservationStore.open(url)
    assert list(store.times(dims.LIGHTNING)) == [slot_t]
    assert store._root_attrs()["lightning_written"] == 1, "the slot was stored exactly once"
    direct = grid_counts(Flashes.concat([read_lightning(f) for f in glm]), grid, times=[slot_t]).isel(time=0).values
    np.testing.assert_array_equal(store.read_times([slot_t])[dims.LIGHTNING].isel(time=0).values, direct)
    assert read_ingest_status(store)["sources"]["glm"]["lightning_slots"] == 1
