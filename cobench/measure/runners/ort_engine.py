"""ONNX Runtime on the engine graph (measure/engine_graph.py): one session for prefill and decode, a KV
cache preallocated for the whole generation and bound as both past and present of every attention layer,
so each step writes one position in place; a convolution or delta-net layer's state is a pair of buffers
read and written in turn. Inputs and outputs go through IO binding: nothing is copied per step but the token id
and the last position's logits, which land in host memory allocated with the cache; the cache's IO binding holds
everything else from one step to the next, so a step binds only its token, lengths and swapping states (binding
it all anew and fetching the outputs as Python objects cost ~40 µs a step, 7 % of a small model's step on a
CPU, that no engine pays)."""

from __future__ import annotations

import importlib.util
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from cobench.arch.architecture import Architecture
from cobench.arch.model import rotary_dim
from cobench.errors import MissingDependency
from cobench.measure.clocks import time_host
from cobench.measure.engine_graph import rope_cache, state_shapes
from cobench.measure.export import Exported, export_engine
from cobench.measure.generation import fixed_step
from cobench.measure.runners.ort import NUMPY_TYPES
from cobench.measure.runners.ort_session import check_placement_after, intra_op_threads, open_session


@dataclass
class Cache:
    """One generation's cache: its IO binding, where the keys and values of every attention layer (past and
    present alike) and the logits' host buffer are bound once; a pair of buffers per state input of the graph
    (the step reads one and writes the other; they swap); and how many positions it holds."""

    states: dict[str, list[Any]]  # graph input → [read, written] OrtValues (engine_graph.state_shapes)
    logits: Any  # OrtValue in host memory (B, 1, vocab): every step writes the last position's logits here
    binding: Any  # the session's IO binding for this cache: a step binds only its token, lengths and states
    arrays: list[Any]  # what the bound memory lives in, kept alive with it: host arrays (CPU) or device OrtValues
    capacity: int
    length: int = 0


def trt_shapes(arch: Architecture, options: dict[str, Any], capacity: int) -> dict[str, tuple[tuple[int, ...], ...]]:
    """The TensorRT provider's profile, for every input with a dynamic axis (it wants all or none): the
    workload's batch and prompt, the cache and the RoPE tables at their fixed capacity."""
    batch, prompt = int(options.get("batch") or 1), int(options.get("prompt") or 1)
    rope = (capacity, rotary_dim(arch) // 2)
    shapes: dict[str, tuple[tuple[int, ...], ...]] = {
        "input_ids": ((1, 1), (batch, prompt), (batch, prompt)),
        "seqlens_k": ((1,), (batch,), (batch,)),
        "cos_cache": (rope, rope, rope),
        "sin_cache": (rope, rope, rope),
    }
    cache = ((1, arch.n_kv_heads, capacity, arch.head_dim), (batch, arch.n_kv_heads, capacity, arch.head_dim))
    for i, kind in enumerate(arch.kinds):
        if kind in ("full", "sliding"):
            for part in ("key", "value"):
                shapes[f"past_{part}_{i}"] = (cache[0], cache[1], cache[1])
    for name, shape in state_shapes(arch).items():
        shapes[name] = ((1, *shape), (batch, *shape), (batch, *shape))
    return shapes


@dataclass
class OrtEngineRunner:
    exported: Exported
    arch: Architecture
    provider: str
    session: Any
    session_s: float
    dtype: Any
    capacity: int
    rope: tuple[np.ndarray, np.ndarray]
    rng: np.random.Generator = field(default_factory=lambda: np.random.default_rng(0))
    placement: dict[str, int] = field(default_factory=dict)  # GPU sessions: nodes per provider, from ORT's profile
    allocations: int = 0  # caches allocated so far: one per generation, never per step
    name: str = "ort"

    @classmethod
    def open(
        cls, arch: Architecture, precision: str, device: str, cache_dir: Path, options: dict[str, Any]
    ) -> OrtEngineRunner:
        if importlib.util.find_spec("onnxruntime") is None:
            raise MissingDependency("the ort backend needs onnxruntime (CPU) or onnxruntime-gpu: make install")
        return cls.from_exported(export_engine(arch, precision, cache_dir), arch, device, options)

    @classmethod
    def from_exported(
        cls, exported: Exported, arch: Architecture, device: str, options: dict[str, Any]
    ) -> OrtEngineRunner:
        t0 = time.perf_counter()
        capacity = int(options.get("capacity") or arch.max_seq_len)
        shapes = trt_shapes(arch, options, capacity) if device == "tensorrt" else None
        session = open_session(exported.graph("model"), device, exported.precision, exported.directory, options, shapes)
        session_s = time.perf_counter() - t0
        dtype = NUMPY_TYPES[session.get_inputs()[3].type]
        runner = cls(exported, arch, device, session, session_s, dtype, capacity, rope_cache(arch, capacity, dtype))
        probe = runner.new_cache(1)  # a placement check's cache: not one of the generations counted
        runner.allocations = 0
        runner.placement = check_placement_after(
            session, device, lambda: runner._step(np.zeros((1, 2), np.int64), probe)
        )
        return runner

    def info(self) -> dict[str, Any]:
        import onnxruntime as ort

        return {
            "backend": "ort",
            "graph": "engine: GroupQueryAttention, preallocated KV cache written in place",
            "onnxruntime": ort.__version__,
            "device": self.provider,
            "providers": self.session.get_providers(),
            "node_placement": self.placement,
            "export_key": self.exported.key,
            "export_cache_hit": self.exported.meta.get("cache_hit"),
            "export_sha256": self.exported.meta["sha256"],
            "export_validation": self.exported.meta["validation"],
            "export_s": self.exported.meta.get("build_s"),
            "session_create_s": self.session_s,
            "kv_capacity": self.capacity,
            "intra_op_threads": intra_op_threads(self.session),
        }

    def new_cache(self, batch: int, fill: bool = False) -> Cache:
        """A cache for one generation, allocated once: (attention layers) × (B, kv_heads, capacity, head_dim)
        keys and values, two buffers per state input (a fixed-context cache: random, as the KV)."""
        import onnxruntime as ort

        a = self.arch
        attention = [i for i, k in enumerate(a.kinds) if k in ("full", "sliding")]
        states = state_shapes(a)
        kv_shape = (batch, a.n_kv_heads, self.capacity, a.head_dim)
        shapes = [kv_shape] * (2 * len(attention)) + [(batch, *s) for s in states.values() for _ in range(2)]
        arrays = [self.rng.standard_normal(s).astype(self.dtype) if fill else np.zeros(s, self.dtype) for s in shapes]
        device = "cpu" if self.provider == "cpu" else "cuda"
        values = [ort.OrtValue.ortvalue_from_numpy(x, device, 0) for x in arrays]
        logits = np.zeros((batch, 1, a.vocab_size), self.dtype)
        self.allocations += 1
        n = len(attention)
        pairs = {name: values[2 * n + 2 * j : 2 * n + 2 * j + 2] for j, name in enumerate(states)}
        out = ort.OrtValue.ortvalue_from_numpy(logits)
        binding = self.session.io_binding()
        binding.bind_cpu_input("cos_cache", self.rope[0])
        binding.bind_cpu_input("sin_cache", self.rope[1])
        binding.bind_ortvalue_output("logits", out)  # host memory of its own: no allocation, no fetch per step
        for i, key, value in zip(attention, values[:n], values[n : 2 * n], strict=True):
            for kind, buffer in (("key", key), ("value", value)):
                binding.bind_ortvalue_input(f"past_{kind}_{i}", buffer)
                binding.bind_ortvalue_output(f"present_{kind}_{i}", buffer)  # the same memory: in place
        kept = [*(arrays if device == "cpu" else values), logits]
        return Cache(pairs, out, binding, kept, self.capacity)

    def _step(self, ids: np.ndarray, cache: Cache) -> Cache:
        total = cache.length + ids.shape[1]
        if total > cache.capacity:
            raise ValueError(f"the KV cache holds {cache.capacity} positions; this step needs {total}")
        binding = cache.binding
        binding.bind_cpu_input("input_ids", ids)
        binding.bind_cpu_input("seqlens_k", np.full(ids.shape[0], total - 1, dtype=np.int32))
        binding.bind_cpu_input("total_sequence_length", np.array(total, dtype=np.int32))
        for name, (read, written) in cache.states.items():
            binding.bind_ortvalue_input(name, read)
            binding.bind_ortvalue_output(f"{name}_next", written)
        self.session.run_with_iobinding(binding)
        for pair in cache.states.values():
            pair.reverse()  # what was written is read next
        cache.length = total
        return cache

    def prefill(self, ids: np.ndarray) -> Cache:
        return self._step(ids, self.new_cache(ids.shape[0]))

    def decode(self, ids: np.ndarray, cache: Cache) -> Cache:
        return self._step(ids, cache)

    def logits(self, ids: np.ndarray, cache: Cache) -> np.ndarray:
        """The step's last-position logits (validation and tests)."""
        return self._step(ids, cache).logits.numpy().copy()

    def make_cache(self, batch: int, context: int) -> Cache:
        cache = self.new_cache(batch, fill=True)
        cache.length = context
        return cache

    def fixed_decode(self, ids: np.ndarray, cache: Cache) -> Callable[[], Any]:
        return fixed_step(self._step, ids, cache)

    def timed(self, fn: Callable[[], Any]) -> float:
        return time_host(fn)  # run_with_iobinding returns when the outputs are ready
