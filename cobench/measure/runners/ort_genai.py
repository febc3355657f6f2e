"""ONNX Runtime GenAI as a backend: the candidate built by ORT GenAI's own model builder and timed through its
own generator, as an application that ships on it runs it.

Build: cobench's torch module written as a Hugging Face folder (measure/hf_layout.py), turned into ORT
GenAI's production graph by `python -m onnxruntime_genai.models.builder` (GroupQueryAttention over one
past/present buffer, logits for every prompt position; int4 = MatMulNBits, 4-bit weights with
activations in the float type), checked against the torch module's logits, content-addressed in the
export cache. Timing: a generation is a new `og.Generator` (its KV buffer allocated for the whole
generation, `max_length` = the profile's capacity), `append_tokens(prompt)` and the first
`generate_next_token()` (which only picks the token: its logits came with the prompt) — that is TTFT —
then each further `generate_next_token()` runs the model on the last token and picks the next: one step.
Greedy search, so every generation does the same work.
"""

from __future__ import annotations

import importlib.metadata as md
import importlib.util
import json
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cobench.arch.architecture import Architecture
from cobench.errors import InputError, MissingDependency
from cobench.measure.clocks import time_host
from cobench.measure.export import Exported, ExportError, cached_build, export_key, file_sha256
from cobench.measure.runners.engines import built_record, check_last_logits, cpu_threads

INSTALL = "the ort-genai backend needs ONNX Runtime GenAI: pip install 'cobench[genai]'"
PRECISIONS = {"cpu": ("fp32", "int4"), "cuda": ("fp32", "fp16", "int4")}
TOLERANCE = {"fp32": 1e-3, "fp16": 5e-2, "int4": 0.5}  # of the prompt's last logits, max (fp) or rms (int4) / std
BUILD_TIMEOUT_S = 1800.0


def check_available(device: str) -> None:
    for module in ("onnxruntime_genai", "transformers", "safetensors"):  # the builder reads the HF folder
        if importlib.util.find_spec(module) is None:
            raise MissingDependency(f"{INSTALL} ({module} is missing)")
    if device not in PRECISIONS:
        raise InputError("runner_device", f"ort-genai runs on {', '.join(PRECISIONS)}, not {device!r}")
    if device == "cuda":
        import onnxruntime_genai as og

        if not og.is_cuda_available():
            raise MissingDependency("ort-genai on cuda needs onnxruntime-genai-cuda and a CUDA GPU")


def build(arch: Architecture, precision: str, device: str, cache_dir: Path, seed: int = 0) -> Exported:
    """ORT GenAI's model of `arch` (or the cached one): built, validated against torch, under cache_dir."""
    if precision not in PRECISIONS.get(device, ()):
        allowed = ", ".join(PRECISIONS.get(device, ()))
        raise InputError("precision", f"ort-genai on {device} builds {allowed}, not {precision!r}")
    version = md.version("onnxruntime-genai")
    key = export_key(arch, f"ort-genai-{version}-{precision}-{device}")
    return cached_build(key, cache_dir, precision, lambda work: _build_into(work, arch, precision, device, seed))


def _build_into(work: Path, arch: Architecture, precision: str, device: str, seed: int) -> dict[str, Any]:
    from cobench.measure.hf_layout import hf_type, write_hf

    t0 = time.perf_counter()
    module = write_hf(arch, work / "hf", seed)
    command = [sys.executable, "-m", "onnxruntime_genai.models.builder", "-i", str(work / "hf"), "-o",
               str(work / "model"), "-p", precision, "-e", device, "-c", str(work / "hf-cache")]  # fmt: skip
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=BUILD_TIMEOUT_S, check=False)
    except subprocess.TimeoutExpired:
        raise ExportError(f"ort-genai: the model builder took over {BUILD_TIMEOUT_S:.0f} s for {arch.name}") from None
    if done.returncode or not (work / "model" / "genai_config.json").exists():
        last = [line for line in (done.stderr or done.stdout).splitlines() if line.strip()][-1:] or ["no output"]
        raise ExportError(f"ort-genai: the model builder failed for {arch.name} ({precision}, {device}): {last[0]}")
    build_s = time.perf_counter() - t0
    shutil.rmtree(work / "hf")  # the weights are in the model now; the builder's cache is scratch
    shutil.rmtree(work / "hf-cache", ignore_errors=True)
    error = validate(work / "model", module, arch, precision, device)
    return {
        "arch": arch.to_dict(),
        "engine": "onnxruntime-genai",
        "onnxruntime_genai": md.version("onnxruntime-genai"),
        "hf_type": hf_type(arch),
        "precision": precision,
        "device": device,
        "build_s": build_s,
        "validation": {"last_logits": error},
        "sha256": file_sha256(work / "model" / "model.onnx"),
    }


def validate(folder: Path, module: Any, arch: Architecture, precision: str, device: str) -> float:
    import onnxruntime_genai as og

    def logits_after(ids: np.ndarray) -> np.ndarray:
        model = og.Model(str(folder))
        generator = og.Generator(model, _params(model, 1, ids.shape[1] + 1))
        generator.append_tokens(ids.astype(np.int32))
        return np.asarray(generator.get_logits())

    norm = "rms" if precision == "int4" else "max"
    return check_last_logits(f"ort-genai ({device})", arch, precision, module, logits_after, TOLERANCE[precision], norm)


def load(folder: Path, threads: int) -> Any:
    """ORT GenAI's model in `folder`, told its intra-op threads: left to itself it ran one on a 2-core VM."""
    import onnxruntime_genai as og

    config = og.Config(str(folder))
    config.overlay(json.dumps({"model": {"decoder": {"session_options": {"intra_op_num_threads": threads}}}}))
    return og.Model(config)


def _params(model: Any, batch: int, max_length: int) -> Any:
    import onnxruntime_genai as og

    params = og.GeneratorParams(model)
    params.set_search_options(max_length=max_length, batch_size=batch, do_sample=False)
    return params


@dataclass
class OrtGenAIRunner:
    built: Exported
    model: Any  # og.Model
    device: str
    capacity: int  # max_length of a generation: the KV buffer ORT GenAI allocates for it
    threads: int
    load_s: float
    name: str = "ort-genai"

    @classmethod
    def open(
        cls, arch: Architecture, precision: str, device: str, cache_dir: Path, options: dict[str, Any]
    ) -> OrtGenAIRunner:
        check_available(device)
        built = build(arch, precision, device, cache_dir, int(options.get("seed") or 0))
        t0 = time.perf_counter()
        threads = cpu_threads(options)
        model = load(built.directory / "model", threads)
        capacity = int(options.get("capacity") or arch.max_seq_len)
        return cls(built, model, device, capacity, threads, time.perf_counter() - t0)

    def info(self) -> dict[str, Any]:
        meta = self.built.meta
        return {
            "backend": "ort-genai",
            "graph": "ORT GenAI model builder: GroupQueryAttention, shared past/present buffer, all-position logits",
            "onnxruntime_genai": meta["onnxruntime_genai"],
            "onnxruntime": md.version("onnxruntime") if importlib.util.find_spec("onnxruntime") else None,
            "device": self.device,
            "hf_type": meta["hf_type"],
            "intra_op_threads": self.threads,
        } | built_record(self.built, self.load_s, self.capacity)

    def prefill(self, ids: np.ndarray) -> Any:
        import onnxruntime_genai as og

        generator = og.Generator(self.model, _params(self.model, ids.shape[0], self.capacity))
        generator.append_tokens(ids.astype(np.int32))
        generator.generate_next_token()  # the first token, from the prompt's logits
        return generator

    def decode(self, ids: np.ndarray, cache: Any) -> Any:
        cache.generate_next_token()  # the engine feeds its own last token
        return cache

    def make_cache(self, batch: int, context: int) -> Any:
        ids = np.random.default_rng(context).integers(0, self.built.meta["arch"]["vocab_size"], (batch, context))
        return self.prefill(ids)

    def fixed_decode(self, ids: np.ndarray, cache: Any) -> Callable[[], Any]:
        """One token appended at the cache's context and rewound, again and again: the same context each time."""
        length = cache.token_count()
        token = ids.astype(np.int32)

        def again() -> Any:
            cache.append_tokens(token)
            cache.rewind_to(length)
            return cache

        return again

    def timed(self, fn: Callable[[], Any]) -> float:
        return time_host(fn)  # ORT GenAI returns when the step's outputs are ready
