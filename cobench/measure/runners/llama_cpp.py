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
step). At batch B, B sequences with prompts of their own, each in its own KV stream, go through every
`llama_decode` together (B × P tokens, then B per step), as llama-server's parallel slots decode them. Thread
counts, the sequences, the KV cache's type and llama.cpp's build (system info) go into the environment record. The
cache is F16, llama.cpp's default whatever the weights, set explicitly from the latency model's counting
(predict/latency_model.py) so that what runs and what is predicted cannot part.
"""

from __future__ import annotations

import importlib.metadata as md
import importlib.util
import time
from collections.abc import Callable
from dataclasses import dataclass, field
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
class Batch:
    """A llama_batch laid out once for `sequences` × `per_sequence` tokens (sequence ids; each sequence's last
    token the one whose logits are kept), as llama.cpp's batched example lays it out, so that a call writes only
    its tokens and positions: numpy views on the batch's own arrays."""

    raw: Any  # llama_batch
    tokens: np.ndarray
    positions: np.ndarray
    offsets: np.ndarray  # each token's position after what its sequence holds

    @classmethod
    def laid_out(cls, sequences: int, per_sequence: int) -> Batch:
        import llama_cpp

        n = sequences * per_sequence
        raw = llama_cpp.llama_batch_init(n, 0, 1)
        raw.n_tokens = n
        np.ctypeslib.as_array(raw.n_seq_id, shape=(n,))[:] = 1
        for i in range(n):
            raw.seq_id[i][0] = i // per_sequence
        outputs = np.ctypeslib.as_array(raw.logits, shape=(n,))
        outputs[:] = 0
        outputs[per_sequence - 1 :: per_sequence] = 1
        offsets = np.tile(np.arange(per_sequence, dtype=np.int32), sequences)
        view = lambda pointer: np.ctypeslib.as_array(pointer, shape=(n,))  # noqa: E731
        return cls(raw, view(raw.token), view(raw.pos), offsets)

    def write(self, tokens: np.ndarray, start: int) -> None:
        """The batch's tokens, at positions start.. of each sequence. A step's few tokens go in through ctypes:
        numpy's calls just before a `llama_decode` slowed that decode by ~2 % of a 0.5-ms step on this CPU
        (interleaved against a hand-written loop, benchmarks/llama_truth.py), more than their own µs."""
        if len(self.offsets) == len(tokens):  # one token per sequence
            for k, token in enumerate(tokens.ravel().tolist()):
                self.raw.token[k], self.raw.pos[k] = token, start
        else:
            self.tokens[:] = tokens.ravel()
            np.add(self.offsets, start, out=self.positions)


@dataclass
class Engine:
    """A loaded model and one context on it (llama.cpp's defaults, but for its size, threads and sequences: each
    sequence its own KV stream, `kv_unified` off, as llama-server's fixed slots and llama-batched-bench keep them
    for sequences that share no prefix)."""

    model: Any
    ctx: Any
    vocab: int
    params: Any
    batches: dict[tuple[int, int], Batch] = field(default_factory=dict)  # by shape: a step allocates nothing

    @classmethod
    def load(cls, path: Path, capacity: int, threads: int, sequences: int = 1) -> Engine:
        import llama_cpp

        llama_cpp.llama_backend_init()
        model = llama_cpp.llama_model_load_from_file(str(path).encode(), llama_cpp.llama_model_default_params())
        if not model:
            raise ExportError(f"llama.cpp could not load {path}")
        params = llama_cpp.llama_context_default_params()
        params.n_seq_max, params.kv_unified = sequences, False
        params.n_ctx = params.n_batch = params.n_ubatch = capacity * sequences  # every prompt in one batch
        params.n_threads = params.n_threads_batch = threads
        params.type_k = params.type_v = getattr(llama_cpp, GGML_KV[KV_CACHE])
        ctx = llama_cpp.llama_init_from_model(model, params)
        if not ctx:
            llama_cpp.llama_model_free(model)
            raise ExportError(f"llama.cpp could not make a context of {sequences} × {capacity} positions")
        vocab = llama_cpp.llama_vocab_n_tokens(llama_cpp.llama_model_get_vocab(model))
        return cls(model, ctx, int(vocab), params)

    def decode(self, tokens: np.ndarray, start: int) -> np.ndarray:
        """Decode (sequences, n) tokens at positions start.. of each sequence; each one's greedy next token."""
        import llama_cpp

        sequences, n = tokens.shape
        batch = self.batches.get(tokens.shape)
        if batch is None:
            batch = self.batches[tokens.shape] = Batch.laid_out(sequences, n)
        batch.write(tokens, start)
        if llama_cpp.llama_decode(self.ctx, batch.raw) != 0:
            raise RuntimeError(f"llama_decode failed on {sequences} × {n} tokens")
        return self.logits(sequences).argmax(axis=1)

    def logits(self, sequences: int) -> np.ndarray:
        """(sequences, vocab): the logits of each sequence's last decoded token (a view into llama.cpp's buffer)."""
        import llama_cpp

        return np.ctypeslib.as_array(llama_cpp.llama_get_logits(self.ctx), shape=(sequences, self.vocab))

    def keep(self, positions: int) -> None:
        """Forget every sequence's cache from `positions` on (0: all of it)."""
        import llama_cpp

        memory = llama_cpp.llama_get_memory(self.ctx)
        if positions == 0:
            llama_cpp.llama_memory_clear(memory, True)
        else:
            llama_cpp.llama_memory_seq_rm(memory, -1, positions, -1)

    def close(self) -> None:
        import llama_cpp

        for batch in self.batches.values():
            llama_cpp.llama_batch_free(batch.raw)
        llama_cpp.llama_free(self.ctx)
        llama_cpp.llama_model_free(self.model)


def validate(path: Path, module: Any, arch: Architecture, precision: str) -> float:
    def logits_after(ids: np.ndarray) -> np.ndarray:
        engine = Engine.load(path, 32, 1)
        try:
            engine.decode(ids, 0)
            return engine.logits(1)[0].copy()
        finally:
            engine.close()

    norm = "max" if precision in ("fp32", "fp16") else "rms"
    return check_last_logits("llama.cpp", arch, precision, module, logits_after, TOLERANCE[precision], norm)


@dataclass(frozen=True)
class Position:
    """Where a generation stands: each sequence's greedy token, the next step's input, after `length` positions."""

    tokens: np.ndarray  # (sequences, 1)
    length: int


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
        engine = Engine.load(built.directory / "model.gguf", capacity, threads, int(options.get("batch") or 1))
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
            "sequences": int(self.engine.params.n_seq_max),
            "kv_unified": bool(self.engine.params.kv_unified),
            "device": "cpu",
            "quantisation": meta["precision"],
            "tensor_bytes": meta["tensor_bytes"],
            "threads": self.threads,
        } | built_record(self.built, self.load_s, self.capacity)

    def prefill(self, ids: np.ndarray) -> Position:
        if ids.shape[0] != self.engine.params.n_seq_max:
            held = self.engine.params.n_seq_max
            raise InputError("batch", f"this context holds {held} sequences, not {ids.shape[0]}")
        self.engine.keep(0)
        return Position(self.engine.decode(ids, 0)[:, None], ids.shape[1])

    def decode(self, ids: np.ndarray, cache: Position) -> Position:
        return Position(self.engine.decode(cache.tokens, cache.length)[:, None], cache.length + 1)  # its own tokens

    def make_cache(self, batch: int, context: int) -> Position:
        ids = np.random.default_rng(context).integers(0, self.engine.vocab, (batch, context))
        return self.prefill(ids)

    def fixed_decode(self, ids: np.ndarray, cache: Position) -> Callable[[], Any]:
        """One token per sequence decoded at the cache's context, again and again (the position it wrote
        forgotten first)."""

        def again() -> Any:
            self.engine.keep(cache.length)
            return self.engine.decode(ids, cache.length)

        return again

    def timed(self, fn: Callable[[], Any]) -> float:
        return time_host(fn)  # llama_decode returns when the batch is computed
