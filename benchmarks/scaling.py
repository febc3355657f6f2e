"""`make bench-scaling`: short CPU training runs, then the three loss laws fitted on most of them and scored
on the held-out rest (R², RMSE), through the `cobench` command line in one store (resumable: finished
runs are skipped, an interrupted one resumes from its checkpoint).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from cli import cobench

HERE = Path(__file__).parent
QUEUE = HERE / "scaling" / "queue.yaml"
LAWS = ("chinchilla", "shape", "codesign")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--store", type=Path, default=HERE / "out" / "scaling.db")
    parser.add_argument("--out", type=Path, default=HERE / "out" / "scaling")
    parser.add_argument("--heldout", type=float, default=0.25)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    store = str(args.store)
    t0 = time.perf_counter()
    cobench("train", "--queue", str(QUEUE), "--eval-every", "16", "--ckpt-every", "16", "--store", store)
    runs = json.loads(cobench("train", "--queue", str(QUEUE), "--eval-every", "16", "--ckpt-every", "16",
                              "--store", store, "--json", capture=True))  # fmt: skip
    fits = json.loads(
        cobench(
            "fit", *[f for law in LAWS for f in ("--law", law)], "--heldout", str(args.heldout),
            "--plot", str(args.out / "loss-law"), "--store", store, "--json", capture=True,
        )
    )  # fmt: skip
    lines = [
        f"{len(runs)} training runs ({sum(r['tokens'] for r in runs) / 1e6:.1f} M tokens in all; "
        f"{time.perf_counter() - t0:.0f} s this invocation), fitted on {fits[0]['n_fit']}, "
        f"held out {fits[0]['n_heldout']}:",
        "",
        "| law | R² fit | RMSE fit | R² held-out | RMSE held-out | max abs held-out |",
        "|---|---|---|---|---|---|",
    ]
    for f in fits:
        h = f["heldout"] or {}
        lines.append(
            f"| {f['law']} | {f['fit']['r2']:.3f} | {f['fit']['rmse']:.4f} | {h.get('r2', float('nan')):.3f} "
            f"| {h.get('rmse', float('nan')):.4f} | {h.get('max_abs', float('nan')):.4f} |"
        )
    lines += ["", "Parameters (95 % bootstrap intervals):", ""]
    for f in fits:
        cells = [
            f"{p} {v:.4g} [{f['intervals'][p][0]:.3g}, {f['intervals'][p][1]:.3g}]" for p, v in f["params"].items()
        ]
        lines.append(f"- {f['law']}: " + "; ".join(cells))
    lines += [
        "",
        "| run | N (non-emb.) | tokens | final val loss | bits/byte | tokens/s |",
        "|---|---|---|---|---|---|",
    ]
    for r in runs:
        lines.append(
            f"| {r['arch_name']} | {r['n_params']:,} | {r['tokens']:,} | {r['final_loss']:.4f} | "
            f"{r['final_bpb']:.3f} | {r['tokens_per_s']:,.0f} |"
        )
    report = "\n".join(lines) + "\n"
    print(report)
    (args.out / "report.md").write_text(report)
    print(f"wrote {args.out / 'report.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
