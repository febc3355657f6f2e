"""Harness honesty: cobench's reported median against a bare `session.run` loop on the same ONNX file,
and the telemetry sampler's effect on the median. Rounds alternate the methods so that drift in the
machine's speed affects both alike; the median over rounds of the per-round ratio is reported.

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

from cobench import timing
from cobench.export import export
from cobench.runners.ort import OrtRunner
from cobench.spec import presets
from cobench.telemetry import DEFAULT_RATE_HZ, Sampler, select_source

ROUNDS = 7
TELEMETRY_PAIRS = 40
BLOCK_S = 0.25
CFG = timing.HarnessConfig(warmup_s=0.3, min_iters=20, min_time_s=1.0, max_time_s=4.0, target_rel_ci=0.005)


def bare_loop(session: ort.InferenceSession, feeds: dict[str, np.ndarray], seconds: float) -> float:
    """What a careful hand-written script does: warm up, then time each call with perf_counter."""
    for _ in range(20):
        session.run(None, feeds)
    times = []
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        t0 = time.perf_counter()
        session.run(None, feeds)
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def block_median(runner: OrtRunner, step, seconds: float) -> float:  # noqa: ANN001
    times = []
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        times.append(runner.timed(step))
    return float(np.median(times))


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
        medians: dict[str, list[float]] = {"bare": [], "cobench": []}
        for _ in range(ROUNDS):
            medians["bare"].append(bare_loop(bare, feeds, CFG.min_time_s * 2))
            s = timing.run(lambda: runner.timed(step), CFG)
            medians["cobench"].append(float(np.median(s.samples_s)))
        # telemetry on/off in short alternating blocks: a sub-1 % effect needs drift cancelled finely
        ratios = []
        for _ in range(TELEMETRY_PAIRS):
            off = block_median(runner, step, BLOCK_S)
            with Sampler(source, DEFAULT_RATE_HZ):
                on = block_median(runner, step, BLOCK_S)
            ratios.append(on / off)
        t0 = time.perf_counter()
        for _ in range(200):
            source.read()
        read_s = (time.perf_counter() - t0) / 200
    m = {k: statistics.median(v) for k, v in medians.items()}
    print(f"decode step of tiny-gqa-4l at context 256 (ORT CPU), {ROUNDS} alternating rounds:")
    for k, v in medians.items():
        print(f"  {k:8s} median {m[k] * 1e3:.4f} ms   (per round: {', '.join(f'{x * 1e3:.4f}' for x in v)})")
    # paired per round (the methods ran back to back), then the median over rounds
    agree = statistics.median(c / b for c, b in zip(medians["cobench"], medians["bare"], strict=True)) - 1
    tele = statistics.median(ratios) - 1
    boot = np.random.default_rng(0).choice(ratios, (2000, len(ratios))).mean(axis=1)
    low, high = np.percentile(boot, [2.5, 97.5]) - 1
    ok_agree, ok_tele = abs(agree) < 0.02, abs(tele) < 0.01
    print(f"cobench vs bare session.run loop: {agree:+.2%} (target within ±2%) -> {'PASS' if ok_agree else 'FAIL'}")
    print(
        f"telemetry sampler at {DEFAULT_RATE_HZ:g} Hz ({source.name}) vs off, {TELEMETRY_PAIRS} paired "
        f"{BLOCK_S:g} s blocks: {tele:+.2%} (95% CI of the mean ratio {low:+.2%} .. {high:+.2%}; target within ±1%)"
        f" -> {'PASS' if ok_tele else 'FAIL'}"
    )
    print(
        f"  the sampler's own cost: {read_s * 1e6:.0f} µs per read x {DEFAULT_RATE_HZ:g} Hz = "
        f"{read_s * DEFAULT_RATE_HZ:.2%} of one core"
    )
    return 0 if ok_agree and ok_tele else 1


if __name__ == "__main__":
    sys.exit(main())
