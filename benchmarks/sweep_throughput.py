"""Sweep throughput: the vectorised predictor against a per-candidate loop over the same predictor.

1. Sweep throughput: the vectorised predictor over a >= 100,000-candidate space versus a plain Python
   loop calling the same predictor one Architecture at a time (timed on a sample, extrapolated).
   Target: 100,000 candidates predicted in under 2 s.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from cobench.arch.architecture import ArchBatch
from cobench.arch.space import load_space
from cobench.hardware.devices import get_device
from cobench.predict.roofline import RooflineParams, predict
from cobench.search.sweep import run_sweep
from cobench.store import Store

HERE = Path(__file__).parent
TARGET_S_PER_100K = 2.0
LOOP_SAMPLE = 400
REPEATS = 5


def candidates() -> ArchBatch:
    space = load_space(HERE / "space_100k.yaml")
    batches = [batch for _, _, batch in space.chunks()]
    cols = {k: np.concatenate([getattr(b, k) for b in batches]) for k in batches[0].__dataclass_fields__}
    return ArchBatch(**cols)


def main() -> int:
    space = load_space(HERE / "space_100k.yaml")
    device = get_device("jetson-orin-nx-16gb")
    params = RooflineParams.for_device(device)
    t0 = time.perf_counter()
    batch = candidates()
    enumerate_s = time.perf_counter() - t0
    n = len(batch)
    print(f"space {space.name}: grid {space.grid_size:,}, valid candidates {n:,} (enumerated in {enumerate_s:.2f} s)")
    if n < 100_000:
        print("FAIL: the benchmark space must hold >= 100,000 candidates")
        return 1

    vector_s = []
    for _ in range(REPEATS):
        t0 = time.perf_counter()
        predict(batch, device, space.workload, params)
        vector_s.append(time.perf_counter() - t0)
    vec = statistics.median(vector_s)

    rng = np.random.default_rng(0)
    sample = rng.choice(n, LOOP_SAMPLE, replace=False)
    archs = [batch.architecture(int(i)) for i in sample]
    t0 = time.perf_counter()
    for a in archs:
        predict(a, device, space.workload, params)
    loop_per = (time.perf_counter() - t0) / LOOP_SAMPLE
    loop_total = loop_per * n

    with tempfile.TemporaryDirectory() as tmp, Store(Path(tmp) / "bench.db") as store:
        device_id = store.catalog.put_device(device)
        t0 = time.perf_counter()
        result = run_sweep(space, device, store, params, device_id)
        sweep_s = time.perf_counter() - t0

    per_100k = vec / n * 100_000
    print(
        f"vectorised predict: median {vec:.3f} s over {REPEATS} runs (min {min(vector_s):.3f}, max {max(vector_s):.3f})"
        f" = {n / vec:,.0f} candidates/s; {per_100k:.2f} s per 100,000"
    )
    print(
        f"python loop (same predictor, one Architecture at a time, {LOOP_SAMPLE} sampled): "
        f"{loop_per * 1e3:.2f} ms/candidate = {1 / loop_per:,.0f} candidates/s; "
        f"{loop_total:.0f} s extrapolated to {n:,}"
    )
    print(f"speed-up vectorised / loop: {loop_total / vec:,.0f}x")
    print(
        f"full `sweep` incl. enumeration and SQLite writes: {sweep_s:.2f} s for {result.valid:,} candidates "
        f"({result.valid / sweep_s:,.0f} candidates/s)"
    )
    ok = per_100k < TARGET_S_PER_100K
    verdict = "PASS" if ok else "FAIL"
    print(f"target: 100,000 candidates predicted in < {TARGET_S_PER_100K} s -> {verdict} ({per_100k:.2f} s)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
