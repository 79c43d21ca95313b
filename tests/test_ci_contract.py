"""CI runs the README's test command, and that command runs the slow tests behind README claims (issue 13)."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

#: the slow tests that are the only real checks of README claims
CLAIM_TESTS = [
    "tests/training/test_train_ddp.py",  # DDP with two ranks equals one process
    "tests/dap/test_parallel.py",  # a dask cluster equals in-process
    "tests/dap/test_dask_scheduler.py",
    "tests/dap/test_convlstm.py",  # --verify with a real ConvLSTM
    "tests/service/test_service_serve.py",  # end-to-end `nowcast serve`
    "tests/ingest/test_crash_points.py",  # the crash-point harness
]


def _recipe(target: str) -> list[str]:
    lines = (REPO / "Makefile").read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if re.match(rf"^{re.escape(target)}:", line))
    out = []
    for line in lines[start + 1 :]:
        if not line.startswith("\t"):
            break
        out.append(line.strip())
    return out


def test_ci_runs_the_readme_test_command() -> None:
    commands = [c for c in (REPO / ".ci" / "run").read_text().splitlines() if c.strip() and not c.startswith("#")]
    assert "make test" in commands
    readme = (REPO / "README.md").read_text()
    assert re.search(r"^make test\s+#", readme, re.M), "README's test command is `make test`"
    assert "`.ci/run` calls `make test`" in readme


def test_make_test_selects_the_slow_tests() -> None:
    pytest_lines = [c for c in _recipe("test") if "pytest" in c]
    assert len(pytest_lines) == 1, pytest_lines
    args = shlex.split(pytest_lines[0].replace("$(BIN)/", ""))
    marker = args[args.index("-m") + 1] if "-m" in args else None
    assert marker is not None and "slow" not in marker and "network" in marker, marker
    for path in CLAIM_TESTS:
        text = (REPO / path).read_text()
        assert "pytest.mark.slow" in text or path.endswith("test_crash_points.py"), path
