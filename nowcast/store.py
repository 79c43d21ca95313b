"""The observation store: a Zarr v3 store of radar frames on one grid and a fixed-cadence time axis.

This is the only module that knows the on-disk layout and chunking::

    <root>/zarr.json            attrs: format, version, cadence_seconds, crs_wkt, last_complete,
                                frames_written, lightning_written, frames_replaced (slots written
                                again with overwrite), frames_by_source, time_encoding
    <root>/x, <root>/y          1-D cell-centre coordinates (CRS units)
    <root>/days/YYYYMMDD/       one group per UTC day, created on demand
        rain_rate               (slot, y, x) float32 mm/h, NaN fill; one chunk (or shard) per slot
        lightning               (slot, y, x) float32 flashes per cell per slot, NaN fill
        time                    (slot,) int64 seconds since 1970-01-01 UTC (explicit time encoding)
        zarr.json attrs         rain_rate_slots / lightning_slots: the complete slots of the day;
                                sources: frames appended per source
    <root>/state/<source>/      zarr.json attrs: per-source ingest state (JSON)
    <root>/provenance/          zarr.json attrs: ``imported``, the source files imports stored
                                frames from ({file SHA-256: {file, reader, options, times}})

Writing a frame: the data chunk(s) first, then the slot is added to the day's complete list,
then the root ``last_complete`` marker is updated. Every group document the store depends on
(the root, the day groups, the per-source state) is written by the project's own atomic writer
(:func:`nowcast.durability.write_atomic`: fsynced temp file + rename locally, one PUT on object
storage), never through zarr, so crash safety does not depend on how a zarr release writes
files; zarr writes only array metadata and chunks, which are read only once a marker written
after them says they are whole. A reader sees a slot either complete or absent, never half
written. A slot never written reads as NaN ("missing"), never as zero rain. Appending a slot
that is already complete is a no-op, which makes ingest idempotent.

Crash recovery: creation writes the root document first with a ``creating`` flag and commits
the store (``format`` attribute) last, so an interrupted creation is finished by the next
:meth:`ObservationStore.create` (or ``open_or_create``, ingest, import). A day group is
usable once its complete lists exist; an interrupted day creation is redone. Opening for
writing (``mode="a"``) repairs the root markers from the day groups: a crash after a slot was
marked complete but before ``last_complete`` and the counters moved is made good there.
Each day group also counts the frames appended per source (``sources``), summed in the root
``frames_by_source``, so per-source counts survive a SIGKILL exactly as the frames do.

Chunking: one chunk per time slot so that appends touch only their own objects and windows
read exactly the frames they need. Frames larger than 1024x1024 are stored as one *shard* per
slot with 256x256 inner chunks, so a cropped window reads only the inner chunks it covers.
Compression: zstd level 5 (chosen by measurement against Blosc-zstd+bitshuffle and no
compression in ``benchmarks/bench_store.py``; see the README's benchmark table).
"""

from __future__ import annotations

import json
import logging
import math
import threading
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np
import pandas as pd
import xarray as xr
import zarr
from zarr.codecs import ZstdCodec

from nowcast import dims, durability, storage
from nowcast.grid import Grid

log = logging.getLogger(__name__)

FORMAT = "nowcast-observations"
FORMAT_VERSION = 1
#: frames with more cells than this are sharded (one shard per slot, inner chunks below)
SHARD_THRESHOLD_CELLS = 1024 * 1024
INNER_CHUNK = 256
TIME_UNITS = "seconds since 1970-01-01T00:00:00Z"
VARIABLES = (dims.RAIN_RATE, dims.LIGHTNING)
#: root attribute present while a store is being created (removed by the commit)
CREATING = "creating"
#: day attribute counting the frames appended per source
SOURCES_ATTR = "sources"


class StoreError(RuntimeError):
    """A store that cannot be opened/created, or a frame that does not fit the store."""


@dataclass(frozen=True)
class Slot:
    """A time slot: the UTC day group and the index within it."""

    day: str
    index: int


def default_compressor() -> ZstdCodec:
    """zstd level 5: 2.4x (KNMI) to 3.6x (OPERA CIRRUS) smaller than Blosc-zstd with
    bit-shuffle on real frames, appends as fast or faster; window reads differ by less than the
    run-to-run noise of the benchmark (benchmarks/bench_store.py)."""
    return ZstdCodec(level=5)


def _remove_partial_files(path: str) -> None:
    """Delete temporary files a killed writer left behind (local stores only): those of
    :func:`nowcast.durability.write_atomic` and zarr's ``*.partial`` chunk temporaries
    (housekeeping only; nothing relies on zarr's naming)."""
    from pathlib import Path

    durability.remove_temp_files(path)
    for p in Path(path).rglob("*.partial"):
        try:
            p.unlink()
            log.info("removed leftover temporary file %s", p)
        except OSError:  # pragma: no cover - raced with another cleanup
            pass


#: group whose attributes record where imported frames came from (:meth:`ObservationStore.record_imported`)
PROVENANCE_GROUP = "provenance"


def _group_doc(attributes: dict[str, Any]) -> dict[str, Any]:
    """A Zarr v3 group document."""
    return {"zarr_format": 3, "node_type": "group", "attributes": attributes}


def _day_ready(attrs: dict[str, Any] | None) -> bool:
    """A day group is usable once its complete lists exist (written after its arrays)."""
    return attrs is not None and f"{dims.RAIN_RATE}_slots" in attrs


def _filesystem(url: str, storage_options: dict[str, Any] | None) -> tuple[Any, str]:
    """fsspec file system and base path of a store location."""
    fs, base = storage.filesystem(url, storage_options if durability.is_remote(url) else None)
    return fs, str(base).rstrip("/")


def _read_json(fs: Any, path: str) -> dict[str, Any] | None:
    """A JSON document, or None when it does not exist."""
    try:
        raw = fs.cat_file(path)
    except FileNotFoundError:
        return None
    return json.loads(raw)


def _dumps(doc: dict[str, Any]) -> bytes:
    return json.dumps(doc, indent=2).encode()


def _source_key(source: str | None) -> str:
    """Per-source counting key: ``"import:file.h5"`` counts as ``"import"``."""
    return (source or "").split(":", 1)[0]


def _foreign_entries(path: str) -> list[str]:
    """Entries of a local folder other than the temporary files of an interrupted write."""
    from pathlib import Path

    p = Path(path)
    if not p.is_dir():
        return []
    return sorted(e.name for e in p.iterdir() if durability.TMP_INFIX not in e.name and not e.name.endswith(".partial"))


def _short_crs(crs) -> str:  # noqa: ANN001
    """'EPSG:nnnn' when the CRS has an authority code, else its PROJ string (readable in `info`)."""
    import warnings

    auth = crs.to_authority()
    if auth:
        return ":".join(auth)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return crs.to_proj4()


@runtime_checkable
class ObservationStoreLike(Protocol):
    """What readers of an observation store use (training, evaluation, inference, provenance).

    :class:`ObservationStore` is the implementation; anything with these members can stand in
    for it (e.g. :class:`training.ddp` opens one lazily in each worker). Writers (ingest,
    import) take the concrete class: it is the only one that writes.
    """

    @property
    def url(self) -> str:
        """Where the store lives (a path or ``s3://`` URL); workers reopen it from here."""
        ...

    @property
    def storage_options(self) -> dict[str, Any] | None:
        """fsspec options needed to reopen :attr:`url` (None: from the environment)."""
        ...

    @property
    def grid(self) -> Grid:
        """The grid of every frame."""
        ...

    @property
    def cadence(self) -> pd.Timedelta:
        """The time step between slots."""
        ...

    @property
    def version(self) -> str:
        """Changes whenever a frame becomes complete (a cache key, not a content hash)."""
        ...

    def last_complete(self) -> pd.Timestamp | None:
        """Time of the newest complete rain frame, None when empty."""
        ...

    def times(self, variable: str = dims.RAIN_RATE) -> pd.DatetimeIndex:
        """Times of the complete frames of ``variable``, sorted."""
        ...

    def has(self, time: object, variable: str = dims.RAIN_RATE) -> bool:
        """Whether the frame of ``variable`` at ``time`` is complete."""
        ...

    def window(self, end: object, n: int, rows: slice | None = None, cols: slice | None = None) -> xr.Dataset:
        """``n`` slots ending at ``end``: Dataset(time, y, x), missing slots NaN."""
        ...

    def read_times(self, times: object, rows: slice | None = None, cols: slice | None = None) -> xr.Dataset:
        """The given slots, as :meth:`window`."""
        ...


def _slots(day_attrs: dict[str, Any] | None, var: str) -> set[int]:
    """The complete slots of ``var`` in a day group's attributes (none when the day is unusable)."""
    return set(day_attrs.get(f"{var}_slots", [])) if day_attrs is not None else set()


class ObservationStore:
    """Radar frames (rain rate, lightning) on one grid, at a fixed cadence, in Zarr v3.

    Use :meth:`create`, :meth:`open` or :meth:`open_or_create`; see the module docstring for
    the layout and the consistency guarantees.
    """

    def __init__(self, root: zarr.Group, url: str, storage_options: dict[str, Any] | None, mode: str) -> None:
        attrs = dict(root.attrs)
        if attrs.get("format") != FORMAT:
            raise StoreError(f"{url}: not a nowcast observation store (format attribute {attrs.get('format')!r})")
        if int(attrs.get("format_version", 0)) > FORMAT_VERSION:
            raise StoreError(f"{url}: store format version {attrs.get('format_version')} is newer than supported {FORMAT_VERSION}")
        self._root = root
        self.url = url
        self.storage_options = storage_options
        self.mode = mode
        self._fs, self._base = _filesystem(url, storage_options)
        self.cadence = pd.Timedelta(seconds=int(attrs["cadence_seconds"]))
        self.grid = Grid(x=root["x"][:], y=root["y"][:], crs_wkt=attrs["crs_wkt"], name=attrs.get("grid_name", ""))
        self._slots_per_day = int(pd.Timedelta(days=1) / self.cadence)
        self._arrays: OrderedDict[tuple[str, str], zarr.Array] = OrderedDict()
        self._lock = threading.RLock()

    # ------------------------------------------------------------------ construction
    @classmethod
    def create(
        cls,
        url: str,
        grid: Grid,
        cadence: pd.Timedelta | str = dims.DEFAULT_CADENCE,
        storage_options: dict[str, Any] | None = None,
        attrs: dict[str, Any] | None = None,
    ) -> ObservationStore:
        """Create a new, empty store at ``url`` (a path or ``s3://bucket/prefix``); fails if one exists."""
        cadence = pd.Timedelta(cadence)
        if cadence <= pd.Timedelta(0) or pd.Timedelta(days=1) % cadence != pd.Timedelta(0):
            raise StoreError(f"cadence {cadence} must be positive and divide one day")
        url = str(url)
        try:  # resolved credentials/endpoint/timeouts; the bucket is probed before anything is written
            storage_options = storage.prepare(url, storage_options)
        except storage.StorageError as exc:
            raise StoreError(str(exc)) from exc
        fs, base = _filesystem(url, storage_options)
        try:
            previous = _read_json(fs, f"{base}/zarr.json")
        except ValueError as exc:
            raise StoreError(f"{url}: a store already exists there (unreadable zarr.json: {exc})") from exc
        if previous is not None:
            prev_attrs = previous.get("attributes") or {}
            if not (prev_attrs.get(CREATING) and prev_attrs.get("format") != FORMAT):
                raise StoreError(f"{url}: a store already exists there")
            log.warning("%s: finishing an interrupted store creation (started %s)", url, prev_attrs[CREATING])
        elif not durability.is_remote(url) and _foreign_entries(url):
            raise StoreError(f"{url}: the folder exists and holds other files ({', '.join(_foreign_entries(url)[:3])}); choose another path")
        created = pd.Timestamp.now(tz="UTC").isoformat()
        try:
            # 1. the root document with the "creating" flag: a crash from here on is recognised
            durability.write_atomic(f"{base}/zarr.json", _dumps(_group_doc({CREATING: created})), fs)
            durability.crash_point("store.create.begun")
            durability.write_atomic(f"{base}/days/zarr.json", _dumps(_group_doc({})), fs)
            root = zarr.open_group(url, mode="r+", storage_options=storage_options, zarr_format=3)
            for name, values, axis in (("x", grid.x, "X"), ("y", grid.y, "Y")):
                arr = root.create_array(
                    name,
                    shape=values.shape,
                    dtype="float64",
                    chunks=values.shape,
                    compressors=None,
                    overwrite=True,
                    attributes={"standard_name": f"projection_{name}_coordinate", "axis": axis, "_ARRAY_DIMENSIONS": [name]},
                )
                arr[:] = values
            durability.crash_point("store.create.coords")
            # 2. the commit: the format attribute makes it a store
            attrs = {
                "format": FORMAT,
                "format_version": FORMAT_VERSION,
                "cadence_seconds": int(cadence.total_seconds()),
                "crs_wkt": grid.crs_wkt,
                "grid_name": grid.name,
                "time_encoding": "slot i of group days/YYYYMMDD is YYYY-MM-DDT00:00Z + i * cadence_seconds; "
                "each day group also holds time (" + TIME_UNITS + ")",
                "units": {dims.RAIN_RATE: dims.RAIN_RATE_UNITS, dims.LIGHTNING: dims.LIGHTNING_UNITS},
                "last_complete": None,
                "frames_written": 0,
                "lightning_written": 0,
                "frames_by_source": {},
                "created": created,
                **(attrs or {}),
            }
            durability.write_atomic(f"{base}/zarr.json", _dumps(_group_doc(attrs)), fs)
        except Exception as exc:
            raise StoreError(f"{url}: cannot create store: {type(exc).__name__}: {exc}") from exc
        root = zarr.open_group(url, mode="r+", storage_options=storage_options, zarr_format=3)
        log.info("created observation store %s (%s, cadence %s)", url, grid.shape, cadence)
        return cls(root, url, storage_options, "a")

    @classmethod
    def open(cls, url: str, mode: str = "r", storage_options: dict[str, Any] | None = None) -> ObservationStore:
        """Open an existing store; ``mode`` "r" (read-only) or "a" (append)."""
        if mode not in ("r", "a"):
            raise ValueError(f"mode must be 'r' or 'a', got {mode!r}")
        url = str(url)
        try:  # resolved credentials/endpoint/timeouts; fails fast with the cause
            storage_options = storage.prepare(url, storage_options)
        except storage.StorageError as exc:
            raise StoreError(str(exc)) from exc
        try:
            root = zarr.open_group(url, mode="r" if mode == "r" else "r+", storage_options=storage_options)
        except (FileNotFoundError, zarr.errors.GroupNotFoundError) as exc:
            raise StoreError(f"{url}: no observation store found") from exc
        except Exception as exc:
            raise StoreError(f"{url}: cannot open store: {type(exc).__name__}: {exc}") from exc
        attrs = dict(root.attrs)
        if attrs.get(CREATING) and attrs.get("format") != FORMAT:
            raise StoreError(
                f"{url}: no observation store found: its creation (started {attrs[CREATING]}) was interrupted; "
                "creating it again (ingest, import) finishes it"
            )
        if mode == "a" and not durability.is_remote(url):
            _remove_partial_files(url)
        store = cls(root, url, storage_options, mode)
        if mode == "a":
            store.repair()
        return store

    @classmethod
    def open_or_create(
        cls,
        url: str,
        grid: Grid,
        cadence: pd.Timedelta | str = dims.DEFAULT_CADENCE,
        storage_options: dict[str, Any] | None = None,
    ) -> ObservationStore:
        """Open the store at ``url`` for appending, creating it when absent; checks grid and cadence match."""
        try:
            store = cls.open(url, mode="a", storage_options=storage_options)
        except StoreError as exc:
            if "no observation store" not in str(exc):
                raise
            return cls.create(url, grid, cadence, storage_options)
        if not store.grid.same_as(grid):
            raise StoreError(f"{url}: existing store grid {store.grid.shape} differs from the requested grid {grid.shape}")
        if store.cadence != pd.Timedelta(cadence):
            raise StoreError(f"{url}: existing store cadence {store.cadence} differs from {pd.Timedelta(cadence)}")
        return store

    # ------------------------------------------------------------------ time slots
    def slot_of(self, time: object) -> Slot:
        """The slot of a timestamp; raises StoreError when it is not on the cadence."""
        t = dims.to_utc_timestamp(time)
        day = t.normalize()
        offset = t - day
        index, rem = divmod(offset, self.cadence)
        if rem != pd.Timedelta(0):
            raise StoreError(f"time {t} is not on the store cadence ({self.cadence})")
        return Slot(day.strftime("%Y%m%d"), int(index))

    def time_of(self, slot: Slot) -> pd.Timestamp:
        return pd.Timestamp(slot.day) + slot.index * self.cadence

    def align(self, time: object) -> pd.Timestamp:
        """``time`` floored onto the cadence."""
        return dims.to_utc_timestamp(time).floor(self.cadence)

    # ------------------------------------------------------------------ metadata
    def _attrs(self, rel: str) -> dict[str, Any] | None:
        """Fresh attributes of the group at ``rel`` ("" for the root), None when it does not exist."""
        doc = _read_json(self._fs, self._doc_path(rel))
        return None if doc is None else dict(doc.get("attributes") or {})

    def _doc_path(self, rel: str) -> str:
        return f"{self._base}/{rel}/zarr.json" if rel else f"{self._base}/zarr.json"

    def _write_attrs(self, rel: str, update: dict[str, Any]) -> None:
        """Update the attributes of the group at ``rel`` (created when absent) in one atomic write."""
        attrs = self._attrs(rel) or {}
        attrs.update(update)
        durability.write_atomic(self._doc_path(rel), _dumps(_group_doc(attrs)), self._fs)

    def _root_attrs(self) -> dict[str, Any]:
        """Fresh root attributes (re-read: another process may have written)."""
        return self._attrs("") or {}

    @property
    def version(self) -> str:
        """Changes whenever a frame (rain or lightning) becomes complete; use it as a cache key."""
        a = self._root_attrs()
        return f"{a.get('frames_written', 0)}.{a.get('lightning_written', 0)}.{a.get('last_complete')}"

    @property
    def replacements(self) -> int:
        """Frames (rain or lightning) replaced so far by ``overwrite=True``: with a frame's time, the
        cache key of its content, which a new frame does not change."""
        return int(self._root_attrs().get("frames_replaced", 0))

    def last_complete(self) -> pd.Timestamp | None:
        """Time of the most recent complete rain frame, or None for an empty store."""
        value = self._root_attrs().get("last_complete")
        return pd.Timestamp(value) if value else None

    def _day_attrs(self, day: str) -> dict[str, Any] | None:
        """Attributes of a usable day group (None when absent or its creation was interrupted)."""
        attrs = self._attrs(f"days/{day}")
        return attrs if _day_ready(attrs) else None

    def _day_group(self, day: str, create: bool) -> zarr.Group | None:
        """The day's group (arrays rain_rate, lightning, time); None when absent and not ``create``.

        Creation: the group document, then the arrays, then the (empty) complete lists that
        make the day usable; an interrupted creation is redone from the start.
        """
        path = f"days/{day}"
        if self._day_attrs(day) is not None:
            return zarr.open_group(self._root.store, path=path, mode="r+" if self.mode == "a" else "r")
        if not create:
            return None
        if self.mode != "a":
            raise StoreError(f"{self.url}: store opened read-only")
        if self._attrs("days") is None:
            self._write_attrs("days", {})
        self._write_attrs(path, {})
        durability.crash_point("store.day.begun")
        group = zarr.open_group(self._root.store, path=path, mode="r+")
        ny, nx = self.grid.shape
        n = self._slots_per_day
        if ny * nx > SHARD_THRESHOLD_CELLS:
            chunks = (1, INNER_CHUNK, INNER_CHUNK)
            shards: tuple[int, ...] | None = (1, math.ceil(ny / INNER_CHUNK) * INNER_CHUNK, math.ceil(nx / INNER_CHUNK) * INNER_CHUNK)
        else:
            chunks, shards = (1, ny, nx), None
        for var in VARIABLES:
            group.create_array(
                var,
                shape=(n, ny, nx),
                dtype="float32",
                chunks=chunks,
                shards=shards,
                fill_value=np.nan,
                compressors=default_compressor(),
                dimension_names=("slot", dims.Y, dims.X),
                attributes={"units": dims.RAIN_RATE_UNITS if var == dims.RAIN_RATE else dims.LIGHTNING_UNITS},
                overwrite=True,
            )
        tarr = group.create_array(
            "time",
            shape=(n,),
            dtype="int64",
            chunks=(n,),
            compressors=None,
            dimension_names=("slot",),
            attributes={"units": TIME_UNITS, "calendar": "proleptic_gregorian"},
            overwrite=True,
        )
        start = pd.Timestamp(day)
        step = int(self.cadence.total_seconds())
        tarr[:] = (start - pd.Timestamp("1970-01-01")) // pd.Timedelta(seconds=1) + step * np.arange(n, dtype=np.int64)
        durability.crash_point("store.day.arrays")
        self._write_attrs(path, {**{f"{v}_slots": [] for v in VARIABLES}, SOURCES_ATTR: {}})
        with self._lock:  # handles of an interrupted earlier creation are stale
            for var in VARIABLES:
                self._arrays.pop((day, var), None)
        return zarr.open_group(self._root.store, path=path, mode="r+")

    def _complete_slots(self, day: str, var: str = dims.RAIN_RATE) -> set[int]:
        return _slots(self._day_attrs(day), var)

    def _array(self, day: str, var: str) -> zarr.Array | None:
        key = (day, var)
        with self._lock:
            if key in self._arrays:
                self._arrays.move_to_end(key)
                return self._arrays[key]
        group = self._day_group(day, create=False)
        if group is None:
            return None
        arr = group[var]
        with self._lock:
            self._arrays[key] = arr  # type: ignore[assignment]
            while len(self._arrays) > 32:  # bounded handle cache
                self._arrays.popitem(last=False)
        return arr  # type: ignore[return-value]

    # ------------------------------------------------------------------ writing
    def _check_writable(self) -> None:
        if self.mode != "a":
            raise StoreError(f"{self.url}: store opened read-only")

    def _as_2d(self, values: xr.DataArray | np.ndarray, what: str) -> np.ndarray:
        if isinstance(values, xr.DataArray):
            da = values.squeeze(drop=False) if dims.TIME in values.dims else values
            if da.dims != (dims.Y, dims.X):
                raise StoreError(f"{what}: dims must be (y, x) or (time=1, y, x), got {values.dims}")
            frame_grid = Grid(x=da[dims.X].values, y=da[dims.Y].values, crs_wkt=self.grid.crs_wkt)
            if frame_grid.shape != self.grid.shape or not (
                np.allclose(frame_grid.x, self.grid.x, atol=1e-3) and np.allclose(frame_grid.y, self.grid.y, atol=1e-3)
            ):
                raise StoreError(f"{what}: frame grid {frame_grid.shape} is not the store grid {self.grid.shape}; regrid it first")
            arr = np.asarray(da.values, dtype=np.float32)
        else:
            arr = np.asarray(values, dtype=np.float32)
        if arr.shape != self.grid.shape:
            raise StoreError(f"{what}: shape {arr.shape} is not the store grid {self.grid.shape}")
        finite = arr[np.isfinite(arr)]
        if finite.size and finite.min() < 0:
            raise StoreError(f"{what}: negative values (min {finite.min():.3g})")
        if np.isinf(arr).any():
            raise StoreError(f"{what}: infinite values")
        return arr

    @staticmethod
    def _time_of_frame(frame: xr.DataArray) -> pd.Timestamp:
        if dims.TIME not in frame.coords:
            raise StoreError("frame has no time coordinate")
        t = np.atleast_1d(frame[dims.TIME].values)
        if t.size != 1:
            raise StoreError(f"append takes one frame at a time, got {t.size} times")
        return dims.to_utc_timestamp(t[0])

    def append(
        self,
        frame: xr.DataArray,
        lightning: xr.DataArray | np.ndarray | None = None,
        source: str | None = None,
        overwrite: bool = False,
    ) -> bool:
        """Write one rain-rate frame (and optionally its lightning counts) into its slot.

        ``frame``: DataArray (y, x) or (time=1, y, x), rain rate mm/h on the store grid, with
        a ``time`` coordinate on the cadence. Returns True when written, False when the slot
        was already complete (idempotent append; pass ``overwrite=True`` to replace).
        """
        self._check_writable()
        t = self._time_of_frame(frame)
        slot = self.slot_of(t)
        rain = self._as_2d(frame, f"frame {t}")
        light = None if lightning is None else self._as_2d(lightning, f"lightning {t}")
        path = f"days/{slot.day}"
        with self._lock:
            self._day_group(slot.day, create=True)
            attrs = self._day_attrs(slot.day) or {}
            done = set(attrs.get(f"{dims.RAIN_RATE}_slots", []))
            replacing = slot.index in done
            if replacing and not overwrite:
                log.debug("frame %s already stored; skipped", t)
                if light is not None and slot.index not in set(attrs.get(f"{dims.LIGHTNING}_slots", [])):
                    self.append_lightning(t, light)
                return False
            self._array(slot.day, dims.RAIN_RATE)[slot.index] = rain  # type: ignore[index]
            if light is not None:
                self._array(slot.day, dims.LIGHTNING)[slot.index] = light  # type: ignore[index]
            durability.crash_point("store.append.data")
            # completeness marker after the data (one atomic write), then the root marker
            update: dict[str, Any] = {f"{dims.RAIN_RATE}_slots": sorted(done | {slot.index})}
            if light is not None:
                update[f"{dims.LIGHTNING}_slots"] = sorted(set(attrs.get(f"{dims.LIGHTNING}_slots", [])) | {slot.index})
            key = _source_key(source)
            if key:
                counts = dict(attrs.get(SOURCES_ATTR) or {})
                counts[key] = int(counts.get(key, 0)) + 1
                update[SOURCES_ATTR] = counts
            self._write_attrs(path, update)
            durability.crash_point("store.append.marked")
            self._bump(rain=t, lightning=light is not None, source=key, replaced=replacing)
        log.info("stored frame %s%s", t, f" from {source}" if source else "")
        return True

    def append_lightning(self, time: object, counts: xr.DataArray | np.ndarray, overwrite: bool = False) -> bool:
        """Write lightning counts (y, x) for the slot of ``time``, independently of the rain frame."""
        self._check_writable()
        t = dims.to_utc_timestamp(time)
        slot = self.slot_of(t)
        light = self._as_2d(counts, f"lightning {t}")
        with self._lock:
            self._day_group(slot.day, create=True)
            attrs = self._day_attrs(slot.day) or {}
            done = set(attrs.get(f"{dims.LIGHTNING}_slots", []))
            replacing = slot.index in done
            if replacing and not overwrite:
                return False
            self._array(slot.day, dims.LIGHTNING)[slot.index] = light  # type: ignore[index]
            durability.crash_point("store.lightning.data")
            self._write_attrs(f"days/{slot.day}", {f"{dims.LIGHTNING}_slots": sorted(done | {slot.index})})
            self._bump(rain=None, lightning=True, replaced=replacing)
        return True

    def _bump(self, rain: pd.Timestamp | None, lightning: bool, source: str = "", replaced: bool = False) -> None:
        """Move the root markers after a slot was marked complete; ``replaced``: it was complete before
        (counted in ``frames_replaced``, after the new data, so readers drop what they cached of it)."""
        attrs = self._root_attrs()
        update: dict[str, Any] = {}
        if replaced:
            update["frames_replaced"] = int(attrs.get("frames_replaced", 0)) + 1
        if rain is not None:
            last = attrs.get("last_complete")
            if not last or pd.Timestamp(last) < rain:
                update["last_complete"] = rain.isoformat()
            update["frames_written"] = int(attrs.get("frames_written", 0)) + 1
            if source:
                counts = dict(attrs.get("frames_by_source") or {})
                counts[source] = int(counts.get(source, 0)) + 1
                update["frames_by_source"] = counts
        if lightning:
            update["lightning_written"] = int(attrs.get("lightning_written", 0)) + 1
        self._write_attrs("", update)

    def repair(self) -> dict[str, Any]:
        """Make the root markers agree with the day groups; returns what was changed ({} when nothing).

        A crash after a slot was marked complete but before the root marker moved leaves
        ``last_complete`` behind the newest complete frame and the counters one short; every
        open for writing calls this, so such a store serves the right "latest" again.
        """
        self._check_writable()
        last: pd.Timestamp | None = None
        n_rain = n_light = 0
        by_source: dict[str, int] = {}
        for day in self.days():
            attrs = self._day_attrs(day)
            if attrs is None:
                continue
            slots = attrs.get(f"{dims.RAIN_RATE}_slots", [])
            if slots:
                n_rain += len(slots)
                t = pd.Timestamp(day) + max(slots) * self.cadence
                last = t if last is None or t > last else last
            n_light += len(attrs.get(f"{dims.LIGHTNING}_slots", []))
            for name, n in (attrs.get(SOURCES_ATTR) or {}).items():
                by_source[name] = by_source.get(name, 0) + int(n)
        with self._lock:
            root = self._root_attrs()
            update: dict[str, Any] = {}
            stored_last = root.get("last_complete")
            if last is not None and (not stored_last or pd.Timestamp(stored_last) < last):
                update["last_complete"] = last.isoformat()
            written = max(n_rain, sum(by_source.values()))
            if int(root.get("frames_written", 0)) < written:
                update["frames_written"] = written
            if int(root.get("lightning_written", 0)) < n_light:
                update["lightning_written"] = n_light
            counts = dict(root.get("frames_by_source") or {})
            if any(int(counts.get(k, 0)) < n for k, n in by_source.items()):
                update["frames_by_source"] = {**counts, **{k: max(int(counts.get(k, 0)), n) for k, n in by_source.items()}}
            if update:
                log.warning("%s: repaired the root markers after an interrupted write: %s", self.url, update)
                self._write_attrs("", update)
        return update

    def frames_by_source(self) -> dict[str, int]:
        """Rain frames appended per source name (the part of the source before any ':')."""
        return {k: int(v) for k, v in (self._root_attrs().get("frames_by_source") or {}).items()}

    def record_imported(self, files: dict[str, dict[str, Any]]) -> None:
        """Merge ``files`` ({file SHA-256: {"file": name, "reader": name, "options": {...}, "times": [...]}}) into
        the store's record of the source files imports stored frames from (one atomic write)."""
        self._check_writable()
        if not files:
            return
        with self._lock:
            known = dict((self._attrs(PROVENANCE_GROUP) or {}).get("imported") or {})
            known.update(files)
            self._write_attrs(PROVENANCE_GROUP, {"imported": known})

    def imported_files(self) -> dict[str, dict[str, Any]]:
        """The record of :meth:`record_imported` ({} for a store no import has written to)."""
        return dict((self._attrs(PROVENANCE_GROUP) or {}).get("imported") or {})

    # ------------------------------------------------------------------ reading
    def days(self) -> list[str]:
        """The UTC day groups present (YYYYMMDD), sorted (listed directly: a day being created,
        not yet a zarr group, is listed too and reads as holding no frames)."""
        try:
            entries = self._fs.ls(f"{self._base}/days", detail=False, refresh=True)
        except FileNotFoundError:
            return []
        names = {str(e).rstrip("/").rsplit("/", 1)[-1] for e in entries}
        return sorted(n for n in names if len(n) == 8 and n.isdigit())

    def times(self, variable: str = dims.RAIN_RATE) -> pd.DatetimeIndex:
        """Times of the complete frames of ``variable``, sorted."""
        return self.complete_times((variable,))[variable]

    def complete_times(self, variables: Sequence[str] = (dims.RAIN_RATE, dims.LIGHTNING)) -> dict[str, pd.DatetimeIndex]:
        """:meth:`times` of several variables, reading each day's document once."""
        out: dict[str, list[pd.Timestamp]] = {v: [] for v in variables}
        for day in self.days():
            attrs = self._day_attrs(day)
            start = pd.Timestamp(day)
            for v in variables:
                out[v].extend(start + i * self.cadence for i in sorted(_slots(attrs, v)))
        return {v: pd.DatetimeIndex(ts, name=dims.TIME).as_unit("ns") for v, ts in out.items()}

    def has(self, time: object, variable: str = dims.RAIN_RATE) -> bool:
        slot = self.slot_of(time)
        return slot.index in self._complete_slots(slot.day, variable)

    def _iter_day_runs(self, times: pd.DatetimeIndex) -> Iterator[tuple[str, np.ndarray, np.ndarray]]:
        """(day, positions in ``times``, slot indices) for runs of times within one day."""
        slots = [self.slot_of(t) for t in times]
        days = np.array([s.day for s in slots])
        idx = np.array([s.index for s in slots], dtype=np.int64)
        for day in dict.fromkeys(days):
            pos = np.nonzero(days == day)[0]
            yield day, pos, idx[pos]

    def _read_times(self, times: pd.DatetimeIndex, rows: slice | None, cols: slice | None) -> xr.Dataset:
        rows = rows or slice(None)
        cols = cols or slice(None)
        y = self.grid.y[rows]
        x = self.grid.x[cols]
        n = len(times)
        data = {v: np.full((n, y.size, x.size), np.nan, dtype=np.float32) for v in VARIABLES}
        present = {v: np.zeros(n, dtype=bool) for v in VARIABLES}
        for day, pos, idx in self._iter_day_runs(times):
            attrs = self._day_attrs(day)
            if attrs is None:
                continue
            for var in VARIABLES:
                complete = set(attrs.get(f"{var}_slots", []))
                ok = np.array([i in complete for i in idx])
                if not ok.any():
                    continue
                arr = self._array(day, var)
                assert arr is not None
                want = idx[ok]
                lo, hi = int(want.min()), int(want.max()) + 1
                block = arr[lo:hi, rows, cols]
                data[var][pos[ok]] = block[want - lo]
                present[var][pos[ok]] = True
        coords: dict[str, Any] = {
            dims.TIME: times.values,
            dims.Y: y,
            dims.X: x,
            "present": (dims.TIME, present[dims.RAIN_RATE]),
            "lightning_present": (dims.TIME, present[dims.LIGHTNING]),
        }
        ds = xr.Dataset(
            {
                dims.RAIN_RATE: (dims.FRAME_DIMS, data[dims.RAIN_RATE], {"units": dims.RAIN_RATE_UNITS}),
                dims.LIGHTNING: (dims.FRAME_DIMS, data[dims.LIGHTNING], {"units": dims.LIGHTNING_UNITS}),
            },
            coords=coords,
            attrs={"store": self.url, "cadence_seconds": int(self.cadence.total_seconds())},
        )
        ds[dims.X].attrs.update(standard_name="projection_x_coordinate", axis="X")
        ds[dims.Y].attrs.update(standard_name="projection_y_coordinate", axis="Y")
        return dims.attach_crs(ds, self.grid.crs_wkt)  # type: ignore[return-value]

    def window(self, end: object, n: int, rows: slice | None = None, cols: slice | None = None) -> xr.Dataset:
        """``n`` slots ending at ``end`` (inclusive): Dataset(time, y, x) with rain_rate and lightning.

        Slots never written are NaN with ``present`` False. ``rows``/``cols`` crop the grid.
        """
        if n < 1:
            raise ValueError(f"n must be >= 1, got {n}")
        end_t = dims.to_utc_timestamp(end)
        self.slot_of(end_t)
        times = pd.date_range(end=end_t, periods=n, freq=self.cadence)
        return self._read_times(times, rows, cols)

    def read(self, start: object, end: object, rows: slice | None = None, cols: slice | None = None) -> xr.Dataset:
        """All slots from ``start`` to ``end`` inclusive (both on the cadence)."""
        s, e = dims.to_utc_timestamp(start), dims.to_utc_timestamp(end)
        self.slot_of(s)
        self.slot_of(e)
        if e < s:
            raise ValueError(f"end {e} is before start {s}")
        return self._read_times(pd.date_range(s, e, freq=self.cadence), rows, cols)

    def read_times(self, times: object, rows: slice | None = None, cols: slice | None = None) -> xr.Dataset:
        """The given slots (any order), as :meth:`window`."""
        return self._read_times(dims.to_utc_index(times), rows, cols)

    def latest(self, n: int = 1) -> xr.Dataset:
        """The ``n`` slots ending at the last complete frame; StoreError when the store is empty."""
        last = self.last_complete()
        if last is None:
            raise StoreError(f"{self.url}: store is empty")
        return self.window(last, n)

    # ------------------------------------------------------------------ per-source state
    def get_state(self, source: str) -> dict[str, Any]:
        """The JSON state of ingest source ``source`` ({} when none)."""
        attrs = self._attrs(f"state/{source}")
        return dict((attrs or {}).get("state", {}))

    def set_state(self, source: str, state: dict[str, Any]) -> None:
        """Replace the state of ``source`` (one atomic metadata write)."""
        self._check_writable()
        if self._attrs("state") is None:
            self._write_attrs("state", {})
        durability.write_atomic(self._doc_path(f"state/{source}"), _dumps(_group_doc({"state": state})), self._fs)

    # ------------------------------------------------------------------ description
    def gaps(self) -> list[tuple[pd.Timestamp, pd.Timestamp]]:
        """Missing runs (first, last missing slot) between the first and last complete frame."""
        times = self.times()
        if len(times) < 2:
            return []
        step = np.diff(times.values) // self.cadence.to_timedelta64()
        out = []
        for i in np.nonzero(step > 1)[0]:
            out.append((times[i] + self.cadence, times[i + 1] - self.cadence))
        return out

    def nbytes_stored(self) -> int | None:
        """Bytes used by the store on disk / object storage (None when it cannot be measured)."""
        try:
            import fsspec

            if durability.is_remote(self.url):
                fs, path = fsspec.core.url_to_fs(self.url, **(self.storage_options or {}))
            else:
                fs, path = fsspec.core.url_to_fs(self.url)
            return int(fs.du(path))
        except Exception as exc:  # pragma: no cover - depends on the backend
            log.debug("cannot measure store size: %s", exc)
            return None

    def info(self) -> dict[str, Any]:
        """Time range, frame count, gaps, grid, CRS and sizes, as a JSON-ready dict."""
        times = self.times()
        ltimes = self.times(dims.LIGHTNING)
        attrs = self._root_attrs()
        ny, nx = self.grid.shape
        stored = self.nbytes_stored()
        raw = len(times) * ny * nx * 4
        return {
            "url": self.url,
            "format": f"{FORMAT} v{attrs.get('format_version')}",
            "cadence": str(self.cadence),
            "frames": len(times),
            "lightning_frames": len(ltimes),
            "first": times[0].isoformat() if len(times) else None,
            "last": times[-1].isoformat() if len(times) else None,
            "gaps": [(a.isoformat(), b.isoformat(), int((b - a) / self.cadence) + 1) for a, b in self.gaps()],
            "grid": {
                "shape": [ny, nx],
                "resolution": self.grid.resolution,
                "bounds": [float(b) for b in self.grid.bounds()],
                "bbox_lonlat": list(self.grid.bbox_lonlat()),
                "name": self.grid.name,
            },
            "crs": _short_crs(self.grid.crs),
            "size_bytes": stored,
            "uncompressed_rain_bytes": raw,
            "version": self.version,
            "imported_files": len(self.imported_files()),
        }
