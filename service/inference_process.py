"""The inference loop in its own process, and the proxy the API process keeps of it.

``nowcast serve`` (``inference_process = true``, the default) runs
:class:`~service.inference.InferenceLoop` - model load, registry champion following, forecasts
into the forecasts store - in a child process (multiprocessing, spawn), at a lower priority
(``os.nice(inference_nice)``) and with ``inference_threads`` torch/OpenMP threads. The API
process keeps :class:`InferenceProcess`, which exposes what the routes and metrics read of a
loop (``model_status``, ``status``, ``listeners``, ``load_model()``, ``step(force=True)``) and
never imports torch or the models: a forecast no longer takes the API's GIL.

One duplex pipe carries pickled tuples::

    child -> parent  ("state", model_status, status)          when either changed (checked every 0.5 s)
                     ("event", event, model_status, status)   each forecast event -> listeners in the parent
                     ("reply", id, ok, result, model_status, status)
    parent -> child  ("call", id, "load_model" | "step", kwargs)   admin routes; 503 after inference_rpc_timeout_s
                     ("stop",)                                     finish the current run, exit 0

Supervision: a thread of the API process reads the pipe. When the child dies, ``status``
says so at once (``running`` false, ``last_error`` "inference process exited with code N ...")
and the child is restarted after ``inference_restart_seconds``, doubling up to 60 s (back to
the first delay once a child has lived 10 minutes); the exit note stays in ``last_error`` until
a restarted child publishes a forecast. :meth:`InferenceProcess.stop` asks the child to stop,
waits, then SIGTERMs and finally SIGKILLs it. The child ignores SIGINT (Ctrl-C reaches the whole
process group; the parent stops it) and exits when the pipe closes (the parent died). The child
is daemonic: it cannot start processes of its own.
"""

from __future__ import annotations

import copy
import itertools
import logging
import multiprocessing
import os
import signal
import sys
import threading
import time
from multiprocessing.connection import Connection, wait
from typing import TYPE_CHECKING, Any

from service.inference import InferenceUnavailable, Listener, LoopStatus, ModelStatus

if TYPE_CHECKING:
    from nowcast.forecast_store import RunInfo
    from service.settings import ServiceSettings

log = logging.getLogger(__name__)

#: the longest delay between two restarts of a child that keeps dying
MAX_RESTART_SECONDS = 60.0
#: a child that lived this long restarts after the first delay again
STABLE_SECONDS = 600.0


class _Call:
    """One pending request to the child."""

    def __init__(self) -> None:
        self.done = threading.Event()
        self.value: Any = None
        self.error: str | None = None


class InferenceProcess:
    """Proxy of an :class:`~service.inference.InferenceLoop` running in a child process."""

    #: create_app warms the inference modules only for a loop of its own process
    in_process = False

    def __init__(self, settings: ServiceSettings) -> None:
        self.settings = settings
        self.model_status = ModelStatus(configured=settings.model, checkpoint=str(settings.checkpoint) if settings.checkpoint else None)
        self.status = LoopStatus()
        self.listeners: list[Listener] = []
        #: how many times a dead child was replaced
        self.restarts = 0
        self._proc: multiprocessing.process.BaseProcess | None = None
        self._conn: Connection | None = None
        self._lock = threading.Lock()  # _proc, _conn, _pending, sends on the pipe
        self._pending: dict[int, _Call] = {}
        self._ids = itertools.count(1)
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._exit_note: str | None = None

    @property
    def pid(self) -> int | None:
        """The child's process id (None before start)."""
        return self._proc.pid if self._proc is not None else None

    def alive(self) -> bool:
        proc = self._proc
        return proc is not None and proc.is_alive()

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> None:
        """Start the child and the supervising reader thread (idempotent)."""
        if self._thread is not None and self._thread.is_alive():
            return
        self._stopping.clear()
        self._spawn()
        self._thread = threading.Thread(target=self._supervise, name="nowcast-inference-proxy", daemon=True)
        self._thread.start()

    def _spawn(self) -> None:
        ctx = multiprocessing.get_context("spawn")
        with self._lock:
            if self._stopping.is_set():
                return
            parent, child = ctx.Pipe(duplex=True)
            level = logging.getLogger("service").getEffectiveLevel()
            proc = ctx.Process(target=_child_main, args=(self.settings, child, level), name="nowcast-inference", daemon=True)
            proc.start()
            child.close()  # the child holds its end: EOF here when it exits
            self._proc, self._conn = proc, parent
        log.info("started inference process pid %s (nice +%d)", proc.pid, self.settings.inference_nice)

    def stop(self, timeout: float = 30.0) -> int | None:
        """Ask the child to finish its current run and exit; SIGTERM, then SIGKILL after ``timeout`` s. Returns its exit code."""
        with self._lock:
            if self._stopping.is_set() and self._thread is None:  # stopped already (lifespan, then serve)
                return self._proc.exitcode if self._proc is not None else None
            self._stopping.set()
            proc, conn = self._proc, self._conn
            if proc is not None and proc.is_alive() and conn is not None:
                try:
                    conn.send(("stop",))
                except (OSError, ValueError):
                    pass
        if proc is not None:
            proc.join(timeout)
            if proc.is_alive():
                log.warning("inference process %s did not stop in %.0f s; terminating it", proc.pid, timeout)
                proc.terminate()
                proc.join(5)
            if proc.is_alive():
                proc.kill()
                proc.join(5)
        if self._thread is not None:
            self._thread.join(10)
            self._thread = None
        st = copy.copy(self.status)
        st.running = False
        self.status = st
        code = proc.exitcode if proc is not None else None
        if proc is not None:
            log.info("inference process exited with %s", code)
        return code

    def _supervise(self) -> None:
        """Read the child's messages; report and restart a child that died (until stop)."""
        delay = self.settings.inference_restart_seconds
        while not self._stopping.is_set():
            proc, conn = self._proc, self._conn
            if proc is None or conn is None:
                return
            started = time.monotonic()
            self._read(proc, conn)
            proc.join(5)
            if proc.is_alive():  # the pipe broke but the child lives on: replace it
                proc.kill()
                proc.join(5)
            conn.close()
            code = proc.exitcode
            self._fail_pending(f"the inference process exited with code {code}")
            if self._stopping.is_set():
                return
            if time.monotonic() - started > STABLE_SECONDS:
                delay = self.settings.inference_restart_seconds
            when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
            log.error("inference process %s exited with code %s; restarting in %g s", proc.pid, code, delay)
            self._report_dead(f"inference process exited with code {code} at {when}; restarting in {delay:g} s")
            while not self._stopping.wait(delay):
                delay = min(MAX_RESTART_SECONDS, delay * 2)
                try:
                    self._spawn()
                except Exception as exc:  # e.g. out of memory or pids: keep trying with back-off
                    log.exception("cannot restart the inference process")
                    self._report_dead(f"inference process exited with code {code} at {when}; restart failed: {exc}")
                    continue
                self.restarts += 1
                self._exit_note = f"inference process exited with code {code} at {when}; restarted (restart {self.restarts})"
                break

    def _read(self, proc: multiprocessing.process.BaseProcess, conn: Connection) -> None:
        """Dispatch messages until the child exits or the pipe closes."""
        while True:
            try:
                ready = wait([conn, proc.sentinel], timeout=1.0)
            except OSError:
                return
            if conn in ready:
                try:
                    msg = conn.recv()
                except (EOFError, OSError):
                    return
                try:
                    self._dispatch(msg)
                except Exception:  # a bad message or listener must not stop the supervisor
                    log.exception("inference message %r failed", msg[:1])
            elif proc.sentinel in ready:
                return

    def _dispatch(self, msg: tuple) -> None:
        kind = msg[0]
        if kind == "state":
            self._update(msg[1], msg[2])
        elif kind == "event":
            event = msg[1]
            if event.get("outcome") == "ok":
                self._exit_note = None
            self._update(msg[2], msg[3])
            for fn in list(self.listeners):
                try:
                    fn(event)
                except Exception:
                    log.exception("inference listener failed")
        elif kind == "reply":
            _, cid, ok, value, model_status, status = msg
            self._update(model_status, status)
            with self._lock:
                call = self._pending.pop(cid, None)
            if call is not None:
                if ok:
                    call.value = value
                else:
                    call.error = str(value)
                call.done.set()

    def _update(self, model_status: ModelStatus, status: LoopStatus) -> None:
        if self._exit_note and status.last_error is None:
            status.last_error = self._exit_note
        self.model_status = model_status
        self.status = status

    def _report_dead(self, note: str) -> None:
        self._exit_note = note
        st = copy.copy(self.status)
        st.running = False
        st.last_error = note
        self.status = st

    def _fail_pending(self, why: str) -> None:
        with self._lock:
            calls, self._pending = self._pending, {}
        for call in calls.values():
            call.error = why
            call.done.set()

    # -- what the admin routes call --------------------------------------------------------
    def _call(self, name: str, **kwargs: Any) -> Any:
        call = _Call()
        with self._lock:
            proc, conn = self._proc, self._conn
            if self._stopping.is_set() or proc is None or conn is None or not proc.is_alive():
                why = self.status.last_error if self._exit_note else "not started or stopping"
                raise InferenceUnavailable(f"the inference process is not running ({why})")
            cid = next(self._ids)
            self._pending[cid] = call
            try:
                conn.send(("call", cid, name, kwargs))
            except (OSError, ValueError) as exc:
                self._pending.pop(cid, None)
                raise InferenceUnavailable(f"the inference process is not reachable: {exc}") from exc
        timeout = self.settings.inference_rpc_timeout_s
        if not call.done.wait(timeout):
            with self._lock:
                self._pending.pop(cid, None)
            raise InferenceUnavailable(f"the inference process did not answer {name} within {timeout:g} s")
        if call.error is not None:
            raise InferenceUnavailable(f"{name} in the inference process failed: {call.error}")
        return call.value

    def load_model(self) -> ModelStatus:
        """Reload the configured model (or the registry champion) in the child; its new status."""
        return self._call("load_model")

    def step(self, force: bool = False) -> RunInfo | None:
        """Forecast the newest complete frame in the child (``force``: even if it has a forecast)."""
        return self._call("step", force=force)


# ================================================================================ the child
def _child_logging(level: int) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s [inference %(process)d]: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING)
    for name in ("nowcast", "service"):
        logging.getLogger(name).setLevel(level)


def _limit_threads(threads: int | None) -> None:
    """OpenMP/BLAS thread counts for the libraries this fresh interpreter has not loaded yet."""
    if threads is None:
        return
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = str(threads)


def _torch_threads(threads: int | None) -> None:
    """Pin torch's intra-op threads once a model has loaded torch (the API process never does)."""
    if threads is not None and "torch" in sys.modules:
        import torch

        if torch.get_num_threads() != threads:
            torch.set_num_threads(threads)
            log.info("torch threads: %d", torch.get_num_threads())


def _child_main(settings: ServiceSettings, conn: Connection, log_level: int = logging.INFO) -> None:
    """Entry point of the inference process: run the loop, answer the parent's calls."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole group: the parent stops this process
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    _child_logging(log_level)
    _limit_threads(settings.inference_threads)
    if settings.inference_nice:
        try:
            os.nice(settings.inference_nice)
        except OSError as exc:
            log.warning("cannot lower the inference process priority: %s", exc)

    from service.inference import InferenceLoop

    loop = InferenceLoop(settings)
    send_lock = threading.Lock()

    def snapshot() -> tuple[ModelStatus, LoopStatus]:
        return copy.copy(loop.model_status), copy.copy(loop.status)

    def send(msg: tuple) -> None:
        with send_lock:
            try:
                conn.send(msg)
            except (OSError, ValueError):  # the parent is gone
                stop.set()

    loop.listeners.append(lambda event: send(("event", event, *snapshot())))
    log.info("inference process pid %d: nice %d, threads %s", os.getpid(), os.nice(0), settings.inference_threads or "default")
    loop.load_model()
    _torch_threads(settings.inference_threads)
    loop.start()
    last: tuple[ModelStatus, LoopStatus] | None = None
    try:
        while not stop.is_set():
            try:
                ready = conn.poll(0.5)
                msg = conn.recv() if ready else None
            except (EOFError, OSError):  # the parent died or closed the pipe
                break
            if msg is not None:
                if msg[0] == "stop":
                    break
                if msg[0] == "call":
                    _, cid, name, kwargs = msg
                    try:
                        if name not in ("load_model", "step"):
                            raise ValueError(f"unknown call {name!r}")
                        value, ok = getattr(loop, name)(**kwargs), True
                        _torch_threads(settings.inference_threads)
                    except Exception as exc:
                        log.exception("%s failed", name)
                        value, ok = f"{type(exc).__name__}: {exc}", False
                    send(("reply", cid, ok, value, *snapshot()))
            state = snapshot()
            if state != last:
                send(("state", *state))
                last = state
    finally:
        loop.stop()
        try:
            conn.close()
        except OSError:
            pass
        log.info("inference process stopped")


__all__ = ["InferenceProcess"]
