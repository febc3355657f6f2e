"""`cobench doctor`: what this machine has and what is missing."""

from __future__ import annotations

from rich.text import Text

from cobench.cli.app import app, handles_errors
from cobench.cli.options import JsonOpt
from cobench.cli.render import emit_json, out, table

COLOUR = {"ok": "green", "missing": "red", "warn": "yellow", "info": "blue"}


@app.command("doctor")
@handles_errors
def doctor_cmd(json_out: JsonOpt = False) -> None:
    """What this machine has (Python stack, ONNX Runtime providers, TensorRT, NVML, Jetson) and what is missing."""
    from cobench.hardware.doctor import run

    checks = run()
    if json_out:
        return emit_json(checks)
    rows = [
        [
            c.name,
            Text(c.status, COLOUR[c.status]),
            c.detail,
            c.needed_for if c.status != "ok" else "",
            c.fix if c.status != "ok" else "",
        ]
        for c in checks
    ]
    out.print(table("cobench doctor", ["check", "status", "detail", "needed for", "how to get it"], rows))
    out.print("arch, devices, predict and sweep need only the core install; they work on any machine.")
    return None
