"""``nowcast models``: the model registry: init, list, show, add, promote, rollback.

``--registry`` (or ``NOWCAST_MODEL_REGISTRY``) names the registry directory or ``s3://`` URL.
``promote VERSION`` makes a version champion (the old champion is retired); ``rollback`` makes
the previous champion champion again. Both check the checkpoint (checksum + load) first and
change the champion pointer in one atomic write.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from cli import CommandError


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--registry",
        default=os.environ.get("NOWCAST_MODEL_REGISTRY"),
        help="model registry path or s3:// URL (default: $NOWCAST_MODEL_REGISTRY)",
    )
    sub = p.add_subparsers(dest="action", metavar="ACTION")
    i = sub.add_parser("init", help="create a registry whose initial champion is the shipped ConvLSTM")
    i.add_argument("url", nargs="?", help="registry path or URL (default: --registry)")
    i.add_argument("--domain", choices=["real", "synthetic"], default="real", help="which shipped weights become the initial champion")
    i.add_argument("--empty", action="store_true", help="no initial champion")
    ls = sub.add_parser("list", help="list versions with status, creation time and score")
    ls.add_argument("--json", action="store_true", help="print JSON")
    sh = sub.add_parser("show", help="print a version's manifest (default: the champion)")
    sh.add_argument("version", nargs="?", help="version id (default: champion)")
    sh.add_argument("--verify", action="store_true", help="also check the checkpoint's sha256")
    ad = sub.add_parser("add", help="register an existing checkpoint as a candidate version")
    ad.add_argument("checkpoint", type=Path)
    ad.add_argument("--model", default="convlstm", help="registered nowcaster that loads it (default convlstm)")
    ad.add_argument("--version", dest="version_id", help="version id (default: time + checksum)")
    ad.add_argument("--parent", help="version it was warm-started from")
    pr = sub.add_parser("promote", help="make VERSION the champion (retires the current one)")
    pr.add_argument("version")
    pr.add_argument("--reason", default="manual promotion")
    rb = sub.add_parser("rollback", help="make the previous champion the champion again")
    rb.add_argument("--reason", default="manual rollback")


def _registry(args: argparse.Namespace, url: str | None = None):  # noqa: ANN202
    from nowcast.model_registry import ModelRegistry

    url = url or args.registry
    if not url:
        raise CommandError("no registry given: use --registry URL or set NOWCAST_MODEL_REGISTRY")
    return ModelRegistry(url)


def run(args: argparse.Namespace) -> int:
    from nowcast.model_registry import ModelRegistry, RegistryError

    action = getattr(args, "action", None)
    if not action:
        raise CommandError("missing action: init | list | show | add | promote | rollback")
    try:
        if action == "init":
            url = args.url or args.registry
            if not url:
                raise CommandError("no registry given")
            reg = ModelRegistry.create(url)
            if not args.empty:
                from nowcast.model_registry import seed_shipped_champion
                from nowcast.models.weights import MissingWeightsError

                try:
                    v = seed_shipped_champion(reg, args.domain)
                except MissingWeightsError as exc:
                    raise CommandError(f"{exc} (or use --empty)") from exc
                if v is not None:
                    print(f"{reg.url}: initial champion {v.version_id} (shipped {args.domain} weights)")
            print(f"{reg.url}: model registry ready")
            return 0
        reg = _registry(args)
        if action == "list":
            rows = [v.summary() for v in reg.list()]
            if args.json:
                print(json.dumps({"champion": reg.status().champion, "versions": rows}, indent=2, default=str))
                return 0
            if not rows:
                print(f"{reg.url}: no versions")
                return 0
            print(f"{'version':<28} {'status':<10} {'model':<14} {'created':<28} {'score':<12} parent")
            for r in rows:
                sc = r["score"] or {}
                score = f"{sc.get('name')} {sc['value']:.4f}" if isinstance(sc.get("value"), float) else "-"
                print(f"{r['version']:<28} {r['status']:<10} {str(r['model']):<14} {str(r['created']):<28} {score:<12} {r['parent'] or '-'}")
            return 0
        if action == "show":
            vid = args.version or reg.status().champion
            if vid is None:
                raise CommandError(f"{reg.url}: no champion; name a version")
            v = reg.get(vid)
            out = {"status": v.status, "manifest": v.manifest}
            if args.verify:
                reg.checkpoint_path(vid)
                out["checksum"] = "ok"
            print(json.dumps(out, indent=2, default=str))
            return 0
        if action == "add":
            v = reg.register(args.checkpoint, model=args.model, version_id=args.version_id, parent=args.parent)
            print(f"registered {v.version_id} (candidate)")
            return 0
        if action == "promote":
            old = reg.status().champion
            v = reg.promote(args.version, reason=args.reason)
            print(f"{v.version_id} is now champion (was {old or 'none'})")
            return 0
        if action == "rollback":
            old = reg.status().champion
            v = reg.rollback(reason=args.reason)
            print(f"{v.version_id} is champion again (was {old})")
            return 0
    except RegistryError as exc:
        raise CommandError(str(exc)) from exc
    raise CommandError(f"unknown action {action!r}")
