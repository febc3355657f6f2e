"""llama.cpp as a backend: the candidate as a GGUF file (measure/gguf_layout.py), quantised by llama.cpp
itself, timed through llama.cpp's own C API (llama-cpp-python's bindings: `llama_decode` on one context
with llama.cpp's default context parameters — flash attention `auto`, its KV cache — as llama-cli and
llama-server run it; the high-level `Llama` class turns flash attention off), as an application that
ships on it runs it.

Precisions are GGUF types: fp32 (F32) and fp16 (F16) written by cobench; q8_0, q4_0 and q4_k_m quantised from F32 by
`llama_model_quantize` (Q4_K_M mixes 4- and 6-bit blocks and keeps tensors whose rows do not split into
256-value super-blocks in another type: the bytes each tensor really has are read back from the file and
recorded beside what the roofline counts for it, arch/gguf_types.py). A generation: the cache emptied, the
prompt decoded as one batch, its last logits picked greedily (TTFT); then each token decoded and picked (a
step). Thread counts, the KV cache's type and llama.cpp's build (system info) go into the environment record.
The cache is F16, llama.cpp's default whatever the weights, set explicitly from the latency model's counting
(predict/latency_model.py) so that what runs and what is predicted cannot part.
"""

from __future__ import annotations

import importlib.metadata as md
import importlib.util
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cobench.arch.architecture import Architecture, as_arch_like
from cobench.arch.gguf_types import weight_bytes
from cobench.errors import InputError, MissingDependency
from cobench.measure.clocks import time_host
from cobench.measure.export import Exported, ExportError, cached_build, export_key, file_sha256
from cobench.measure.runners.engines import built_record, check_last_logits, cpu_threads
from cobench.predict.latency_model import BACKEND_COUNTING

INSTALL = "the llama.cpp backend needs llama-cpp-python and gguf: pip install 'cobench[llamacpp]' (builds llama.cpp)"
QUANTISED = {"q8_0": 7, "q4_0": 2, "q4_k_m": 15}  # llama_ftype values (llama.h)
PRECISIONS = ("fp32", "fp16", *QUANTISED)
GGML_KV = {"fp32": "GGML_TYPE_F32", "fp16": "GGML_TYPE_F16"}  # KV cache types by cobench's KV precision name
KV_CACHE = str(BACKEND_COUNTING["llama.cpp"].kv_cache)
TOLERANCE = {"fp32": 5e-3, "fp16": 5e-2, "q8_0": 0.1, "q4_0": 0.6, "q4_k_m": 0.6}  # last logits, max (fp) / rms (q)


def check_available(device: str) -> None:
    for module in ("llama_cpp", "gguf"):
        if importlib.util.find_spec(module) is None:
            raise MissingDependency(f"{INSTALL} ({module} is missing)")
    if device != "cpu":
        raise InputError("runner_device", "llama.cpp runs on cpu here (a CUDA build of llama-cpp-python: see README)")


def build(arch: Architecture, precision: str, cache_dir: Path, seed: int = 0) -> Exported:
    """The GGUF of `arch` at `precision` (or the cached one): written, quantised, validated, under cache_dir."""
    if precision not in PRECISIONS:
        raise InputError("precision", f"llama.cpp runs {', '.join(PRECISIONS)}, not {precision!r}")
    key = export_key(arch, f"llama.cpp-{md.version('llama-cpp-python')}-{precision}")
    return cached_build(key, cache_dir, precision, lambda work: _build_into(work, arch, precision, seed))


def _build_into(work: Path, arch: Architecture, precision: str, seed: int) -> dict[str, Any]:
    import llama_cpp

    from cobench.measure.gguf_layout import gguf_architecture, write_gguf

    t0 = time.perf_counter()
    written = work / ("model-f16.gguf" if precision == "fp16" else "model-f32.gguf")
    module = write_gguf(arch, written, seed, f16=precision == "fp16")
    target = work / "model.gguf"
    if precision in QUANTISED:
        params = llama_cpp.llama_model_quantize_default_params()
        params.ftype = QUANTISED[precision]
        if llama_cpp.llama_model_quantize(str(written).encode(), str(target).encode(), params) != 0:
            raise ExportError(f"llama.cpp: quantising {arch.name} to {precision} failed")
        written.unlink()
    else:
        written.rename(target)
    build_s = time.perf_counter() - t0
    error = validate(target, module, arch, precision)
    return {
        "arch": arch.to_dict(),
        "engine": "llama.cpp",
        "gguf_architecture": gguf_architecture(arch),
        "llama_cpp_python": md.version("llama-cpp-python"),
        "precision": precision,
        "build_s": build_s,
        "validation": {"last_logits": error},
        "tensor_bytes": {**tensor_bytes(target), "counted": float(weight_bytes(as_arch_like(arch), precision)[0])},
        "sha256": file_sha256(target),
    }


def tensor_bytes(path: Path) -> dict[str, Any]:
    """What the file's weights really take, by GGUF type: the bytes a step reads."""
    import gguf

    by_type: dict[str, int] = {}
    for t in gguf.GGUFReader(str(path)).tensors:
        by_type[t.tensor_type.name] = by_type.get(t.tensor_type.name, 0) + int(t.n_bytes)
    return {"total": sum(by_type.values()), "by_type": by_type}


@dataclass
class Engine:
    """A loaded model and one context on it (llama.cpp's defaults, but for its size and threads)."""

    model: Any
    ctx: Any
    vocab: int
    params: Any
    one: Any = None  # a step's one-token array, made once: a generation's steps allocate nothing

    @classmethod
    def load(cls, path: Path, capacity: int, threads: int) -> Engine:
        import llama_cpp

        llama_cpp.llama_backend_init()
        model = llama_cpp.llama_model_load_from_file(str(path).encode(), llama_cpp.llama_model_default_params())
        if not model:
            raise ExportError(f"llama.cpp could not load {path}")
        params = llama_cpp.llama_context_default_params()
        params.n_ctx = params.n_batch = params.n_ubatch = capacity  # the prompt in one batch
        params.n_threads = params.n_threads_batch = threads
        params.type_k = params.type_v = getattr(llama_cpp, GGML_KV[KV_CACHE])
        ctx = llama_cpp.llama_init_from_model(model, params)
        vocab = llama_cpp.llama_vocab_n_tokens(llama_cpp.llama_model_get_vocab(model))
        return cls(model, ctx, int(vocab), params, (llama_cpp.llama_token * 1)())

    def decode(self, tokens: list[int]) -> int:
        """Decode the tokens after what the cache holds; the greedy next token."""
        import llama_cpp

        if len(tokens) == 1:
            self.one[0] = tokens[0]
            array = self.one
        else:
            array = (llama_cpp.llama_token * len(tokens))(*tokens)
        if llama_cpp.llama_decode(self.ctx, llama_cpp.llama_batch_get_one(array, len(tokens))) != 0:
            raise RuntimeError(f"llama_decode failed on {len(tokens)} tokens")
        return int(np.argmax(self.logits()))

    def logits(self) -> np.ndarray:
        """The logits of the last decoded token (a view into llama.cpp's buffer)."""
        import llama_cpp

        return np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(self.ctx, -1), shape=(self.vocab,))

    def keep(self, positions: int) -> None:
        """Forget the cache from `positions` on (0: all of it)."""
        import llama_cpp

        memory = llama_cpp.llama_get_memory(self.ctx)
        if positions == 0:
            llama_cpp.llama_memory_clear(memory, True)
        else:
            llama_cpp.llama_memory_seq_rm(memory, 0, positions, -1)

    def close(self) -> None:
        import llama_cpp

        llama_cpp.llama_free(self.ctx)
        llama_cpp.llama_model_free(self.model)


def validate(path: Path, module: Any, arch: Architecture, precision: str) -> float:
    def logits_after(ids: np.ndarray) -> np.ndarray:
        engine = Engine.load(path, 32, 1)
        try:
            engine.decode(ids[0].tolist())
            return engine.logits().copy()
        finally:
            engine.close()

    norm = "max" if precision in ("fp32", "fp16") else "rms"
    return check_last_logits("llama.cpp", arch, precision, module, logits_after, TOLERANCE[precision], norm)


@dataclass
class LlamaCppRunner:
    built: Exported
    engine: Engine
    capacity: int
    threads: int
    load_s: float
    name: str = "llama.cpp"

    @classmethod
    def open(
        cls, arch: Architecture, precision: str, device: str, cache_dir: Path, options: dict[str, Any]
    ) -> LlamaCppRunner:
        check_available(device)
        built = build(arch, precision, cache_dir, int(options.get("seed") or 0))
        capacity = int(options.get("capacity") or arch.max_seq_len)
        threads = cpu_threads(options)
        t0 = time.perf_counter()
        engine = Engine.load(built.directory / "model.gguf", capacity, threads)
        return cls(built, engine, capacity, threads, time.perf_counter() - t0)

    def info(self) -> dict[str, Any]:
        import llama_cpp

        meta = self.built.meta
        return {
            "backend": "llama.cpp",
            "graph": "llama.cpp: GGUF, its own kernels and KV cache (llama_decode, default context parameters)",
            "llama_cpp_python": meta["llama_cpp_python"],
            "system_info": llama_cpp.llama_print_system_info().decode(errors="replace").strip(),
            "flash_attn_type": int(self.engine.params.flash_attn_type),  # -1: auto (llama.cpp's default)
            "kv_cache": KV_CACHE,
            "device": "cpu",
            "quantisation": meta["precision"],
            "tensor_bytes": meta["tensor_bytes"],
            "threads": self.threads,
        } | built_record(self.built, self.load_s, self.capacity)

    def prefill(self, ids: np.ndarray) -> Any:
        if ids.shape[0] != 1:
            raise InputError("batch", "llama.cpp is timed at batch 1 here")
        self.engine.keep(0)
        return self.engine.decode(ids[0].tolist())

    def decode(self, ids: np.ndarray, cache: Any) -> Any:
        return self.engine.decode([int(cache)])  # the engine's own last token

    def make_cache(self, batch: int, context: int) -> Any:
        ids = np.random.default_rng(context).integers(0, self.engine.vocab, (batch, context))
        self.prefill(ids)
        return context

    def fixed_decode(self, ids: np.ndarray, cache: Any) -> Callable[[], Any]:
        """One token decoded at the cache's context, again and again (the position it wrote forgotten first)."""
        token = [int(ids[0, -1])]

        def again() -> Any:
            self.engine.keep(cache)
            return self.engine.decode(token)

        return again

    def timed(self, fn: Callable[[], Any]) -> float:
        return time_host(fn)  # llama_decode returns when the batch is computed
