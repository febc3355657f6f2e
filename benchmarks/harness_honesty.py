"""Harness honesty: cobench's reported median against a bare `session.run` loop on the same ONNX file,
and the telemetry sampler's effect on the median. Rounds are short blocks run back to back in ABBA order, so
drift in the machine's speed cancels; the median of the per-pair ratios is reported with a bootstrap CI.

Targets: |cobench / bare − 1| < 2 %; |with telemetry / without − 1| < 1 %.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort

from cobench.arch.spec import presets
from cobench.measure import timing
from cobench.measure.export import export
from cobench.measure.runners.ort import OrtRunner
from cobench.measure.telemetry import DEFAULT_RATE_HZ, Sampler, select_source

PAIRS = 40
BLOCK_S = 0.3


def bare_loop(session: ort.InferenceSession, feeds: dict[str, np.ndarray], seconds: float) -> float:
    """What a careful hand-written script does: warm up, then time each call with perf_counter."""
    for _ in range(10):
        session.run(None, feeds)
    times = []
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        t0 = time.perf_counter()
        session.run(None, feeds)
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def paired(first, second, pairs: int) -> list[float]:  # noqa: ANN001
    """Ratios second/first over short back-to-back blocks, alternating which runs first (ABBA), so that
    drift in the machine's speed cancels instead of biasing one side."""
    ratios = []
    for i in range(pairs):
        if i % 2:
            b = second()
            a = first()
        else:
            a = first()
            b = second()
        ratios.append(b / a)
    return ratios


def verdict(name: str, ratios: list[float], limit: float) -> bool:
    change = statistics.median(ratios) - 1
    boot = np.random.default_rng(0).choice(ratios, (2000, len(ratios)))
    low, high = np.percentile(np.median(boot, axis=1), [2.5, 97.5]) - 1
    ok = abs(change) < limit
    print(
        f"{name}: {change:+.2%} (95% CI {low:+.2%} .. {high:+.2%}; target within ±{limit:.0%}) -> "
        f"{'PASS' if ok else 'FAIL'}"
    )
    if (high - low) / 2 > limit:
        print(
            f"  warning: the machine is too noisy to resolve ±{limit:.0%} now (CI half-width {(high - low) / 2:.1%});"
            " rerun on a quiet machine before trusting either verdict"
        )
    return ok


def main() -> int:
    arch = presets()["tiny-gqa-4l"].arch
    with tempfile.TemporaryDirectory() as tmp:
        exported = export(arch, "fp32", Path(tmp))
        runner = OrtRunner.open(arch, "fp32", "cpu", Path(tmp), {})
        bare = ort.InferenceSession(str(exported.graph("decode")), providers=["CPUExecutionProvider"])
        cache = runner.make_cache(1, 256)
        token = np.array([[7]], dtype=np.int64)
        feeds = {"input_ids": token, "past_k": cache[0], "past_v": cache[1]}
        step = runner.fixed_decode(token, cache)
        source = select_source("auto")
        block = timing.HarnessConfig(
            warmup_s=0.05, min_iters=10, min_time_s=BLOCK_S, max_time_s=BLOCK_S, target_rel_ci=0.0
        )

        def harness_median() -> float:
            return float(np.median(timing.run(lambda: runner.timed(step), block).samples_s))

        def with_telemetry() -> float:
            with Sampler(source, DEFAULT_RATE_HZ):
                return harness_median()

        harness = paired(lambda: bare_loop(bare, feeds, BLOCK_S), harness_median, PAIRS)
        telemetry = paired(harness_median, with_telemetry, PAIRS)
        t0 = time.perf_counter()
        for _ in range(200):
            source.read()
        read_s = (time.perf_counter() - t0) / 200
    print(
        f"decode step of tiny-gqa-4l at context 256 (ORT CPU), {PAIRS} ABBA-paired {BLOCK_S:g} s blocks per comparison"
    )
    ok = verdict("cobench harness median vs bare session.run loop", harness, 0.02)
    ok &= verdict(f"telemetry sampler at {DEFAULT_RATE_HZ:g} Hz ({source.name}) vs off", telemetry, 0.01)
    print(
        f"  the sampler's own cost: {read_s * 1e6:.0f} µs per read x {DEFAULT_RATE_HZ:g} Hz = "
        f"{read_s * DEFAULT_RATE_HZ:.2%} of one core"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
