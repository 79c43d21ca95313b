"""The runner: one :class:`SourceRunner` drives one source against the observation store
(poll -> fetch -> validate -> decode -> regrid -> append; see :mod:`ingest`)."""

from __future__ import annotations

import copy
import logging
import re
import shutil
import threading
import time
from collections import OrderedDict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from ingest.decode import BadFile, OffCadence, decode_radar
from ingest.settings import IngestSettings, RunReport
from ingest.status import IngestStatus
from nowcast import dims, durability
from nowcast.sources.base import (
    LIGHTNING,
    Fetched,
    Item,
    NotAvailable,
    NotModified,
    Source,
    SourceError,
    TransientError,
)

if TYPE_CHECKING:
    from nowcast.store import ObservationStore

#: the logger name of the ingest pipeline since it was nowcast/ingest.py (log configuration and
#: JSON log consumers key on it)
log = logging.getLogger("nowcast.ingest")


#: bounds of the per-source state
MAX_DONE = 5_000
MAX_VALIDATORS = 512
MAX_LIGHTNING_SLOTS = 2_000


def _safe_name(key: str) -> str:
    base = key.rstrip("/").rsplit("/", 1)[-1] or "item"
    return re.sub(r"[^A-Za-z0-9._@-]+", "_", base)[-120:]


class SourceRunner:
    """Runs one source against the store; see the module docstring.

    ``write_lock`` serialises writes of runners sharing one store object (one process).
    """

    def __init__(self, source: Source, store: ObservationStore, settings: IngestSettings | None = None, status: IngestStatus | None = None, write_lock: threading.Lock | None = None) -> None:
        self.source = source
        self.store = store
        self.settings = settings or IngestSettings()
        self.write_lock = write_lock or threading.Lock()
        self.status = status
        self.name = source.name
        if status is not None:
            status.register(self.name, source.kind)
        self._flash_cache: OrderedDict[str, Any] = OrderedDict()
        self._run_lock = threading.Lock()

    # -- state helpers -------------------------------------------------------------------
    def _save_state(self, state: dict[str, Any]) -> None:
        done = state.get("done", {})
        while len(done) > MAX_DONE:
            done.pop(next(iter(done)))
        with self.write_lock:
            self.store.set_state(self.name, state)

    def _wanted(self, item: Item, state: dict[str, Any], wall: pd.Timestamp) -> bool:
        done = state.get("done", {}).get(item.key)
        if done is not None and item.signature and done.get("sig") == item.signature:
            return False  # unchanged file; items without a signature (a "latest" alias) are
            # re-requested every run (conditionally) and items of a known slot skip via has()
        bad = state.get("bad", {}).get(item.key)
        if bad is not None and item.signature and bad.get("sig") == item.signature:
            return False
        miss = state.get("missing", {}).get(item.key)
        if miss is not None and pd.Timestamp(miss["next"]) > wall:
            return False
        if item.kind != LIGHTNING and item.time is not None:
            if item.time.floor(self.store.cadence) != item.time:
                return False  # provider slot not on the store cadence
            if self.store.has(item.time):
                return False
        return True

    # -- one run -------------------------------------------------------------------------
    def run_once(self, now: pd.Timestamp | None = None) -> RunReport:
        """Poll the source once and ingest what is new; never raises (errors are reported)."""
        if not self._run_lock.acquire(blocking=False):
            rep = RunReport(self.name)
            rep.errors.append("previous run still in progress")
            return rep
        try:
            return self._run(now)
        finally:
            self._run_lock.release()

    def _run(self, now: pd.Timestamp | None) -> RunReport:
        t_start = time.monotonic()
        wall = dims.to_utc_timestamp(now) if now is not None else pd.Timestamp.now(tz="UTC").tz_localize(None)
        rep = RunReport(self.name)
        src_now = wall
        state: dict[str, Any] = {}
        try:
            state = copy.deepcopy(self.store.get_state(self.name))
            shifted = wall + self.settings.clock_offset
            now0 = self.source.clock(shifted)
            items = self.source.poll(now0, now0 - self.settings.backfill, state)
            src_now = self.source.clock(shifted)
            if src_now != now0:  # a simulated clock that got to know its archive in poll
                items = self.source.poll(src_now, src_now - self.settings.backfill, state)
            since = src_now - self.settings.backfill
            items = [i for i in items if i.time is None or i.time > since]
            rep.polled = len(items)
            todo = [i for i in items if self._wanted(i, state, wall)]
            rep.skipped = len(items) - len(todo)
            # newest first; unknown times (latest alias, drop-folder files) first of all
            todo.sort(key=lambda i: (i.time is not None, -(i.time.value if i.time is not None else 0)))
            self._process_all(todo[: self.settings.max_items_per_run], state, wall, src_now, rep)
            if self.source.kind == LIGHTNING:
                self._write_lightning_slots(state, src_now, rep)
            self._prune(state, since, wall)
            self._save_state(state)
        except SourceError as exc:
            rep.errors.append(str(exc))
            log.warning("source %s: %s", self.name, exc)
        except Exception as exc:  # a bad source never stops the others
            rep.errors.append(f"{type(exc).__name__}: {exc}")
            log.exception("source %s failed", self.name)
        rep.seconds = time.monotonic() - t_start
        if self.status is not None:
            self.status.record(rep, src_now)
            self.status.flush()
        if rep.ingested or rep.errors or rep.quarantined:
            log.info(
                "source %s: %d polled, %d ingested (%d backfilled), %d duplicate, %d quarantined, %d failed, %d missing in %.2f s",
                self.name, rep.polled, rep.ingested, rep.backfilled, rep.duplicates, rep.quarantined, rep.failed, rep.missing, rep.seconds,
            )
        return rep

    def _fetch(self, item: Item, state: dict[str, Any], wall: pd.Timestamp, src_now: pd.Timestamp, rep: RunReport) -> Fetched | None:
        """Fetch one item (in the runner thread: sources may update ``state``); None when there
        is nothing to decode."""
        try:
            fetched = self.source.fetch(item, state)
        except NotModified:
            state.setdefault("missing", {}).pop(item.key, None)
            return None
        except NotAvailable as exc:
            self._missing(item, state, wall, src_now, str(exc))
            rep.missing += 1
            return None
        except TransientError as exc:
            rep.failed += 1
            rep.errors.append(str(exc))
            log.warning("source %s: %s (will retry)", self.name, exc)
            return None
        except SourceError as exc:
            rep.failed += 1
            rep.errors.append(str(exc))
            log.warning("source %s: %s", self.name, exc)
            return None
        sha = fetched.validators.get("sha1", "")
        bad = state.get("bad", {}).get(item.key)
        if bad is not None and sha and bad.get("sha1") == sha:
            fetched.cleanup()
            return None  # same bad content as before
        return fetched

    def _decode(self, fetched: Fetched, wall: pd.Timestamp) -> tuple[str, Any]:
        """Decode off the runner thread: ("ok", (frame, lightning)), ("skip", reason) or ("bad", reason)."""
        try:
            return "ok", decode_radar(fetched, self.store.grid, self.store.cadence, self.settings, wall)
        except OffCadence as exc:
            return "skip", str(exc)
        except BadFile as exc:
            return "bad", str(exc)

    def _finish(self, item: Item, fetched: Fetched, decoded: tuple[str, Any], state: dict[str, Any], wall: pd.Timestamp, src_now: pd.Timestamp, rep: RunReport) -> None:
        """Append a decoded frame (or quarantine / skip it) and record the item."""
        try:
            outcome, value = decoded
            if outcome == "skip":
                log.debug("source %s: %s: %s", self.name, item.key, value)
                self._mark_done(item, state, None, wall, fetched)
                rep.skipped += 1
                return
            if outcome == "bad":
                self._quarantine(item, fetched, value, state, wall, rep)
                return
            frame, lightning = value
            t = dims.to_utc_timestamp(frame[dims.TIME].values)
            if item.time is not None and fetched.time is None and t != item.time:
                log.warning("source %s: %s holds the frame of %s, not of slot %s", self.name, item.key, t, item.time)
            try:
                with self.write_lock:
                    written = self.store.append(frame, lightning=lightning, source=self.name)
            except Exception as exc:  # e.g. storage full/unreachable: retried at the next run
                rep.failed += 1
                rep.errors.append(f"{item.key}: cannot store frame {t}: {type(exc).__name__}: {exc}")
                log.error("source %s: cannot store frame %s from %s: %s", self.name, t, item.key, exc)
                return
            durability.crash_point("ingest.frame.stored")
            self._mark_done(item, state, t, wall, fetched)
            self._save_state(state)
            durability.crash_point("ingest.state.saved")
            if written:
                rep.ingested += 1
                if src_now - t > self.settings.backfilled_after:
                    rep.backfilled += 1
                if rep.newest is None or t > rep.newest:
                    rep.newest = t
                self._notify(t)
            else:
                rep.duplicates += 1
        finally:
            fetched.cleanup()

    def _process_all(self, todo: list[Item], state: dict[str, Any], wall: pd.Timestamp, src_now: pd.Timestamp, rep: RunReport) -> None:
        """Fetch, decode and append ``todo`` in order; radar files are decoded one ahead in a
        worker thread while the previous frame is written (decode and write overlap)."""
        from concurrent.futures import Future, ThreadPoolExecutor

        pending: tuple[Item, Fetched, Future] | None = None
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"decode-{self.name}") as pool:
            try:
                for item in todo:
                    fetched = self._fetch(item, state, wall, src_now, rep)
                    if fetched is None:
                        continue
                    if item.kind == LIGHTNING:
                        try:
                            self._ingest_lightning_file(item, fetched, state, wall, rep)
                        finally:
                            fetched.cleanup()
                        continue
                    future = pool.submit(self._decode, fetched, wall)
                    if pending is not None:
                        self._finish(pending[0], pending[1], pending[2].result(), state, wall, src_now, rep)
                    pending = (item, fetched, future)
                if pending is not None:
                    last, pending = pending, None
                    self._finish(last[0], last[1], last[2].result(), state, wall, src_now, rep)
            finally:
                if pending is not None:  # an error above: do not leak a temporary download
                    pending[2].cancel()
                    pending[1].cleanup()

    @staticmethod
    def _remember(state: dict[str, Any], key: str, fetched: Fetched | None) -> None:
        """Record the HTTP validators (ETag, Last-Modified) of a processed item."""
        if fetched is None:
            return
        got = {k: v for k, v in fetched.validators.items() if k in ("etag", "last_modified")}
        if not got:
            return
        table = state.setdefault("validators", {})
        table.pop(key, None)
        table[key] = got
        while len(table) > MAX_VALIDATORS:
            table.pop(next(iter(table)))

    def _mark_done(self, item: Item, state: dict[str, Any], t: pd.Timestamp | None, wall: pd.Timestamp, fetched: Fetched | None = None) -> None:
        self._remember(state, item.key, fetched)
        done = state.setdefault("done", {})
        done.pop(item.key, None)
        if item.kind == LIGHTNING or item.time is None or t is None or t != item.time:
            # items of a known slot are recognised by store.has(); remember only the others
            done[item.key] = {"sig": item.signature, "time": t.isoformat() if t is not None else None, "at": wall.isoformat()}
        state.setdefault("missing", {}).pop(item.key, None)
        state.setdefault("bad", {}).pop(item.key, None)
        if t is not None and (state.get("last_time") is None or pd.Timestamp(state["last_time"]) < t):
            state["last_time"] = t.isoformat()

    def _missing(self, item: Item, state: dict[str, Any], wall: pd.Timestamp, src_now: pd.Timestamp, reason: str) -> None:
        miss = state.setdefault("missing", {})
        n = int(miss.get(item.key, {}).get("n", 0)) + 1
        fresh = item.time is not None and src_now - item.time < self.settings.fresh_window
        delay = pd.Timedelta(0) if fresh else self.settings.missing_retry * min(2 ** (n - 1), 8)
        miss[item.key] = {"n": n, "next": (wall + delay).isoformat(), "reason": reason}
        log.debug("source %s: %s not available (%d): %s", self.name, item.key, n, reason)

    def _quarantine(self, item: Item, fetched: Fetched, reason: str, state: dict[str, Any], wall: pd.Timestamp, rep: RunReport) -> None:
        qdir = Path(self.settings.quarantine_dir) / _safe_name(self.name)
        qdir.mkdir(parents=True, exist_ok=True)
        stamp = wall.strftime("%Y%m%dT%H%M%S")
        dest = qdir / f"{stamp}-{_safe_name(item.key)}"
        i = 1
        while dest.exists() or dest.with_name(dest.name + ".reason.txt").exists():
            dest = qdir / f"{stamp}-{i}-{_safe_name(item.key)}"
            i += 1
        if fetched.path is not None and fetched.path.exists():
            if fetched.temporary:
                shutil.move(str(fetched.path), dest)
                fetched.path = None
            else:
                shutil.copy2(fetched.path, dest)
        text = (
            f"source: {self.name}\nkey: {item.key}\nslot: {item.time}\nwhen: {wall.isoformat()}Z\n"
            f"sha1: {fetched.validators.get('sha1', '')}\nreason: {reason}\n"
        )
        dest.with_name(dest.name + ".reason.txt").write_text(text)
        # no validators: content that did not decode may be a truncated transfer of a good file
        # (same ETag); the SHA-1 in "bad" keeps the same bad content from being processed twice
        state.setdefault("validators", {}).pop(item.key, None)
        state.setdefault("bad", {})[item.key] = {"sig": item.signature, "sha1": fetched.validators.get("sha1", ""), "reason": reason, "at": wall.isoformat(), "file": str(dest)}
        state.setdefault("missing", {}).pop(item.key, None)
        self._save_state(state)
        rep.quarantined += 1
        rep.errors.append(f"{item.key}: {reason}")
        log.warning("source %s: quarantined %s -> %s: %s", self.name, item.key, dest, reason)

    def _notify(self, t: pd.Timestamp) -> None:
        if self.settings.on_frame is not None:
            try:
                self.settings.on_frame(t, self.name)
            except Exception as exc:
                log.warning("on_frame hook failed: %s", exc)
        if self.settings.notify_url:
            import httpx

            try:
                httpx.post(
                    self.settings.notify_url,
                    json={"time": t.isoformat(), "source": self.name, "store": str(self.store.url), "version": self.store.version},
                    timeout=self.settings.notify_timeout,
                )
            except Exception as exc:
                log.warning("new-frame callback %s failed: %s", self.settings.notify_url, exc)

    def _prune(self, state: dict[str, Any], since: pd.Timestamp, wall: pd.Timestamp) -> None:
        horizon = (wall - max(self.settings.backfill, pd.Timedelta("1D")) * 2).isoformat()
        for key in ("missing",):
            table = state.get(key, {})
            for k in [k for k, v in table.items() if v.get("next", "") < horizon]:
                del table[k]
        done = state.get("done", {})
        for k in [k for k, v in done.items() if v.get("at", "") < horizon]:
            del done[k]
        slots = state.get("lightning_slots", {})
        for k in sorted(slots)[:-MAX_LIGHTNING_SLOTS] if len(slots) > MAX_LIGHTNING_SLOTS else []:
            del slots[k]

    # -- lightning -----------------------------------------------------------------------
    def _flashes(self, key: str, fetched: Fetched | None, state: dict[str, Any]) -> Any:
        from nowcast.lightning import read_lightning

        hit = self._flash_cache.get(key)
        if hit is not None:
            self._flash_cache.move_to_end(key)
            return hit
        own = fetched is None
        if own:
            fetched = self.source.fetch(Item(key=key, kind=LIGHTNING), state)
        try:
            assert fetched is not None and fetched.path is not None
            fl = read_lightning(fetched.path)
        finally:
            if own and fetched is not None:
                fetched.cleanup()
        self._flash_cache[key] = fl
        while len(self._flash_cache) > 256:
            self._flash_cache.popitem(last=False)
        return fl

    def _ingest_lightning_file(self, item: Item, fetched: Fetched, state: dict[str, Any], wall: pd.Timestamp, rep: RunReport) -> None:
        from nowcast.lightning import LightningError, slot_of

        try:
            if fetched.path is None:
                raise LightningError(item.key, "no content")
            fl = self._flashes(item.key, fetched, state)
        except LightningError as exc:
            self._quarantine(item, fetched, exc.reason, state, wall, rep)
            return
        slots = state.setdefault("lightning_slots", {})
        labels = sorted(set(slot_of(fl.time, self.store.cadence))) if len(fl) else []
        for t in labels:
            entry = slots.setdefault(t.isoformat(), {"files": [], "written": []})
            if item.key not in entry["files"]:
                entry["files"].append(item.key)
        self._mark_done(item, state, None, wall, fetched)

    def _write_lightning_slots(self, state: dict[str, Any], src_now: pd.Timestamp, rep: RunReport) -> None:
        from nowcast.lightning import Flashes, grid_counts

        slots = state.get("lightning_slots", {})
        for iso in sorted(slots):
            entry = slots[iso]
            t = pd.Timestamp(iso)
            if t + self.settings.lightning_settle > src_now:
                continue  # interval still open
            if sorted(entry["files"]) == sorted(entry["written"]):
                continue
            parts = []
            for key in entry["files"]:
                try:
                    parts.append(self._flashes(key, None, state))
                except Exception as exc:
                    log.warning("source %s: lightning file %s unavailable for slot %s: %s", self.name, key, t, exc)
            counts = grid_counts(Flashes.concat(parts), self.store.grid, self.store.cadence, times=[t]).isel({dims.TIME: 0})
            with self.write_lock:
                self.store.append_lightning(t, counts.values, overwrite=bool(entry["written"]))
            durability.crash_point("ingest.lightning.stored")
            entry["written"] = sorted(entry["files"])
            rep.lightning_slots += 1
            self._save_state(state)
            self._notify(t)
