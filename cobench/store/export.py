"""Rows out of the store into the forms users' own tools read: CSV, JSON, JSON lines and markdown
(llama-bench's output formats), for every table."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

from cobench.errors import InputError
from cobench.files import write_atomic
from cobench.store.schema import SCHEMA_VERSION

TABLES = {  # what `store export --table` calls them → the SQLite table
    "profiles": "profiles",
    "kernels": "kernel_results",
    "calibrations": "calibrations",
    "runs": "training_runs",
    "fits": "law_fits",
    "predictions": "predictions",
}
FORMATS = ("csv", "json", "jsonl", "md")


def table_rows(connection: Any, table: str) -> list[dict[str, Any]]:
    """Every row of one exported table, oldest first; JSON columns decoded (`x_json` becomes `x`)."""
    if table not in TABLES:
        raise InputError("table", f"one of {', '.join([*TABLES, 'sweep'])}, got {table!r}")
    rows = connection.rows(f"SELECT * FROM {TABLES[table]} ORDER BY rowid")  # noqa: S608 (a fixed name)
    return [
        {k.removesuffix("_json"): json.loads(v) if k.endswith("_json") and v else v for k, v in r.items()} for r in rows
    ]


def render(rows: list[dict[str, Any]], fmt: str) -> str:
    """Rows as text in `fmt`; nested values stay JSON inside CSV and markdown cells."""
    if fmt not in FORMATS:
        raise InputError("format", f"one of {', '.join(FORMATS)}, got {fmt!r}")
    if fmt == "json":
        return json.dumps(rows, indent=1) + "\n"
    if fmt == "jsonl":
        return "".join(json.dumps(r) + "\n" for r in rows)
    if not rows:
        return ""
    columns = list(rows[0])
    flat = [[v if isinstance(v, (str, int, float)) or v is None else json.dumps(v) for v in r.values()] for r in rows]
    if fmt == "csv":
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(columns)
        writer.writerows(flat)
        return buffer.getvalue()
    cell = lambda v: "" if v is None else str(v).replace("|", "\\|").replace("\n", " ")  # noqa: E731
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    return "\n".join(lines + ["| " + " | ".join(cell(v) for v in r) + " |" for r in flat]) + "\n"


def export_rows(rows: list[dict[str, Any]], path: Path, fmt: str | None = None) -> None:
    """Write rows in `fmt` (default: the file's suffix), atomically (a crash never leaves half a file)."""
    fmt = fmt or path.suffix.lstrip(".")
    if fmt not in FORMATS:
        raise InputError("out", f"{path}: give --format or end the name in .{', .'.join(FORMATS)}")
    if not path.parent.exists():
        raise InputError("out", f"directory {path.parent} does not exist")
    write_atomic(path, render(rows, fmt))


def check(connection: Any) -> dict[str, Any]:
    """`store check`: full integrity check, rows whose parent is gone, schema, jobs still marked running."""
    integrity = [r[0] for r in connection.db.execute("PRAGMA integrity_check")]
    orphans = [
        {"table": t, "rowid": rowid, "parent": parent}
        for t, rowid, parent, _ in connection.db.execute("PRAGMA foreign_key_check")
    ]
    running = connection.rows("SELECT id, name, status FROM sweeps WHERE status IN ('running', 'interrupted')")
    problems = [] if integrity == ["ok"] else [f"integrity: {'; '.join(integrity[:5])}"]
    problems += [f"orphan row {o['rowid']} of {o['table']} (no {o['parent']})" for o in orphans[:20]]
    if connection.version != SCHEMA_VERSION:
        problems.append(f"schema v{connection.version}, this cobench writes v{SCHEMA_VERSION}")
    return {
        "path": str(connection.path),
        "schema_version": connection.version,
        "integrity": integrity,
        "orphans": len(orphans),
        "running_sweeps": running,  # interrupted or still going: `sweep` resumes them
        "problems": problems,
        "ok": not problems,
    }
