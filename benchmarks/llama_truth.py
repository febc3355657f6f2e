"""llama.cpp truth: cobench's TTFT and per-step TPOT on llama.cpp (`--backend llama.cpp`) against a bare loop
over llama.cpp's own C API (`llama_memory_clear`, `llama_decode` of the prompt as one batch, then of each
greedy token; `llama_get_logits_ith`) on the same GGUF file, for three candidates, in ABBA-interleaved
blocks (cobench's block is a real `cobench profile` worker process).

Target (issue 12): |cobench / bare − 1| < 2 % for TTFT and TPOT.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from generation_truth import BLOCK_S, PAIRS, block_settings, compare, median_generation

from cobench.arch.spec import presets
from cobench.arch.workload import Workload
from cobench.hardware.devices import get_device
from cobench.measure.profile import task_for
from cobench.measure.runners.llama_cpp import build

CANDIDATES = ("tiny-gqa-4l", "tiny-mqa-4l", "tiny-qwenlike-4l")
PRECISION = "q8_0"
WORKLOAD = Workload(prompt=256, generate=16, precision=PRECISION)


def bare_block(path: Path, vocab: int, ids: np.ndarray, seconds: float) -> tuple[float, float]:
    """A hand-written llama.cpp loop: one context, the cache cleared per generation, greedy."""
    import llama_cpp

    llama_cpp.llama_backend_init()
    mp = llama_cpp.llama_model_default_params()
    model = llama_cpp.llama_model_load_from_file(str(path).encode(), mp)
    cp = llama_cpp.llama_context_default_params()
    capacity = WORKLOAD.prompt + WORKLOAD.generate
    cp.n_ctx = cp.n_batch = cp.n_ubatch = capacity
    cp.n_threads = cp.n_threads_batch = os.cpu_count() or 1
    ctx = llama_cpp.llama_init_from_model(model, cp)
    prompt = (llama_cpp.llama_token * len(ids))(*ids.tolist())
    one = (llama_cpp.llama_token * 1)()

    def pick() -> int:
        return int(np.argmax(np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(ctx, -1), shape=(vocab,))))

    def generation() -> tuple[float, list[float]]:
        t0 = time.perf_counter()
        llama_cpp.llama_memory_clear(llama_cpp.llama_get_memory(ctx), True)
        llama_cpp.llama_decode(ctx, llama_cpp.llama_batch_get_one(prompt, len(ids)))
        token = pick()
        ttft = time.perf_counter() - t0
        steps = []
        for _ in range(WORKLOAD.generate - 1):
            t0 = time.perf_counter()
            one[0] = token
            llama_cpp.llama_decode(ctx, llama_cpp.llama_batch_get_one(one, 1))
            token = pick()
            steps.append(time.perf_counter() - t0)
        return ttft, steps

    try:
        return median_generation(generation, seconds)
    finally:
        llama_cpp.llama_free(ctx)
        llama_cpp.llama_model_free(model)


def main() -> int:
    try:
        import llama_cpp
    except ImportError:
        print("llama-cpp-python is not installed (pip install '.[llamacpp]'): FAIL")
        return 1
    device = get_device("cpu")
    ok = True
    with tempfile.TemporaryDirectory() as tmp:
        settings = block_settings(WORKLOAD, Path(tmp), "llama.cpp")
        w = WORKLOAD
        print(f"B=1, P={w.prompt}, G={w.generate}, llama.cpp (llama-cpp-python {llama_cpp.__version__}) CPU "
              f"{PRECISION}; {PAIRS} ABBA pairs")  # fmt: skip
        for name in CANDIDATES:
            arch = presets()[name].arch
            path = build(arch, PRECISION, Path(tmp)).directory / "model.gguf"  # what cobench's runner loads
            ids = np.random.default_rng(0).integers(0, arch.vocab_size, WORKLOAD.prompt)
            task = task_for(arch, PRECISION, device, settings)
            bare = lambda p=path, v=arch.vocab_size, x=ids: bare_block(p, v, x, BLOCK_S)  # noqa: E731
            ok &= compare(name, task, bare, "llama_decode loop")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
