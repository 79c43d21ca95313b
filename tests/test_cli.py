"""The command line: one entry point, every subcommand explains itself, errors are one line."""

from __future__ import annotations

import subprocess
import sys

import pytest

from cli import COMMANDS, build_parser, main


def test_help_lists_every_subcommand(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for name in COMMANDS:
        assert name in out


@pytest.mark.parametrize("name", list(COMMANDS))
def test_each_subcommand_has_help(name, capsys):
    parser = build_parser()
    with pytest.raises(SystemExit) as exc:
        parser.parse_args([name, "--help"])
    assert exc.value.code == 0
    assert COMMANDS[name][1].split()[0] in capsys.readouterr().out


def test_info_on_missing_store_is_one_line_error(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "cli", "info", str(tmp_path / "missing.zarr")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode != 0
    lines = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()]
    assert lines[-1].startswith("nowcast info:") and "no observation store" in lines[-1]
