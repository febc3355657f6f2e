"""`cobench report`: the self-contained HTML report of everything in the store."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cobench.cli.common import JsonOpt, StoreOpt, app, handles_errors, open_store
from cobench.errors import InputError
from cobench.render import emit_json, err, out


@app.command("report")
@handles_errors
def report_cmd(
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="Folder for report.html and figures/.")] = Path(
        "out/report"
    ),
    telemetry_runs: Annotated[
        int, typer.Option("--telemetry-runs", help="Plot the telemetry of the last N profiled candidates.")
    ] = 2,
    store: StoreOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """One HTML file (figures inlined, no network) plus PNG/SVG figures, built from the store."""
    from cobench.report import build

    if telemetry_runs < 0:
        raise InputError("telemetry_runs", f"must be >= 0, got {telemetry_runs}")
    if out_dir.exists() and not out_dir.is_dir():
        raise InputError("out", f"{out_dir} exists and is not a folder")
    with open_store(store) as db:
        page, figures = build(db, out_dir, telemetry_runs)
    if json_out:
        return emit_json({"report": str(page), "figures": [str(f) for f in figures]})
    out.print(f"report: {page.resolve()}")
    err.print(f"{len(figures) // 2} figures (PNG + SVG) in {out_dir / 'figures'}")
    return None
