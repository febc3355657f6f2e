"""`cobench doctor` and `cobench store info|export`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cobench.cli.common import (
    JsonOpt,
    StoreOpt,
    app,
    handles_errors,
    open_store,
)
from cobench.render import emit_json, err, out, table
from cobench.store import export_rows

store_app = typer.Typer(help="The SQLite store: summary and export.", no_args_is_help=True)
app.add_typer(store_app, name="store")


@app.command("doctor")
@handles_errors
def doctor_cmd(json_out: JsonOpt = False) -> None:
    """What this machine has (Python stack, ONNX Runtime providers, TensorRT, NVML, Jetson) and what is missing."""
    from cobench.doctor import run

    checks = run()
    if json_out:
        return emit_json(checks)
    colour = {"ok": "green", "missing": "red", "warn": "yellow", "info": "blue"}
    out.print(
        table(
            "cobench doctor",
            ["check", "status", "detail", "needed for", "how to get it"],
            [
                [
                    c.name,
                    f"[{colour[c.status]}]{c.status}[/{colour[c.status]}]",
                    c.detail,
                    c.needed_for if c.status != "ok" else "",
                    c.fix if c.status != "ok" else "",
                ]
                for c in checks
            ],
        )
    )
    out.print("arch, devices, predict and sweep need only the core install; they work on any machine.")
    return None


@store_app.command("info")
@handles_errors
def store_info(store: StoreOpt = None, json_out: JsonOpt = False) -> None:
    """Schema version, row counts and sweeps of the store."""
    with open_store(store) as db:
        s = db.summary()
    if json_out:
        return emit_json(s)
    out.print(f"store {s['path']} (schema v{s['schema_version']})")
    out.print(table("rows", ["table", "rows"], [[k, f"{v:,}"] for k, v in s["rows"].items()], right={1}))
    out.print(
        table(
            "sweeps",
            ["id", "name", "status", "grid"],
            [[x["id"], x["name"], x["status"], f"{x['grid_size']:,}"] for x in s["sweeps"]],
        )
    )
    return None


@store_app.command("export")
@handles_errors
def store_export(
    sweep: Annotated[str, typer.Option("--sweep", help="Sweep id or name (latest of that name).")],
    out_path: Annotated[Path, typer.Option("--out", "-o", help="Output file: .csv or .json.")],
    sort: Annotated[str, typer.Option("--sort", help="Column to order by; '-' prefix for descending.")] = "e2e_s",
    limit: Annotated[int | None, typer.Option("--limit", help="At most this many rows.")] = None,
    store: StoreOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Export a sweep's candidates to CSV or JSON."""
    with open_store(store) as db:
        sweep_id = db.sweep(sweep)["id"]
        rows = db.candidates(sweep_id, sort, limit)
    export_rows(rows, out_path)
    if json_out:
        return emit_json({"sweep_id": sweep_id, "rows": len(rows), "out": str(out_path)})
    err.print(f"wrote {len(rows):,} rows to {out_path}")
    return None


def main() -> None:
    """Console entry point (click maps its own usage errors to exit code 2)."""
    app()
