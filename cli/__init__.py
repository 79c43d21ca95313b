"""The ``nowcast`` command line: one entry point whose subcommands follow the data.

The top layer of the tree: it may import the library (``nowcast``), ``ingest``, ``service``
and ``training``; nothing imports it (the contract in ``pyproject.toml``, checked by ``make lint``).
Run it as ``nowcast ...`` or ``python -m cli ...``.

Each subcommand lives in ``cli/commands/<name>.py`` and exposes ``help`` (one line),
``add_arguments(parser)`` and ``run(args) -> int``. Modules are imported only when their
subcommand runs, so ``nowcast --help`` stays fast. Exit codes: 0 success; non-zero with a
one-line reason on stderr.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

#: subcommand -> (module, one-line help); order follows the data flow
COMMANDS: dict[str, tuple[str, str]] = {
    "import": ("cli.commands.import_", "bulk-load archived radar files into an observation store"),
    "info": ("cli.commands.info", "describe a store: time range, gaps, grid, CRS, sizes"),
    "ingest": ("cli.commands.ingest", "run the scheduled ingest of live sources into the store"),
    "serve": ("cli.commands.serve", "run the live system: ingest + inference + API + dashboard"),
    "train": ("cli.commands.train", "train a ConvLSTM nowcaster from a store"),
    "evaluate": ("cli.commands.evaluate", "run a DAP evaluation plan (ledger + skill report); --verify"),
    "retrain": ("cli.commands.retrain", "train a challenger, compare with the champion, promote if better"),
    "models": ("cli.commands.models", "model registry: list, show, promote, rollback"),
    "bench": ("cli.commands.bench", "run the benchmark suite and write benchmarks/results.json"),
}


class CommandError(Exception):
    """Raised by a subcommand for an expected failure; printed as one line, exit code 2."""


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The full parser; with ``only``, just that subcommand's module is imported (fast start)."""
    parser = argparse.ArgumentParser(
        prog="nowcast",
        description="Radar rain and lightning nowcasting (5-75 min). Subcommands follow the data: "
        "import/ingest -> store -> train/evaluate -> serve.",
    )
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging (-vv for debug)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.set_defaults(_module=module)
        if only is not None and name != only:
            continue
        try:
            mod = importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name != module:
                raise
            p.set_defaults(_missing=True)
            continue
        mod.add_arguments(p)
    return parser


def setup_logging(verbosity: int) -> None:
    level = logging.WARNING if verbosity <= 0 else logging.INFO if verbosity == 1 else logging.DEBUG
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    first = next((a for a in argv if not a.startswith("-")), None)
    parser = build_parser(only=first if first in COMMANDS else "")
    args = parser.parse_args(argv)
    if not args.command:
        parser.print_help()
        return 2
    setup_logging(args.verbose)
    if getattr(args, "_missing", False):
        print(f"nowcast {args.command}: not available in this installation", file=sys.stderr)
        return 2
    mod = importlib.import_module(args._module)
    try:
        return int(mod.run(args) or 0)
    except KeyboardInterrupt:
        return 130
    except CommandError as exc:
        print(f"nowcast {args.command}: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # one-line reason; the traceback with -v
        if args.verbose:
            logging.getLogger("nowcast").exception("failed")
        print(f"nowcast {args.command}: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
