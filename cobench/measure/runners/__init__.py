"""Backends that run a candidate, behind one small protocol; `open_runner` picks one by name.

A runner prefills a prompt, runs decode steps on a KV cache it owns, and times a call the way its
device needs (host clock after a synchronise on CPU; CUDA events on GPU). The timing harness and the
profile loop never look inside a runner.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from cobench.arch.architecture import Architecture
from cobench.errors import InputError

BACKENDS = ("ort", "torch", "trt", "ort-genai", "llama.cpp")


class Runner(Protocol):
    name: str

    def info(self) -> dict[str, Any]:
        """Backend facts for the environment record: providers, device, dtype, build/session times."""
        ...

    def prefill(self, ids: np.ndarray) -> Any:
        """Run the prompt; return the KV cache (backend-native)."""
        ...

    def decode(self, ids: np.ndarray, cache: Any) -> Any:
        """One decode step on `cache`; return the grown cache."""
        ...

    def make_cache(self, batch: int, context: int) -> Any:
        """A random KV cache of `context` positions, for timing a decode step at a fixed context."""
        ...

    def fixed_decode(self, ids: np.ndarray, cache: Any) -> Callable[[], Any]:
        """A callable running one decode step on `cache` (not grown), prepared for repeated timing."""
        ...

    def timed(self, fn: Callable[[], Any]) -> float:
        """Run fn once, wait for the device, return seconds."""
        ...


def check_available(backend: str, device: str) -> None:
    """Fail before any candidate is launched when the backend cannot run here, with what to install."""
    import importlib.util

    from cobench.errors import MissingDependency

    if backend == "trt" and importlib.util.find_spec("tensorrt") is None:
        from cobench.measure.runners.tensorrt import INSTALL

        raise MissingDependency(INSTALL)
    if backend == "ort":
        if importlib.util.find_spec("onnxruntime") is None:
            raise MissingDependency("the ort backend needs onnxruntime (CPU) or onnxruntime-gpu: make install")
        from cobench.measure.runners.ort_session import PROVIDERS, probe

        if device not in PROVIDERS:
            raise InputError("runner_device", f"ort runs on {', '.join(PROVIDERS)}, not {device!r}")
        probe(device)  # listed is not loadable: a one-node session on the provider, before any export
    if backend == "ort-genai":
        from cobench.measure.runners.ort_genai import check_available as genai_available

        genai_available(device)
    if backend == "llama.cpp":
        from cobench.measure.runners.llama_cpp import check_available as llama_available

        llama_available(device)
    if device == "cuda" and backend in ("torch", "trt"):
        import torch

        if not torch.cuda.is_available():
            raise MissingDependency(f"the {backend} backend on cuda needs a CUDA GPU and a CUDA build of torch")


def check_runs(backend: str, arch: Architecture, precision: str, options: dict[str, Any]) -> None:
    """Refuse, before anything is built, a candidate with layers this backend cannot run, naming them: torch
    runs every kind; the engine graph (ort) every kind but MLA (engine_graph.unsupported); the exported
    graphs (ort with graph=export, trt) hold K and V per position only; the engines' builders take the dense
    Llama/Qwen2/Qwen3 layouts (ort-genai), Mixtral's routed experts and Gemma 3's layout (llama.cpp)."""
    from cobench.arch.model import uncached_kinds
    from cobench.measure.engine_graph import ENGINE_PRECISIONS, unsupported
    from cobench.measure.hf_layout import hf_type

    if backend in ("ort-genai", "llama.cpp"):
        hf_type(arch, backend)
        return
    if backend == "torch":
        return
    if backend == "ort" and options.get("graph", "engine") == "engine" and precision in ENGINE_PRECISIONS:
        why = unsupported(arch)
    else:
        why = [f"{k} layers" for k in uncached_kinds(arch)]
    if why:
        raise InputError(
            "arch", f"{arch.name} has {' and '.join(why)}: backend {backend} cannot run it (cobench predict still can)"
        )


def open_runner(
    backend: str, arch: Architecture, precision: str, device: str, cache_dir: Path, options: dict[str, Any]
) -> Runner:
    """Explicit order, imports only what the chosen backend needs (a missing one says what to install)."""
    check_runs(backend, arch, precision, options)
    if backend == "ort":
        from cobench.measure.engine_graph import ENGINE_PRECISIONS

        if options.get("graph", "engine") == "engine" and precision in ENGINE_PRECISIONS:
            from cobench.measure.runners.ort_engine import OrtEngineRunner

            return OrtEngineRunner.open(arch, precision, device, cache_dir, options)
        from cobench.measure.runners.ort import OrtRunner  # on request (graph=export): the torch.export graphs

        return OrtRunner.open(arch, precision, device, cache_dir, options)
    if backend == "torch":
        from cobench.measure.runners.pytorch import TorchRunner

        return TorchRunner.open(arch, precision, device, options)
    if backend == "trt":
        from cobench.measure.runners.tensorrt import TensorRTRunner

        return TensorRTRunner.open(arch, precision, cache_dir, options)
    if backend == "ort-genai":
        from cobench.measure.runners.ort_genai import OrtGenAIRunner

        return OrtGenAIRunner.open(arch, precision, device, cache_dir, options)
    if backend == "llama.cpp":
        from cobench.measure.runners.llama_cpp import LlamaCppRunner

        return LlamaCppRunner.open(arch, precision, device, cache_dir, options)
    raise InputError("backend", f"unknown backend {backend!r} (one of {', '.join(BACKENDS)})")
