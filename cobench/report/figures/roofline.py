"""The empirical roofline figure: spec ceilings, measured ceilings, and every kernel as a point."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from cobench.arch.precision import PRECISIONS
from cobench.errors import InputError
from cobench.hardware.devices import DeviceSpec
from cobench.measure.kernels.results import Ceilings, KernelResult, ceilings
from cobench.report.figures import pyplot, save

if TYPE_CHECKING:
    from cobench.store import Store

MARKERS = {
    "gemm": "o",
    "attention": "s",
    "rmsnorm": "^",
    "softmax": "v",
    "silu_mul": "<",
    "add": ">",
    "gather": "D",
    "copy": "x",
    "triad": "+",
}


def plot(device: DeviceSpec, results: list[KernelResult], measured: Ceilings, out: Path) -> list[Path]:
    """Write <out>.png and <out>.svg; log-log FLOP/s against arithmetic intensity."""
    fig, ax = pyplot().subplots(figsize=(8, 5.5), dpi=120)
    ai = np.logspace(-2, 4, 200)
    spec_bw = device.bandwidth_bytes_s
    colours = {"fp32": "tab:blue", "fp16": "tab:orange", "bf16": "tab:green"}
    precisions = sorted({r.spec.precision for r in results} | set(measured.flops_per_s))
    for p in precisions:
        peak = device.peak_flops(PRECISIONS[p].matmul_peaks)
        ax.plot(
            ai,
            np.minimum(ai * spec_bw, peak),
            "--",
            color=colours.get(p, "grey"),
            lw=1,
            label=f"spec {p}: {peak / 1e12:.3g} TFLOP/s, {spec_bw / 1e9:.3g} GB/s",
        )
        if p in measured.flops_per_s and measured.bytes_per_s:
            ax.plot(
                ai,
                np.minimum(ai * measured.bytes_per_s, measured.flops_per_s[p]),
                "-",
                color=colours.get(p, "grey"),
                lw=2,
                label=f"measured {p}: {measured.flops_per_s[p] / 1e12:.3g} TFLOP/s, "
                f"{measured.bytes_per_s / 1e9:.3g} GB/s",
            )
    for r in results:
        if r.flops > 0:
            ax.scatter(
                r.intensity,
                r.flops_per_s,
                marker=MARKERS.get(r.spec.kind, "o"),
                color=colours.get(r.spec.precision, "grey"),
                s=28,
                alpha=0.8,
            )
    for kind in sorted({r.spec.kind for r in results if r.flops > 0}):
        ax.scatter([], [], marker=MARKERS.get(kind, "o"), color="black", label=kind)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("arithmetic intensity (FLOP / byte)")
    ax.set_ylabel("attained FLOP/s")
    ax.set_title(f"Empirical roofline: {device.display_name}")
    ax.grid(True, which="both", alpha=0.25)
    ax.legend(fontsize=7, loc="lower right")
    return save(fig, out)


@dataclass(frozen=True)
class EmpiricalRoofline:
    """What `cobench kernels roofline` shows: measured against spec ceilings, and the figure drawn."""

    device: DeviceSpec
    ceilings: Ceilings
    kernels: int
    figures: list[Path]

    def spec_flops_per_s(self, precision: str) -> float:
        return self.device.peak_flops(PRECISIONS[precision].matmul_peaks)

    def to_json(self) -> dict[str, object]:
        c = self.ceilings
        return {
            "device": self.device.name,
            "measured_flops_per_s": c.flops_per_s,
            "measured_bytes_per_s": c.bytes_per_s,
            "spec_flops_per_s": {p: self.spec_flops_per_s(p) for p in c.flops_per_s},
            "spec_bytes_per_s": self.device.bandwidth_bytes_s,
            "figures": [str(f) for f in self.figures],
            "kernels": self.kernels,
        }


def empirical_roofline(store: Store, device: DeviceSpec, out: Path) -> EmpiricalRoofline:
    """The device's stored kernels, their ceilings, and the figure at <out>-<device>.png/.svg."""
    results = store.kernels.find(device.name)
    if not results:
        raise InputError(
            "device", f"no kernel results for {device.name} in the store: run `cobench kernels run -d {device.name}`"
        )
    c = ceilings(results)
    figures = plot(device, results, c, out.with_name(f"{out.name}-{device.name}"))
    return EmpiricalRoofline(device, c, len(results), figures)
