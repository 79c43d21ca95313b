"""``nowcast serve``: the live system - ingest (own process) + inference (own process) + API + dashboard.

With no configuration it runs the synthetic source into ``var/observations.zarr``, forecasts
with the shipped synthetic ConvLSTM (the champion of the local model registry ``var/models``,
seeded on first start; extrapolation is the fallback, reported in /v1/status) into
``var/forecasts.zarr`` and serves the API and dashboard on http://127.0.0.1:8000/. A settings
file, ``--model``/``--checkpoint``, ``--no-ingest`` or ``NOWCAST_*`` variables that choose a model,
registry or ingest turn these model defaults off (``service.settings.live_model_defaults``).

Inference runs in a child process (``service.inference_process``: niced by ``inference_nice``,
``inference_threads`` torch threads, restarted with back-off if it dies, reported in
/v1/status), so a forecast never holds the API process's GIL; the API process keeps a proxy
and does not import torch. ``inference_process = false`` runs it as a thread of the API
process instead. Ctrl-C / SIGTERM stop uvicorn, the inference process (it finishes its current
run; SIGTERM, then SIGKILL after 30 s) and the ingest process.

The listening socket is bound before anything else starts: a port in use is a one-line error
(exit status 2) with no ingest or inference process started and nothing written.
"""

from __future__ import annotations

import argparse
import logging
import socket
import sys
from pathlib import Path
from typing import Any

help = "run the live system: ingest + inference + API + dashboard"  # noqa: A001

log = logging.getLogger("nowcast.serve")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", type=Path, help="service settings file (TOML/YAML; keys of ServiceSettings, see docs/api.md)")
    p.add_argument("--port", type=int, help="HTTP port (default 8000)")
    p.add_argument("--host", help="bind address (default 127.0.0.1)")
    p.add_argument("--store", help="observation store path/URL (default var/observations.zarr)")
    p.add_argument("--forecast-store", help="forecasts store directory (default var/forecasts.zarr)")
    p.add_argument("--model", help="nowcaster name (default: the shipped synthetic ConvLSTM on the default synthetic source, else extrapolation)")
    p.add_argument("--checkpoint", type=Path, help="checkpoint of a trained model (e.g. convlstm)")
    p.add_argument("--no-ingest", action="store_true", help="do not start the ingest process (another process feeds the store)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override one setting (repeatable)")


def load_settings(args: argparse.Namespace) -> Any:
    """ServiceSettings from the file, env (NOWCAST_*), then flags; CommandError listing every problem."""
    from pydantic import ValidationError

    from cli import CommandError
    from nowcast.config import ConfigError, apply_overrides, read_mapping
    from service.settings import ServiceSettings

    try:
        data: dict[str, Any] = read_mapping(args.config) if args.config else {}
        apply_overrides(data, args.set)
    except ConfigError as exc:
        raise CommandError(str(exc)) from exc
    for flag, key in (("port", "port"), ("host", "host"), ("store", "store"), ("forecast_store", "forecast_store"), ("model", "model"), ("checkpoint", "checkpoint")):
        value = getattr(args, flag, None)
        if value is not None:
            data[key] = value
    if args.no_ingest:
        data["run_ingest"] = False
    if not args.config:
        import os

        from service.settings import live_model_defaults

        data = live_model_defaults(data, dict(os.environ))
    try:
        return ServiceSettings(**data)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or '(top)'}: {e['msg']}" for e in exc.errors())
        where = f"{args.config}: " if args.config else ""
        raise CommandError(f"{where}invalid settings: {problems}") from exc


def _server_class():  # noqa: ANN202
    import contextlib

    import uvicorn

    class _Server(uvicorn.Server):
        """uvicorn's server without its signal capture: uvicorn re-raises a captured SIGTERM
        after shutdown, which would kill this process before it stops the ingest child."""

        @contextlib.contextmanager
        def capture_signals(self):  # noqa: ANN202
            yield

    return _Server


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port``; CommandError naming the address when it is taken."""
    from cli import CommandError

    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise CommandError(f"cannot listen on {host}:{port}: {exc.strerror}") from exc
    family, _, proto, _, address = infos[0]
    # proto IPPROTO_TCP: asyncio sets TCP_NODELAY only on connections of such sockets; without it
    # every keep-alive response waits ~40 ms for the client's delayed ACK (Nagle)
    sock = socket.socket(family, socket.SOCK_STREAM, proto or socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn: restart while TIME_WAIT
        sock.bind(address)
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        hint = "; another process uses it (choose one with --port)" if exc.errno in (98, 48, 10048) else ""
        raise CommandError(f"cannot listen on {host}:{port}: {exc.strerror}{hint}") from exc
    sock.set_inheritable(True)
    return sock


def run(args: argparse.Namespace) -> int:
    import signal

    from service.app import create_app

    settings = load_settings(args)
    sock = bind(settings.host, settings.port)  # before the ingest process or anything else starts
    port = sock.getsockname()[1]
    if not logging.getLogger().handlers or logging.getLogger().level > logging.INFO:
        logging.getLogger("nowcast").setLevel(logging.INFO)
        logging.getLogger("service").setLevel(logging.INFO)

    ingest = None
    if settings.run_ingest:
        from ingest.process import run_ingest_process

        ingest = run_ingest_process(settings.ingest, store=settings.store)
    loop: Any = None
    if settings.inference and settings.inference_process:
        from service.inference_process import InferenceProcess

        loop = InferenceProcess(settings)  # the app's lifespan starts the child, after the bind above
    elif settings.inference:
        from service.inference import InferenceLoop

        loop = InferenceLoop(settings)
    app = create_app(settings, loop, start_inference=True)
    from service.server import uvicorn_config

    config = uvicorn_config(app, settings)  # request-head limits (414/431) of the API; see service/server.py
    server = _server_class()(config)
    host = settings.host if settings.host not in ("0.0.0.0", "::") else "127.0.0.1"
    print(f"nowcast serving on http://{host}:{port}/ (Ctrl-C to stop)", file=sys.stderr, flush=True)
    previous = {sig: signal.signal(sig, server.handle_exit) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        server.run(sockets=[sock])  # returns after a graceful shutdown (SIGINT/SIGTERM set should_exit)
    finally:
        sock.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if loop is not None:
            loop.stop()
        if ingest is not None:
            from ingest.process import stop_ingest_process

            code = stop_ingest_process(ingest)
            log.info("ingest process exited with %s", code)
    return 0
