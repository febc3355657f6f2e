"""Profile the accuracy benchmark's candidates (benchmarks/accuracy/architectures.yaml) with ORT on the CPU.

Resumable: candidates already in the store are skipped, so an interrupted run continues where it stopped.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from cobench.architecture import Architecture
from cobench.devices import get_device
from cobench.profile import ProfileSettings, profile
from cobench.roofline import RooflineParams
from cobench.spec import presets
from cobench.store import Store
from cobench.timing import HarnessConfig
from cobench.workload import Workload

HERE = Path(__file__).parent
SET = HERE / "accuracy" / "architectures.yaml"
HARNESS = HarnessConfig(warmup_s=0.5, min_iters=10, min_time_s=1.0, max_time_s=4.0)


@dataclass(frozen=True)
class Entry:
    arch: Architecture
    prompt: int
    role: str  # train | held_out


def entries(path: Path = SET) -> tuple[dict[str, Any], list[Entry]]:
    data = yaml.safe_load(path.read_text())
    known = presets()
    found = []
    for role in ("train", "held_out"):
        for e in data[role]:
            arch = known[e["preset"]].arch if "preset" in e else Architecture.from_dict(e["architecture"])
            found.append(Entry(arch, int(e.get("prompt", data["workload"]["prompt"])), role))
    return data["workload"], found


def run(store_path: Path, precision: str = "fp32") -> None:
    base, todo = entries()
    device = get_device("cpu")
    with Store(store_path) as store:
        for prompt in sorted({e.prompt for e in todo}):
            group = [(e.arch, precision) for e in todo if e.prompt == prompt]
            w = Workload(batch=base["batch"], prompt=prompt, generate=base["generate"], precision=precision)
            settings = ProfileSettings(backend="ort", runner_device="cpu", workload=w, harness=HARNESS)
            t0 = time.perf_counter()

            def show(o: Any, done: int, total: int) -> None:
                m = o.measured or {}
                print(
                    f"  [{done}/{total}] P={prompt} {o.arch}: {o.status}"
                    f" TTFT {m.get('ttft_s', float('nan')) * 1e3:.1f} ms TPOT {m.get('tpot_s', float('nan')) * 1e3:.2f} ms"
                    f" ({time.perf_counter() - t0:.0f} s)",
                    flush=True,
                )

            profile(group, device, settings, store, RooflineParams.ideal(), show)


if __name__ == "__main__":
    run(Path(sys.argv[1]) if len(sys.argv) > 1 else HERE / "out" / "accuracy.db")
