"""ONNX Runtime runner: CPU, CUDA or TensorRT execution provider, on the exported graphs.

Sessions come from ort_session (active provider and node placement checked). On GPU the KV cache stays
on the device through IO binding, so host copies are not timed.
"""

from __future__ import annotations

import importlib.util
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from cobench.arch.architecture import Architecture
from cobench.errors import InputError, MissingDependency
from cobench.measure.clocks import time_host
from cobench.measure.export import Exported, export
from cobench.measure.runners.ort_session import (
    PROVIDERS,
    check_placement_after,
    check_precision,
    intra_op_threads,
    open_session,
)

NUMPY_TYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(int64)": np.int64}


@dataclass
class OrtRunner:
    exported: Exported
    provider: str
    sessions: dict[str, Any]
    session_s: float
    cache_dtype: Any
    placement: dict[str, dict[str, int]] = field(default_factory=dict)
    rng: np.random.Generator = field(default_factory=lambda: np.random.default_rng(0))
    name: str = "ort"

    @classmethod
    def open(
        cls, arch: Architecture, precision: str, device: str, cache_dir: Path, options: dict[str, Any]
    ) -> OrtRunner:
        if importlib.util.find_spec("onnxruntime") is None:
            raise MissingDependency("the ort backend needs onnxruntime (CPU) or onnxruntime-gpu: make install")
        if device not in PROVIDERS:
            raise InputError("ort_device", f"one of {', '.join(PROVIDERS)}, got {device!r}")
        check_precision(device, precision)
        exported = export(arch, precision, cache_dir)
        t0 = time.perf_counter()
        sessions = {
            p: open_session(exported.graph(p), device, precision, cache_dir, options) for p in ("prefill", "decode")
        }
        session_s = time.perf_counter() - t0
        dtype = NUMPY_TYPES[sessions["decode"].get_inputs()[1].type]
        runner = cls(exported, device, sessions, session_s, dtype)
        ids = np.zeros((1, 2), dtype=np.int64)
        runner.placement["prefill"] = check_placement_after(sessions["prefill"], device, lambda: runner.prefill(ids))
        cache = runner.make_cache(1, 2)
        runner.placement["decode"] = check_placement_after(
            sessions["decode"], device, lambda: runner.decode(ids[:, :1], cache)
        )
        return runner

    def info(self) -> dict[str, Any]:
        import onnxruntime as ort

        return {
            "backend": "ort",
            "onnxruntime": ort.__version__,
            "device": self.provider,
            "providers": self.sessions["prefill"].get_providers(),
            "node_placement": self.placement,
            "export_key": self.exported.key,
            "export_cache_hit": self.exported.meta.get("cache_hit"),
            "export_sha256": self.exported.meta["sha256"],
            "export_validation": self.exported.meta["validation"],
            "session_create_s": self.session_s,
            "export_s": sum(v for k, v in self.exported.meta.items() if k.endswith("_export_s")),
            "intra_op_threads": intra_op_threads(self.sessions["prefill"]),
        }

    def _run(self, phase: str, feeds: dict[str, Any]) -> Any:
        session = self.sessions[phase]
        if self.provider == "cpu":
            return session.run(None, feeds)
        binding = session.io_binding()  # device-resident inputs and outputs: no host copies in the timed call
        for name, value in feeds.items():
            binding.bind_ortvalue_input(name, value if not isinstance(value, np.ndarray) else self._on_device(value))
        for out in session.get_outputs():
            binding.bind_output(out.name, "cuda")
        session.run_with_iobinding(binding)
        return binding.get_outputs()

    def _on_device(self, array: np.ndarray) -> Any:
        import onnxruntime as ort

        return ort.OrtValue.ortvalue_from_numpy(array, "cuda", 0)

    def prefill(self, ids: np.ndarray) -> Any:
        _, k, v = self._run("prefill", {"input_ids": ids})
        return k, v

    def decode(self, ids: np.ndarray, cache: Any) -> Any:
        _, k, v = self._run("decode", {"input_ids": ids, "past_k": cache[0], "past_v": cache[1]})
        return k, v

    def make_cache(self, batch: int, context: int) -> Any:
        a = self.exported.meta["arch"]
        shape = (a["n_layers"], batch, a["n_kv_heads"], context, a["head_dim"])
        k = self.rng.standard_normal(shape).astype(self.cache_dtype)
        v = self.rng.standard_normal(shape).astype(self.cache_dtype)
        return (k, v) if self.provider == "cpu" else (self._on_device(k), self._on_device(v))

    def fixed_decode(self, ids: np.ndarray, cache: Any) -> Callable[[], Any]:
        return lambda: self.decode(ids, cache)

    def timed(self, fn: Callable[[], Any]) -> float:
        return time_host(fn)  # ORT returns when the outputs are ready (run_with_iobinding synchronises)
