"""Sweep throughput: the vectorised predictor against a per-candidate loop over the same predictor.

1. Sweep throughput: the vectorised predictor over a >= 100,000-candidate space versus a plain Python
   loop calling the same predictor one Architecture at a time (timed on a sample, extrapolated).
   Target: 100,000 candidates predicted in under 2 s.
2. On a cluster (`sweep --ray`): the same sweep keeping the best (top k and frontier), its chunks on a
   one-machine Ray cluster with this machine's CPUs, against the same sweep run here, in blocks A B B A.
   Ray's start-up and its first (cold) sweep are reported apart. Target: >= 0.8x the local rate.
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from cobench.arch.architecture import ArchBatch
from cobench.arch.space import load_space
from cobench.cluster import Cluster, connect
from cobench.hardware.devices import get_device
from cobench.predict.roofline import RooflineParams, predict
from cobench.search.sweep import Keep, run_sweep
from cobench.store import Store

HERE = Path(__file__).parent
TARGET_S_PER_100K = 2.0
TARGET_RAY_RATIO = 0.8
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
    return 0 if ok and on_cluster() else 1


def _timed_sweep(cluster: Cluster | None) -> tuple[float, int]:
    """Seconds for a whole best-keeping sweep into a fresh store (enumeration, prediction, reduction, writes)."""
    space = load_space(HERE / "space_100k.yaml")
    device = get_device("jetson-orin-nx-16gb")
    with tempfile.TemporaryDirectory() as tmp, Store(Path(tmp) / "bench.db") as store:
        device_id = store.catalog.put_device(device)
        t0 = time.perf_counter()
        params = RooflineParams.for_device(device)
        r = run_sweep(space, device, store, params, device_id, keep=Keep(True), cluster=cluster)
        return time.perf_counter() - t0, r.valid


def on_cluster() -> bool:
    try:
        import ray  # noqa: F401
    except ImportError:
        print("sweep --ray: Ray is not installed (pip install '.[cluster]'): FAIL")
        return False
    t0 = time.perf_counter()
    cluster = connect("local")
    start_s = time.perf_counter() - t0
    cold, n = _timed_sweep(cluster)
    here_s, ray_s = [], []
    for order in (False, True, True, False):  # A B B A
        (ray_s if order else here_s).append(_timed_sweep(cluster if order else None)[0])
    here, there = statistics.median(here_s), statistics.median(ray_s)
    ratio = here / there
    print(
        f"sweep --keep best, {n:,} candidates in 12 chunks: here median {here:.2f} s ({n / here:,.0f} "
        f"candidates/s); --ray on a one-machine cluster ({os.cpu_count()} CPUs) median {there:.2f} s "
        f"({n / there:,.0f} candidates/s)"
    )
    print(f"  Ray start-up {start_s:.1f} s and a cold first sweep {cold:.2f} s (worker start-up) not in the ratio")
    verdict = "PASS" if ratio >= TARGET_RAY_RATIO else "FAIL"
    print(f"target: sweep --ray >= {TARGET_RAY_RATIO}x the rate here -> {verdict} ({ratio:.2f}x)")
    return ratio >= TARGET_RAY_RATIO


if __name__ == "__main__":
    sys.exit(main())
