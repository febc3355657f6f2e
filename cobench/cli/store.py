"""`cobench store info|export`: what the store holds, and a sweep out of it."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cobench.cli.app import app, handles_errors, typer_app
from cobench.cli.options import STORE_DEFAULT, JsonOpt, StoreOpt
from cobench.cli.render import emit_json, err, out, table
from cobench.store import Store
from cobench.store.export import export_rows

store_app = typer_app("The SQLite store: summary and export.")
app.add_typer(store_app, name="store")


@store_app.command("info")
@handles_errors
def store_info(store: StoreOpt = STORE_DEFAULT, json_out: JsonOpt = False) -> None:
    """Schema version, row counts and sweeps of the store."""
    with Store(store) as db:
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
    sweep: Annotated[str, typer.Option("--sweep", metavar="ID", help="Sweep id or name (latest of that name).")],
    out_path: Annotated[Path, typer.Option("--out", "-o", metavar="FILE", help="Output file: .csv or .json.")],
    sort: Annotated[
        str, typer.Option("--sort", metavar="COLUMN", help="Column to order by; '-' prefix for descending.")
    ] = "e2e_s",
    limit: Annotated[int | None, typer.Option("--limit", metavar="N", help="At most this many rows.")] = None,
    store: StoreOpt = STORE_DEFAULT,
    json_out: JsonOpt = False,
) -> None:
    """Export a sweep's candidates to CSV or JSON."""
    with Store(store) as db:
        sweep_id = db.sweeps.get(sweep)["id"]
        rows = db.sweeps.candidates(sweep_id, sort, limit)
    export_rows(rows, out_path)
    if json_out:
        return emit_json({"sweep_id": sweep_id, "rows": len(rows), "out": str(out_path)})
    err.print(f"wrote {len(rows):,} rows to {out_path}")
    return None
