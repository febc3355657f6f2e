"""`cobench store info|check|export`: what the store holds, whether it is sound, and any table out of it."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from cobench.cli.app import app, handles_errors, typer_app
from cobench.cli.options import STORE_DEFAULT, JsonOpt, StoreOpt
from cobench.cli.render import emit_json, err, out, table
from cobench.store import Store
from cobench.store.export import FORMATS, TABLES, export_rows, render

store_app = typer_app("The SQLite store: summary and export.")
app.add_typer(store_app, name="store")


@store_app.command("info")
@handles_errors
def store_info(store: StoreOpt = STORE_DEFAULT, json_out: JsonOpt = False) -> None:
    """Schema version, row counts and sweeps of the store."""
    with Store(store, read_only=True) as db:
        s = db.summary()
    if json_out:
        return emit_json(s)
    out.print(f"store {s['path']} (schema v{s['schema_version']})")
    out.print(table("rows", ["table", "rows"], [[k, f"{v:,}"] for k, v in s["rows"].items()], right={1}))
    rows = [[x["id"], x["name"], x["status"], f"{x['grid_size']:,}"] for x in s["sweeps"]]
    out.print(table("sweeps", ["id", "name", "status", "grid"], rows))
    return None


@store_app.command("export")
@handles_errors
def store_export(
    table: Annotated[
        str, typer.Option("--table", "-t", metavar="TABLE", help=f"{', '.join(TABLES)} or sweep (with --sweep).")
    ] = "sweep",
    sweep: Annotated[str | None, typer.Option("--sweep", metavar="ID", help="Sweep id or name (latest).")] = None,
    fmt: Annotated[
        str | None,
        typer.Option(
            "--format", "-f", metavar="FORMAT", help=f"{', '.join(FORMATS)} (default: --out's suffix, else csv)."
        ),
    ] = None,
    out_path: Annotated[
        Path | None, typer.Option("--out", "-o", metavar="FILE", help="Output file; stdout if absent.")
    ] = None,
    sort: Annotated[
        str,
        typer.Option(
            "--sort", metavar="COLUMN", help="Sweep candidates: column to order by; '-' prefix for descending."
        ),
    ] = "e2e_s",
    limit: Annotated[int | None, typer.Option("--limit", metavar="N", min=0, help="At most this many rows.")] = None,
    store: StoreOpt = STORE_DEFAULT,
    json_out: JsonOpt = False,
) -> None:
    """Any table of the store (or a sweep's candidates) as CSV, JSON, JSON lines or markdown."""
    with Store(store, read_only=True) as db:
        rows = db.rows(table, sweep, sort, limit)
        sweep_id = db.sweeps.get(sweep)["id"] if sweep is not None else None
    if out_path is None:
        sys.stdout.write(render(rows, fmt or "csv"))
        return
    export_rows(rows, out_path, fmt)
    if json_out:
        emit_json({"table": "sweep" if sweep else table, "sweep_id": sweep_id, "rows": len(rows), "out": str(out_path)})
        return
    err.print(f"wrote {len(rows):,} rows to {out_path}")


@store_app.command("check")
@handles_errors
def store_check(store: StoreOpt = STORE_DEFAULT, json_out: JsonOpt = False) -> None:
    """Integrity (PRAGMA integrity_check), orphan rows, schema version, sweeps left running; exit 1 on a problem."""
    with Store(store, read_only=True) as db:
        report = db.check()
    if json_out:
        emit_json(report)
    else:
        out.print(
            f"store {report['path']} (schema v{report['schema_version']}): {'ok' if report['ok'] else 'PROBLEMS'}"
        )
        for problem in report["problems"]:
            out.print(f"  {problem}")
        for s in report["running_sweeps"]:
            out.print(f"  sweep {s['id']} ({s['name']}) is {s['status']}: rerun `cobench sweep` to resume it")
    if not report["ok"]:
        raise typer.Exit(1)
