"""`cobench report`: the self-contained HTML report of everything in the store."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cobench.cli.app import app, handles_errors
from cobench.cli.options import STORE_DEFAULT, JsonOpt, StoreOpt
from cobench.cli.render import emit_json, err, out
from cobench.store import Store


@app.command("report")
@handles_errors
def report_cmd(
    out_dir: Annotated[
        Path, typer.Option("--out", "-o", metavar="DIR", help="Folder for report.html and figures/.")
    ] = Path("out/report"),
    telemetry_runs: Annotated[
        int, typer.Option("--telemetry-runs", metavar="N", help="Plot the telemetry of the last N profiled candidates.")
    ] = 2,
    store: StoreOpt = STORE_DEFAULT,
    json_out: JsonOpt = False,
) -> None:
    """One HTML file (figures inlined, no network) plus PNG/SVG figures, built from the store."""
    from cobench.report.html import build

    with Store(store, read_only=True) as db:  # it only reads: works on a read-only store
        page, figures = build(db, out_dir, telemetry_runs)
    if json_out:
        return emit_json({"report": str(page), "figures": [str(f) for f in figures]})
    out.print(f"report: {page.resolve()}")
    err.print(f"{len(figures) // 2} figures (PNG + SVG) in {out_dir / 'figures'}")
    return None
