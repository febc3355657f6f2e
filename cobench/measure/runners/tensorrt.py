"""TensorRT runner: engine from the exported ONNX, cached on disk, run with execute_async_v3.

TensorRT 10 takes precision from builder flags (FP16 on an fp32 graph); TensorRT 11 networks are
strongly typed, so the precision comes from the graph itself (the fp16 export). int8 needs a Q/DQ graph,
which cobench does not produce yet. Device memory and the stream come from torch's CUDA allocator.
On a Jetson, TensorRT comes with JetPack (create the venv with --system-site-packages).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cobench.arch.architecture import Architecture
from cobench.errors import InputError, MissingDependency
from cobench.measure.clocks import time_cuda
from cobench.measure.export import Exported, export, file_sha256

INSTALL = (
    "the trt backend needs TensorRT with a CUDA GPU: on a Jetson it comes with JetPack (make the venv with "
    "--system-site-packages); elsewhere `pip install tensorrt`"
)
MAX_BATCH = 8


@dataclass
class TensorRTRunner:
    exported: Exported
    engines: dict[str, Any]
    contexts: dict[str, Any]
    build_s: float
    engine_cache_hit: bool
    trt_version: str
    engine_sha256: dict[str, str]
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
        major = int(trt.__version__.split(".")[0])
        strongly_typed = major >= 11
        # TRT 11: the graph's own types decide; TRT 10: an fp32 graph plus the FP16 builder flag
        exported = export(arch, precision if strongly_typed else "fp32", cache_dir)
        logger = trt.Logger(trt.Logger.WARNING)
        engines, build_s, hit = {}, 0.0, True
        for phase in ("prefill", "decode"):
            path = exported.directory / f"{phase}.{trt.__version__}.{precision}.engine"
            if not path.exists():
                hit = False
                t0 = time.perf_counter()
                path.write_bytes(
                    _build(
                        trt,
                        logger,
                        exported.graph(phase),
                        phase,
                        arch,
                        precision,
                        strongly_typed,
                        exported.directory / f"timing.{trt.__version__}.cache",
                    )
                )
                build_s += time.perf_counter() - t0
            engines[phase] = trt.Runtime(logger).deserialize_cuda_engine(path.read_bytes())
        contexts = {p: e.create_execution_context() for p, e in engines.items()}
        hashes = {p: file_sha256(exported.directory / f"{p}.{trt.__version__}.{precision}.engine") for p in engines}
        return cls(exported, engines, contexts, build_s, hit, trt.__version__, hashes)

    def info(self) -> dict[str, Any]:
        return {
            "backend": "trt",
            "tensorrt": self.trt_version,
            "engine_build_s": self.build_s,
            "engine_cache_hit": self.engine_cache_hit,
            "export_key": self.exported.key,
        }

    def _execute(self, phase: str, inputs: dict[str, Any]) -> Any:
        import torch

        engine, context = self.engines[phase], self.contexts[phase]
        for name, tensor in inputs.items():
            context.set_input_shape(name, tuple(tensor.shape))
            context.set_tensor_address(name, tensor.data_ptr())
        outputs = {}
        for i in range(engine.num_io_tensors):
            name = engine.get_tensor_name(i)
            if name in inputs:
                continue
            shape = tuple(context.get_tensor_shape(name))
            dtype = torch.float16 if "HALF" in str(engine.get_tensor_dtype(name)) else torch.float32
            outputs[name] = torch.empty(shape, dtype=dtype, device="cuda")
            context.set_tensor_address(name, outputs[name].data_ptr())
        context.execute_async_v3(torch.cuda.current_stream().cuda_stream)
        return outputs["present_k"], outputs["present_v"]

    def prefill(self, ids: np.ndarray) -> Any:
        import torch

        return self._execute("prefill", {"input_ids": torch.as_tensor(ids, device="cuda")})

    def decode(self, ids: np.ndarray, cache: Any) -> Any:
        import torch

        return self._execute(
            "decode", {"input_ids": torch.as_tensor(ids, device="cuda"), "past_k": cache[0], "past_v": cache[1]}
        )

    def make_cache(self, batch: int, context: int) -> Any:
        import torch

        a = self.exported.meta["arch"]
        name = self.engines["decode"].get_tensor_name(1)
        dtype = torch.float16 if "HALF" in str(self.engines["decode"].get_tensor_dtype(name)) else torch.float32
        shape = (a["n_layers"], batch, a["n_kv_heads"], context, a["head_dim"])
        return tuple(torch.randn(shape, device="cuda", dtype=dtype) for _ in range(2))

    def fixed_decode(self, ids: np.ndarray, cache: Any) -> Callable[[], Any]:
        return lambda: self.decode(ids, cache)

    def timed(self, fn: Callable[[], Any]) -> float:
        return time_cuda(fn)


def _build(
    trt: Any,
    logger: Any,
    onnx_path: Path,
    phase: str,
    arch: Architecture,
    precision: str,
    strongly_typed: bool,
    timing_cache: Path,
) -> bytes:
    """Serialized engine with one optimisation profile spanning the dynamic axes."""
    builder = trt.Builder(logger)
    flags = 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED) if strongly_typed else 0
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        raise InputError("trt", f"TensorRT cannot parse {onnx_path.name}: {parser.get_error(0)}")
    config = builder.create_builder_config()
    if precision == "fp16" and not strongly_typed:
        config.set_flag(trt.BuilderFlag.FP16)
    cache = config.create_timing_cache(timing_cache.read_bytes() if timing_cache.exists() else b"")
    config.set_timing_cache(cache, ignore_mismatch=False)
    profile = builder.create_optimization_profile()
    top = arch.max_seq_len
    kv = (arch.n_layers, arch.n_kv_heads, arch.head_dim)
    if phase == "prefill":
        profile.set_shape("input_ids", (1, 2), (1, min(1024, top)), (MAX_BATCH, top))
    else:
        profile.set_shape("input_ids", (1, 1), (1, 1), (MAX_BATCH, 1))
        for name in ("past_k", "past_v"):
            profile.set_shape(
                name,
                (kv[0], 1, kv[1], 1, kv[2]),
                (kv[0], 1, kv[1], min(1024, top - 1), kv[2]),
                (kv[0], MAX_BATCH, kv[1], top - 1, kv[2]),
            )
    config.add_optimization_profile(profile)
    engine = builder.build_serialized_network(network, config)
    if engine is None:
        raise InputError("trt", f"TensorRT failed to build the {phase} engine (see the log above)")
    timing_cache.write_bytes(memoryview(config.get_timing_cache().serialize()))
    return bytes(engine)
