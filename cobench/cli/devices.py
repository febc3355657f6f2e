"""`cobench devices list|show`: the cited device catalogue."""

from __future__ import annotations

from typing import Annotated

import typer

from cobench.arch.precision import PRECISIONS
from cobench.cli.app import app, handles_errors, typer_app
from cobench.cli.options import DevicesPathOpt, JsonOpt, ModeOpt
from cobench.cli.render import emit_json, out, table
from cobench.hardware.devices import DeviceSpec, catalogue, get_device
from cobench.predict.roofline import RooflineParams

devices_app = typer_app("The device catalogue (devices/*.yaml plus your own).")
app.add_typer(devices_app, name="devices")


def _ridge(d: DeviceSpec, precision: str = "fp16") -> float:
    return d.peak_flops(PRECISIONS[precision].matmul_peaks) / d.bandwidth_bytes_s


@devices_app.command("list")
@handles_errors
def devices_list(devices_path: DevicesPathOpt = None, json_out: JsonOpt = False) -> None:
    """Every device with its headline ceilings (dense peaks)."""
    devices = catalogue(devices_path)
    rows = [
        {
            "name": d.name,
            "kind": d.kind,
            "display_name": d.display_name,
            "fp16_tflops": d.peak_flops(PRECISIONS["fp16"].matmul_peaks) / 1e12,
            "memory_bandwidth_gbps": d.memory_bandwidth_gbps.value,
            "memory_gb": d.memory_gb.value,
            "ridge_flop_per_byte": _ridge(d),
            "power_modes": [m.name for m in d.power_modes],
            "default_mode": d.default_mode,
        }
        for d in sorted(devices.values(), key=lambda d: (d.kind, d.name))
    ]
    if json_out:
        return emit_json(rows)
    out.print(
        table(
            "devices (dense peaks at the maximum mode)",
            ["name", "kind", "fp16 TFLOP/s", "GB/s", "memory GB", "ridge FLOP/B", "power modes"],
            [
                [
                    r["name"],
                    r["kind"],
                    f"{r['fp16_tflops']:.4g}",
                    f"{r['memory_bandwidth_gbps']:.4g}",
                    f"{r['memory_gb']:.4g}",
                    f"{r['ridge_flop_per_byte']:.0f}",
                    ", ".join(r["power_modes"]) or "—",
                ]
                for r in rows
            ],
            right={2, 3, 4, 5},
        )
    )
    return None


@devices_app.command("show")
@handles_errors
def devices_show(
    name: Annotated[str, typer.Argument(help="Device name (see `cobench devices list`), or NAME@MODE.")],
    power_mode: ModeOpt = None,
    devices_path: DevicesPathOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """All numbers of one device with their sources; derived values say how."""
    d = get_device(name, power_mode, devices_path)
    if json_out:
        return emit_json(d)
    out.print(f"[bold]{d.display_name}[/bold] ({d.name}, {d.kind}) — power mode: {d.mode or 'maximum'}; file {d.path}")
    quantities = [
        (k, getattr(d, k))
        for k in (
            "memory_gb",
            "memory_bandwidth_gbps",
            "l2_mb",
            "sm_count",
            "gpu_clock_mhz",
            "power_max_w",
            "power_min_w",
            "reserved_memory_gb",
        )
    ]
    quantities += [(f"peak_tflops.{k}", q) for k, q in d.peak_tflops.items()]
    out.print(
        table(
            "specification (tensor peaks dense; (?) = uncertain)",
            ["quantity", "value", "source", "derived"],
            [[k, f"{q.value:.4g}{' (?)' if q.uncertain else ''}", q.source, q.derived] for k, q in quantities if q],
            right={1},
        )
    )
    if d.power_modes:
        out.print(
            table(
                f"power modes (default {d.default_mode}); {d.modes_source}",
                ["mode", "id", "GPU MHz", "SMs", "GB/s", "budget W", "note"],
                [
                    [
                        m.name + (" (?)" if m.uncertain else ""),
                        m.id if m.id is not None else "—",
                        m.gpu_clock_mhz or "—",
                        m.sm_count or "—",
                        m.memory_bandwidth_gbps or "—",
                        m.power_budget_w or "—",
                        m.note,
                    ]
                    for m in d.power_modes
                ],
            )
        )
    r = RooflineParams.for_device(d)
    out.print(f"roofline defaults: {r.source}")
    out.print(f"ridge point (fp16 matmul): {_ridge(d):.0f} FLOP/byte")
    return None
