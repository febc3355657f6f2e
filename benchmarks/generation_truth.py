"""Generation truth: cobench's TTFT and per-step TPOT against a bare ONNX Runtime generation loop over
the same engine graph (the one cobench's ORT runner runs), for five candidates, in short ABBA-interleaved
blocks (cobench's block is a real `cobench profile` worker process; the bare block is what a careful
hand-written script does), and e2e against TTFT + Σ steps inside cobench's own generations.

Targets (issue 11): |cobench / bare − 1| < 2 % for TTFT and TPOT; |e2e / (TTFT + Σ steps) − 1| < 3 %.
"""

from __future__ import annotations

import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
from harness_honesty import verdict

from cobench.arch.architecture import Architecture
from cobench.arch.spec import presets
from cobench.arch.workload import Workload
from cobench.hardware.devices import get_device
from cobench.measure.export import export_engine
from cobench.measure.generation import generate_once
from cobench.measure.profile import WORKER, ProfileSettings, run_worker, summarise_measurement, task_for
from cobench.measure.timing import HarnessConfig
from cobench.measure.worker import task_prompt, task_runner

CANDIDATES = ("tiny-gqa-4l", "tiny-mqa-4l", "tiny-mha-4l", "tiny-wide-2l", "tiny-gelu-4l")
WORKLOAD = Workload(prompt=256, generate=16, precision="fp32")
PAIRS = 6
BLOCK_S = 1.0
INTERLEAVED = 60
Generation = Callable[[], tuple[float, list[float]]]  # one generation: (TTFT, the steps) in seconds


def bare_generation(session: ort.InferenceSession, arch: Architecture, ids: np.ndarray) -> Generation:
    """A hand-written generation loop over the same engine graph: per generation one cache and one logits buffer,
    bound once (the cache as past and present) in one IO binding; a step binds its token and lengths."""
    capacity = WORKLOAD.prompt + WORKLOAD.generate
    inv = 1.0 / 10000.0 ** (np.arange(0, arch.head_dim, 2) / arch.head_dim)
    angles = np.outer(np.arange(capacity), inv)
    cos, sin = np.cos(angles).astype(np.float32), np.sin(angles).astype(np.float32)
    token = ids[:, -1:]

    def generation() -> tuple[float, list[float]]:
        t0 = time.perf_counter()  # TTFT: a cache and its binding set up, then the prompt (as cobench's runner)
        shape = (1, arch.n_kv_heads, capacity, arch.head_dim)
        kv = [ort.OrtValue.ortvalue_from_numpy(np.zeros(shape, np.float32)) for _ in range(2 * arch.n_layers)]
        logits = ort.OrtValue.ortvalue_from_numpy(np.zeros((1, 1, arch.vocab_size), np.float32))
        b = session.io_binding()
        for name, value in (("cos_cache", cos), ("sin_cache", sin)):
            b.bind_cpu_input(name, value)
        b.bind_ortvalue_output("logits", logits)
        for i in range(arch.n_layers):
            for j, kind in enumerate(("key", "value")):
                b.bind_ortvalue_input(f"past_{kind}_{i}", kv[j * arch.n_layers + i])
                b.bind_ortvalue_output(f"present_{kind}_{i}", kv[j * arch.n_layers + i])

        def run(x: np.ndarray, total: int) -> None:
            b.bind_cpu_input("input_ids", x)
            b.bind_cpu_input("seqlens_k", np.array([total - 1], np.int32))
            b.bind_cpu_input("total_sequence_length", np.array(total, np.int32))
            session.run_with_iobinding(b)

        run(ids, WORKLOAD.prompt)
        ttft = time.perf_counter() - t0
        steps = []
        for i in range(WORKLOAD.generate - 1):
            t0 = time.perf_counter()
            run(token, WORKLOAD.prompt + 1 + i)
            steps.append(time.perf_counter() - t0)
        return ttft, steps

    return generation


def median_generation(generation: Generation, seconds: float) -> tuple[float, float]:
    """A bare block: warm up, generate for `seconds` (3 at least); the median TTFT and the mean over the
    generated range of each step position's median, as cobench reports them."""
    for _ in range(2):
        generation()
    found = []
    end = time.perf_counter() + seconds
    while time.perf_counter() < end or len(found) < 3:
        found.append(generation())
    ttft = float(np.median([f[0] for f in found]))
    return ttft, float(np.median(np.array([f[1] for f in found]), axis=0).mean())


def cobench_block(task: dict) -> tuple[float, float, float]:  # type: ignore[type-arg]
    result, reason = run_worker(task, 300, WORKER)
    if result is None:
        raise RuntimeError(reason)
    m = summarise_measurement(result, Workload(**task["workload"]))
    return m.ttft_s, m.tpot_s, m.e2e_gap or 0.0


def compare(name: str, task: dict, bare: Generation, loop: str, shared: Callable[[Any], Generation]) -> bool:  # type: ignore[type-arg]
    """Two checks of cobench (TTFT and TPOT, cobench / bare) against a bare generation loop:
    - PAIRS ABBA pairs of a cobench worker block (a real `cobench profile` worker process) and a block of `bare`,
      and e2e against TTFT + Σ steps inside cobench's generations;
    - INTERLEAVED pairs of single generations in this process: cobench's own generation code on the runner a
      worker opens, against the bare loop `shared(runner)` over that runner's loaded engine (one model, one
      thread pool, the same buffers). Adjacent generations are milliseconds apart, so the machine's drift (which
      moves whole 1-s blocks by several % on a shared VM) cancels, and what is left is what cobench's code adds."""
    ttft, tpot, gaps = [], [], []
    for i in range(PAIRS):
        order = ("cobench", "bare") if i % 2 == 0 else ("bare", "cobench")
        out = {k: cobench_block(task) if k == "cobench" else median_generation(bare, BLOCK_S) for k in order}
        (c_ttft, c_tpot, gap), (b_ttft, b_tpot) = out["cobench"], out["bare"]
        ttft.append(c_ttft / b_ttft)
        tpot.append(c_tpot / b_tpot)
        gaps.append(gap)
    print(f"{name}: TTFT {b_ttft * 1e3:.3g} ms, TPOT {b_tpot * 1e3:.3g} ms (bare, last block)")
    ok = verdict(f"  TTFT cobench worker vs bare {loop}", ttft, 0.02)
    ok &= verdict("  TPOT (mean per-step median inside generation) cobench worker vs bare", tpot, 0.02)
    worst = max(gaps, key=abs)
    print(f"  e2e vs TTFT + Σ steps (same generations): worst block {worst:+.2%} (target within ±3%)")
    runner, generation = in_process(task)
    ttft, tpot = interleaved(generation, shared(runner), INTERLEAVED)
    pairs = f"{INTERLEAVED} interleaved generation pairs on one loaded engine"
    ok &= verdict(f"  TTFT cobench's generation code vs bare, {pairs}", ttft, 0.02)
    ok &= verdict(f"  TPOT (Σ steps) cobench's generation code vs bare, {pairs}", tpot, 0.02)
    return ok and abs(worst) < 0.03


def in_process(task: dict) -> tuple[Any, Generation]:  # type: ignore[type-arg]
    """The runner a worker opens for `task`, in this process, and one generation by cobench's own code on it
    (measure/generation.generate_once, the worker's prompt and token)."""
    runner, ids = task_runner(task), task_prompt(task)

    def generation() -> tuple[float, list[float]]:
        ttft, steps, _ = generate_once(runner, ids, ids[:, -1:], task["workload"]["generate"])
        return ttft, steps

    return runner, generation


def interleaved(cobench: Generation, bare: Generation, pairs: int) -> tuple[list[float], list[float]]:
    """Single generations alternated ABBA after a warm-up of each: per pair, cobench / bare of TTFT and of Σ steps."""
    for _ in range(3):
        cobench(), bare()
    ttft, tpot = [], []
    for i in range(pairs):
        first, second = (cobench, bare) if i % 2 == 0 else (bare, cobench)
        a, b = first(), second()
        (c_ttft, c_steps), (b_ttft, b_steps) = (a, b) if i % 2 == 0 else (b, a)
        ttft.append(c_ttft / b_ttft)
        tpot.append(sum(c_steps) / sum(b_steps))
    return ttft, tpot


def block_settings(workload: Workload, cache_dir: Path, backend: str = "ort") -> ProfileSettings:
    """A cobench block as these benches time it: one short window per phase, no telemetry, no idle wait."""
    block = HarnessConfig(warmup_s=0.2, min_iters=5, min_time_s=BLOCK_S / 2, max_time_s=BLOCK_S / 2, target_rel_ci=0)
    return ProfileSettings(workload=workload, harness=block, telemetry="off", idle_s=0, e2e_min_iters=3,
                           cache_dir=cache_dir, backend=backend)  # fmt: skip


def main() -> int:
    device = get_device("cpu")
    ok = True
    with tempfile.TemporaryDirectory() as tmp:
        settings = block_settings(WORKLOAD, Path(tmp))
        print(f"B=1, P={WORKLOAD.prompt}, G={WORKLOAD.generate}, ORT CPU fp32; {PAIRS} ABBA pairs per candidate")
        for name in CANDIDATES:
            arch = presets()[name].arch
            exported = export_engine(arch, "fp32", Path(tmp))  # the graph cobench's ORT runner runs
            session = ort.InferenceSession(str(exported.graph("model")), providers=["CPUExecutionProvider"])
            ids = np.random.default_rng(0).integers(0, arch.vocab_size, (1, WORKLOAD.prompt), dtype=np.int64)
            task = task_for(arch, "fp32", device, settings)
            shared = lambda r, a=arch, x=ids: bare_generation(r.session, a, x)  # noqa: E731
            ok &= compare(name, task, bare_generation(session, arch, ids), "generation loop", shared)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
