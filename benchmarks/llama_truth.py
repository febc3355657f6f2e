"""llama.cpp truth: cobench's TTFT and per-step TPOT on llama.cpp (`--backend llama.cpp`) against a bare loop
over llama.cpp's own C API (`llama_memory_clear`, `llama_decode` of the prompt as one batch, then of each
greedy token; `llama_get_logits_ith`) on the same GGUF file, for three candidates, and for one of them again at
batch 4 (four sequences through each `llama_decode`, laid out as llama.cpp's batched example does), in ABBA-interleaved
blocks (cobench's block is a real `cobench profile` worker process), and single generations interleaved in one
process (cobench's generation code against the bare loop: what cobench's code adds, with the machine's drift
cancelled).

Target (issue 12): |cobench / bare − 1| < 2 % for TTFT and TPOT.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
from generation_truth import PAIRS, Generation, block_settings, compare

from cobench.arch.spec import presets
from cobench.arch.workload import Workload
from cobench.hardware.devices import get_device
from cobench.measure.profile import task_for
from cobench.measure.runners.llama_cpp import build

CANDIDATES = ("tiny-gqa-4l", "tiny-mqa-4l", "tiny-qwenlike-4l")
PRECISION = "q8_0"
WORKLOAD = Workload(prompt=256, generate=16, precision=PRECISION)
BATCHED = ("tiny-gqa-4l",)  # again with four sequences: llama-server's parallel slots
BATCH = Workload(batch=4, prompt=256, generate=16, precision=PRECISION)


@contextmanager
def own_context(path: Path, w: Workload) -> Iterator[Any]:
    """A context of its own on the GGUF file, set up as a hand-written script would (llama.cpp's defaults)."""
    import llama_cpp

    llama_cpp.llama_backend_init()
    model = llama_cpp.llama_model_load_from_file(str(path).encode(), llama_cpp.llama_model_default_params())
    cp = llama_cpp.llama_context_default_params()
    cp.n_seq_max = w.batch
    cp.n_ctx = cp.n_batch = cp.n_ubatch = (w.prompt + w.generate) * w.batch
    cp.n_threads = cp.n_threads_batch = os.cpu_count() or 1
    ctx = llama_cpp.llama_init_from_model(model, cp)
    try:
        yield ctx
    finally:
        llama_cpp.llama_free(ctx)
        llama_cpp.llama_model_free(model)


def bare_generation(ctx: Any, vocab: int, ids: np.ndarray) -> Generation:
    """A hand-written llama.cpp loop on `ctx`: the cache cleared per generation, greedy."""
    import llama_cpp

    [row] = ids
    prompt = (llama_cpp.llama_token * len(row))(*row.tolist())
    one = (llama_cpp.llama_token * 1)()

    def pick() -> int:
        return int(np.argmax(np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(ctx, -1), shape=(vocab,))))

    def generation() -> tuple[float, list[float]]:
        t0 = time.perf_counter()
        llama_cpp.llama_memory_clear(llama_cpp.llama_get_memory(ctx), True)
        llama_cpp.llama_decode(ctx, llama_cpp.llama_batch_get_one(prompt, len(row)))
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

    return generation


def bare_batched_generation(ctx: Any, vocab: int, ids: np.ndarray) -> Generation:
    """llama.cpp's batched example by hand on `ctx`: every sequence's prompt in one batch (filled once: it is the
    same each generation), then one token per sequence per step, written into a batch of their own."""
    import llama_cpp

    b, p = ids.shape
    prompt, step = llama_cpp.llama_batch_init(b * p, 0, 1), llama_cpp.llama_batch_init(b, 0, 1)
    prompt.n_tokens, step.n_tokens = b * p, b
    for k, (s, i) in enumerate(np.ndindex(b, p)):
        prompt.token[k], prompt.pos[k], prompt.n_seq_id[k], prompt.logits[k] = int(ids[s, i]), i, 1, i == p - 1
        prompt.seq_id[k][0] = s
    for s in range(b):
        step.n_seq_id[s], step.seq_id[s][0], step.logits[s] = 1, s, 1

    def pick() -> np.ndarray:
        return np.ctypeslib.as_array(llama_cpp.llama_get_logits(ctx), shape=(b, vocab)).argmax(axis=1)

    def generation() -> tuple[float, list[float]]:
        t0 = time.perf_counter()
        llama_cpp.llama_memory_clear(llama_cpp.llama_get_memory(ctx), True)
        llama_cpp.llama_decode(ctx, prompt)
        tokens = pick()
        ttft = time.perf_counter() - t0
        steps = []
        for n in range(BATCH.generate - 1):
            t0 = time.perf_counter()
            for s in range(b):
                step.token[s], step.pos[s] = int(tokens[s]), p + n
            llama_cpp.llama_decode(ctx, step)
            tokens = pick()
            steps.append(time.perf_counter() - t0)
        return ttft, steps

    return generation


def main() -> int:
    try:
        import llama_cpp
    except ImportError:
        print("llama-cpp-python is not installed (pip install '.[llamacpp]'): FAIL")
        return 1
    device = get_device("cpu")
    ok = True
    runs = [(WORKLOAD, n, bare_generation) for n in CANDIDATES] + [(BATCH, n, bare_batched_generation) for n in BATCHED]
    with tempfile.TemporaryDirectory() as tmp:
        for w, name, bare in runs:
            print(f"B={w.batch}, P={w.prompt}, G={w.generate}, llama.cpp (llama-cpp-python {llama_cpp.__version__}) "
                  f"CPU {PRECISION}; {PAIRS} ABBA pairs")  # fmt: skip
            arch = presets()[name].arch
            path = build(arch, PRECISION, Path(tmp)).directory / "model.gguf"  # what cobench's runner loads
            ids = np.random.default_rng(0).integers(0, arch.vocab_size, (w.batch, w.prompt))
            task = task_for(arch, PRECISION, device, block_settings(w, Path(tmp), "llama.cpp"))
            shared = lambda r, v=arch.vocab_size, x=ids, f=bare: f(r.engine.ctx, v, x)  # noqa: E731
            with own_context(path, w) as ctx:
                ok &= compare(name, task, bare(ctx, arch.vocab_size, ids), "llama_decode loop", shared)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
