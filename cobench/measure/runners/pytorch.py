"""PyTorch eager runner (CPU or CUDA), optionally replaying the decode step as a CUDA graph.

On CUDA, calls are timed with CUDA events on the current stream; on CPU with the host clock.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from cobench.arch.architecture import Architecture
from cobench.errors import InputError, MissingDependency
from cobench.measure.clocks import time_cuda, time_host

DTYPES = {"fp32": "float32", "fp16": "float16", "bf16": "bfloat16"}


@dataclass
class TorchRunner:
    model: Any
    device: str
    dtype: Any
    build_s: float
    cuda_graphs: bool
    name: str = "torch"

    @classmethod
    def open(cls, arch: Architecture, precision: str, device: str, options: dict[str, Any]) -> TorchRunner:
        try:
            import torch
        except ImportError:
            raise MissingDependency("the torch backend needs torch: make install") from None
        from cobench.arch.model import build_model

        if precision not in DTYPES:
            raise InputError("precision", f"the torch backend runs {', '.join(DTYPES)}, not {precision!r}")
        if device == "cuda" and not torch.cuda.is_available():
            raise MissingDependency("device cuda requested but torch.cuda.is_available() is False")
        if device not in ("cpu", "cuda"):
            raise InputError("torch_device", f"cpu or cuda, got {device!r}")
        if options.get("threads"):
            torch.set_num_threads(int(options["threads"]))
        t0 = time.perf_counter()
        dtype = getattr(torch, DTYPES[precision])
        model = build_model(arch, seed=int(options.get("seed", 0)), dtype=dtype).to(device)
        return cls(
            model, device, dtype, time.perf_counter() - t0, bool(options.get("cuda_graphs")) and device == "cuda"
        )

    def info(self) -> dict[str, Any]:
        import torch

        info = {
            "backend": "torch",
            "torch": torch.__version__,
            "device": self.device,
            "dtype": str(self.dtype),
            "build_s": self.build_s,
            "threads": torch.get_num_threads(),
            "cuda_graphs": self.cuda_graphs,
        }
        if self.device == "cuda":
            info |= {"gpu": torch.cuda.get_device_name(0), "cuda": torch.version.cuda}
        return info

    def _tensor(self, ids: np.ndarray) -> Any:
        import torch

        return torch.as_tensor(ids, device=self.device)

    def prefill(self, ids: np.ndarray) -> Any:
        import torch

        with torch.inference_mode():
            _, k, v = self.model(self._tensor(ids))
        return k, v

    def decode(self, ids: np.ndarray, cache: Any) -> Any:
        import torch

        with torch.inference_mode():
            _, k, v = self.model(self._tensor(ids), cache[0], cache[1])
        return k, v

    def make_cache(self, batch: int, context: int) -> Any:
        import torch

        a = self.model.arch
        shape = (a.n_layers, batch, a.n_kv_heads, context, a.head_dim)
        g = torch.Generator(device=self.device).manual_seed(0)
        return tuple(torch.randn(shape, generator=g, device=self.device, dtype=self.dtype) for _ in range(2))

    def fixed_decode(self, ids: np.ndarray, cache: Any) -> Callable[[], Any]:
        """A decode step at a fixed context; with cuda_graphs, captured once and replayed."""
        if not self.cuda_graphs:
            return lambda: self.decode(ids, cache)
        import torch

        static_ids = self._tensor(ids)
        with torch.inference_mode():
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):
                for _ in range(3):  # warm up allocations outside the graph
                    self.model(static_ids, cache[0], cache[1])
            torch.cuda.current_stream().wait_stream(side)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                self.model(static_ids, cache[0], cache[1])
        return graph.replay

    def timed(self, fn: Callable[[], Any]) -> float:
        return time_cuda(fn) if self.device == "cuda" else time_host(fn)
