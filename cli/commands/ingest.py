"""``nowcast ingest --config FILE [--set key=value ...]``: run the scheduled ingest of live sources.

Runs in the foreground until SIGTERM/SIGINT (``--once``: one pass over every source, then
exit, e.g. for a backfill or a cron job). The configuration schema is documented in
docs/ingest.md and validated before any work starts.
"""

from __future__ import annotations

import argparse
import json

help = "run the scheduled ingest of live sources into the store"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", "-c", metavar="FILE", help="ingest configuration (TOML or YAML); default: the synthetic source")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help="override one value (dotted keys, e.g. store.url=x.zarr, sources.0.interval=30)")
    p.add_argument("--once", action="store_true", help="poll every source once, then exit")
    p.add_argument("--check", action="store_true", help="validate the configuration and print it, then exit")
    p.add_argument("--json-logs", action="store_true", help="structured logs, one JSON object per line")


def run(args: argparse.Namespace) -> int:
    from cli import CommandError
    from ingest.config import IngestConfig
    from ingest.process import main
    from nowcast.config import ConfigError, apply_overrides, read_mapping

    try:
        data = read_mapping(args.config) if args.config else {}
        plain = [o for o in args.overrides if not _is_list_override(o)]
        data = apply_overrides(data, plain)
        for o in args.overrides:
            if _is_list_override(o):
                _apply_list_override(data, o)
        if args.json_logs:
            data.setdefault("log", {})["json"] = True
        if args.verbose:
            data.setdefault("log", {})["level"] = "DEBUG" if args.verbose > 1 else "INFO"
        cfg = _validate(IngestConfig, data, args.config)
    except ConfigError as exc:
        raise CommandError(str(exc)) from exc
    if args.check:
        print(json.dumps(cfg.model_dump(mode="json", by_alias=True), indent=2))
        return 0
    from ingest import LockHeld
    from nowcast.store import StoreError

    try:
        if not args.once:
            return main(cfg)
        from ingest.process import IngestService, setup_logging

        setup_logging(cfg.log)
        service = IngestService(cfg)
        try:
            reports = service.run_once()
        finally:
            service.close()
    except (LockHeld, StoreError, ValueError) as exc:
        raise CommandError(str(exc)) from exc
    for r in reports:
        err = f"  last error: {r.errors[-1]}" if r.errors else ""
        print(
            f"{r.source}: {r.ingested} ingested ({r.backfilled} backfilled), {r.duplicates} duplicate, "
            f"{r.quarantined} quarantined, {r.failed} failed, {r.missing} missing, "
            f"{r.lightning_slots} lightning slots in {r.seconds:.1f} s{err}"
        )
    return 1 if reports and all(r.errors and not r.ingested for r in reports) else 0


def _validate(model: type, data: dict, path: str | None):  # noqa: ANN202
    from pydantic import ValidationError

    from nowcast.config import ConfigError

    try:
        return model.model_validate(data)  # type: ignore[attr-defined]
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or '(top)'}: {e['msg']}" for e in exc.errors())
        raise ConfigError(f"{path + ': ' if path else ''}invalid configuration: {problems}") from exc


def _is_list_override(item: str) -> bool:
    key = item.split("=", 1)[0]
    return any(part.isdigit() for part in key.split("."))


def _apply_list_override(data: dict, item: str) -> None:
    """``sources.0.interval=30``: dotted keys where integer parts index lists."""
    import yaml

    from nowcast.config import ConfigError

    key, raw = item.split("=", 1)
    parts = key.strip().split(".")
    if parts[0] == "sources" and "sources" not in data:
        from ingest.config import _default_sources

        data["sources"] = [s.model_dump(mode="json", exclude_none=True) for s in _default_sources()]
    node: object = data
    for part in parts[:-1]:
        if isinstance(node, list):
            idx = int(part)
            if idx >= len(node):
                raise ConfigError(f"override {item!r}: index {idx} out of range ({len(node)} entries)")
            node = node[idx]
        elif isinstance(node, dict):
            node = node.setdefault(part, {})
        else:
            raise ConfigError(f"override {item!r}: {part!r} is not a section")
    last = parts[-1]
    value = yaml.safe_load(raw)
    if isinstance(node, list):
        node[int(last)] = value
    elif isinstance(node, dict):
        node[last] = value
    else:
        raise ConfigError(f"override {item!r}: cannot set {last!r}")
