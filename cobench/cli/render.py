"""Presentation for humans (rich tables on stdout) and pipelines (JSON on stdout, nothing else there).

Progress, hints and warnings go to stderr, so `--json` output always parses.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from cobench.records import to_jsonable

out = Console(highlight=False, soft_wrap=False, width=None if sys.stdout.isatty() else 160)
err = Console(stderr=True, highlight=False, soft_wrap=True, markup=False)  # messages quote user text: no markup


def emit_json(obj: Any) -> None:
    sys.stdout.write(json.dumps(to_jsonable(obj), indent=2) + "\n")


def table(title: str | None, columns: list[str], rows: list[list[Any]], right: set[int] | None = None) -> Table:
    """A rich table; columns whose index is in `right` are right-aligned (numbers)."""
    t = Table(title=title, title_justify="left", header_style="bold")
    for i, c in enumerate(columns):
        t.add_column(c, justify="right" if right and i in right else "left")
    for r in rows:
        t.add_row(*[x if isinstance(x, Text) else Text(str(x)) for x in r])  # cells are data, never markup
    return t


def kv_table(title: str, pairs: list[tuple[str, Any]]) -> Table:
    t = Table(title=title, title_justify="left", show_header=False)
    t.add_column("", style="bold")
    t.add_column("")
    for k, v in pairs:
        t.add_row(k, str(v))
    return t


class Ticker:
    """Progress of a long job as plain stderr lines, at most one every `every_s` seconds and one at the end:
    for --json runs and pipelines (no terminal), where a live bar would be noise and silence looks hung.
    A job done within `every_s` prints nothing."""

    def __init__(self, label: str, unit: str, every_s: float = 5.0) -> None:
        self.label, self.unit, self.every_s = label, unit, every_s
        self.t0 = time.monotonic()
        self.last = self.t0

    def __call__(self, done: int, total: int | None = None) -> None:
        now = time.monotonic()
        final = total is not None and done >= total
        if now - self.last < self.every_s and not (final and self.last > self.t0):
            return
        self.last = now
        share = f"/{total:,} ({done / total:.0%})" if total else ""
        err.print(f"{self.label}: {done:,}{share}{' ' + self.unit if self.unit else ''}, {now - self.t0:.0f} s")
