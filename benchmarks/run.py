"""`make bench`: every target named in the issues, each against a baseline measured in the same run."""

from __future__ import annotations

import sys

import cluster_overhead
import engine_truth
import export_speed
import generation_truth
import harness_honesty
import kernel_ceilings
import llama_truth
import sweep_throughput
import train_throughput

if __name__ == "__main__":
    results = []
    for name, bench in (
        ("sweep throughput", sweep_throughput),
        ("harness honesty", harness_honesty),
        ("generation truth", generation_truth),
        ("engine truth (ort-genai)", engine_truth),
        ("engine truth (llama.cpp)", llama_truth),
        ("export speed", export_speed),
        ("kernel ceilings", kernel_ceilings),
        ("training throughput", train_throughput),
        ("cluster overhead", cluster_overhead),
    ):
        print(f"== {name} ==", flush=True)
        results.append((name, bench.main()))
    print("== summary ==")
    for name, code in results:
        print(f"{name}: {'PASS' if code == 0 else 'FAIL'}")
    sys.exit(max(code for _, code in results))
