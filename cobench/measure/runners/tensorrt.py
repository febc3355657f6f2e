"""TensorRT runner: engine from the exported ONNX, cached on disk, run with execute_async_v3.

Networks are strongly typed on every version (required in 11, where the FP16 builder flag is gone; opt-in
since 10.x, where FP16 on an fp32 graph left the inputs, outputs and so the KV cache in fp32): the precision
comes from the graph, the fp16 export for fp16. fp32 is fp32 (TF32 cleared, as in torch and the roofline).
The optimisation profile spans the workload's real shapes (batch, prompt, the generation's capacity), not
the architecture's maximum context, which sizes activation memory beyond what an Orin has. Each engine is
keyed by TensorRT version, GPU, precision and profile, written as soon as it is built (with the timing
cache), so a killed build keeps what finished. Every TensorRT call that reports failure is checked. Work
runs on the runner's own CUDA stream; device memory comes from torch's allocator. int8 needs a Q/DQ graph,
which cobench does not produce yet. On a Jetson, TensorRT comes with JetPack (TensorRT 10: JetPack does not
ship 11).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from cobench.arch.architecture import Architecture
from cobench.errors import CobenchError, InputError, MissingDependency
from cobench.files import write_atomic
from cobench.measure.clocks import time_cuda
from cobench.measure.export import Exported, export, file_sha256
from cobench.records import content_id

INSTALL = (
    "the trt backend needs TensorRT with a CUDA GPU: on a Jetson it comes with JetPack (make the venv with "
    "--system-site-packages); elsewhere `pip install 'tensorrt-cu12>=10,<11'` (ORT's TensorRT provider needs 10)"
)
PHASES = ("prefill", "decode")
Shapes = dict[str, tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]]


class TensorRTError(CobenchError):
    """A TensorRT call reported failure (a shape outside the profile, a null engine, a failed enqueue)."""


def check(ok: Any, what: str) -> Any:
    """TensorRT reports failure by a False or None return, not an exception: make it one."""
    if ok is None or ok is False:
        raise TensorRTError(f"TensorRT: {what} failed")
    return ok


def profile_shapes(arch: Architecture, phase: str, batch: int, prompt: int, capacity: int) -> Shapes:
    """(min, opt, max) per input: what this workload runs, up to the generation's capacity."""
    kv = (arch.n_layers, arch.n_kv_heads, arch.head_dim)
    if phase == "prefill":
        return {"input_ids": ((1, 1), (batch, prompt), (batch, capacity))}
    cache = (
        (kv[0], 1, kv[1], 1, kv[2]),
        (kv[0], batch, kv[1], prompt, kv[2]),
        (kv[0], batch, kv[1], capacity - 1, kv[2]),
    )
    return {"input_ids": ((1, 1), (batch, 1), (batch, 1)), "past_k": cache, "past_v": cache}


def engine_name(phase: str, trt_version: str, precision: str, gpu: str, shapes: Shapes) -> str:
    """An engine only fits the TensorRT, GPU (model and compute capability) and profile it was built for."""
    return f"{phase}.{content_id({'trt': trt_version, 'precision': precision, 'gpu': gpu, 'shapes': shapes})}.engine"


@dataclass
class TensorRTRunner:
    exported: Exported
    engines: dict[str, Any]
    contexts: dict[str, Any]
    build_s: float
    engine_cache_hit: bool
    trt_version: str
    engine_sha256: dict[str, str]
    stream: Any  # torch.cuda.Stream (None only in tests, which run the calls on the CPU)
    device: str = "cuda"
    gpu: str = ""
    shapes: dict[str, Shapes] = field(default_factory=dict)
    _outputs: dict[tuple[str, tuple[int, ...]], dict[str, Any]] = field(default_factory=dict)
    name: str = "trt"

    @classmethod
    def open(cls, arch: Architecture, precision: str, cache_dir: Path, options: dict[str, Any]) -> TensorRTRunner:
        try:
            import tensorrt as trt
            import torch
        except ImportError:
            raise MissingDependency(INSTALL) from None
        if not torch.cuda.is_available():
            raise MissingDependency(INSTALL)
        if precision not in ("fp32", "fp16"):
            raise InputError(
                "precision", f"the trt backend runs fp32 and fp16 (int8 needs a Q/DQ graph), not {precision}"
            )
        exported = export(arch, precision, cache_dir)
        props = torch.cuda.get_device_properties(0)
        gpu = f"{props.name} sm_{props.major}{props.minor}"
        batch = int(options.get("batch") or 1)
        capacity = int(options.get("capacity") or arch.max_seq_len)
        prompt = min(int(options.get("prompt") or capacity - 1), capacity - 1)
        shapes = {p: profile_shapes(arch, p, batch, prompt, capacity) for p in PHASES}
        logger = trt.Logger(trt.Logger.WARNING)
        runtime = check(trt.Runtime(logger), "creating the runtime")
        engines, hashes, build_s, hit = {}, {}, 0.0, True
        for phase in PHASES:
            path = exported.directory / engine_name(phase, trt.__version__, precision, gpu, shapes[phase])
            if not path.exists():
                hit = False
                t0 = time.perf_counter()
                build(trt, logger, exported.graph(phase), path, shapes[phase], precision, options)
                build_s += time.perf_counter() - t0
            engines[phase] = check(runtime.deserialize_cuda_engine(path.read_bytes()), f"deserialising {path.name}")
            hashes[phase] = file_sha256(path)
        contexts = {p: check(e.create_execution_context(), f"a {p} execution context") for p, e in engines.items()}
        return cls(
            exported, engines, contexts, build_s, hit, trt.__version__, hashes, torch.cuda.Stream(), "cuda", gpu, shapes
        )

    def info(self) -> dict[str, Any]:
        return {
            "backend": "trt",
            "tensorrt": self.trt_version,
            "gpu": self.gpu,
            "engine_build_s": self.build_s,
            "engine_cache_hit": self.engine_cache_hit,
            "engine_sha256": self.engine_sha256,
            "profile_shapes": self.shapes,
            "strongly_typed": True,
            "tf32": False,
            "export_key": self.exported.key,
            "export_sha256": self.exported.meta.get("sha256"),
        }

    def _execute(self, phase: str, inputs: dict[str, Any]) -> Any:
        """Enqueue one phase on the runner's stream. Outputs are allocated once per shape and reused, so a
        repeated step (the fixed-cache decode) allocates nothing while it is timed."""
        import torch

        engine, context = self.engines[phase], self.contexts[phase]
        for name, tensor in inputs.items():
            check(context.set_input_shape(name, tuple(tensor.shape)), f"set_input_shape({name}, {tuple(tensor.shape)})")
            check(context.set_tensor_address(name, tensor.data_ptr()), f"set_tensor_address({name})")
        key = (phase, tuple(inputs["past_k"].shape) if "past_k" in inputs else tuple(inputs["input_ids"].shape))
        if key not in self._outputs:
            outputs = {}
            for i in range(engine.num_io_tensors):
                name = engine.get_tensor_name(i)
                if name in inputs:
                    continue
                shape = tuple(context.get_tensor_shape(name))
                dtype = torch.float16 if "HALF" in str(engine.get_tensor_dtype(name)) else torch.float32
                outputs[name] = torch.empty(shape, dtype=dtype, device=self.device)
            self._outputs[key] = outputs
        outputs = self._outputs[key]
        for name, tensor in outputs.items():
            check(context.set_tensor_address(name, tensor.data_ptr()), f"set_tensor_address({name})")
        stream = self.stream.cuda_stream if self.stream is not None else 0
        check(context.execute_async_v3(stream), f"execute_async_v3 ({phase})")
        return outputs["present_k"], outputs["present_v"]

    def _ids(self, ids: np.ndarray) -> Any:
        import torch

        return torch.as_tensor(ids, device=self.device)

    def prefill(self, ids: np.ndarray) -> Any:
        return self._execute("prefill", {"input_ids": self._ids(ids)})

    def decode(self, ids: np.ndarray, cache: Any) -> Any:
        return self._execute("decode", {"input_ids": self._ids(ids), "past_k": cache[0], "past_v": cache[1]})

    def make_cache(self, batch: int, context: int) -> Any:
        import torch

        a = self.exported.meta["arch"]
        name = self.engines["decode"].get_tensor_name(1)
        dtype = torch.float16 if "HALF" in str(self.engines["decode"].get_tensor_dtype(name)) else torch.float32
        shape = (a["n_layers"], batch, a["n_kv_heads"], context, a["head_dim"])
        return tuple(torch.randn(shape, device=self.device, dtype=dtype) for _ in range(2))

    def fixed_decode(self, ids: np.ndarray, cache: Any) -> Callable[[], Any]:
        """The token is copied to the device here, once, not inside every timed step."""
        feeds = {"input_ids": self._ids(ids), "past_k": cache[0], "past_v": cache[1]}
        return lambda: self._execute("decode", feeds)

    def timed(self, fn: Callable[[], Any]) -> float:
        import torch

        with torch.cuda.stream(self.stream):  # the events go on the stream the engine runs on
            return time_cuda(fn)


def build(
    trt: Any, logger: Any, onnx_path: Path, path: Path, shapes: Shapes, precision: str, options: dict[str, Any]
) -> None:
    """Build one engine (strongly typed, one profile over `shapes`) and write it with the timing cache."""
    builder = check(trt.Builder(logger), "creating the builder")
    network = check(builder.create_network(1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)), "network")
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        raise InputError("trt", f"TensorRT cannot parse {onnx_path.name}: {parser.get_error(0)}")
    config = check(builder.create_builder_config(), "creating the builder config")
    if precision == "fp32" and hasattr(trt.BuilderFlag, "TF32"):
        config.clear_flag(trt.BuilderFlag.TF32)
    if options.get("workspace_mb"):
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(options["workspace_mb"]) << 20)
    timing_cache = path.parent / f"timing.{trt.__version__}.cache"
    cache = config.create_timing_cache(timing_cache.read_bytes() if timing_cache.exists() else b"")
    config.set_timing_cache(cache, ignore_mismatch=False)
    profile = builder.create_optimization_profile()
    for name, (lo, opt, hi) in shapes.items():
        profile.set_shape(name, lo, opt, hi)
    config.add_optimization_profile(profile)
    engine = builder.build_serialized_network(network, config)
    if engine is None:
        raise TensorRTError(f"TensorRT failed to build {path.name} (see the log above)")
    # atomically, cache first: a kill mid-write leaves no truncated engine to be loaded next time
    write_atomic(timing_cache, bytes(memoryview(config.get_timing_cache().serialize())))
    write_atomic(path, bytes(engine))
