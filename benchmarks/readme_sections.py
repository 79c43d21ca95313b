"""Marked README sections that scripts generate from committed result files.

A section is the text between a ``BEGIN`` and an ``END`` marker line (HTML comments, invisible
on GitHub). Used by ``render_readme.py`` (API table) and ``render_skill.py`` (real-data skill).
"""

from __future__ import annotations

import sys
from pathlib import Path


def current_section(text: str, begin: str, end: str, what: str = "generated") -> str:
    """The marked section of ``text``, markers included (ValueError when they are missing)."""
    i, j = text.find(begin), text.find(end)
    if i < 0 or j < i:
        raise ValueError(f"README has no {what} section ({begin!r} ... {end!r})")
    return text[i : j + len(end)]


def replace_section(text: str, begin: str, end: str, body: str, what: str = "generated") -> str:
    """``text`` with the marked section's content replaced by ``body``."""
    return text.replace(current_section(text, begin, end, what), f"{begin}\n{body}\n{end}")


def write_or_check(readme: Path, new: str, check: bool, what: str, script: str) -> int:
    """The renderers' common ending: with ``check``, exit status 1 when ``readme`` differs from
    ``new`` (the regenerated text); otherwise write it when it changed. Prints one line."""
    text = readme.read_text()
    if check:
        stale = new != text
        sys.stdout.write(f"README {what} {'is stale: run python benchmarks/' + script if stale else 'is current'}\n")
        return 1 if stale else 0
    if new != text:
        readme.write_text(new)
    sys.stdout.write("updated\n" if new != text else "already current\n")
    return 0
