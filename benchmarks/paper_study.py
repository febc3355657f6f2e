"""The co-design paper's study, run with cobench (docs/families.md prints what this prints).

1. spaces/paper-orin.yaml on the AGX Orin entry at the paper's operating point (B=1, P=1024, G=16; FP16 and
   INT8 as a design axis), losses from the paper's own law at its published coefficients
   (`--law paper-published`): what the frontier is made of — MoE or dense, top-1 or top-2, depth and width —
   against the paper's findings (every frontier point MoE, top-1 preferred, wide and shallow).
2. The same space with 2026's attention variants as axes (spaces/paper-orin-hybrid.yaml) at P = 8k and 32k:
   the best predicted loss under decode (TPOT) budgets, plain against hybrid, and which layer kinds the
   hybrid frontier holds. The law does not know the variants (it prices a windowed or linear layer's
   quality as full attention's): what moves is latency at a given predicted loss, not the loss itself.

Run: `make paper-study` (about a minute: every run is a vectorised sweep over the space, no hardware).
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
DEVICE = "jetson-agx-orin-64gb"
BUDGETS_MS = (5.0, 10.0, 20.0, 40.0)


def pareto(space: Path, workdir: Path, precisions: list[str], metric: str, **workload: int) -> dict[str, Any]:
    """`cobench pareto --json` on `space` with its workload changed as given."""
    data = yaml.safe_load(space.read_text())
    data["workload"] = data.get("workload", {}) | workload
    path = workdir / f"{space.stem}-{'-'.join(f'{k}{v}' for k, v in workload.items())}.yaml"
    path.write_text(yaml.safe_dump(data))
    cmd = [sys.executable, "-m", "cobench", "pareto", "-s", str(path), "-d", DEVICE, "--law", "paper-published",
           "--metric", metric, "--uncalibrated", "--store", str(workdir / "study.db"), "-o", str(workdir / path.stem),
           "--json", *(a for p in precisions for a in ("--precision", p))]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode:
        sys.exit(f"{' '.join(cmd)} failed: {done.stderr.strip()}")
    return json.loads(done.stdout)


def kinds(arch: dict[str, Any]) -> set[str]:
    found = set(arch.get("layer_types") or [])
    return found | ({"mla"} if arch.get("kv_lora_rank") else set()) or {"full"}


def describe(frontier: list[dict[str, Any]]) -> dict[str, Any]:
    archs = [p["architecture"] for p in frontier]
    moe = [a for a in archs if a["n_experts"]]
    return {
        "points": len(archs),
        "moe_share": len(moe) / len(archs),
        "top1_share_of_moe": sum(a["top_k"] == 1 for a in moe) / len(moe) if moe else float("nan"),
        "int8_share": sum(p["precision"] == "int8" for p in frontier) / len(frontier),
        "depth_median": statistics.median(a["n_layers"] for a in archs),
        "depth_under_20_share": sum(a["n_layers"] < 20 for a in archs) / len(archs),
        "width_median": statistics.median(a["d_model"] for a in archs),
        "width_per_layer_median": statistics.median(a["d_model"] / a["n_layers"] for a in archs),
    }


def best_under(frontier: list[dict[str, Any]], budget_ms: float) -> dict[str, Any] | None:
    ok = [p for p in frontier if p["latency_s"] * 1e3 <= budget_ms]
    return min(ok, key=lambda p: p["loss"]) if ok else None


def cell(p: dict[str, Any] | None) -> str:
    if p is None:
        return "—"
    a = p["architecture"]
    return f"{p['loss']:.4f} ({'+'.join(sorted(kinds(a)))}, {a['d_model']}x{a['n_layers']})"


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        print(f"1. the paper's study: spaces/paper-orin.yaml on {DEVICE}, B=1 P=1024 G=16, fp16 + int8, e2e")
        study = pareto(ROOT / "spaces" / "paper-orin.yaml", work, ["fp16", "int8"], "e2e", prompt=1024)
        print(f"   candidates {study['candidates']:,} (both precisions), feasible {study['feasible']:,}")
        for key, value in describe(study["frontier"]).items():
            print(f"   {key:28s} {value:.3g}" if isinstance(value, float) else f"   {key:28s} {value}")
        print("2. windowed, hybrid linear and latent attention at long context (fp16, TPOT; best predicted loss)")
        for prompt in (8192, 32768):
            plain = pareto(ROOT / "spaces" / "paper-orin.yaml", work, ["fp16"], "tpot", prompt=prompt)
            hybrid = pareto(ROOT / "spaces" / "paper-orin-hybrid.yaml", work, ["fp16"], "tpot", prompt=prompt)
            print(f"   P={prompt}: plain {plain['feasible']:,} feasible, hybrid {hybrid['feasible']:,} feasible")
            for budget in BUDGETS_MS:
                a, b = best_under(plain["frontier"], budget), best_under(hybrid["frontier"], budget)
                print(f"     TPOT <= {budget:4.0f} ms: plain {cell(a)}   hybrid {cell(b)}")
                if a is not None:  # the hybrid space's fastest point at least as good as the plain best
                    same = [p for p in hybrid["frontier"] if p["loss"] <= a["loss"]]
                    fast = min(same, key=lambda p: p["latency_s"])
                    print(
                        f"       plain's loss at TPOT {a['latency_s'] * 1e3:.2f} ms; hybrid reaches it at "
                        f"{fast['latency_s'] * 1e3:.2f} ms ({a['latency_s'] / fast['latency_s']:.2f}x): {cell(fast)}"
                    )
            mix: dict[str, int] = {}
            for p in hybrid["frontier"]:
                for k in kinds(p["architecture"]):
                    mix[k] = mix.get(k, 0) + 1
            shares = ", ".join(f"{k} {v / len(hybrid['frontier']):.0%}" for k, v in sorted(mix.items()))
            print(f"     hybrid frontier: {len(hybrid['frontier'])} points; holding each kind: {shares}")


if __name__ == "__main__":
    main()
