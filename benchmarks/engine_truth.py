"""Engine truth: cobench's TTFT and per-step TPOT on ONNX Runtime GenAI (`--backend ort-genai`) against a bare
loop over ORT GenAI's own API (`og.Generator`: append the prompt, pick the first token, then
`generate_next_token` per token) on the same built model, for three candidates, in ABBA-interleaved blocks
(cobench's block is a real `cobench profile` worker process), and single generations interleaved in one process
(cobench's generation code against the bare loop: what cobench's code adds, with the machine's drift cancelled).

Target (issue 12): |cobench / bare − 1| < 2 % for TTFT and TPOT.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from generation_truth import PAIRS, Generation, block_settings, compare

from cobench.arch.spec import presets
from cobench.arch.workload import Workload
from cobench.hardware.devices import get_device
from cobench.measure.profile import task_for
from cobench.measure.runners.engines import cpu_threads
from cobench.measure.runners.ort_genai import build, load

CANDIDATES = ("tiny-gqa-4l", "tiny-mqa-4l", "tiny-qwenlike-4l")
WORKLOAD = Workload(prompt=256, generate=16, precision="fp32")


def bare_generation(model: object, ids: np.ndarray) -> Generation:
    """What a hand-written script on ORT GenAI does: a generator per generation, greedy."""
    import onnxruntime_genai as og

    def generation() -> tuple[float, list[float]]:
        t0 = time.perf_counter()
        params = og.GeneratorParams(model)
        params.set_search_options(max_length=WORKLOAD.prompt + WORKLOAD.generate, do_sample=False)
        g = og.Generator(model, params)
        g.append_tokens(ids)
        g.generate_next_token()
        ttft = time.perf_counter() - t0
        steps = []
        for _ in range(WORKLOAD.generate - 1):
            t0 = time.perf_counter()
            g.generate_next_token()
            steps.append(time.perf_counter() - t0)
        return ttft, steps

    return generation


def main() -> int:
    try:
        import onnxruntime_genai as og
    except ImportError:
        print("ONNX Runtime GenAI is not installed (pip install '.[genai]'): FAIL")
        return 1
    device = get_device("cpu")
    ok = True
    with tempfile.TemporaryDirectory() as tmp:
        settings = block_settings(WORKLOAD, Path(tmp), "ort-genai")
        w = WORKLOAD
        print(f"B=1, P={w.prompt}, G={w.generate}, ORT GenAI {og.__version__} CPU fp32; {PAIRS} ABBA pairs")
        for name in CANDIDATES:
            arch = presets()[name].arch
            built = build(arch, "fp32", "cpu", Path(tmp))  # the model cobench's ort-genai runner runs
            model = load(built.directory / "model", cpu_threads({}))  # as many threads as cobench's runner
            ids = np.random.default_rng(0).integers(0, arch.vocab_size, (1, WORKLOAD.prompt)).astype(np.int32)
            task = task_for(arch, "fp32", device, settings)
            shared = lambda r, x=ids: bare_generation(r.model, x)  # noqa: E731
            ok &= compare(name, task, bare_generation(model, ids), "og.Generator loop", shared)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
